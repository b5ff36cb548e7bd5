// `eval dreambench`: Kosmos-G's DreamBench protocol on any folder in the DreamBench layout
// (dreambench-data.ts): generate N images per (subject, prompt) from the official prompts and
// seeds, save each as a PNG, then score every saved image with independent judges (judges.ts):
// DINO and CLIP-I against the subject's reference image, CLIP-T against the DreamBooth prompt.
// Rows: the Kosmos-G pipeline (the reference image at `<i>`), `text` (a text-to-image folder, the
// class word instead of the image), `text-style` (world data only: the style word and the class
// word, "openmoji cat", all the world's words for what the reference shows), and `oracle` (no model:
// the subject's other photos against its reference, the paper's "real images" row; on world data
// the true scene of each prompt, world-dreambench.ts), and `random` (no model: the same number of
// images taken at random from the *other* subjects — their photos, or on world data their true
// scene of the same prompt — the floor a score must clear to say anything about the subject). On
// world data the model rows also run the
// two-subject prompts and edits and are scored with the world-exact measures (world-measures.ts).
//
// Generation and scoring are separate passes, and scoring reads the images back from disk, so the
// scores of a resumed run are the scores of the files. A killed run loses at most the prompt in
// flight: images are written atomically, and `--resume` regenerates only the missing ones. Each
// image starts from its own noise (officialSeed), so a regenerated image is the one that was lost,
// whatever batch it is generated in (the tests check this on the CPU). out/eval.json records every
// setting the images depend on; an --out holding another evaluation is refused.
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Device } from '../graph/devices.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { SCHEDULER_CHOICES, type SchedulerChoice } from '../pipeline/diffusion.js';
import { DIFFUSION_COMPONENTS, KOSMOS_G_COMPONENTS, clipTokenizerComponent, readPipelineFolder } from '../pipeline/folder.js';
import { type DreamBenchCase, type DreamBenchData, buildCases, readDreamBench, selectSubjects } from './dreambench-data.js';
import { type AdapterSettings, checkWorkers, generateMissing } from './dreambench-generate.js';
import { type ImageScore, type DreamBenchMetrics, summarize, writeDreamBenchReport } from './dreambench-report.js';
import { DEFAULT_CANNY, edgeF1OfFiles } from './edge-agreement.js';
import { checkJudgesFolder, cosine, loadJudges } from './judges.js';
import { type WorldDreamBench, type WorldJob, buildWorldJobs, hasLayoutMaps, readWorldDreamBench, withStyleWords } from './world-dreambench.js';
import { measureWorld } from './world-measures.js';
import { deriveSeed, hashString, Random } from '../util/random.js';

export type DreamBenchRow = 'kosmos-g' | 'text' | 'text-style' | 'oracle' | 'random';
export const BASELINES = ['text', 'text-style', 'oracle', 'random'] as const;
type ModelRow = Exclude<DreamBenchRow, 'oracle' | 'random'>;

/** Rows that score images of the data folder rather than generations. */
export const usesModel = (row: DreamBenchRow): row is ModelRow => row !== 'oracle' && row !== 'random';

export interface DreamBenchOptions {
  /** Pipeline folder: Kosmos-G for the main row, text-to-image for the text baselines; unused by the oracle and random rows. */
  model?: string;
  data: string;
  out: string;
  /** Holds clip/ (CLIPModel) and dino/ (ViTModel). */
  judges: string;
  /** Defaults: kosmosg_eval.json's images_per_prompt, sampling steps, guidance, scheduler, seed (4, 100, 7.5, dpm++, 0 on DreamBench). */
  imagesPerPrompt?: number;
  steps?: number;
  guidance?: number;
  scheduler?: SchedulerChoice;
  seed?: number;
  /** Output side in pixels; default the model's. */
  size?: number;
  subjects?: readonly string[];
  /** The first N prompts of each subject (and of the world's two-subject prompts and edits). */
  prompts?: number;
  baseline?: (typeof BASELINES)[number];
  /** World data, model rows: a ControlNet folder steered by each prompt's true scene, its Canny edges (default) or its layout map; conditioning scale default 1. */
  controlnet?: { model: string; control?: 'canny' | 'layout'; scale?: number };
  /** Model rows: a LoRA file at its scale (default 1). */
  lora?: { file: string; scale?: number };
  resume?: boolean;
  force?: boolean;
  device?: Device;
  /** CPU threads per graph (with workers: per worker). */
  threads?: number;
  /** Worker threads that split the prompts, each with its own pipeline (CPU only; the images are the same). */
  workers?: number;
  /** Images per judge graph run (default 8). */
  judgeBatchSize?: number;
  report?: (message: string) => void;
}

