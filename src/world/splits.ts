// Deterministic data splits. Kosmos-G stages 2 and 3 never see the held-out style (OpenMoji) nor
// the held-out concepts; the held-out split holds exactly the subjects that involve either.
import { HELD_OUT_STYLE, type Catalog } from './catalog.js';
import { hashString } from '../util/random.js';

export const SPLIT_NAMES = ['train', 'heldout'] as const;
export type SplitName = (typeof SPLIT_NAMES)[number];

export const DEFAULT_SPLIT_SEED = 0;
export const HELD_OUT_CONCEPT_FRACTION = 0.1;

export interface SplitManifest {
  seed: number;
  heldOutStyle: string;
  trainingStyles: string[];
  heldOutConceptFraction: number;
  heldOutConcepts: string[];
  trainConcepts: string[];
  trainSubjects: number;
  heldOutSubjects: number;
}

/**
 * A concept is held out when its seeded hash falls in the lowest 10% of the hash range. Deciding
 * per concept (rather than by ranking) keeps the decision the same in any subset of the catalog.
 */
export function isHeldOutConcept(concept: string, seed: number, fraction = HELD_OUT_CONCEPT_FRACTION): boolean {
  return hashString(`${seed >>> 0}/${concept}`) < fraction * 4294967296;
}

export function makeSplits(catalog: Catalog, seed = DEFAULT_SPLIT_SEED, fraction = HELD_OUT_CONCEPT_FRACTION): SplitManifest {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`held-out concept fraction must be in [0, 1), got ${fraction}`);
  const heldOutConcepts = catalog.concepts.filter((c) => isHeldOutConcept(c.id, seed, fraction)).map((c) => c.id);
  const held = new Set(heldOutConcepts);
  const trainingStyles = catalog.styles.map((s) => s.id).filter((s) => s !== HELD_OUT_STYLE);
  const manifest: SplitManifest = {
    seed,
    heldOutStyle: HELD_OUT_STYLE,
    trainingStyles,
    heldOutConceptFraction: fraction,
    heldOutConcepts,
    trainConcepts: catalog.concepts.map((c) => c.id).filter((c) => !held.has(c)),
    trainSubjects: 0,
    heldOutSubjects: 0,
  };
  for (const subject of catalog.subjects) {
    if (isTrainSubject(manifest, subject.concept, subject.style)) manifest.trainSubjects++;
    else manifest.heldOutSubjects++;
  }
  return manifest;
}

export function isTrainSubject(manifest: SplitManifest, concept: string, style: string): boolean {
  return style !== manifest.heldOutStyle && manifest.trainingStyles.includes(style) && !manifest.heldOutConcepts.includes(concept);
}

export interface SplitPool {
  split: SplitName;
  subjects: string[];
  /** Styles that scene-emoji backgrounds may be drawn in. */
  backgroundStyles: string[];
}

export function splitPool(catalog: Catalog, manifest: SplitManifest, split: SplitName): SplitPool {
  const subjects = catalog.subjects.filter((s) => (split === 'train') === isTrainSubject(manifest, s.concept, s.style)).map((s) => s.id);
  if (subjects.length === 0) throw new Error(`the ${split} split has no subjects in this catalog`);
  const allStyles = catalog.styles.map((s) => s.id);
  return {
    split,
    subjects,
    backgroundStyles: split === 'train' ? allStyles.filter((s) => s !== manifest.heldOutStyle) : allStyles,
  };
}

export function parseSplit(name: string): SplitName {
  if (!(SPLIT_NAMES as readonly string[]).includes(name)) throw new Error(`unknown split '${name}'; expected one of ${SPLIT_NAMES.join(', ')}`);
  return name as SplitName;
}
