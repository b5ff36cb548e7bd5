// World-exact measures of a world DreamBench row, beside the DreamBench protocol's similarities:
// the world knows what every prompt asked for, so the CLIP judge is used as a zero-shot classifier
// over the world's own vocabulary (world-dreambench.json):
//   concept     top-1 among the world's concepts, prompts "a {concept}" ("a cat", "an octopus")
//   style       top-1 among the world's styles of the subject's concept, "a {style} {concept}"
//   background  top-1 among the background phrases, "a {concept} {phrase}" ("a cat on a beach"),
//               for prompts that name a background
//   position    subject-locator.ts's centre, nearest the prompted position (position prompts)
//   multi       both concepts among the judge's top 5 (as eval world-sd scores two-subject
//               prompts), and the background ("a cat and a dog in the desert" …)
//   edits       the subject kept (its concept still top-1) and the background changed to the one
//               asked for (top-1), or left as it was
//   placement   each subject standing where its true scene's layout map puts it (no judge:
//               layout-placement.ts), for the single- and two-subject prompts
// Every rate is also measured on the true scenes (the oracle row), which calibrates the judge: a
// rate is only as good as the judge's rate on images known to be right.
import { join } from 'node:path';
import { decodeImage } from '../world/image.js';
import type { Position } from '../world/vocabulary.js';
import type { ImageScore } from './dreambench-report.js';
import { type ClipJudge, cosine } from './judges.js';
import { subjectsPlaced } from './layout-placement.js';
import { nearestPosition, subjectCentre } from './subject-locator.js';
import { type WorldDreamBench, type WorldGroup, type WorldJob, hasLayoutMaps } from './world-dreambench.js';

/** How many of the judge's best concepts count as present in a two-subject image. */
export const MULTI_TOP = 5;

/** One image to classify and what to classify in it. */
export interface WorldQuery {
  /** Read for the position measure. */
  path: string;
  /** The judge's normalised image embedding. */
  embed: Float32Array;
  /** What the background candidates are said of: "a cat", "a cat and a dog". */
  subjectText: string;
  /** The style measure's candidates (style → "an openmoji cat"); null skips it. */
  styles: Record<string, string> | null;
  background: boolean;
  position: boolean;
}

export interface WorldPrediction {
  /** The judge's MULTI_TOP most likely concepts, best first. */
  concepts: string[];
  style: string | null;
  background: string | null;
  /** The named position nearest the located subject. */
  position: Position | null;
}

/** What the measures need of the CLIP judge (a test passes a judge with known embeddings). */
export type ClipEmbedder = Pick<ClipJudge, 'embedImages' | 'embedTexts'>;

/** The judge's zero-shot classifiers over one world DreamBench's vocabulary; text embeddings are computed once. */
export class WorldClassifier {
  private readonly texts = new Map<string, Float32Array>();
  private readonly conceptIds: string[];

  constructor(private readonly clip: ClipEmbedder, private readonly world: WorldDreamBench) {
    this.conceptIds = Object.keys(world.file.concepts);
  }

  private async embed(texts: readonly string[]): Promise<Float32Array[]> {
    const missing = [...new Set(texts.filter((text) => !this.texts.has(text)))];
    if (missing.length) (await this.clip.embedTexts(missing)).forEach((embed, k) => this.texts.set(missing[k]!, embed));
    return texts.map((text) => this.texts.get(text)!);
  }

  /** Candidates ranked by cosine with the image, best first. */
  private async rank<T>(embed: Float32Array, candidates: readonly T[], text: (candidate: T) => string): Promise<T[]> {
    const embeds = await this.embed(candidates.map(text));
    const scores = embeds.map((candidate) => cosine(embed, candidate));
    return candidates.map((candidate, k) => ({ candidate, score: scores[k]! })).sort((a, b) => b.score - a.score).map(({ candidate }) => candidate);
  }

  async predict(query: WorldQuery): Promise<WorldPrediction> {
    const { concepts, background_phrases: phrases } = this.world.file;
    const ranked = await this.rank(query.embed, this.conceptIds, (id) => concepts[id]!.prompt);
    const styles = query.styles;
    const centre = query.position ? subjectCentre(await decodeImage(query.path)) : null;
    return {
      concepts: ranked.slice(0, MULTI_TOP),
      style: styles ? (await this.rank(query.embed, Object.keys(styles), (style) => styles[style]!))[0]! : null,
      background: query.background ? (await this.rank(query.embed, phrases, (phrase) => `${query.subjectText} ${phrase}`))[0]! : null,
      position: centre ? nearestPosition(centre.x, centre.y) : null,
    };
  }

  /** 100 · cosine of images with a prompt (CLIP-T). */
  async clipT(embed: Float32Array, prompt: string): Promise<number> {
    return 100 * cosine(embed, (await this.embed([prompt]))[0]!);
  }
}

