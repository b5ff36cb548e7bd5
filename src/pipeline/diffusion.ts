// The latent-diffusion half that Kosmos-G shares with Stable Diffusion (reference §5): seeded
// latents, the denoising loop with classifier-free guidance through a chosen scheduler, optional
// ControlNet residuals and LoRA, and the VAE decode with Kosmos-G's post-processing. Both pipelines
// (KosmosGPipeline, TextToImagePipeline) produce the condition embeddings and hand them to `sample`.
//
// Guidance: the batch is [unconditional × n, conditional × n] and ε = ε_u + g·(ε_c − ε_u). For
// g ≤ 1 the unconditional half is not run at all and ε = ε_c (diffusers' rule, do_classifier_free_
// guidance = g > 1); the official Kosmos-G code instead keeps the doubled batch and also emits the
// unconditional images, a quirk not reproduced here. So guidance 1 is exactly the conditional branch.
// Scales outside [0, MAX_GUIDANCE] are refused, and a loop whose latents stop being finite (a scale
// that blows them up) stops with an error rather than decoding a grey image.
//
// Memory: `resolve` estimates the generation's peak (memory.ts) and refuses it above `maxMemory`
// (default: half of the machine's memory), before any graph runs. With `lowMemory` the U-Net's
// session is released when the loop ends and the VAE's after each decode.
//
// Noise: image i of a call starts from gaussianNoise(seed + i, (1, C, h, w)) × init_noise_sigma
// (models/gaussian_noise.ts: xoshiro128** and Marsaglia's polar method from IEEE basic operations,
// bit-identical on every platform, thread count and device). One image of a grid is therefore
// reproduced alone with seed + i and numImages 1.
import { join, platform } from '#platform';
import { checkpointInitialized } from '../nn/layers.js';
import { Graph } from '../graph/graph.js';
import type { Runtime } from '../graph/runtime.js';
import type { HostTensor } from '../onnx/dtype.js';
import { readConfigJson } from '../io/config-json.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { AutoencoderKL, imageToBytes, parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { gaussianNoise } from '../models/gaussian_noise.js';
import { LoraAdapter } from '../models/lora.js';
import { UNet2DConditionModel, parseUNetConfig } from '../models/unet_2d_condition.js';
import { constantBindings } from '../nn/module.js';
import { type Scheduler, type SchedulerConfig, schedulerByName, schedulerFromConfig, schedulerNames } from '../schedulers/index.js';
import { type ControlNetOptions, type ControlRunSettings, type ControlSource, type LoadedControlNet, controlInput, controlKeep, controlOutputSize, controlSettings, loadControlNet, readControlImage } from './controlnet.js';
import { checkGenerationMemory, defaultMemoryLimit, estimateGenerationMemory, type GenerationRequest, type MemoryEstimate } from './memory.js';
import { type PhaseListener, timedPhase } from './phases.js';
import { BoundModel, type WeightQuantization, mergedContext } from './weights.js';

export type SchedulerChoice = keyof typeof schedulerNames;
export const SCHEDULER_CHOICES = Object.keys(schedulerNames) as SchedulerChoice[];

/** An RGB image: row-major, 3 bytes per pixel. */
export interface GeneratedImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface StepInfo {
  /** 0-based index of the step just taken. */
  step: number;
  steps: number;
  timestep: number;
  /** The decoded current estimate of the clean images, on the steps `previewEvery` selects. */
  preview?: GeneratedImage[];
}

export interface LoraOptions {
  /** A LoRA safetensors file for the U-Net (diffusers/PEFT or kohya layout). */
  file: string;
  /** Strength (cross_attention_kwargs scale); default 1. */
  scale?: number;
}

