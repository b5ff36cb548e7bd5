// What the API does, apart from HTTP: checks a request against the loaded model and the server's
// limits, queues it, follows its job through the queue's events (records on disk, PNGs with their
// settings, previews for subscribers, metrics), cancels, and shuts down without losing a job.
import { randomInt } from 'node:crypto';
import sharp, { type Metadata } from 'sharp';
import { DEFAULT_GUIDANCE, DEFAULT_STEPS, type GeneratedImage } from '../pipeline/diffusion.js';
import { encodePng, generationParameters } from '../pipeline/image_output.js';
import { controlOutputSize } from '../pipeline/controlnet.js';
import { checkGenerationMemory, estimateGenerationMemory } from '../pipeline/memory.js';
import { countPlaceholders } from '../pipeline/prompt.js';
import type { World } from '../world/world.js';
import { ApiFailure } from './errors.js';
import type { JobEvent, JobRequest, ModelInfo, PipelineKind } from './generation-worker.js';
import { type JobRecord, type JobStore, newJobId } from './jobs.js';
import { type LayoutControl, layoutControl, noWorldMessage } from './layout-world.js';
import { describeModel } from './model-info.js';
import type { ServerMetrics } from './metrics.js';
import type { JobQueue } from './queue.js';
import { type GenerationRequest, type JobSettings, type JobStatus, LIMITS, type ModelsResponse } from './schemas.js';

/** An event for the job's server-sent-events subscribers. */
export interface StreamEvent {
  event: 'queued' | 'started' | 'step' | 'done' | 'error' | 'cancelled';
  data: Record<string, unknown>;
}

export interface ServiceConfig {
  /** The name the API reports for the model (its folder's name, or kosmos-g-mini). */
  modelName: string;
  pipeline: PipelineKind;
  info: ModelInfo;
  /** Assets a request may name: name → file (LoRA) or folder (ControlNet). */
  loras: ReadonlyMap<string, string>;
  controlnets: ReadonlyMap<string, string>;
  /** Refuse a request whose estimated peak memory is over this many bytes. */
  maxMemory: number;
  /** The world of the model's world.json, for layout maps (null without one); opened at the first call. */
  layoutWorld: () => Promise<World | null>;
}

export interface Uploads {
  images: Uint8Array[];
  controlImage?: Uint8Array;
}

/** Largest side of the previews sent while sampling. */
export const PREVIEW_SIDE = 128;
/** About this many previews per job. */
const PREVIEWS_PER_JOB = 10;

export class GenerationService {
  private queue: JobQueue | null = null;
  private readonly listeners = new Map<string, Set<(event: StreamEvent) => void>>();
  /** Events of one job are handled in order (each may write files). */
  private readonly chains = new Map<string, Promise<unknown>>();
  private generations = 0;
  private generationSeconds = 0;

  constructor(
    readonly config: ServiceConfig,
    private readonly store: JobStore,
    private readonly metrics: ServerMetrics,
  ) {}

  attach(queue: JobQueue): void {
    this.queue = queue;
  }

  private get jobs(): JobQueue {
    if (!this.queue) throw new Error('the service has no queue');
    return this.queue;
  }

  /** Seconds a refused client should wait: the mean generation time so far (10 s before any), 1 to 600. */
  retryAfterSeconds(): number {
    const mean = this.generations ? this.generationSeconds / this.generations : 10;
    return Math.min(600, Math.max(1, Math.ceil(mean)));
  }

  /** Jobs whose record says queued (the health check and the metrics agree with the statuses). */
  get waiting(): number {
    return this.store.countByState().queued;
  }

  /** Jobs whose record says running: a job counts until its images are written. */
  get running(): number {
    return this.store.countByState().running;
  }

  models(): ModelsResponse {
    const { modelName, pipeline, info, loras, controlnets } = this.config;
    return describeModel({ name: modelName, pipeline, info, loras: [...loras.keys()], controlnets: [...controlnets.keys()] });
  }

