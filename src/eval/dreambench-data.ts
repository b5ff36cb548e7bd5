// A folder in the DreamBench layout (../shared/dreambench, or a world DreamBench built the same
// way): subjects.json, prompts.json, kosmosg_eval.json and the images they name. Reading it checks
// everything the evaluation will touch, so a bad folder fails in one line before any model loads.
//
// The cases follow Kosmos-G's sample_kosmosg_dreambench.py (via kosmosg_eval.json):
//   input prompt  = KOSMOSG template.format('<i>')            drop_object=True: "<i> in the jungle", "<i>, red"
//                 = KOSMOSG template.format(class + ' <i>')   drop_object=False
//   CLIP-T prompt = the DreamBooth prompt without the unique token: "a {class} in the jungle", "a red {class}"
//   reference     = the one image per subject remove_dreambench_multiimg.sh keeps (input and judge target)
// The text baseline puts the class word where the image was: "backpack in the jungle".
//
// Seeds. The official script iterates the dataset in batches of 5 prompts (batch_size 5; each
// subject's 25 prompts are 5 whole batches) and calls randomize_seed_fn(seed, False) before every
// batch, which runs torch.manual_seed(seed): every batch draws its 5 × N initial latents from the
// same generator state. The latent of image k of the batch's j-th prompt is row k·5 + j (the
// condition batch is condition.repeat(N, 1, 1), which tiles the prompts). So the initial noise of
// image k of prompt p depends only on (k, p mod 5): every subject, and prompts p and p + 5, share
// it. We reproduce that structure with the project's platform-independent noise: image k of prompt
// p starts from gaussianNoise(seed + 5·k + (p mod 5)), the pipeline's noise for that seed (torch's
// generator values themselves cannot be reproduced, and a CUDA run's are device-specific anyway).
// Taking the first N prompts (--prompts) or some subjects leaves every image's seed unchanged.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { z } from 'zod';

/** Prompts per batch in sample_kosmosg_dreambench.py (args.batch_size); the seed repeats with this period. */
export const OFFICIAL_PROMPT_BATCH = 5;
/** The placeholder the Kosmos-G pipeline reads; kosmosg_eval.json must name the same. */
export const IMAGE_PLACEHOLDER = '<i>';
export const DREAMBENCH_FILES = ['subjects.json', 'prompts.json', 'kosmosg_eval.json'] as const;

// ---- schemas ---------------------------------------------------------------------------------------

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be a plain name (letters, digits, _ . -), as it names an output folder');
const nonEmpty = z.string().min(1);
const promptLists = z.object({ object: z.array(nonEmpty).min(1), live: z.array(nonEmpty).min(1) });

const subjectsSchema = z
  .array(z.looseObject({ subject: name, class: nonEmpty, live: z.boolean(), images: z.array(nonEmpty).min(1) }))
  .min(1);

const evalSchema = z.looseObject({
  reference_image: z.record(z.string(), nonEmpty),
  input_placeholder: z.literal(IMAGE_PLACEHOLDER).default(IMAGE_PLACEHOLDER),
  drop_object: z.boolean().default(true),
  input_prompts: promptLists,
  clip_t_prompts: promptLists,
  images_per_prompt: z.number().int().positive().optional(),
  sampling: z
    .looseObject({
      scheduler: z.string().optional(),
      num_inference_steps: z.number().int().positive().optional(),
      guidance_scale: z.number().optional(),
      negative_prompt: z.string().optional(),
      seed: z.number().int().nonnegative().optional(),
      resolution: z.number().int().positive().optional(),
    })
    .default({}),
});

export type PromptKind = 'object' | 'live';

export interface DreamBenchSubject {
  subject: string;
  class: string;
  live: boolean;
  /** Paths relative to the folder, as subjects.json writes them. */
  images: string[];
  /** The Kosmos-G reference image (input and judge target), relative to the folder. */
  reference: string;
}

export interface DreamBenchSampling {
  /** The official scheduler name as written ("dpms (DPMSolverMultistep)"), if given. */
  scheduler?: string;
  steps?: number;
  guidance?: number;
  negativePrompt?: string;
  seed?: number;
  resolution?: number;
}

export interface DreamBenchData {
  /** The folder as given. */
  directory: string;
  subjects: DreamBenchSubject[];
  /** prompts.json: the DreamBooth templates with {0} (unique token) and {1} (class). */
  dreamboothPrompts: Record<PromptKind, string[]>;
  /** kosmosg_eval.json → input_prompts: one `{}` each. */
  inputPrompts: Record<PromptKind, string[]>;
  /** kosmosg_eval.json → clip_t_prompts: one `{}` each, filled with the class. */
  clipTPrompts: Record<PromptKind, string[]>;
  dropObject: boolean;
  imagesPerPrompt?: number;
  sampling: DreamBenchSampling;
}

function oneLine(file: string, error: z.ZodError): string {
  return `${file}: ${error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ')}`;
}

export async function kindOf(path: string): Promise<'file' | 'directory' | null> {
  const entry = await stat(path).catch(() => null);
  return entry?.isFile() ? 'file' : entry?.isDirectory() ? 'directory' : null;
}