/** Everything `generate` takes besides the condition itself. */
export interface SamplingOptions {
  steps?: number;
  guidanceScale?: number;
  scheduler?: SchedulerChoice;
  seed?: number;
  numImages?: number;
  width?: number;
  height?: number;
  /** Initial latents (numImages, C, height/f, width/f) instead of seeded noise; scaled by init_noise_sigma as diffusers does. */
  latents?: HostTensor;
  controlnet?: ControlNetOptions;
  lora?: LoraOptions;
  onStep?: (info: StepInfo) => void;
  /** Hears each network's time: unet (the denoising loop), vae (each decode). */
  onPhase?: PhaseListener;
  /** Decode a preview every this many steps (and at the last); 0 or absent: none. */
  previewEvery?: number;
  /** Refuse a generation whose estimated peak memory is over this many bytes; default half of the machine's memory. */
  maxMemory?: number;
}

/** The settings a generation actually used, defaults filled in (the CLI's JSON sidecar). */
export interface SamplingSettings {
  steps: number;
  guidanceScale: number;
  scheduler: SchedulerChoice;
  seed: number;
  numImages: number;
  width: number;
  height: number;
  latents: 'seeded' | 'given';
  controlnet: ({ model: string } & ControlRunSettings) | null;
  lora: { file: string; scale: number } | null;
}

/** Models and inputs the options add to the U-Net step, loaded before sampling starts. */
export interface SamplingExtras {
  /** The ControlNet, its (1, 3, H, W) image in [0, 1], and whether it was loaded here (and is closed after use). */
  control: { model: LoadedControlNet; image: HostTensor<'float32'>; owned: boolean } | null;
  lora: { file: string; scale: number; adapter: LoraAdapter } | null;
}

export const DEFAULT_STEPS = 50;
/** The Kosmos-G demo's default (the reference's sample() default is 7.5). */
export const DEFAULT_GUIDANCE = 6;
/** Largest guidance scale accepted; common scales are 3 to 15, and far larger ones only saturate the latents. */
export const MAX_GUIDANCE = 50;
const MAX_IMAGES = 64;
/** Largest width or height accepted (SD 1.5 works at 512); whether a size fits in memory is the estimate's call (memory.ts). */
const MAX_SIDE = 4096;

export interface DiffusionDefaults {
  scheduler: SchedulerChoice;
}

/** The denoising loop's models: U-Net, VAE and the training scheduler config, all on one runtime. */
export class LatentDiffusion {
  /** LoRA files loaded for this U-Net, by path. */
  private readonly loras = new Map<string, Promise<LoraAdapter>>();

  private constructor(
    readonly runtime: Runtime,
    readonly unet: BoundModel<UNet2DConditionModel>,
    readonly vae: BoundModel<AutoencoderKL>,
    readonly schedulerConfig: SchedulerConfig,
    private readonly lowMemory: boolean,
  ) {}

  /** `quantize`: the U-Net's linear layers as MatMulNBits blocks (the VAE, nearly all convolutions, stays float). */
  static async load(runtime: Runtime, directories: { unet: string; vae: string; scheduler: string }, options: { lowMemory?: boolean; quantize?: WeightQuantization | undefined } = {}): Promise<LatentDiffusion> {
    const schedulerConfig = (await readConfigJson(join(directories.scheduler, 'scheduler_config.json'))) as SchedulerConfig;
    try {
      schedulerFromConfig(schedulerConfig);
    } catch (error) {
      throw new Error(`scheduler: ${(error as Error).message}`);
    }
    const unet = await BoundModel.open('unet', directories.unet, (config) => new UNet2DConditionModel(parseUNetConfig(config), checkpointInitialized), undefined, { quantize: options.quantize });
    try {
      const vae = await BoundModel.open(
        'vae',
        directories.vae,
        (config) => new AutoencoderKL(parseAutoencoderKLConfig(config), { random: checkpointInitialized }),
        (graph, model, reader) => model.externalWeights(graph, reader),
      );
      const latentChannels = vae.model.config.latent_channels;
      if (unet.model.config.in_channels !== latentChannels || unet.model.config.out_channels !== latentChannels) {
        await vae.close();
        throw new Error(`unet has ${unet.model.config.in_channels} input and ${unet.model.config.out_channels} output channels, the VAE's latents ${latentChannels}`);
      }
      return new LatentDiffusion(runtime, unet, vae, schedulerConfig, options.lowMemory ?? false);
    } catch (error) {
      await unet.close();
      throw error;
    }
  }

