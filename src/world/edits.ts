// Scene edits, the InstructPix2Pix analogue: background change, replace, add, remove and move.
// Each edit is a pair of scene specs that differ only in what the instruction says.
import type { BackgroundSpec } from './backgrounds.js';
import { chooseName, styleWord } from './caption.js';
import type { Random } from '../util/random.js';
import { fitsWith, placeSubject, tryMoveSubject, tryPlaceNew, type PlacedSubject, type SceneSpec } from './scene.js';
import { POSITION_PHRASES } from './vocabulary.js';
import type { World } from './world.js';

export const EDIT_KINDS = ['background', 'replace', 'add', 'remove', 'move'] as const;
export type EditKind = (typeof EDIT_KINDS)[number];

export interface Edit {
  kind: EditKind;
  instruction: string;
  before: SceneSpec;
  after: SceneSpec;
  /** Index of the edited subject in `before` (remove, replace, move) or in `after` (add, replace, move). */
  subject: number | null;
}

export interface EditPools {
  subjects: readonly string[];
  backgroundStyles: readonly string[];
  maxOverlap: number;
}

function an(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

function sameBackground(a: BackgroundSpec, b: BackgroundSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function editBackground(world: World, spec: SceneSpec, rng: Random, pools: EditPools): Edit | null {
  for (let attempt = 0; attempt < 8; attempt++) {
    const background = world.backgrounds.sample(rng, pools.backgroundStyles);
    const phrase = world.backgrounds.phrase(background);
    if (sameBackground(background, spec.background) || phrase === world.backgrounds.phrase(spec.background)) continue;
    const instruction = rng.pick([`change the background, ${phrase}`, `put everything ${phrase}`, `set the scene ${phrase}`]);
    return { kind: 'background', instruction, before: spec, after: { ...spec, background }, subject: null };
  }
  return null;
}

function freshSubject(world: World, spec: SceneSpec, rng: Random, pools: EditPools): string | null {
  const present = new Set(spec.subjects.map((s) => s.concept));
  for (let attempt = 0; attempt < 20; attempt++) {
    const candidate = rng.pick(pools.subjects);
    const concept = world.catalog.subjectById.get(candidate)?.concept;
    if (concept && !present.has(concept)) return candidate;
  }
  return null;
}

function editReplace(world: World, spec: SceneSpec, rng: Random, pools: EditPools): Edit | null {
  if (spec.subjects.length === 0) return null;
  const index = rng.int(spec.subjects.length);
  const old = spec.subjects[index] as PlacedSubject;
  const others = spec.subjects.filter((_, i) => i !== index);
  for (let attempt = 0; attempt < 10; attempt++) {
    const subject = freshSubject(world, spec, rng, pools);
    if (!subject) return null;
    const placed = placeSubject(world, spec.size, subject, old.position, old.size, rng);
    if (!fitsWith(placed.box, others, pools.maxOverlap)) continue;
    const subjects = spec.subjects.map((s, i) => (i === index ? placed : s));
    const oldName = chooseName(world, old.concept, rng);
    const newName = chooseName(world, placed.concept, rng);
    const style = styleWord(world, placed.style);
    const instruction = rng.pick([
      `replace the ${oldName} with ${an(style)} ${style} ${newName}`,
      `turn the ${oldName} into ${an(style)} ${style} ${newName}`,
      `swap the ${oldName} for ${an(newName)} ${newName} in ${style} style`,
    ]);
    return { kind: 'replace', instruction, before: spec, after: { ...spec, subjects }, subject: index };
  }
  return null;
}

function editAdd(world: World, spec: SceneSpec, rng: Random, pools: EditPools): Edit | null {
  if (spec.subjects.length >= 3) return null;
  const subject = freshSubject(world, spec, rng, pools);
  if (!subject) return null;
  const placed = tryPlaceNew(world, spec.size, subject, spec.subjects, rng, pools.maxOverlap);
  if (!placed) return null;
  const name = chooseName(world, placed.concept, rng);
  const style = styleWord(world, placed.style);
  const where = rng.pick(POSITION_PHRASES[placed.position]);
  const instruction = rng.pick([`add ${an(style)} ${style} ${name} ${where}`, `put ${an(name)} ${name} in ${style} style ${where}`]);
  return { kind: 'add', instruction, before: spec, after: { ...spec, subjects: [...spec.subjects, placed] }, subject: spec.subjects.length };
}

function editRemove(world: World, spec: SceneSpec, rng: Random): Edit | null {
  if (spec.subjects.length === 0) return null;
  const index = rng.int(spec.subjects.length);
  const old = spec.subjects[index] as PlacedSubject;
  const name = chooseName(world, old.concept, rng);
  const instruction = rng.pick([`remove the ${name}`, `take away the ${name}`, `delete the ${name} ${rng.pick(POSITION_PHRASES[old.position])}`]);
  return { kind: 'remove', instruction, before: spec, after: { ...spec, subjects: spec.subjects.filter((_, i) => i !== index) }, subject: index };
}

function editMove(world: World, spec: SceneSpec, rng: Random, pools: EditPools): Edit | null {
  if (spec.subjects.length === 0) return null;
  const index = rng.int(spec.subjects.length);
  const old = spec.subjects[index] as PlacedSubject;
  const others = spec.subjects.filter((_, i) => i !== index);
  const placed = tryMoveSubject(world, spec.size, old, others, new Set(spec.subjects.map((s) => s.position)), rng, pools.maxOverlap, 12);
  if (!placed) return null;
  const subjects = spec.subjects.map((s, i) => (i === index ? placed : s));
  const name = chooseName(world, old.concept, rng);
  const where = rng.pick(POSITION_PHRASES[placed.position]);
  const instruction = rng.pick([`move the ${name} ${where}`, `put the ${name} ${where} instead`]);
  return { kind: 'move', instruction, before: spec, after: { ...spec, subjects }, subject: index };
}

/** Apply an edit of the given kind, or null when that edit does not fit this scene. */
export function applyEdit(world: World, spec: SceneSpec, kind: EditKind, rng: Random, pools: EditPools): Edit | null {
  switch (kind) {
    case 'background':
      return editBackground(world, spec, rng, pools);
    case 'replace':
      return editReplace(world, spec, rng, pools);
    case 'add':
      return editAdd(world, spec, rng, pools);
    case 'remove':
      return editRemove(world, spec, rng);
    case 'move':
      return editMove(world, spec, rng, pools);
  }
}