/** Everything the saved images depend on: out/eval.json holds it and a resume must match it. */
export interface EvalSettings extends AdapterSettings {
  row: DreamBenchRow;
  model: string | null;
  data: string;
  subjects: string[];
  prompts: number | null;
  imagesPerPrompt: number | null;
  steps: number | null;
  guidance: number | null;
  scheduler: SchedulerChoice | null;
  seed: number | null;
  size: number | null;
  negativePrompt: string | null;
  /** The initial-noise seed of image k of prompt p (dreambench-data.ts). */
  seedScheme: string | null;
}

export interface DreamBenchResult {
  metrics: DreamBenchMetrics;
  records: ImageScore[];
}

const EVAL_FILE = 'eval.json';
const EVAL_FORMAT = 'kosmos-g DreamBench evaluation';
/** What an evaluation writes into --out; --force removes only these. */
const OWN_ENTRIES = [EVAL_FILE, 'images', 'multi', 'edits', 'metrics.json', 'scores.csv', 'report.html'];

/** The official sampler names (kosmosg_eval.json: "dpms (DPMSolverMultistep)") and ours. */
function schedulerFromData(name: string | undefined): SchedulerChoice {
  if (name === undefined) return 'dpm++';
  const word = name.trim().split(/\s+/)[0]!.toLowerCase();
  const official: Record<string, SchedulerChoice> = { dpms: 'dpm++', 'dpm-solver': 'dpm++', ddim: 'ddim', pndm: 'pndm' };
  const choice = official[word] ?? (SCHEDULER_CHOICES as string[]).find((known) => known === word);
  if (!choice) throw new Error(`kosmosg_eval.json names the scheduler ${JSON.stringify(name)}, which is none of dpms, ddim, pndm, ${SCHEDULER_CHOICES.join(', ')}`);
  return choice as SchedulerChoice;
}

function positiveInteger(value: number | undefined, what: string): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw new Error(`${what} must be a positive integer, got ${value}`);
}

function resolveSettings(options: DreamBenchOptions, data: DreamBenchData, row: DreamBenchRow): EvalSettings {
  positiveInteger(options.imagesPerPrompt, 'images per prompt');
  positiveInteger(options.steps, 'steps');
  positiveInteger(options.prompts, 'the number of prompts');
  positiveInteger(options.size, 'size');
  if (options.seed !== undefined && (!Number.isSafeInteger(options.seed) || options.seed < 0)) throw new Error(`seed must be a non-negative integer, got ${options.seed}`);
  if (options.guidance !== undefined && !Number.isFinite(options.guidance)) throw new Error(`guidance must be a finite number, got ${options.guidance}`);
  if (options.scheduler !== undefined && !SCHEDULER_CHOICES.includes(options.scheduler)) throw new Error(`unknown scheduler ${options.scheduler} (choose ${SCHEDULER_CHOICES.join(', ')})`);
  const subjects = selectSubjects(data, options.subjects).map((subject) => subject.subject);
  if (!usesModel(row)) {
    const seed = row === 'random' ? (options.seed ?? data.sampling.seed ?? 0) : null;
    return { row, model: null, data: resolve(data.directory), subjects, prompts: options.prompts ?? null, imagesPerPrompt: null, steps: null, guidance: null, scheduler: null, seed, size: null, negativePrompt: null, seedScheme: null };
  }
  return {
    row,
    model: resolve(options.model!),
    data: resolve(data.directory),
    subjects,
    prompts: options.prompts ?? null,
    imagesPerPrompt: options.imagesPerPrompt ?? data.imagesPerPrompt ?? 4,
    steps: options.steps ?? data.sampling.steps ?? 100,
    guidance: options.guidance ?? data.sampling.guidance ?? 7.5,
    scheduler: options.scheduler ?? schedulerFromData(data.sampling.scheduler),
    seed: options.seed ?? data.sampling.seed ?? 0,
    size: options.size ?? null,
    negativePrompt: data.sampling.negativePrompt ?? '',
    seedScheme: 'seed + 5·k + (p mod 5)',
    ...adapterSettings(options),
  };
}