  /** Image sides must be multiples of this: the VAE's downsampling times the U-Net's. */
  get sizeMultiple(): number {
    return this.vae.model.downsamplingFactor * this.unet.model.sizeMultiple;
  }

  /** Width of the condition the U-Net cross-attends to (77 × this). */
  get crossAttentionDim(): number {
    const dims = this.unet.model.config.cross_attention_dim;
    const values = Array.isArray(dims) ? dims : [dims];
    if (new Set(values).size !== 1) throw new Error(`unet: per-block cross_attention_dim ${values.join(', ')} differ; one condition width is needed`);
    return values[0]!;
  }

  /** Default output side: the U-Net's sample_size in pixels (512 for SD 1.5). */
  get defaultSize(): number {
    return (this.unet.model.config.sample_size ?? 64) * this.vae.model.downsamplingFactor;
  }

  /** Checks the options and fills in defaults; every user error is thrown here, before any work. */
  resolve(options: SamplingOptions, defaults: DiffusionDefaults, control?: Pick<ControlSource, 'name' | 'width' | 'height'>): SamplingSettings {
    const steps = options.steps ?? DEFAULT_STEPS;
    if (!Number.isInteger(steps) || steps < 1 || steps > 1000) throw new Error(`steps must be an integer from 1 to 1000, got ${steps}`);
    const guidanceScale = options.guidanceScale ?? DEFAULT_GUIDANCE;
    if (!Number.isFinite(guidanceScale) || guidanceScale < 0 || guidanceScale > MAX_GUIDANCE) {
      throw new Error(`guidance scale must be a finite number from 0 to ${MAX_GUIDANCE} (≤ 1: the conditional branch alone), got ${guidanceScale}`);
    }
    const scheduler = options.scheduler ?? defaults.scheduler;
    if (!SCHEDULER_CHOICES.includes(scheduler)) throw new Error(`unknown scheduler ${JSON.stringify(scheduler)} (choose ${SCHEDULER_CHOICES.join(', ')})`);
    if (scheduler === 'pndm' && steps < 2) throw new Error('the pndm scheduler needs at least 2 steps');
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
    const numImages = options.numImages ?? 1;
    if (!Number.isInteger(numImages) || numImages < 1 || numImages > MAX_IMAGES) throw new Error(`number of images must be an integer from 1 to ${MAX_IMAGES}, got ${numImages}`);
    if (!Number.isSafeInteger(seed + numImages - 1)) throw new Error(`seed ${seed} + ${numImages} images leaves the safe integer range`);
    // A control image sets the output size the width and height leave open (controlnet.ts).
    const { width, height } = control ? controlOutputSize(control, options, this.defaultSize, this.sizeMultiple) : { width: options.width ?? this.defaultSize, height: options.height ?? this.defaultSize };
    const multiple = this.sizeMultiple;
    for (const [name, value] of [['width', width], ['height', height]] as const) {
      if (!Number.isInteger(value) || value < multiple || value % multiple !== 0) {
        throw new Error(`${name} ${value} is not a positive multiple of ${multiple} (VAE downsampling ${this.vae.model.downsamplingFactor} × U-Net downsampling ${this.unet.model.sizeMultiple})`);
      }
      if (value > MAX_SIDE) throw new Error(`${name} ${value} is over the ${MAX_SIDE}-pixel limit`);
    }
    if (options.latents) this.checkLatents(options.latents, numImages, width, height);
    const previewEvery = options.previewEvery ?? 0;
    if (!Number.isInteger(previewEvery) || previewEvery < 0) throw new Error(`previewEvery must be a non-negative integer, got ${previewEvery}`);
    let controlnet: SamplingSettings['controlnet'] = null;
    if (options.controlnet) {
      const model = options.controlnet.model;
      controlnet = { model: typeof model === 'string' ? model : model.directory, ...controlSettings(options.controlnet) };
    }
    let lora: SamplingSettings['lora'] = null;
    if (options.lora) {
      const scale = options.lora.scale ?? 1;
      if (!options.lora.file) throw new Error('LoRA needs a file');
      if (!Number.isFinite(scale)) throw new Error(`LoRA scale must be a finite number, got ${scale}`);
      lora = { file: options.lora.file, scale };
    }
    const maxMemory = options.maxMemory ?? defaultMemoryLimit();
    if (!Number.isSafeInteger(maxMemory) || maxMemory < 1) throw new Error(`maxMemory must be a positive number of bytes, got ${maxMemory}`);
    const request: GenerationRequest = { width, height, numImages, guided: guidanceScale > 1, controlnet: controlnet !== null };
    checkGenerationMemory(this.memoryEstimate(request), request, platform.residentMemory(), maxMemory);
    return { steps, guidanceScale, scheduler, seed, numImages, width, height, latents: options.latents ? 'given' : 'seeded', controlnet, lora };
  }

