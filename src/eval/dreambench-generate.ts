// The generation pass of `eval dreambench` (dreambench.ts): every image of the evaluation not yet on
// disk, written atomically, each from its own seeded noise, several prompts batched into one U-Net
// run where no per-prompt input forbids it. Adapters apply to every image: a LoRA at its scale, and a
// ControlNet steered by each prompt's true scene (world data: its Canny edges, or its layout map),
// which makes the control input per prompt, so prompts are then generated one at a time. On a CPU,
// several worker threads may split the prompts, each with its own pipeline and a share of the
// cores: small models run more images per second that way than one pipeline on every core.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import type { Device } from '../graph/devices.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { gaussianNoise } from '../models/gaussian_noise.js';
import type { HostTensor } from '../onnx/dtype.js';
import { type ControlNetOptions, loadControlNet, readControlImage } from '../pipeline/controlnet.js';
import { type SamplingOptions, type SchedulerChoice, repeatRows } from '../pipeline/diffusion.js';
import { encodePng } from '../pipeline/image_output.js';
import { KosmosGPipeline } from '../pipeline/kosmos_g_pipeline.js';
import { defaultMemoryLimit } from '../pipeline/memory.js';
import { TextToImagePipeline } from '../pipeline/text_to_image.js';
import type { CaseImage } from './dreambench-data.js';

/** The adapters of an evaluation as eval.json records them (absent keys: none). */
export interface AdapterSettings {
  /** A ControlNet on each prompt's true scene: its Canny edges, or its layout map. */
  controlnet?: { model: string; control: 'canny'; low: number; high: number; scale: number } | { model: string; control: 'layout'; scale: number };
  lora?: { file: string; scale: number };
}

/** What the generation pass needs of the evaluation's settings. */
export interface GenerationSettings extends AdapterSettings {
  row: string;
  model: string | null;
  steps: number | null;
  guidance: number | null;
  scheduler: SchedulerChoice | null;
  size: number | null;
  negativePrompt: string | null;
}

export interface GenerationStats {
  generated: number;
  reused: number;
  seconds: number;
}

/** What one prompt generates: the Kosmos-G input and its images (absolute paths), the text rows' input, the true scene (world data), the images to save. */
export interface GenerationJob {
  inputPrompt: string;
  inputImages: string[];
  textPrompt: string;
  /** The true scene of the prompt and its layout map, absolute; null on real data (the map: in folders built without maps). */
  truth: string | null;
  layoutMap: string | null;
  images: CaseImage[];
}

/** Whether a saved image can be reused: a readable PNG (a torn file cannot exist, writes are atomic, but a user may have replaced it). */
async function readablePng(path: string): Promise<boolean> {
  try {
    const { format, width, height } = await sharp(path).metadata();
    return format === 'png' && !!width && !!height;
  } catch {
    return false;
  }
}

/** A run killed mid-write leaves `.name.pid.random.tmp` beside its images (io/atomic-file.ts); they are never results. */
async function removeStaleTemporaries(images: string): Promise<void> {
  const entries = await readdir(images, { recursive: true }).catch(() => [] as string[]);
  for (const entry of entries) if (/(^|[/\\])\.[^/\\]*\.tmp$/.test(entry)) await rm(join(images, entry), { force: true });
}


export interface GenerationOptions {
  device?: Device | undefined;
  /** CPU threads per graph (with workers: per worker; default the cores shared out between them). */
  threads?: number | undefined;
  /** Worker threads that split the prompts, each loading its own pipeline (CPU only, checked by `checkWorkers`; default 1: this thread). */
  workers?: number | undefined;
  report?: ((message: string) => void) | undefined;
}

/** The images of one prompt still to generate. */
export interface PendingPrompt {
  item: GenerationJob;
  images: CaseImage[];
}

/** What a generation pass tells as it goes: once its pipeline is loaded, then after each batch of images saved. */
export interface GenerationProgress {
  started: () => void;
  saved: (count: number) => void;
}