  /** Checks a request completely, then queues it. Every refusal is an ApiFailure, before anything is queued. */
  async submit(request: GenerationRequest, uploads: Uploads): Promise<{ id: string; queuePosition: number; seed: number }> {
    const { info, pipeline } = this.config;
    const images = uploads.images;
    if (images.length > LIMITS.maxImages) throw new ApiFailure(400, 'too_many_images', `at most ${LIMITS.maxImages} images per request, got ${images.length}`);
    const placeholders = countPlaceholders(request.prompt);
    if (pipeline === 'clip-text' && images.length) throw new ApiFailure(400, 'images_not_supported', 'this model takes text only (a clip-text pipeline); send no images');
    if (pipeline === 'kosmos-g' && placeholders !== images.length) {
      throw new ApiFailure(400, 'image_count_mismatch', `the prompt has ${placeholders} <i> placeholder${placeholders === 1 ? '' : 's'} but ${images.length} image${images.length === 1 ? ' was' : 's were'} sent`);
    }
    for (const [index, image] of images.entries()) await checkImage(image, `image ${index + 1}`);
    const lora = request.lora ? { name: request.lora.name, scale: request.lora.scale ?? 1 } : null;
    const loraFile = lora ? this.config.loras.get(lora.name) : undefined;
    if (lora && !loraFile) throw new ApiFailure(400, 'unknown_asset', `no LoRA named ${JSON.stringify(lora.name)} (this server has: ${[...this.config.loras.keys()].join(', ') || 'none'})`);
    const controlDirectory = request.controlnet ? this.config.controlnets.get(request.controlnet.name) : undefined;
    if (request.controlnet && !controlDirectory) throw new ApiFailure(400, 'unknown_asset', `no ControlNet named ${JSON.stringify(request.controlnet.name)} (this server has: ${[...this.config.controlnets.keys()].join(', ') || 'none'})`);
    const requested = request.controlnet?.preprocess;
    if (requested?.kind === 'layout' && uploads.controlImage) throw new ApiFailure(400, 'unexpected_control_image', 'a layout preprocess draws the control map from its scene; send no control image');
    const layout = requested?.kind === 'layout' ? await this.layoutControl(requested.scene) : null;
    const controlImage = layout?.image ?? uploads.controlImage;
    const preprocess = layout?.preprocess ?? requested;
    const controlnet = request.controlnet ? { name: request.controlnet.name, scale: request.controlnet.scale ?? 1, ...(preprocess ? { preprocess } : {}) } : null;
    if (controlnet && !controlImage) throw new ApiFailure(400, 'missing_control_image', 'a ControlNet needs a control image (or a layout preprocess with a scene)');
    if (!controlnet && controlImage) throw new ApiFailure(400, 'unexpected_control_image', 'a control image was sent without a ControlNet');
    const controlSize = controlImage ? await checkImage(controlImage, 'the control image') : null;
    const { width, height } = this.outputSize(request, controlSize);
    const steps = request.steps ?? DEFAULT_STEPS;
    const scheduler = request.scheduler ?? 'dpm++';
    if (scheduler === 'pndm' && steps < 2) throw new ApiFailure(400, 'invalid_steps', 'the pndm scheduler needs at least 2 steps');
    const guidance = request.guidance ?? DEFAULT_GUIDANCE;
    const numImages = request.numImages ?? 1;
    const memory = { width, height, numImages, guided: guidance > 1, controlnet: controlnet !== null };
    try {
      checkGenerationMemory(estimateGenerationMemory(info.memoryModel, memory), memory, process.memoryUsage().rss, this.config.maxMemory);
    } catch (error) {
      throw new ApiFailure(400, 'too_large', (error as Error).message);
    }
    const seed = request.seed ?? randomInt(2 ** 32);
    const settings: JobSettings = {
      model: this.config.modelName,
      prompt: request.prompt,
      negativePrompt: request.negativePrompt ?? '',
      images: images.length,
      steps,
      guidance,
      scheduler,
      seed,
      numImages,
      width,
      height,
      lora,
      controlnet,
    };
    const id = newJobId();
    // The settings the thread needs as they are; assets become the server's own paths.
    const { model: _model, images: _imageCount, lora: _lora, controlnet: _controlnet, ...sampling } = settings;
    const job: JobRequest = {
      id,
      ...sampling,
      images,
      lora: lora && loraFile ? { file: loraFile, scale: lora.scale } : null,
      controlnet: controlnet && controlDirectory && controlImage ? { model: controlDirectory, image: controlImage, conditioningScale: controlnet.scale, ...(controlnet.preprocess ? { preprocess: controlnet.preprocess } : {}) } : null,
      previewEvery: Math.max(1, Math.round(steps / PREVIEWS_PER_JOB)),
      cancel: new SharedArrayBuffer(4),
    };
    const record: JobRecord = { id, state: 'queued', step: 0, totalSteps: steps, createdAt: new Date().toISOString(), timings: {}, settings, images: [], warnings: [] };
    // The job's events wait for its record: a queue may report it started before add() returns.
    const recorded = this.holdEvents(id);
    try {
      // Refused (queue full, shutting down) before anything is written.
      const queuePosition = await this.jobs.add(job);
      await this.store.create(record);
      return { id, queuePosition, seed };
    } finally {
      recorded();
    }
  }