  /** What a generation adds to the process's memory (memory.ts). */
  memoryEstimate(request: GenerationRequest): MemoryEstimate {
    const parameters = this.unet.model.parameterCount() + this.vae.model.parameterCount();
    return estimateGenerationMemory({ unet: this.unet.model.config, vae: this.vae.model.config, parameters }, request);
  }

  private latentShape(numImages: number, width: number, height: number): number[] {
    const factor = this.vae.model.downsamplingFactor;
    return [numImages, this.vae.model.config.latent_channels, height / factor, width / factor];
  }

  private checkLatents(latents: HostTensor, numImages: number, width: number, height: number): void {
    const expected = this.latentShape(numImages, width, height);
    if (latents.dtype !== 'float32' || latents.shape.join() !== expected.join() || latents.data.length !== expected.reduce((p, q) => p * q, 1)) {
      throw new Error(`latents must be float32 [${expected.join(', ')}], got ${latents.dtype} [${latents.shape.join(', ')}]`);
    }
  }

  /** A fresh scheduler by name over the model's training config; DPM-Solver++ ends as diffusers 0.21.4 (Kosmos-G) did. */
  createScheduler(name: SchedulerChoice): Scheduler {
    const config: SchedulerConfig = name === 'dpm++' ? { final_sigmas_type: 'sigma_min', ...this.schedulerConfig } : this.schedulerConfig;
    return schedulerByName(name, config);
  }

  /**
   * Denoises from seeded (or given) latents under `condition` (1, S, D) and `unconditional`
   * (1, S, D) and decodes the result. `settings` comes from `resolve`.
   */
  async sample(condition: HostTensor, unconditional: HostTensor, settings: SamplingSettings, options: SamplingOptions, extras?: SamplingExtras): Promise<GeneratedImage[]> {
    const latents = await timedPhase('unet', options.onPhase, () => this.denoise(condition, unconditional, settings, options, extras));
    return this.decode(latents.data as Float32Array, latents.shape, options.onPhase);
  }

  /**
   * Loads what the options add to the U-Net step (ControlNet and its image, LoRA), so that a bad
   * file fails before any condition is encoded. Release the result with `releaseExtras`.
   */
  async prepare(settings: SamplingSettings, options: SamplingOptions, controlSource?: ControlSource): Promise<SamplingExtras> {
    const lora = settings.lora ? { ...settings.lora, adapter: await this.loadLora(settings.lora.file) } : null;
    const control = settings.controlnet && options.controlnet ? await this.prepareControl(options.controlnet, settings, controlSource) : null;
    return { control, lora };
  }