/** Generates every image not yet on disk; loads the pipeline (and the adapters) only when one is missing. */
export async function generateMissing(jobs: readonly GenerationJob[], out: string, settings: GenerationSettings, options: GenerationOptions): Promise<GenerationStats> {
  const report = options.report ?? (() => {});
  for (const folder of ['images', 'multi', 'edits']) await removeStaleTemporaries(join(out, folder));
  const pending: PendingPrompt[] = [];
  let reused = 0;
  for (const item of jobs) {
    const missing = [];
    for (const image of item.images) {
      if (await readablePng(join(out, image.file))) reused++;
      else missing.push(image);
    }
    if (missing.length) pending.push({ item, images: missing });
  }
  const total = pending.reduce((count, entry) => count + entry.images.length, 0);
  if (!total) return { generated: 0, reused, seconds: 0 };
  const workers = Math.min(options.workers ?? 1, pending.length);
  report(`generating ${total} images (${reused} already on disk) with ${settings.model}${workers > 1 ? ` in ${workers} workers` : ''}`);
  // The clock starts when the first pipeline is loaded, so the rate is that of generating alone.
  let start: number | undefined;
  let generated = 0;
  let lastReport = 0;
  const progress: GenerationProgress = {
    started: () => {
      start ??= performance.now();
    },
    saved: (count) => {
      generated += count;
      const now = performance.now();
      if (now - lastReport > 10_000 || generated === total) {
        lastReport = now;
        report(`generated ${generated}/${total} images, ${((generated * 1000) / (now - start!)).toFixed(2)} images/s`);
      }
    },
  };
  if (workers > 1) {
    // Prompts dealt round-robin: each worker gets as many images as the others, within one prompt's.
    const shares = Array.from({ length: workers }, (_, worker) => pending.filter((_, index) => index % workers === worker));
    const threads = options.threads ?? Math.max(1, Math.floor(availableParallelism() / workers));
    await generateInWorkers(shares, out, settings, { threads, memoryShare: 1 / workers }, progress);
  } else {
    await generatePending(pending, out, settings, { device: options.device, threads: options.threads, memoryShare: 1 }, progress);
  }
  return { generated, reused, seconds: (performance.now() - (start ?? performance.now())) / 1000 };
}

/** The worker count, refused in one line where it cannot help: above the cores, or off the CPU. */
export function checkWorkers(options: Pick<GenerationOptions, 'workers' | 'device'>): void {
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be a positive integer, got ${workers}`);
  if (workers > 1 && options.device !== undefined && options.device !== 'cpu') throw new Error(`--workers splits the prompts between CPU threads; it needs --device cpu, not ${options.device}`);
  const cores = availableParallelism();
  if (workers > cores) throw new Error(`--workers ${workers} exceeds this machine's ${cores} CPU cores`);
}

/** Settings of one generation pass: its threads, and its share of the memory bound that sizes its batches. */
export interface PassSettings {
  device?: Device | undefined;
  threads?: number | undefined;
  memoryShare: number;
}

/** One pipeline generating `pending` in order, several prompts per U-Net call where nothing forbids it. */
export async function generatePending(pending: readonly PendingPrompt[], out: string, settings: GenerationSettings, pass: PassSettings, progress: GenerationProgress): Promise<void> {
  const load = { device: pass.device, threads: pass.threads };
  const pipeline = settings.row === 'kosmos-g' ? await KosmosGPipeline.fromPretrained(settings.model!, load) : await TextToImagePipeline.fromPretrained(settings.model!, load);
  const controlnet = settings.controlnet ? await loadControlNet(settings.controlnet.model).catch(async (error: unknown) => {
    await pipeline.dispose();
    throw error;
  }) : null;
  progress.started();
  try {
    const { diffusion } = pipeline;
    const size = settings.size ?? diffusion.defaultSize;
    const factor = diffusion.vae.model.downsamplingFactor;
    if (!Number.isInteger(size / factor)) throw new Error(`size ${size} is not a multiple of ${diffusion.sizeMultiple}`);
    const noiseShape = [1, diffusion.vae.model.config.latent_channels, size / factor, size / factor];
    const perImage = noiseShape.reduce((p, q) => p * q, 1);
    const guided = settings.guidance! > 1;
    // The unconditional condition is the same for every prompt: encoded once.
    const unconditional = pipeline instanceof KosmosGPipeline ? await pipeline.encoder.encodeUnconditional(settings.negativePrompt!) : await pipeline.encodePrompt(settings.negativePrompt!);
    // A ControlNet's input is the prompt's own true scene: one prompt per U-Net run.
    const groupSize = controlnet ? 1 : promptsPerCall(pipeline, Math.max(...pending.map((entry) => entry.images.length)), size, guided, pass.memoryShare);
    for (let first = 0; first < pending.length; first += groupSize) {
      const group = pending.slice(first, first + groupSize);
      const images = group.flatMap((entry) => entry.images);
      // Each image's own noise and its prompt's condition, several prompts in one batch:
      // (n, C, h, w) = n × gaussianNoise(seed_k, (1, C, h, w)); conditions (n, 77, d).
      const noise = new Float32Array(images.length * perImage);
      images.forEach((image, row) => noise.set(gaussianNoise(image.seed, noiseShape).data as Float32Array, row * perImage));
      const latents: HostTensor = { dtype: 'float32', shape: [images.length, ...noiseShape.slice(1)], data: noise };
      const conditions: [HostTensor, number][] = [];
      for (const { item, images: itemImages } of group) {
        const condition = pipeline instanceof KosmosGPipeline ? await pipeline.encoder.encode(item.inputPrompt, item.inputImages) : await pipeline.encodePrompt(item.textPrompt);
        conditions.push([condition, itemImages.length]);
      }
      const sampling: SamplingOptions = {
        steps: settings.steps!, guidanceScale: settings.guidance!, scheduler: settings.scheduler!, seed: images[0]!.seed, numImages: images.length, width: size, height: size, latents,
        ...(controlnet ? { controlnet: controlOptions(controlnet, settings.controlnet!, group[0]!.item) } : {}),
        ...(settings.lora ? { lora: settings.lora } : {}),
      };
      const control = sampling.controlnet ? await readControlImage(sampling.controlnet) : undefined;
      const resolved = diffusion.resolve(sampling, { scheduler: 'dpm++' }, control);
      const extras = await diffusion.prepare(resolved, sampling, control);
      const generatedImages = await diffusion.sample(repeatRows(conditions), unconditional, resolved, sampling, extras).finally(() => diffusion.releaseExtras(extras));
      for (const [row, image] of images.entries()) {
        const path = join(out, image.file);
        await mkdir(dirname(path), { recursive: true });
        await writeFileAtomic(path, await encodePng(generatedImages[row]!));
      }
      progress.saved(images.length);
    }
  } finally {
    await controlnet?.close();
    await pipeline.dispose();
  }
}