function controlnetSettings(controlnet: NonNullable<DreamBenchOptions['controlnet']>, scale: number): NonNullable<AdapterSettings['controlnet']> {
  const model = resolve(controlnet.model);
  const control = controlnet.control ?? 'canny';
  if (control === 'canny') return { model, control, ...DEFAULT_CANNY, scale };
  if (control === 'layout') return { model, control, scale };
  throw new Error(`unknown ControlNet control ${JSON.stringify(control)} (canny or layout)`);
}

/** The adapters' settings; keys only for the adapters used, so evaluations without any record what they always did. */
function adapterSettings(options: DreamBenchOptions): AdapterSettings {
  const scale = (value: number | undefined, what: string) => {
    if (value !== undefined && !Number.isFinite(value)) throw new Error(`${what} must be a finite number, got ${value}`);
    return value ?? 1;
  };
  return {
    ...(options.controlnet ? { controlnet: controlnetSettings(options.controlnet, scale(options.controlnet.scale, 'the ControlNet scale')) } : {}),
    ...(options.lora ? { lora: { file: resolve(options.lora.file), scale: scale(options.lora.scale, 'the LoRA scale') } } : {}),
  };
}

/** A model folder of the wrong kind for the row fails here, before --out is touched. */
async function checkModelKind(model: string, row: ModelRow): Promise<void> {
  const folder = await readPipelineFolder(model);
  if (row === 'kosmos-g') {
    const absent = KOSMOS_G_COMPONENTS.filter((name) => !folder.components.has(name));
    if (absent.length) {
      throw new Error(`--model ${model} is not a Kosmos-G pipeline folder (${folder.className}; model_index.json lists no ${absent.join(', ')}): the Kosmos-G row needs one; a text-to-image folder is evaluated with --baseline text`);
    }
    return;
  }
  const absent: string[] = [...DIFFUSION_COMPONENTS, 'text_encoder'].filter((name) => !folder.components.has(name));
  if (!clipTokenizerComponent(folder)) absent.push('clip_tokenizer');
  if (absent.length) {
    throw new Error(`--model ${model} is not a text-to-image folder (${folder.className}; model_index.json lists no ${absent.join(', ')}): --baseline ${row} needs the CLIP-text path; a Kosmos-G folder without it is evaluated without --baseline`);
  }
}

function settingsDifferences(previous: Record<string, unknown>, current: EvalSettings): string[] {
  const keys = new Set([...Object.keys(previous), ...Object.keys(current)]);
  const show = (value: unknown) => (value === undefined ? 'absent' : JSON.stringify(value));
  return [...keys].flatMap((key) => {
    const [before, now] = [previous[key], (current as unknown as Record<string, unknown>)[key]];
    return JSON.stringify(before) === JSON.stringify(now) ? [] : [`${key} ${show(now)} here, ${show(before)} there`];
  });
}

