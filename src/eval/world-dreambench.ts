// A world DreamBench (written by `data build --kind dreambench`, world-dreambench-build.ts) is a
// DreamBench-layout folder (dreambench-data.ts reads it unchanged) plus what only the world can
// know, which the evaluation uses for its world rows and measures:
//   world.json             the world it was drawn from (the world.json of a model folder)
//   world-dreambench.json  per subject its concept, style and style word, the true scene of each
//                          of its prompts (scenes/<subject>/<pp>.png, the world oracle's images)
//                          and that scene's layout map (layouts/<subject>/<pp>.png);
//                          per prompt what it asks for (background phrase, position, size); the
//                          zero-shot prompts of the world's concepts and styles; the background phrases
//   multi.json             two-subject prompts ("<i> and <i> in the desert") with their true scenes
//                          and layout maps
//   edits.json             background edits: source scene, instruction, the scene it should produce
//                          and its layout map
// The real DreamBench has none of these files, so `readWorldDreamBench` returning null is how the
// evaluation tells the two apart.
import { join } from 'node:path';
import { z } from 'zod';
import { SPLIT_NAMES } from '../world/splits.js';
import { POSITIONS, SIZES } from '../world/vocabulary.js';
import { type CaseImage, type DreamBenchCase, type DreamBenchData, fillTemplate, insideFolder, kindOf, listSome, officialSeed, readJsonFile } from './dreambench-data.js';

export const WORLD_DREAMBENCH_FILE = 'world-dreambench.json';
export const WORLD_DREAMBENCH_FORMAT = 'kosmos-g world DreamBench';
export const MULTI_FILE = 'multi.json';
export const EDITS_FILE = 'edits.json';

const nonEmpty = z.string().min(1);
const count = z.number().int().nonnegative();

/** What a prompt asks for; null where it says nothing (the true scene then drew one). */
const promptWordsSchema = z.looseObject({ background: nonEmpty.nullable(), position: z.enum(POSITIONS).nullable(), size: z.enum(SIZES).nullable() });
const layoutSchema = z.array(z.looseObject({ subject: nonEmpty, position: z.enum(POSITIONS), size: z.enum(SIZES) }));

/** A world.json (train/captioned-scenes.ts WorldDescription). */
export const worldDescriptionSchema = z.looseObject({ sceneSize: z.number().int().positive(), concepts: z.array(nonEmpty).min(1), splits: z.array(z.enum(SPLIT_NAMES)).min(1), splitSeed: count });

const worldFileSchema = z.looseObject({
  format: z.literal(WORLD_DREAMBENCH_FORMAT),
  version: z.literal(1),
  seed: count,
  world: worldDescriptionSchema,
  /** Every concept of the world: its name (the class word) and its zero-shot prompt ("a cat"). */
  concepts: z.record(z.string(), z.looseObject({ name: nonEmpty, prompt: nonEmpty })),
  subjects: z.record(
    z.string(),
    z.looseObject({
      world_subject: nonEmpty,
      concept: nonEmpty,
      style: nonEmpty,
      /** The word captions use for the style ("openmoji"). */
      style_word: nonEmpty,
      /** Zero-shot prompts of the subject's concept in each of the world's styles ("an openmoji cat"). */
      style_prompts: z.record(z.string(), nonEmpty),
      /** The true scene of each prompt of the subject's list, in order. */
      scenes: z.array(nonEmpty),
      /** The layout map of each true scene (a layout ControlNet's input); absent in folders built before them. */
      layouts: z.array(nonEmpty).optional(),
    }),
  ),
  prompts: z.looseObject({ object: z.array(promptWordsSchema), live: z.array(promptWordsSchema) }),
  /** The candidates of the background measure. */
  background_phrases: z.array(nonEmpty).min(2),
});

const multiSchema = z.array(
  z.looseObject({
    /** The Kosmos-G input, one `<i>` per subject: "<i> and <i> in the desert". */
    prompt: nonEmpty,
    subjects: z.tuple([nonEmpty, nonEmpty]),
    /** The text rows' input, one `{}` per subject: "{} and {} in the desert". */
    text_prompt: nonEmpty,
    /** CLIP-T's prompt: "a {} and a {} in the desert". */
    clip_t_prompt: nonEmpty,
    background: nonEmpty,
    /** The true scene. */
    scene: nonEmpty,
    layout: layoutSchema,
    /** The true scene's layout map; absent in folders built before them. */
    layout_map: nonEmpty.optional(),
  }),
);