// ---- the report ------------------------------------------------------------------------------------

export interface Rate {
  /** Images the measure applies to. */
  measured: number;
  hits: number;
  /** hits / measured; null when nothing was measured. */
  rate: number | null;
}

function rate(outcomes: readonly (boolean | null)[]): Rate {
  const measured = outcomes.filter((outcome) => outcome !== null);
  const hits = measured.filter(Boolean).length;
  return { measured: measured.length, hits, rate: measured.length ? hits / measured.length : null };
}

export interface PromptMeasures {
  images: number;
  concept: Rate;
  style: Rate;
  background: Rate;
  position: Rate;
}

/** The overall single-subject measures, with how often the judge named each style (a LoRA's style shift reads it). */
export interface OverallPromptMeasures extends PromptMeasures {
  stylesNamed: Record<string, number>;
}

export interface WorldItemImage {
  /** Relative to --out for generations, to the data folder for the oracle's true scenes. */
  file: string;
  source: 'generated' | 'data';
  concepts: string[];
  background: string;
  clipT: number;
}

export interface WorldItem {
  group: WorldGroup;
  index: number;
  subjects: string[];
  /** The row's input prompt (the oracle: the CLIP-T prompt, what the true scene shows). */
  prompt: string;
  clipTPrompt: string;
  /** The Kosmos-G input images (the subjects' references, or the edit's source), absolute; the text rows write them as words. */
  inputs: string[];
  /** The true scene (relative to the data folder). */
  truth: string;
  images: WorldItemImage[];
}

export interface WorldMeasuresReport {
  classes: { concepts: number; backgrounds: number };
  /**
   * Subjects standing where their true scene's layout map puts them (layout-placement.ts), over
   * the single-subject prompts and over the two-subject prompts' subjects; null for folders built
   * without layout maps.
   */
  placement: { prompts: Rate; multi: Rate } | null;
  /** The DreamBench prompts (single subject). */
  prompts: OverallPromptMeasures & { byPrompt: (PromptMeasures & { index: number; prompts: string[] })[] };
  /** clipT: max(100 · mean cosine, 0) with the CLIP-T prompts ("a cat and a dog in the desert"; an edit's: what the edited scene shows). */
  multi: { prompts: number; images: number; bothPresentTop5: Rate; background: Rate; clipT: number | null; items: WorldItem[] };
  edits: { prompts: number; images: number; subjectKept: Rate; backgroundToTarget: Rate; backgroundUnchanged: Rate; edited: Rate; clipT: number | null; items: WorldItem[] };
}

/** max(mean, 0) of 100 · cosines, the protocol's floor (dreambench-report.ts); null for none. */
const flooredMean = (values: readonly number[]) => (values.length ? Math.max(values.reduce((sum, value) => sum + value, 0) / values.length, 0) : null);

export interface WorldRowImages {
  /** The data folder, which the layout maps' paths are relative to. */
  dataDirectory: string;
  /** The DreamBench records of the row, with the absolute path and judge embedding of each. */
  records: readonly (ImageScore & { path: string; embed: Float32Array })[];
  /** The multi and edit prompts of the row and, per job, its images (absolute path, file as reported, source). */
  jobs: readonly { job: WorldJob; prompt: string; images: { path: string; file: string; source: 'generated' | 'data' }[] }[];
}