  /** The layout map of a scene in the model's world; a scene the world refuses is a 400. */
  private async layoutControl(scene: unknown): Promise<LayoutControl> {
    const world = await this.config.layoutWorld();
    if (!world) throw new ApiFailure(400, 'no_world', noWorldMessage(this.config.modelName));
    try {
      return await layoutControl(world, scene);
    } catch (error) {
      throw new ApiFailure(400, 'invalid_scene', `controlnet.preprocess.scene: ${(error as Error).message}`);
    }
  }

  /** The output size: as asked, the model's default, or following the control image (pipeline/controlnet.ts). */
  private outputSize(request: GenerationRequest, controlSize: { width: number; height: number } | null): { width: number; height: number } {
    const { info } = this.config;
    let size: { width: number; height: number };
    try {
      size = controlSize ? controlOutputSize({ name: 'the control image', ...controlSize }, request, info.defaultSize, info.sizeMultiple) : { width: request.width ?? info.defaultSize, height: request.height ?? info.defaultSize };
    } catch (error) {
      throw new ApiFailure(400, 'invalid_size', (error as Error).message);
    }
    for (const [name, value] of [['width', size.width], ['height', size.height]] as const) {
      if (value % info.sizeMultiple !== 0) throw new ApiFailure(400, 'invalid_size', `${name} ${value} is not a multiple of ${info.sizeMultiple}`);
      if (value > LIMITS.maxSide) throw new ApiFailure(400, 'invalid_size', `${name} ${value} is over the ${LIMITS.maxSide}-pixel limit`);
    }
    return size;
  }

  /** Makes the job's events wait until the returned function is called. */
  private holdEvents(id: string): () => void {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    this.chains.set(id, held);
    return () => {
      release();
      if (this.chains.get(id) === held) this.chains.delete(id);
    };
  }

  status(id: string): JobStatus | undefined {
    const record = this.store.get(id);
    if (!record) return undefined;
    const { finishedAt: _finished, bytes: _bytes, ...status } = record;
    // A queued job no longer in the queue has been handed to a thread that has not started it yet.
    return { ...status, queuePosition: record.state === 'queued' ? (this.jobs.position(id) ?? 0) : null, images: record.images.map((name) => `/v1/images/${name}`) };
  }

  list(limit: number): JobStatus[] {
    return this.store.list(limit).map((record) => this.status(record.id)!);
  }