const editsSchema = z.array(
  z.looseObject({
    kind: z.literal('background'),
    subject: nonEmpty,
    source: nonEmpty,
    source_background: nonEmpty,
    /** The world's edit phrasing (world/edits.ts): "put everything in the snowy mountains". */
    instruction: nonEmpty,
    /** The Kosmos-G input, the source at `<i>` as the edit samples write it: "<i> put everything …". */
    prompt: nonEmpty,
    /** What the edited scene shows, for the text rows: "{} in the snowy mountains". */
    text_prompt: nonEmpty,
    clip_t_prompt: nonEmpty,
    background: nonEmpty,
    /** The scene the edit should produce. */
    target: nonEmpty,
    layout: layoutSchema,
    /** The target scene's layout map; absent in folders built before them. */
    layout_map: nonEmpty.optional(),
  }),
);

export type WorldDreamBenchFile = z.output<typeof worldFileSchema>;
export type WorldPromptWords = z.output<typeof promptWordsSchema>;
export type MultiItem = z.output<typeof multiSchema>[number];
export type EditItem = z.output<typeof editsSchema>[number];

export interface WorldDreamBench {
  file: WorldDreamBenchFile;
  multi: MultiItem[];
  edits: EditItem[];
}

/** The world part of a DreamBench folder, checked against the DreamBench part; null for a folder without one (the real DreamBench). */
export async function readWorldDreamBench(data: DreamBenchData): Promise<WorldDreamBench | null> {
  const { directory } = data;
  if ((await kindOf(join(directory, WORLD_DREAMBENCH_FILE))) !== 'file') return null;
  const where = `world DreamBench ${directory}`;
  const file = await readJsonFile(join(directory, WORLD_DREAMBENCH_FILE), worldFileSchema);
  for (const name of [MULTI_FILE, EDITS_FILE]) if ((await kindOf(join(directory, name))) !== 'file') throw new Error(`${where} is missing ${name} (${WORLD_DREAMBENCH_FILE} is there)`);
  const multi = await readJsonFile(join(directory, MULTI_FILE), multiSchema);
  const edits = await readJsonFile(join(directory, EDITS_FILE), editsSchema);

  const problems: string[] = [];
  const phrases = new Set(file.background_phrases);
  for (const kind of ['object', 'live'] as const) {
    if (file.prompts[kind].length !== data.inputPrompts[kind].length) problems.push(`${WORLD_DREAMBENCH_FILE} describes ${file.prompts[kind].length} ${kind} prompts, kosmosg_eval.json lists ${data.inputPrompts[kind].length}`);
    const unknown = file.prompts[kind].flatMap((words) => (words.background === null || phrases.has(words.background) ? [] : [words.background]));
    if (unknown.length) problems.push(`${kind} prompts ask for backgrounds that are not among background_phrases: ${listSome(unknown)}`);
  }
  const images: string[] = [];
  for (const subject of data.subjects) {
    const entry = file.subjects[subject.subject];
    if (!entry) {
      problems.push(`${WORLD_DREAMBENCH_FILE} does not describe subject ${subject.subject}`);
      continue;
    }
    if (!file.concepts[entry.concept]) problems.push(`subject ${subject.subject} has the concept ${entry.concept}, which is not among the world's concepts`);
    if (!entry.style_prompts[entry.style]) problems.push(`subject ${subject.subject} has no style prompt for its own style ${entry.style}`);
    const prompts = data.inputPrompts[subject.live ? 'live' : 'object'].length;
    if (entry.scenes.length !== prompts) problems.push(`subject ${subject.subject} has ${entry.scenes.length} true scenes for ${prompts} prompts`);
    if (entry.layouts && entry.layouts.length !== entry.scenes.length) problems.push(`subject ${subject.subject} has ${entry.layouts.length} layout maps for ${entry.scenes.length} true scenes`);
    images.push(...entry.scenes, ...(entry.layouts ?? []));
  }
  const known = new Set(data.subjects.map((subject) => subject.subject));
  for (const [index, item] of multi.entries()) {
    const unknown = item.subjects.filter((subject) => !known.has(subject));
    if (unknown.length) problems.push(`${MULTI_FILE} item ${index} names unknown subjects ${unknown.join(', ')}`);
    if (!phrases.has(item.background)) problems.push(`${MULTI_FILE} item ${index} asks for ${JSON.stringify(item.background)}, which is not among background_phrases`);
    images.push(item.scene, ...(item.layout_map ? [item.layout_map] : []));
  }
  for (const [index, item] of edits.entries()) {
    if (!known.has(item.subject)) problems.push(`${EDITS_FILE} item ${index} names the unknown subject ${item.subject}`);
    for (const phrase of [item.source_background, item.background]) if (!phrases.has(phrase)) problems.push(`${EDITS_FILE} item ${index} names ${JSON.stringify(phrase)}, which is not among background_phrases`);
    images.push(item.source, item.target, ...(item.layout_map ? [item.layout_map] : []));
  }
  const absent: string[] = [];
  for (const image of images) {
    const relative = insideFolder(image);
    if (relative === null || (await kindOf(join(directory, relative))) !== 'file') absent.push(image);
  }
  if (absent.length) problems.push(`it names images that do not exist or lie outside the folder: ${listSome(absent)}`);
  if (problems.length) throw new Error(`${where}: ${problems.join('; ')}`);
  return { file, multi, edits };
}