  async releaseExtras(extras: SamplingExtras): Promise<void> {
    if (extras.control?.owned) await extras.control.model.close();
  }

  /**
   * The denoising loop alone: the final latents (numImages, C, h, w), before the VAE. The
   * conditions are (1, 77, d), shared by every image, or (numImages, 77, d), one per image (several
   * prompts in one batch).
   */
  async denoise(condition: HostTensor, unconditional: HostTensor, settings: SamplingSettings, options: SamplingOptions, extras?: SamplingExtras): Promise<HostTensor> {
    const { numImages: n, width, height, guidanceScale } = settings;
    const guided = guidanceScale > 1;
    const embeddings = guided ? repeatRows([[unconditional, n], [condition, n]]) : repeatRows([[condition, n]]);
    if (embeddings.shape[2] !== this.crossAttentionDim) throw new Error(`the condition is ${embeddings.shape[2]} wide, the U-Net cross-attends to ${this.crossAttentionDim}`);
    const batch = embeddings.shape[0]!;
    const shape = this.latentShape(n, width, height);
    const scheduler = this.createScheduler(settings.scheduler);
    scheduler.setTimesteps(settings.steps);

    let latents = options.latents ? Float32Array.from(options.latents.data as Float32Array) : seededNoise(settings.seed, shape);
    latents = latents.map((value) => value * scheduler.initNoiseSigma);

    const prepared = extras ?? (await this.prepare(settings, options));
    const { lora } = prepared;
    // (1, 3, H, W) → (batch, 3, H, W): the same control image for every image and both guidance halves.
    const control = prepared.control && { model: prepared.control.model, image: repeatRows([[prepared.control.image, batch]]) };
    try {
      const timesteps = scheduler.timesteps;
      for (const [step, timestep] of timesteps.entries()) {
        const modelInput = scheduler.scaleModelInput(latents, timestep);
        const sample = guided ? concatenate(modelInput, modelInput) : modelInput;
        const feeds: Record<string, HostTensor> = {
          sample: { dtype: 'float32', shape: [batch, ...shape.slice(1)], data: sample },
          timestep: { dtype: 'float32', shape: [], data: Float32Array.of(timestep) },
          encoder_hidden_states: embeddings,
        };
        if (control) {
          const keep = controlKeep(step, timesteps.length, settings.controlnet!.guidanceStart, settings.controlnet!.guidanceEnd);
          feeds['controlnet_cond'] = control.image;
          feeds['conditioning_scale'] = { dtype: 'float32', shape: [], data: Float32Array.of(settings.controlnet!.conditioningScale * keep) };
        }
        const session = await this.unetSession(feeds, control?.model ?? null, lora);
        const { noise_pred: prediction } = await session.run(feeds);
        const noise = guided ? applyGuidance(prediction!.data as Float32Array, guidanceScale) : (prediction!.data as Float32Array);
        const result = scheduler.step(noise, timestep, latents);
        latents = result.prevSample;
        if (!allFinite(latents)) {
          throw new Error(`sampling diverged at step ${step + 1} of ${timesteps.length}: the latents are no longer finite (guidance scale ${guidanceScale})`);
        }
        if (options.onStep) {
          const wantPreview = options.previewEvery && ((step + 1) % options.previewEvery === 0 || step === timesteps.length - 1);
          const preview = wantPreview ? await this.decode(result.predOriginalSample ?? latents, shape, options.onPhase) : undefined;
          options.onStep({ step, steps: timesteps.length, timestep, ...(preview ? { preview } : {}) });
        }
      }
    } finally {
      if (this.lowMemory) await this.runtime.release(unetKey(control?.model ?? null, lora));
      if (!extras) await this.releaseExtras(prepared);
    }
    return { dtype: 'float32', shape, data: latents };
  }