  /** Cancels a queued or running job; a running one ends after its current step. */
  async cancel(id: string): Promise<JobStatus> {
    const record = this.store.get(id);
    if (!record) throw new ApiFailure(404, 'not_found', `no generation ${id}`);
    if (record.state !== 'queued' && record.state !== 'running') throw new ApiFailure(409, 'finished', `generation ${id} is already ${record.state}`);
    await this.jobs.cancel(id);
    // A waiting job's cancelled event is already emitted; wait until it is recorded. A job a thread
    // or worker holds stops at its next step: its state is reported as cancelled from now on.
    await (this.chains.get(id) ?? Promise.resolve());
    if (this.store.get(id)?.finishedAt === undefined) this.store.touch(id, { state: 'cancelled' });
    return this.status(id)!;
  }

  /** Subscribes to a job's events; the first event is its current state. Returns the unsubscribe function. */
  subscribe(id: string, listener: (event: StreamEvent) => void): () => void {
    const status = this.status(id);
    if (!status) throw new ApiFailure(404, 'not_found', `no generation ${id}`);
    listener(currentEvent(status));
    const set = this.listeners.get(id) ?? new Set();
    set.add(listener);
    this.listeners.set(id, set);
    return () => {
      set.delete(listener);
      if (!set.size) this.listeners.delete(id);
    };
  }

  /**
   * The queue's listener: events of one job are applied one after another. Resolves true once this
   * one is applied to a job of this server, false for another's job or when applying it failed
   * (reported here), so a queue that keeps results elsewhere (Redis) deletes only what is on disk.
   */
  handle(event: JobEvent): Promise<boolean> {
    const previous = this.chains.get(event.id) ?? Promise.resolve();
    const next = previous.then(() => this.apply(event)).then(
      (ours) => ours,
      (error: unknown) => {
        process.stderr.write(`kosmos-g serve: job ${event.id}: ${(error as Error).message}\n`);
        return false;
      },
    );
    this.chains.set(event.id, next);
    void next.then(() => {
      if (this.chains.get(event.id) === next) this.chains.delete(event.id);
    });
    return next;
  }

  private emit(id: string, event: StreamEvent): void {
    for (const listener of this.listeners.get(id) ?? []) listener(event);
  }

  /** Applies the event to its job's record; false when this server has no such job. */
  private async apply(event: JobEvent): Promise<boolean> {
    const record = this.store.get(event.id);
    if (!record) return false;
    // A finished job takes no more events: a result delivered twice (Redis after a server restart)
    // is written once.
    if (record.finishedAt !== undefined) return true;
    // A job asked to cancel stays cancelled while its thread or worker reaches its next step.
    if ((event.type === 'started' || event.type === 'step') && record.state === 'cancelled') return true;
    switch (event.type) {
      case 'started': {
        const queuedMs = Date.now() - Date.parse(record.createdAt);
        await this.store.update(event.id, { state: 'running', totalSteps: event.totalSteps, timings: { queuedMs } });
        this.emit(event.id, { event: 'started', data: { totalSteps: event.totalSteps } });
        // Every waiting job moved up by one.
        for (const waiting of this.listeners.keys()) {
          const position = this.jobs.position(waiting);
          if (position !== null) this.emit(waiting, { event: 'queued', data: { queuePosition: position } });
        }
        return true;
      }
      case 'step': {
        this.store.touch(event.id, { step: event.step, totalSteps: event.totalSteps });
        const preview = event.preview && this.listeners.has(event.id) ? await previewDataUrl(event.preview) : undefined;
        this.emit(event.id, { event: 'step', data: { step: event.step, totalSteps: event.totalSteps, ...(preview ? { preview } : {}) } });
        return true;
      }
      case 'done': {
        const names = await this.writeImages(record, event.images, event.warnings);
        const bytes = await this.store.measure(event.id, names.length);
        const timings = { ...record.timings, generateMs: Math.round(event.generateMs) };
        await this.store.update(event.id, { state: 'done', step: record.totalSteps, images: names, warnings: event.warnings, timings, finishedAt: new Date().toISOString(), bytes });
        this.metrics.observeGeneration(event.generateMs / 1000);
        this.generations++;
        this.generationSeconds += event.generateMs / 1000;
        this.emit(event.id, { event: 'done', data: { images: names.map((name) => `/v1/images/${name}`), timings } });
        return true;
      }
      case 'failed': {
        const error = { code: 'generation_failed', message: event.message };
        await this.store.update(event.id, { state: 'failed', error, finishedAt: new Date().toISOString() });
        this.emit(event.id, { event: 'error', data: error });
        return true;
      }
      case 'cancelled':
        await this.store.update(event.id, { state: 'cancelled', finishedAt: new Date().toISOString() });
        this.emit(event.id, { event: 'cancelled', data: {} });
        return true;
    }
  }