/** Python's template.format(*values) for a template with one `{}` per value. */
export function fillTemplates(template: string, values: readonly string[]): string {
  return values.reduce((text, value) => fillTemplate(text, value), template);
}

/** The words the text rows put where an image was: the class word, and for `text-style` the style word before it ("openmoji cat"). */
export function subjectWords(world: WorldDreamBench, data: DreamBenchData, subject: string, styled: boolean): string {
  const entry = data.subjects.find((candidate) => candidate.subject === subject)!;
  return styled ? `${world.file.subjects[subject]!.style_word} ${entry.class}` : entry.class;
}

/** The text-style row's cases: the same prompts with the style word before the class word. */
export function withStyleWords(cases: readonly DreamBenchCase[], data: DreamBenchData, world: WorldDreamBench): DreamBenchCase[] {
  return cases.map((item) => ({ ...item, textPrompt: fillTemplate(data.inputPrompts[item.kind][item.promptIndex]!, subjectWords(world, data, item.subject, true)) }));
}

export type WorldGroup = 'multi' | 'edits';

/** One multi or edit prompt of the evaluation: what each row generates from, and the true scene. */
export interface WorldJob {
  group: WorldGroup;
  /** Index in multi.json or edits.json. */
  index: number;
  subjects: string[];
  /** The Kosmos-G input and its images (absolute paths), in `<i>` order. */
  inputPrompt: string;
  inputImages: string[];
  /** The text rows' input (`text` or `text-style` words). */
  textPrompt: string;
  clipTPrompt: string;
  /** The scene the prompt describes (multi) or the edit should produce, relative to the data folder: the oracle's image. */
  truth: string;
  /** Saved under <group>/<nn>-<k>.png, seeds as the official scheme gives prompt `index`. */
  images: CaseImage[];
}

export interface WorldJobSelection {
  subjects: readonly string[];
  /** The first N items of each of multi.json and edits.json (after the subject filter), as --prompts limits each subject's prompts. */
  prompts: number | null;
  imagesPerPrompt: number;
  seed: number;
  styled: boolean;
}

/** The multi and edit prompts whose subjects are all selected, in file order. */
export function buildWorldJobs(world: WorldDreamBench, data: DreamBenchData, selection: WorldJobSelection): WorldJob[] {
  const selected = new Set(selection.subjects);
  const reference = (subject: string) => join(data.directory, data.subjects.find((entry) => entry.subject === subject)!.reference);
  const words = (subjects: readonly string[], styled: boolean) => subjects.map((subject) => subjectWords(world, data, subject, styled));
  const jobOf = (group: WorldGroup, index: number, subjects: string[], fields: Omit<WorldJob, 'group' | 'index' | 'subjects' | 'images'>): WorldJob => ({
    group, index, subjects, ...fields,
    images: Array.from({ length: selection.imagesPerPrompt }, (_, k) => ({ index: k, seed: officialSeed(selection.seed, index, k), file: `${group}/${String(index).padStart(2, '0')}-${k}.png` })),
  });
  const limit = <T>(items: T[]) => items.slice(0, selection.prompts ?? items.length);
  const multi = limit(world.multi.map((item, index) => ({ item, index })).filter(({ item }) => item.subjects.every((subject) => selected.has(subject))));
  const edits = limit(world.edits.map((item, index) => ({ item, index })).filter(({ item }) => selected.has(item.subject)));
  return [
    ...multi.map(({ item, index }) => jobOf('multi', index, [...item.subjects], {
      inputPrompt: item.prompt, inputImages: item.subjects.map(reference), textPrompt: fillTemplates(item.text_prompt, words(item.subjects, selection.styled)),
      clipTPrompt: fillTemplates(item.clip_t_prompt, words(item.subjects, false)), truth: item.scene,
    })),
    ...edits.map(({ item, index }) => jobOf('edits', index, [item.subject], {
      inputPrompt: item.prompt, inputImages: [join(data.directory, item.source)], textPrompt: fillTemplate(item.text_prompt, words([item.subject], selection.styled)[0]!),
      clipTPrompt: fillTemplate(item.clip_t_prompt, words([item.subject], false)[0]!), truth: item.target,
    })),
  ];
}

/** Whether every true scene of the folder has its layout map (folders built before them have none). */
export function hasLayoutMaps(world: WorldDreamBench): boolean {
  return Object.values(world.file.subjects).every((subject) => subject.layouts !== undefined) && [...world.multi, ...world.edits].every((item) => item.layout_map !== undefined);
}