  private async prepareControl(options: ControlNetOptions, settings: SamplingSettings, source?: ControlSource): Promise<NonNullable<SamplingExtras['control']>> {
    const image = controlInput(source ?? (await readControlImage(options)), settings.width, settings.height, settings.controlnet!.preprocess);
    const owned = typeof options.model === 'string';
    const model = typeof options.model === 'string' ? await loadControlNet(options.model) : options.model;
    const unetChannels = this.unet.model.config.block_out_channels.join();
    const controlWidths = [model.model.config.cross_attention_dim].flat();
    const problem =
      model.model.config.block_out_channels.join() !== unetChannels
        ? `block_out_channels [${model.model.config.block_out_channels.join(', ')}] do not match the U-Net's [${unetChannels}]`
        : controlWidths.some((width) => width !== this.crossAttentionDim)
          ? `it cross-attends to ${controlWidths.join('/')}-wide conditions, the U-Net to ${this.crossAttentionDim}`
          : null;
    if (problem) {
      if (owned) await model.close();
      throw new Error(`controlnet: ${problem}`);
    }
    return { model, image, owned };
  }

  private loadLora(file: string): Promise<LoraAdapter> {
    let adapter = this.loras.get(file);
    if (!adapter) {
      adapter = (async () => {
        const reader = await openSafetensors(file).catch((error: Error) => {
          throw new Error(`LoRA ${file}: ${error.message}`);
        });
        try {
          return await LoraAdapter.fromSafetensors(this.unet.model, reader);
        } finally {
          await reader.close();
        }
      })();
      adapter.catch(() => this.loras.delete(file));
      this.loras.set(file, adapter);
    }
    return adapter;
  }

  /** The U-Net step graph (with ControlNet and LoRA when given), compiled once per shape signature. */
  private unetSession(feeds: Record<string, HostTensor>, controlnet: LoadedControlNet | null, lora: { file: string; scale: number; adapter: LoraAdapter } | null) {
    const shapes = Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, tensor.shape]));
    const externalData = [...this.unet.externalData, ...(controlnet?.externalData ?? [])];
    return this.runtime.compile(
      unetKey(controlnet, lora),
      shapes,
      () => {
        const graph = new Graph('unet_step');
        const input = (name: string) => graph.input(name, feeds[name]!.dtype, feeds[name]!.shape);
        const [sample, timestep, hidden] = [input('sample'), input('timestep'), input('encoder_hidden_states')];
        const unetContext = this.unet.bind(graph);
        const context = lora ? mergedContext(graph, [{ module: this.unet.model, context: unetContext }, { module: lora.adapter, context: constantBindings(graph, lora.adapter) }]) : unetContext;
        const adapter = lora?.adapter.runtime(this.unet.model, context, lora.scale);
        let residuals = {};
        if (controlnet) {
          const control = graph.scope('controlnet', () =>
            controlnet.model.forward(controlnet.bind(graph), sample, timestep, hidden, input('controlnet_cond'), { conditioningScale: input('conditioning_scale'), fusedAttention: true }),
          );
          residuals = { downBlockAdditionalResiduals: control.downBlockResiduals, midBlockAdditionalResidual: control.midBlockResidual };
        }
        const prediction = this.unet.model.forward(context, sample, timestep, hidden, { ...residuals, adapter, fusedAttention: true });
        return graph.toModel({ noise_pred: prediction });
      },
      { externalData },
    );
  }

  /** Latents (n, C, h, w) → RGB images with clamp(x/2 + 0.5, 0, 1)·255 rounded half to even. */
  decode(latents: Float32Array, shape: readonly number[], onPhase?: PhaseListener): Promise<GeneratedImage[]> {
    return timedPhase('vae', onPhase, async () => {
      const session = await this.runtime.compile(
        'vae_decode',
        { latents: shape },
        () => {
          const graph = new Graph('vae_decode');
          const input = graph.input('latents', 'float32', shape);
          return graph.toModel({ image: this.vae.model.decodeToImage(this.vae.bind(graph), input) });
        },
        { externalData: this.vae.externalData },
      );
      try {
        const { image } = await session.run({ latents: { dtype: 'float32', shape: [...shape], data: latents } });
        return splitImages(image!);
      } finally {
        if (this.lowMemory) await this.runtime.release('vae_decode');
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.unet.close(), this.vae.close()]);
  }
}