/** Makes --out ready (see the file comment); returns whether a previous run of the same evaluation is continued. */
async function prepareOut(out: string, settings: EvalSettings, resume: boolean, force: boolean): Promise<boolean> {
  if (resume && force) throw new Error('--resume and --force exclude each other: --resume continues an evaluation, --force starts it over');
  const entry = await stat(out).catch(() => null);
  if (entry && !entry.isDirectory()) throw new Error(`--out ${out} is a file, not a folder`);
  const entries = entry ? await readdir(out) : [];
  const record = `${JSON.stringify({ format: EVAL_FORMAT, version: 1, created: new Date().toISOString(), settings }, null, 2)}\n`;
  if (!entries.length) {
    await mkdir(out, { recursive: true });
    await writeFileAtomic(join(out, EVAL_FILE), record);
    return false;
  }
  if (!entries.includes(EVAL_FILE)) throw new Error(`--out ${out} is not empty and holds no DreamBench evaluation (no ${EVAL_FILE}); choose a new or empty folder`);
  let previous: Record<string, unknown>;
  try {
    const parsed = JSON.parse(await readFile(join(out, EVAL_FILE), 'utf8')) as { format?: unknown; settings?: unknown };
    if (parsed.format !== EVAL_FORMAT || typeof parsed.settings !== 'object' || parsed.settings === null) throw new Error(`format is not "${EVAL_FORMAT}"`);
    previous = parsed.settings as Record<string, unknown>;
  } catch (error) {
    throw new Error(`--out ${out}: ${EVAL_FILE} is not a DreamBench evaluation record (${(error as Error).message}); choose another --out`);
  }
  const differences = settingsDifferences(previous, settings);
  if (force) {
    for (const name of OWN_ENTRIES) await rm(join(out, name), { recursive: true, force: true });
    await writeFileAtomic(join(out, EVAL_FILE), record);
    return false;
  }
  if (resume && !differences.length) return true;
  if (differences.length) {
    throw new Error(`--out ${out} holds another DreamBench evaluation (${differences.join('; ')}); ${resume ? '--resume continues only the same one; ' : ''}pass --force to replace it, or choose another --out`);
  }
  throw new Error(`--out ${out} already holds this DreamBench evaluation; pass --resume to continue it (saved images are reused) or --force to start it over`);
}

/** Another subject than `subject`, drawn from (seed, subject, index) alone. */
function otherSubject(data: DreamBenchData, subject: string, seed: number, index: number): DreamBenchData['subjects'][number] {
  const others = data.subjects.filter((candidate) => candidate.subject !== subject);
  if (!others.length) throw new Error('the random row needs a data folder with at least two subjects');
  return others[new Random(deriveSeed(deriveSeed(seed, hashString(subject)), index)).int(others.length)]!;
}

/**
 * The images a row scores: the generations; (oracle) the subject's photos other than its
 * reference, or on world data the true scene of each prompt; (random) as many images of other
 * subjects, drawn with the seed: a photo, or on world data that subject's true scene of the prompt.
 */
function scoredImages(row: DreamBenchRow, cases: readonly DreamBenchCase[], data: DreamBenchData, world: WorldDreamBench | null, subjects: readonly string[], out: string, seed: number): (Omit<ImageScore, 'dino' | 'clipI' | 'clipT' | 'edgeF1'> & { path: string })[] {
  if (!usesModel(row) && world) {
    return cases.map((item) => {
      const shown = row === 'random' ? otherSubject(data, item.subject, seed, item.promptIndex).subject : item.subject;
      const file = world.file.subjects[shown]!.scenes[item.promptIndex]!;
      return { subject: item.subject, class: item.class, promptIndex: item.promptIndex, prompt: item.clipTPrompt, clipTPrompt: item.clipTPrompt, image: 0, seed: null, file, source: 'data' as const, path: join(data.directory, file) };
    });
  }
  if (!usesModel(row)) {
    return selectSubjects(data, subjects).flatMap((subject) =>
      subject.images
        .filter((image) => image !== subject.reference)
        .map((own, index) => {
          const other = row === 'random' ? otherSubject(data, subject.subject, seed, index) : null;
          const image = other ? other.images[new Random(deriveSeed(seed, hashString(`${subject.subject}/${index}`))).int(other.images.length)]! : own;
          return { subject: subject.subject, class: subject.class, promptIndex: null, prompt: null, clipTPrompt: null, image: index, seed: null, file: image, source: 'data' as const, path: join(data.directory, image) };
        }),
    );
  }
  return cases.flatMap((item) =>
    item.images.map((image) => ({
      subject: item.subject, class: item.class, promptIndex: item.promptIndex, prompt: row === 'kosmos-g' ? item.inputPrompt : item.textPrompt, clipTPrompt: item.clipTPrompt,
      image: image.index, seed: image.seed, file: image.file, source: 'generated' as const, path: join(out, image.file),
    })),
  );
}