/** "a, b, c and 4 more": long lists stay on one readable line. */
export function listSome(items: readonly string[], shown = 5): string {
  return items.length <= shown ? items.join(', ') : `${items.slice(0, shown).join(', ')} and ${items.length - shown} more`;
}

/** A relative path that stays inside the folder ("images/cat/00.jpg"), or null. */
export function insideFolder(path: string): string | null {
  if (isAbsolute(path)) return null;
  const normalized = normalize(path);
  return normalized === '..' || normalized.startsWith(`..${sep}`) ? null : normalized;
}

/** The DreamBooth prompt with its unique token dropped, as a `{}` template: "a {0} {1} in the jungle" → "a {} in the jungle". */
export function withoutUniqueToken(template: string): string {
  return template.replace('{0} ', '').replace('{1}', '{}');
}

/** Python's template.format(value) for a template with one `{}`. */
export function fillTemplate(template: string, value: string): string {
  return template.replace('{}', value);
}

const placeholders = (template: string) => template.split('{}').length - 1;

// ---- reading ---------------------------------------------------------------------------------------

/** A JSON file checked against `schema`; a problem is an Error with a one-line message naming the file. */
export async function readJsonFile<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S>> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: not valid JSON (${(error as Error).message.replace(/\s+/g, ' ')})`);
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new Error(oneLine(path, result.error));
  return result.data;
}

/** Reads and checks a DreamBench-layout folder; every problem is an Error with a one-line message. */
export async function readDreamBench(directory: string): Promise<DreamBenchData> {
  const where = `DreamBench folder ${directory}`;
  if ((await kindOf(directory)) !== 'directory') throw new Error(`${where} does not exist`);
  const missing: string[] = [];
  for (const file of DREAMBENCH_FILES) if ((await kindOf(join(directory, file))) !== 'file') missing.push(file);
  if ((await kindOf(join(directory, 'images'))) !== 'directory') missing.push('images/');
  if (missing.length) throw new Error(`${where} is missing ${missing.join(', ')}`);

  const parse = <S extends z.ZodType>(file: string, schema: S) => readJsonFile(join(directory, file), schema);
  const subjectsJson = await parse('subjects.json', subjectsSchema);
  const dreamboothPrompts = await parse('prompts.json', promptLists);
  const evaluation = await parse('kosmosg_eval.json', evalSchema);

  const problems: string[] = [];
  const seen = new Set<string>();
  for (const { subject } of subjectsJson) {
    if (seen.has(subject)) problems.push(`subjects.json lists ${subject} twice`);
    seen.add(subject);
  }
  const unknownReferences = Object.keys(evaluation.reference_image).filter((subject) => !seen.has(subject));
  if (unknownReferences.length) problems.push(`kosmosg_eval.json names references for unknown subjects ${listSome(unknownReferences)}`);

  // The three prompt lists of a kind are read index by index: they must line up.
  for (const kind of ['object', 'live'] as const) {
    const [dreambooth, input, clipT] = [dreamboothPrompts[kind], evaluation.input_prompts[kind], evaluation.clip_t_prompts[kind]];
    if (input.length !== dreambooth.length || clipT.length !== dreambooth.length) {
      problems.push(`the ${kind} prompt lists differ in length (prompts.json ${dreambooth.length}, input_prompts ${input.length}, clip_t_prompts ${clipT.length})`);
      continue;
    }
    const badInput = input.filter((template) => placeholders(template) !== 1);
    const badClipT = clipT.filter((template) => placeholders(template) !== 1);
    if (badInput.length) problems.push(`input_prompts.${kind} templates need exactly one {}: ${listSome(badInput.map((t) => JSON.stringify(t)), 3)}`);
    if (badClipT.length) problems.push(`clip_t_prompts.${kind} templates need exactly one {}: ${listSome(badClipT.map((t) => JSON.stringify(t)), 3)}`);
    const mismatched = clipT.flatMap((template, index) => (template === withoutUniqueToken(dreambooth[index]!) ? [] : [`${index} (${JSON.stringify(template)} vs ${JSON.stringify(dreambooth[index])})`]));
    if (mismatched.length) problems.push(`clip_t_prompts.${kind} must be prompts.json's prompts without the unique token; prompt ${listSome(mismatched, 2)}`);
  }

  const subjects: DreamBenchSubject[] = [];
  const absent: string[] = [];
  const outside: string[] = [];
  for (const entry of subjectsJson) {
    const reference = evaluation.reference_image[entry.subject];
    if (reference === undefined) problems.push(`kosmosg_eval.json has no reference_image for ${entry.subject}`);
    else if (!entry.images.includes(reference)) problems.push(`the reference image of ${entry.subject}, ${reference}, is not among its images`);
    for (const image of entry.images) {
      const relative = insideFolder(image);
      if (relative === null) outside.push(image);
      else if ((await kindOf(join(directory, relative))) !== 'file') absent.push(image);
    }
    subjects.push({ subject: entry.subject, class: entry.class, live: entry.live, images: [...entry.images], reference: reference ?? '' });
  }
  if (outside.length) problems.push(`subjects.json names images outside the folder: ${listSome(outside)}`);
  if (absent.length) problems.push(`subjects.json names images that do not exist: ${listSome(absent)}`);
  if (problems.length) throw new Error(`${where}: ${problems.join('; ')}`);

  const sampling = evaluation.sampling;
  return {
    directory,
    subjects,
    dreamboothPrompts,
    inputPrompts: evaluation.input_prompts,
    clipTPrompts: evaluation.clip_t_prompts,
    dropObject: evaluation.drop_object,
    ...(evaluation.images_per_prompt !== undefined ? { imagesPerPrompt: evaluation.images_per_prompt } : {}),
    sampling: {
      ...(sampling.scheduler !== undefined ? { scheduler: sampling.scheduler } : {}),
      ...(sampling.num_inference_steps !== undefined ? { steps: sampling.num_inference_steps } : {}),
      ...(sampling.guidance_scale !== undefined ? { guidance: sampling.guidance_scale } : {}),
      ...(sampling.negative_prompt !== undefined ? { negativePrompt: sampling.negative_prompt } : {}),
      ...(sampling.seed !== undefined ? { seed: sampling.seed } : {}),
      ...(sampling.resolution !== undefined ? { resolution: sampling.resolution } : {}),
    },
  };
}