  private async writeImages(record: JobRecord, images: GeneratedImage[], warnings: string[]): Promise<string[]> {
    const { settings } = record;
    const names: string[] = [];
    for (const [index, image] of images.entries()) {
      const seed = settings.seed + index;
      const parameters = generationParameters({ ...settings, guidanceScale: settings.guidance, seed, model: settings.model });
      const png = await encodePng(image, { parameters });
      const sidecar = { ...settings, pipeline: this.config.pipeline, seed, index, job: record.id, warnings };
      names.push(await this.store.writeImage(record.id, index, png, sidecar));
    }
    return names;
  }

  /** Stops taking jobs, lets the running ones finish, and records the waiting ones as cancelled. */
  async shutdown(): Promise<void> {
    const left = await this.jobs.shutdown();
    for (const job of left) {
      const record = this.store.get(job.id);
      if (!record) continue;
      await this.store.update(job.id, { state: 'cancelled', warnings: [...record.warnings, 'the server shut down before this job ran'], finishedAt: new Date().toISOString() });
      this.emit(job.id, { event: 'cancelled', data: { reason: 'shutdown' } });
    }
    await Promise.all(this.chains.values());
  }
}

/** The event that tells a new subscriber where the job stands. */
function currentEvent(status: JobStatus): StreamEvent {
  switch (status.state) {
    case 'queued':
      return { event: 'queued', data: { queuePosition: status.queuePosition } };
    case 'running':
      return { event: 'started', data: { totalSteps: status.totalSteps, step: status.step } };
    case 'done':
      return { event: 'done', data: { images: status.images, timings: status.timings } };
    case 'failed':
      return { event: 'error', data: status.error ?? { code: 'generation_failed', message: 'failed' } };
    case 'cancelled':
      return { event: 'cancelled', data: {} };
  }
}

/** Refuses bytes that are not a decodable image within the pixel limit, before the job is queued; returns its size. */
async function checkImage(bytes: Uint8Array, name: string): Promise<{ width: number; height: number }> {
  if (bytes.byteLength > LIMITS.maxImageBytes) throw new ApiFailure(413, 'image_too_large', `${name} is ${bytes.byteLength} bytes, over the ${LIMITS.maxImageBytes}-byte limit`);
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, { limitInputPixels: LIMITS.maxImagePixels }).metadata();
  } catch (error) {
    throw new ApiFailure(400, 'invalid_image', `${name} is not an image this server reads (PNG, JPEG, WebP, GIF): ${(error as Error).message}`);
  }
  const pixels = (metadata.width ?? 0) * (metadata.height ?? 0);
  if (!pixels) throw new ApiFailure(400, 'invalid_image', `${name} has no size`);
  if (pixels > LIMITS.maxImagePixels) throw new ApiFailure(400, 'image_too_large', `${name} is ${metadata.width}×${metadata.height}, over the ${LIMITS.maxImagePixels / 1024 / 1024}-megapixel limit`);
  return { width: metadata.width!, height: metadata.height! };
}

/** A small PNG data URL of a preview (images larger than PREVIEW_SIDE are scaled down). */
async function previewDataUrl(image: GeneratedImage): Promise<string> {
  let pipeline = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels: 3 } });
  if (Math.max(image.width, image.height) > PREVIEW_SIDE) pipeline = pipeline.resize(PREVIEW_SIDE, PREVIEW_SIDE, { fit: 'inside' });
  return `data:image/png;base64,${(await pipeline.png().toBuffer()).toString('base64')}`;
}