/** What dreambench-generate-thread.ts receives. */
export interface GenerationThreadInit {
  pending: PendingPrompt[];
  out: string;
  settings: GenerationSettings;
  pass: PassSettings;
}

/** What a generation thread posts back. */
export type GenerationThreadEvent = { type: 'started' } | { type: 'saved'; count: number } | { type: 'done' } | { type: 'failed'; message: string };

/**
 * Runs each share in its own worker thread (dreambench-generate-thread.ts) and waits for all of
 * them; the first failure stops the others. Images already saved stay on disk for --resume.
 */
async function generateInWorkers(shares: readonly PendingPrompt[][], out: string, settings: GenerationSettings, pass: PassSettings, progress: GenerationProgress): Promise<void> {
  const workers = shares.map((pending) => new Worker(new URL('./dreambench-generate-thread.js', import.meta.url), { workerData: { pending, out, settings, pass } satisfies GenerationThreadInit }));
  try {
    await Promise.all(workers.map((worker) => new Promise<void>((resolve, reject) => {
      worker.on('message', (event: GenerationThreadEvent) => {
        if (event.type === 'started') progress.started();
        else if (event.type === 'saved') progress.saved(event.count);
        else if (event.type === 'done') resolve();
        else reject(new Error(event.message));
      });
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`a generation worker stopped (exit code ${code}) before it finished`)));
    })));
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

/** The ControlNet input of one prompt: the Canny edges of its true scene, or the scene's layout map. */
function controlOptions(model: Awaited<ReturnType<typeof loadControlNet>>, settings: NonNullable<AdapterSettings['controlnet']>, job: GenerationJob): ControlNetOptions {
  const image = settings.control === 'canny' ? job.truth : job.layoutMap;
  if (!image) throw new Error(`a ${settings.control} ControlNet evaluation needs ${settings.control === 'canny' ? 'a true scene' : 'a layout map'} for every prompt; "${job.inputPrompt}" has none`);
  const preprocess = settings.control === 'canny' ? { preprocess: { kind: 'canny' as const, low: settings.low, high: settings.high } } : {};
  return { model, image, ...preprocess, conditioningScale: settings.scale };
}

/** Most images one U-Net call batches: past this, a larger batch no longer speeds a CPU up. */
const MAX_IMAGES_PER_CALL = 16;

/**
 * Prompts generated per call: batching several prompts' images makes each U-Net run larger, which
 * runs faster per image on a CPU (kosmos-g-mini at 64²: about 1.9 s per image in batches of 4,
 * 1.6 s in batches of 16); as many as fit MAX_IMAGES_PER_CALL and a quarter of this pass's share of
 * the memory bound.
 */
function promptsPerCall(pipeline: KosmosGPipeline | TextToImagePipeline, imagesPerPrompt: number, size: number, guided: boolean, memoryShare: number): number {
  for (let prompts = Math.max(1, Math.floor(MAX_IMAGES_PER_CALL / imagesPerPrompt)); prompts > 1; prompts--) {
    const estimate = pipeline.diffusion.memoryEstimate({ width: size, height: size, numImages: prompts * imagesPerPrompt, guided, controlnet: false });
    if (estimate.total <= (defaultMemoryLimit() * memoryShare) / 4) return prompts;
  }
  return 1;
}