/** The U-Net step graph's cache key; the LoRA scale is baked into the graph, one compile per (file, scale), as a generation keeps both fixed. */
function unetKey(controlnet: LoadedControlNet | null, lora: { file: string; scale: number } | null): string {
  return ['unet', controlnet ? `controlnet:${controlnet.directory}` : '', lora ? `lora:${lora.file}:${lora.scale}` : ''].join('|');
}

/** Seeded standard normal latents: image i from seed + i (see the file comment). */
export function seededNoise(seed: number, shape: readonly number[]): Float32Array {
  const [n, ...rest] = shape;
  const perImage = rest.reduce((p, q) => p * q, 1);
  const data = new Float32Array(n! * perImage);
  for (let i = 0; i < n!; i++) data.set(gaussianNoise(seed + i, [1, ...rest]).data as Float32Array, i * perImage);
  return data;
}

/** Rows of (1, …) tensors, each repeated: [[a, 2], [b, 2]] → (4, …) = [a, a, b, b]; a (count, …) tensor is taken as it is. */
export function repeatRows(parts: readonly [HostTensor, number][]): HostTensor<'float32'> {
  const [first] = parts[0]!;
  const rowShape = first.shape.slice(1);
  const rowSize = rowShape.reduce((p, q) => p * q, 1);
  const rows = parts.reduce((total, [, count]) => total + count, 0);
  const data = new Float32Array(rows * rowSize);
  let offset = 0;
  for (const [tensor, count] of parts) {
    // One row repeated `count` times, or `count` rows as they are (one condition per image).
    if (tensor.dtype !== 'float32' || (tensor.shape[0] !== 1 && tensor.shape[0] !== count) || tensor.shape.slice(1).join() !== rowShape.join()) {
      throw new Error(`expected float32 [1 or ${count}, ${rowShape.join(', ')}] embeddings, got ${tensor.dtype} [${tensor.shape.join(', ')}]`);
    }
    if (tensor.shape[0] === count && count !== 1) {
      data.set(tensor.data as Float32Array, offset);
      offset += count * rowSize;
    } else {
      for (let i = 0; i < count; i++, offset += rowSize) data.set(tensor.data as Float32Array, offset);
    }
  }
  return { dtype: 'float32', shape: [rows, ...rowShape], data };
}

function allFinite(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return false;
  return true;
}

function concatenate(a: Float32Array, b: Float32Array): Float32Array {
  const joined = new Float32Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** ε = ε_u + g·(ε_c − ε_u) over a [uncond × n, cond × n] prediction, in float32 steps as torch computes it. */
export function applyGuidance(prediction: Float32Array, scale: number): Float32Array {
  const half = prediction.length / 2;
  const out = new Float32Array(half);
  const g = Math.fround(scale);
  for (let i = 0; i < half; i++) {
    const unconditional = prediction[i]!;
    out[i] = unconditional + Math.fround(g * Math.fround(prediction[half + i]! - unconditional));
  }
  return out;
}

/** (n, 3, H, W) floats in [0, 1] → n interleaved RGB byte images. */
function splitImages(image: HostTensor): GeneratedImage[] {
  const [n, channels, height, width] = image.shape as [number, number, number, number];
  if (channels !== 3) throw new Error(`the VAE decodes ${channels} channels; RGB output needs 3`);
  const bytes = imageToBytes(image); // (n, 3, H, W) bytes
  const plane = height * width;
  return Array.from({ length: n }, (_, index) => {
    const data = new Uint8Array(plane * 3);
    const base = index * 3 * plane;
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) data[i * 3 + c] = bytes[base + c * plane + i]!;
    return { width, height, data };
  });
}