/** Runs the evaluation and writes metrics.json, scores.csv and report.html into `out`. */
export async function evaluateDreamBench(options: DreamBenchOptions): Promise<DreamBenchResult> {
  const report = options.report ?? (() => {});
  const row: DreamBenchRow = options.baseline ?? 'kosmos-g';
  if (!(['kosmos-g', ...BASELINES] as string[]).includes(row)) throw new Error(`unknown baseline ${JSON.stringify(options.baseline)} (${BASELINES.join(', ')})`);
  if (usesModel(row) && !options.model) throw new Error('--model is required (except for --baseline oracle and random)');
  if (!usesModel(row) && (options.controlnet || options.lora)) throw new Error(`--baseline ${row} generates nothing: a ControlNet or LoRA applies to the model rows only`);
  checkWorkers(options);
  // Everything that can be checked is checked before --out is touched or a model is loaded.
  const data = await readDreamBench(options.data);
  const world = await readWorldDreamBench(data);
  if (options.controlnet && !world) throw new Error(`a ControlNet evaluation needs a world DreamBench (data build --kind dreambench): its control maps are the edges of each prompt's true scene, and ${data.directory} has no world-dreambench.json`);
  if (options.controlnet?.control === 'layout' && world && !hasLayoutMaps(world)) throw new Error(`a layout ControlNet evaluation needs the layout map of every true scene: ${data.directory} was built without them; build it again with data build --kind dreambench`);
  if (row === 'text-style' && !world) throw new Error(`--baseline text-style needs a world DreamBench (data build --kind dreambench): ${data.directory} has no world-dreambench.json, so its subjects have no style names`);
  const settings = resolveSettings(options, data, row);
  const selection = { subjects: settings.subjects, prompts: settings.prompts ?? undefined, imagesPerPrompt: settings.imagesPerPrompt ?? 1, seed: settings.seed ?? 0 };
  // The oracle and random rows score no cases on real data (its photos have no prompts), one true scene per case on world data.
  const plain = !usesModel(row) && !world ? [] : buildCases(data, selection);
  const cases = row === 'text-style' ? withStyleWords(plain, data, world!) : plain;
  // Two-subject prompts and edits have no random counterpart: the random row gives the protocol's floor only.
  const worldJobs = world && row !== 'random' ? buildWorldJobs(world, data, { ...selection, prompts: settings.prompts, styled: row === 'text-style' }) : [];
  if (usesModel(row)) await checkModelKind(options.model!, row);
  await checkJudgesFolder(options.judges);
  const resumed = await prepareOut(options.out, settings, options.resume ?? false, options.force ?? false);
  if (resumed) report(`resuming the evaluation in ${options.out}`);

  const at = (file: string) => join(data.directory, file);
  const jobs = [
    ...cases.map((item) => {
      const entry = world?.file.subjects[item.subject];
      const layoutMap = entry?.layouts?.[item.promptIndex];
      return { ...item, inputImages: [at(item.reference)], truth: entry ? at(entry.scenes[item.promptIndex]!) : null, layoutMap: layoutMap ? at(layoutMap) : null };
    }),
    ...worldJobs.map((job) => {
      const layoutMap = (job.group === 'multi' ? world!.multi : world!.edits)[job.index]!.layout_map;
      return { ...job, truth: at(job.truth), layoutMap: layoutMap ? at(layoutMap) : null };
    }),
  ];
  const generation = usesModel(row) ? await generateMissing(jobs, options.out, settings, options) : { generated: 0, reused: 0, seconds: 0 };

  const images = scoredImages(row, cases, data, world, settings.subjects, options.out, settings.seed ?? 0);
  report(`scoring ${images.length} images with the judges in ${options.judges}`);
  const scoringStart = performance.now();
  const judges = await loadJudges(options.judges, { device: options.device, threads: options.threads, batchSize: options.judgeBatchSize });
  const records: ImageScore[] = [];
  let worldReport: DreamBenchMetrics['world'];
  try {
    const subjects = selectSubjects(data, settings.subjects);
    const referencePaths = subjects.map((subject) => join(data.directory, subject.reference));
    const [referenceClip, referenceDino] = [await judges.clip.embedImages(referencePaths), await judges.dino.features(referencePaths)];
    const reference = new Map(subjects.map((subject, index) => [subject.subject, { clip: referenceClip[index]!, dino: referenceDino[index]! }]));
    const prompts = [...new Set(images.flatMap((image) => (image.clipTPrompt === null ? [] : [image.clipTPrompt])))];
    const promptEmbeds = new Map((await judges.clip.embedTexts(prompts)).map((embed, index) => [prompts[index]!, embed]));
    // The world measures classify the same CLIP embeddings.
    const embeds: Float32Array[] = [];
    // Chunks bound the memory of decoded images; scores come from the files on disk.
    for (let start = 0; start < images.length; start += 64) {
      const chunk = images.slice(start, start + 64);
      const paths = chunk.map((image) => image.path);
      const [clip, dino] = [await judges.clip.embedImages(paths), await judges.dino.features(paths)];
      for (const [k, { path, ...image }] of chunk.entries()) {
        const target = reference.get(image.subject)!;
        const text = image.clipTPrompt === null ? null : promptEmbeds.get(image.clipTPrompt)!;
        // World data: how well the image keeps the edges of the scene its prompt describes.
        const truth = world && image.promptIndex !== null ? at(world.file.subjects[image.subject]!.scenes[image.promptIndex]!) : null;
        const edgeF1 = truth ? await edgeF1OfFiles(truth, path, settings.controlnet?.control === 'canny' ? settings.controlnet : DEFAULT_CANNY) : null;
        records.push({ ...image, dino: 100 * cosine(dino[k]!, target.dino), clipI: 100 * cosine(clip[k]!, target.clip), clipT: text ? 100 * cosine(clip[k]!, text) : null, edgeF1 });
        embeds.push(clip[k]!);
      }
    }
    if (world) {
      report(`world measures of ${images.length} images, ${worldJobs.length} two-subject prompts and edits`);
      worldReport = await measureWorld(judges.clip, world, new Map(data.subjects.map((subject) => [subject.subject, subject.live ? 'live' : 'object'])), {
        dataDirectory: data.directory,
        records: records.map((record, k) => ({ ...record, path: images[k]!.path, embed: embeds[k]! })),
        jobs: worldJobs.map((job) => ({ job, prompt: row === 'oracle' ? job.clipTPrompt : row === 'kosmos-g' ? job.inputPrompt : job.textPrompt, images: worldJobImages(row, job, data, options.out) })),
      });
    }
  } finally {
    await judges.close();
  }
  const scoringSeconds = (performance.now() - scoringStart) / 1000;
  const scored = records.length + (worldReport ? worldReport.multi.images + worldReport.edits.images : 0);
  const metrics = {
    ...summarize(records, {
      settings,
      data,
      judges: resolve(options.judges),
      run: {
        resumed,
        generated: generation.generated,
        reused: generation.reused,
        generationSeconds: generation.seconds,
        generationImagesPerSecond: generation.seconds > 0 ? generation.generated / generation.seconds : null,
        scoringSeconds,
        scoringImagesPerSecond: scoringSeconds > 0 ? scored / scoringSeconds : null,
      },
    }),
    ...(worldReport ? { world: worldReport } : {}),
  };
  await writeDreamBenchReport(options.out, metrics, records, data);
  return { metrics, records };
}

/** A world job's scored images: the generations, or the oracle's one true scene. */
function worldJobImages(row: DreamBenchRow, job: WorldJob, data: DreamBenchData, out: string): { path: string; file: string; source: 'generated' | 'data' }[] {
  if (row === 'oracle') return [{ path: join(data.directory, job.truth), file: job.truth, source: 'data' }];
  return job.images.map((image) => ({ path: join(out, image.file), file: image.file, source: 'generated' }));
}