/** Measures a row's images; the caller has embedded the DreamBench images already (the protocol's CLIP-I needs them too). */
export async function measureWorld(clip: ClipEmbedder, world: WorldDreamBench, kinds: ReadonlyMap<string, 'object' | 'live'>, rows: WorldRowImages): Promise<WorldMeasuresReport> {
  const classifier = new WorldClassifier(clip, world);
  const { concepts, subjects, prompts: words } = world.file;

  /** Per image: each measure's outcome, null where the prompt asked nothing of it. */
  const scored: { index: number; prompt: string; style: string; hits: Record<Exclude<keyof PromptMeasures, 'images'>, boolean | null> }[] = [];
  const withLayouts = hasLayoutMaps(world);
  const placedInMap = async (path: string, map: string, itemConcepts: readonly string[]) => subjectsPlaced(await decodeImage(path), await decodeImage(join(rows.dataDirectory, map)), itemConcepts);
  const placedSingles: (boolean | null)[] = [];
  for (const record of rows.records) {
    const subject = subjects[record.subject]!;
    if (withLayouts) placedSingles.push(...(await placedInMap(record.path, subject.layouts![record.promptIndex!]!, [subject.concept])));
    const asked = words[kinds.get(record.subject)!][record.promptIndex!]!;
    const prediction = await classifier.predict({
      path: record.path, embed: record.embed, subjectText: concepts[subject.concept]!.prompt, styles: subject.style_prompts,
      background: asked.background !== null, position: asked.position !== null,
    });
    scored.push({
      index: record.promptIndex!,
      prompt: record.prompt ?? '',
      style: prediction.style!,
      hits: {
        concept: prediction.concepts[0] === subject.concept,
        style: prediction.style === subject.style,
        background: asked.background === null ? null : prediction.background === asked.background,
        position: asked.position === null ? null : prediction.position === asked.position,
      },
    });
  }
  const measures = (group: typeof scored): PromptMeasures => ({
    images: group.length,
    concept: rate(group.map((s) => s.hits.concept)), style: rate(group.map((s) => s.hits.style)), background: rate(group.map((s) => s.hits.background)), position: rate(group.map((s) => s.hits.position)),
  });
  const indices = [...new Set(scored.map((s) => s.index))].sort((a, b) => a - b);
  const byPrompt = indices.map((index) => {
    const group = scored.filter((s) => s.index === index);
    return { index, prompts: [...new Set(group.map((s) => s.prompt))], ...measures(group) };
  });

  // Per image, multi: [both present, background]; edits: [subject kept, background as asked, background as before].
  const items: (WorldItem & { outcomes: boolean[][] })[] = [];
  const placedPairs: (boolean | null)[] = [];
  for (const { job, prompt, images } of rows.jobs) {
    const itemConcepts = job.subjects.map((name) => subjects[name]!.concept);
    const subjectText = itemConcepts.map((concept) => concepts[concept]!.prompt).join(' and ');
    const embeds = await clip.embedImages(images.map((image) => image.path));
    const measured: WorldItemImage[] = [];
    const outcomes: boolean[][] = [];
    const edit = job.group === 'edits' ? world.edits[job.index]! : null;
    const target = edit ? edit.background : world.multi[job.index]!.background;
    const layoutMap = job.group === 'multi' && withLayouts ? world.multi[job.index]!.layout_map : undefined;
    for (const [k, image] of images.entries()) {
      if (layoutMap) placedPairs.push(...(await placedInMap(image.path, layoutMap, itemConcepts)));
      const prediction = await classifier.predict({ path: image.path, embed: embeds[k]!, subjectText, styles: null, background: true, position: false });
      measured.push({ file: image.file, source: image.source, concepts: prediction.concepts, background: prediction.background!, clipT: await classifier.clipT(embeds[k]!, job.clipTPrompt) });
      outcomes.push(
        edit
          ? [prediction.concepts[0] === itemConcepts[0], prediction.background === target, prediction.background === edit.source_background]
          : [itemConcepts.every((concept) => prediction.concepts.includes(concept)), prediction.background === target],
      );
    }
    items.push({ group: job.group, index: job.index, subjects: job.subjects, prompt, clipTPrompt: job.clipTPrompt, inputs: job.inputImages, truth: job.truth, images: measured, outcomes });
  }
  const groupOf = (group: WorldGroup) => items.filter((item) => item.group === group);
  const outcome = (group: WorldGroup, k: number) => groupOf(group).flatMap((item) => item.outcomes.map((hits) => hits[k]!));
  const clipTOf = (group: WorldGroup) => flooredMean(groupOf(group).flatMap((item) => item.images.map((image) => image.clipT)));
  const plain = (group: WorldGroup): WorldItem[] => groupOf(group).map(({ outcomes: _outcomes, ...item }) => item);
  const count = (group: WorldGroup) => ({ prompts: groupOf(group).length, images: groupOf(group).reduce((n, item) => n + item.images.length, 0) });
  const kept = outcome('edits', 0);
  const toTarget = outcome('edits', 1);
  return {
    classes: { concepts: Object.keys(concepts).length, backgrounds: world.file.background_phrases.length },
    placement: withLayouts ? { prompts: rate(placedSingles), multi: rate(placedPairs) } : null,
    prompts: { ...measures(scored), stylesNamed: countStyles(scored.map((s) => s.style)), byPrompt },
    multi: { ...count('multi'), bothPresentTop5: rate(outcome('multi', 0)), background: rate(outcome('multi', 1)), clipT: clipTOf('multi'), items: plain('multi') },
    edits: {
      ...count('edits'), subjectKept: rate(kept), backgroundToTarget: rate(toTarget), backgroundUnchanged: rate(outcome('edits', 2)),
      edited: rate(kept.map((hit, k) => hit && toTarget[k]!)), clipT: clipTOf('edits'), items: plain('edits'),
    },
  };
}

/** How many times each style was named, styles in alphabetical order. */
function countStyles(styles: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const style of [...styles].sort()) counts[style] = (counts[style] ?? 0) + 1;
  return counts;
}