// ---- cases -----------------------------------------------------------------------------------------

/** The initial-noise seed of image `imageIndex` of prompt `promptIndex` (see the file comment). */
export function officialSeed(seed: number, promptIndex: number, imageIndex: number): number {
  return seed + OFFICIAL_PROMPT_BATCH * imageIndex + (promptIndex % OFFICIAL_PROMPT_BATCH);
}

export interface CaseImage {
  /** k, 0-based within the prompt. */
  index: number;
  seed: number;
  /** Where the evaluation saves it, relative to --out: images/<subject>/<pp>-<k>.png. */
  file: string;
}

/** One (subject, prompt): what is generated, from which seeds, and what it is judged against. */
export interface DreamBenchCase {
  subject: string;
  class: string;
  live: boolean;
  kind: PromptKind;
  /** The prompt's index in its kind's list (0–24 on DreamBench). */
  promptIndex: number;
  /** The Kosmos-G input: "<i> in the jungle" with the reference image at `<i>`. */
  inputPrompt: string;
  /** The text baseline's input: the class word where the image was. */
  textPrompt: string;
  /** What CLIP-T compares with: "a backpack in the jungle". */
  clipTPrompt: string;
  /** The reference image, relative to the data folder. */
  reference: string;
  images: CaseImage[];
}

export interface CaseSelection {
  /** Subject names to keep, in the data's order; all when absent. */
  subjects?: readonly string[];
  /** Keep the first N prompts of each subject; all when absent. */
  prompts?: number;
  imagesPerPrompt: number;
  seed: number;
}

/** The evaluation's cases: subjects in the data's order, each with its prompts in order. */
export function buildCases(data: DreamBenchData, selection: CaseSelection): DreamBenchCase[] {
  const { imagesPerPrompt, seed } = selection;
  if (!Number.isInteger(imagesPerPrompt) || imagesPerPrompt < 1) throw new Error(`images per prompt must be a positive integer, got ${imagesPerPrompt}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  if (selection.prompts !== undefined && (!Number.isInteger(selection.prompts) || selection.prompts < 1)) throw new Error(`the number of prompts must be a positive integer, got ${selection.prompts}`);
  const subjects = selectSubjects(data, selection.subjects);
  return subjects.flatMap((subject) => {
    const kind: PromptKind = subject.live ? 'live' : 'object';
    const inputs = data.inputPrompts[kind];
    const count = Math.min(selection.prompts ?? inputs.length, inputs.length);
    return inputs.slice(0, count).map((template, promptIndex) => {
      const tag = String(promptIndex).padStart(2, '0');
      return {
        subject: subject.subject,
        class: subject.class,
        live: subject.live,
        kind,
        promptIndex,
        inputPrompt: fillTemplate(template, data.dropObject ? IMAGE_PLACEHOLDER : `${subject.class} ${IMAGE_PLACEHOLDER}`),
        textPrompt: fillTemplate(template, subject.class),
        clipTPrompt: fillTemplate(data.clipTPrompts[kind][promptIndex]!, subject.class),
        reference: subject.reference,
        images: Array.from({ length: imagesPerPrompt }, (_, index) => ({ index, seed: officialSeed(seed, promptIndex, index), file: `images/${subject.subject}/${tag}-${index}.png` })),
      };
    });
  });
}

/** The named subjects in the data's order, or all; an unknown name is an error listing the known ones. */
export function selectSubjects(data: DreamBenchData, names?: readonly string[]): DreamBenchSubject[] {
  if (names === undefined) return data.subjects;
  if (!names.length) throw new Error('--subjects names no subject');
  const known = new Set(data.subjects.map((subject) => subject.subject));
  const unknown = names.filter((subject) => !known.has(subject));
  if (unknown.length) throw new Error(`unknown subject${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (the data has ${listSome([...known], 8)})`);
  const wanted = new Set(names);
  return data.subjects.filter((subject) => wanted.has(subject.subject));
}
