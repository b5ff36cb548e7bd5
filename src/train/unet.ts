// U-Net-mini stage: a UNet2DConditionModel (diffusers layout) trained with Stable Diffusion's
// objective on world scenes: latents from the frozen VAE-mini (posterior sample × scaling factor),
// conditioned by cross-attention on the frozen CLIP-mini text encoder's last_hidden_state over 77
// tokens (as the text-to-image pipeline encodes prompts), ε-prediction with the SD 1.5 scaled-linear
// betas, and the caption replaced by "" for a share of the samples so classifier-free guidance has
// an unconditional branch. The frozen encoders run on the fly when a batch is built; their time is
// part of the data share.
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import type { SessionOptions } from '../graph/session.js';
import type { LossContext, TensorSpec } from '../graph/train-step.js';
import { mseLoss } from '../graph/ops/nn.js';
import { writeSafetensors } from '../io/safetensors.js';
import { AutoencoderKL, readAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { CLIPTextModel } from '../models/clip_text.js';
import { gaussianNoise } from '../models/gaussian_noise.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { contextFromValues } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { SD15_SCHEDULER_CONFIG } from '../pipeline/random_pipeline.js';
import { DDPMScheduler } from '../schedulers/index.js';
import { ClipTokenizer } from '../tokenizers/clip_bpe.js';
import { deriveSeed, Random } from '../util/random.js';
import { attributionMarkdown } from '../world/attribution.js';
import { baseConfigSchema, modelConfigSchema } from './config.js';
import { CaptionedSceneStream, captionedScenesSchema } from './captioned-scenes.js';
import { encodeCaptions } from './clip.js';
import { ForwardSession } from './forward.js';
import { imageGridPng, imagesToTensor } from './images.js';
import { LatentSampler } from './latent-sampler.js';
import type { StageDefinition } from './stage.js';
import { EVAL_SCENE_SEED, openWorld, worldDataSchema } from './world-data.js';

/** The config fields of every ε-prediction stage (unet, lora, controlnet) besides its models. */
export const noisedTrainingFields = {
  /** Share of samples whose caption is replaced by "" (classifier-free guidance). */
  captionDropout: z.number().min(0).max(1).default(0.1),
  /**
   * Min-SNR-γ loss weighting (Hang et al. 2023; diffusers' `--snr_gamma`, 5 is the usual value):
   * each sample's ε-MSE is weighted by min(SNR(t), γ) / SNR(t), which stops the nearly noise-free
   * timesteps from dominating the gradient and speeds up learning of the layout. null: plain MSE.
   */
  snrGamma: z.number().positive().nullable().default(null),
  data: worldDataSchema,
  scenes: captionedScenesSchema.default({ singleSubjectFraction: 0.3, shortCaptionFraction: 0.5 }),
};

/** The sample grids' generation settings (DPM-Solver++ with guidance), with a stage's defaults. */
export function previewSchema(defaults: { count: number; steps: number; guidanceScale: number }) {
  return z.strictObject({ count: z.number().int().positive(), steps: z.number().int().positive(), guidanceScale: z.number().min(1) }).default(defaults);
}

export const unetConfigSchema = baseConfigSchema.extend({
  stage: z.literal('unet'),
  /** diffusers UNet2DConditionModel config.json keys; sample_size is the latent side. */
  model: modelConfigSchema(parseUNetConfig, 'model'),
  /** Frozen components, folders relative to the working directory. */
  vae: z.string().min(1),
  textEncoder: z.string().min(1),
  tokenizer: z.string().min(1),
  /** Noise schedule (diffusers scheduler config); Stable Diffusion 1.5's by default. */
  scheduler: z.record(z.string(), z.unknown()).default({ ...SD15_SCHEDULER_CONFIG }),
  ...noisedTrainingFields,
  /** Sample grids: evaluation-seed captions generated with DPM-Solver++ and guidance. */
  preview: previewSchema({ count: 8, steps: 25, guidanceScale: 4 }),
});

export type UnetConfig = z.output<typeof unetConfigSchema>;

function initialModel(config: UnetConfig): UNet2DConditionModel {
  const random = new Random(deriveSeed(config.seed, 0x0e7));
  return new UNet2DConditionModel(config.model, random);
}

/** The frozen VAE encoder and CLIP-mini text encoder, compiled for one batch size. */
export class FrozenEncoders {
  private constructor(
    readonly vae: AutoencoderKL,
    readonly textEncoder: CLIPTextModel,
    readonly tokenizer: ClipTokenizer,
    private readonly latentsSession: ForwardSession,
    private readonly textSession: ForwardSession,
    private readonly batchSize: number,
  ) {}

  static async open(config: Pick<UnetConfig, 'vae' | 'textEncoder' | 'tokenizer' | 'model'>, batchSize: number, session: SessionOptions): Promise<FrozenEncoders> {
    const vae = await AutoencoderKL.fromPretrained(config.vae);
    const textEncoder = await CLIPTextModel.fromPretrained(config.textEncoder, { withProjection: false });
    const tokenizer = await ClipTokenizer.fromPretrained(config.tokenizer);
    const { sample_size: side, latent_channels: channels } = vae.config;
    const latentSide = side / vae.downsamplingFactor;
    if (config.model.in_channels !== channels || config.model.out_channels !== channels) throw new Error(`the U-Net has ${config.model.in_channels}/${config.model.out_channels} channels, the VAE's latents ${channels}`);
    if (config.model.sample_size !== null && config.model.sample_size !== latentSide) throw new Error(`the U-Net's sample_size is ${config.model.sample_size}, the VAE's latents are ${latentSide}×${latentSide}`);
    const crossDim = Array.isArray(config.model.cross_attention_dim) ? config.model.cross_attention_dim[0] : config.model.cross_attention_dim;
    if (crossDim !== textEncoder.config.hidden_size) throw new Error(`cross_attention_dim ${crossDim} differs from the text encoder's hidden_size ${textEncoder.config.hidden_size}`);
    const latentsSession = await ForwardSession.create(
      vae,
      { image: { dtype: 'float32', shape: [batchSize, 3, side, side] }, noise: { dtype: 'float32', shape: [batchSize, channels, latentSide, latentSide] } },
      (context, { image, noise }) => ({ latents: vae.encodeToLatents(context, image!, noise!) }),
      session,
    );
    const tokens = textEncoder.config.max_position_embeddings;
    const textSession = await ForwardSession.create(
      textEncoder,
      { input_ids: { dtype: 'int64', shape: [batchSize, tokens] } },
      (context, { input_ids }) => ({ last_hidden_state: textEncoder.forward(context, input_ids!).lastHiddenState }),
      session,
    );
    return new FrozenEncoders(vae, textEncoder, tokenizer, latentsSession, textSession, batchSize);
  }

  get latentShape(): number[] {
    const side = this.vae.config.sample_size / this.vae.downsamplingFactor;
    return [this.vae.config.latent_channels, side, side];
  }

  /** Scaled latents (B, C, h, w) of RGBA scenes, posterior sampled with `noise` (B, C, h, w). */
  async latents(images: Parameters<typeof imagesToTensor>[0], noise: HostTensor): Promise<HostTensor> {
    return (await this.latentsSession.run(this.vae.stateDict(), { image: imagesToTensor(images), noise }))['latents']!;
  }

  /**
   * last_hidden_state (N, 77, D) of any number of captions, tokenised as the text-to-image pipeline
   * does; run in chunks of the compiled batch size, the last one padded with "".
   */
  async encodeText(captions: readonly string[]): Promise<HostTensor> {
    const { max_position_embeddings: tokens, hidden_size: width } = this.textEncoder.config;
    const out = new Float32Array(captions.length * tokens * width);
    for (let start = 0; start < captions.length; start += this.batchSize) {
      const chunk = captions.slice(start, start + this.batchSize);
      const padded = [...chunk, ...Array.from({ length: this.batchSize - chunk.length }, () => '')];
      const ids = encodeCaptions(this.tokenizer, padded, tokens);
      const hidden = (await this.textSession.run(this.textEncoder.stateDict(), { input_ids: ids }))['last_hidden_state']!.data as Float32Array;
      out.set(hidden.subarray(0, chunk.length * tokens * width), start * tokens * width);
    }
    return { dtype: 'float32', shape: [captions.length, tokens, width], data: out };
  }

  async release(): Promise<void> {
    await Promise.all([this.latentsSession.release(), this.textSession.release()]);
  }
}

/**
 * model_index.json of a world-sd folder: the Stable Diffusion components plus the CLIP-mini vision
 * tower when the folder holds one (the CLIP-text path reads the CLIP tokenizer from clip_tokenizer/).
 */
async function writeModelIndex(directory: string): Promise<void> {
  const index: Record<string, unknown> = {
    _class_name: 'StableDiffusionPipeline',
    vae: ['diffusers', 'AutoencoderKL'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    clip_tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    scheduler: ['diffusers', 'PNDMScheduler'],
  };
  const hasVision = await stat(join(directory, 'vision')).then((entry) => entry.isDirectory(), () => false);
  if (hasVision) index['vision'] = ['open_clip', 'OpenClipVisionModel'];
  await writeFile(join(directory, 'model_index.json'), `${JSON.stringify(index, null, 2)}\n`);
}

/**
 * ε-prediction loss: MSE between the U-Net's output on the noisy latents and the added noise, each
 * sample weighted by `loss_weights` (B) when the batch has them (min-SNR-γ).
 */
export function unetNoiseLoss(model: UNet2DConditionModel, { graph, parameters, batch }: LossContext): Value {
  const context = contextFromValues(graph, model, parameters);
  const prediction = model.forward(context, batch['noisy_latents']!, batch['timesteps']!, batch['encoder_hidden_states']!); // (B, C, h, w)
  return mseLoss(prediction, batch['noise']!, batch['loss_weights']);
}

/** Min-SNR-γ weights of ε-prediction: min(SNR, γ) / SNR with SNR(t) = ᾱ_t / (1 − ᾱ_t). */
export function minSnrWeights(alphasCumprod: readonly number[], timesteps: readonly number[], gamma: number): Float32Array {
  return Float32Array.from(timesteps, (timestep) => {
    const alphaBar = alphasCumprod[timestep]!;
    const snr = alphaBar / (1 - alphaBar);
    return Math.min(snr, gamma) / snr;
  });
}

/** What an ε-prediction stage draws a batch with (unet, lora, controlnet). */
export interface NoisedBatchSource {
  seed: number;
  captionDropout: number;
  snrGamma: number | null;
  encoders: Pick<FrozenEncoders, 'latents' | 'encodeText' | 'latentShape' | 'textEncoder'>;
  noiseSchedule: DDPMScheduler;
}

/** The batch layout of `noisedBatch` for `batchSize` scenes. */
export function noisedBatchSpec(source: NoisedBatchSource, batchSize: number): Record<string, TensorSpec> {
  const latentShape = [batchSize, ...source.encoders.latentShape];
  const text = source.encoders.textEncoder.config;
  return {
    noisy_latents: { dtype: 'float32', shape: latentShape },
    timesteps: { dtype: 'float32', shape: [batchSize] },
    encoder_hidden_states: { dtype: 'float32', shape: [batchSize, text.max_position_embeddings, text.hidden_size] },
    noise: { dtype: 'float32', shape: latentShape },
    ...(source.snrGamma === null ? {} : { loss_weights: { dtype: 'float32' as const, shape: [batchSize] } }),
  };
}

/**
 * The ε-prediction batch of `scenes` at `step`: caption dropout, timesteps, posterior and diffusion
 * noise all drawn from (seed, step), so a resumed run draws the same; the frozen encoders make the
 * latents and text states; min-SNR-γ weights when the stage asks for them.
 */
export async function noisedBatch(source: NoisedBatchSource, scenes: readonly { image: Parameters<typeof imagesToTensor>[0][number]; caption: string }[], step: number): Promise<Record<string, HostTensor>> {
  const { seed, encoders, noiseSchedule } = source;
  const latentShape = [scenes.length, ...encoders.latentShape];
  const rng = new Random(deriveSeed(seed ^ 0x0d1f, step));
  const captions = scenes.map((scene) => (rng.chance(source.captionDropout) ? '' : scene.caption));
  const timesteps = scenes.map(() => rng.int(noiseSchedule.config.num_train_timesteps));
  const latents = await encoders.latents(
    scenes.map((scene) => scene.image),
    gaussianNoise(deriveSeed(seed ^ 0x7e5a, step), latentShape),
  );
  const noise = gaussianNoise(deriveSeed(seed ^ 0x2d1f, step), latentShape);
  const noisy = noiseSchedule.addNoise(latents.data as Float32Array, noise.data as Float32Array, timesteps);
  return {
    noisy_latents: { dtype: 'float32', shape: latentShape, data: noisy },
    timesteps: { dtype: 'float32', shape: [scenes.length], data: Float32Array.from(timesteps) },
    encoder_hidden_states: await encoders.encodeText(captions),
    noise,
    ...(source.snrGamma === null ? {} : { loss_weights: { dtype: 'float32' as const, shape: [scenes.length], data: minSnrWeights(noiseSchedule.alphasCumprod, timesteps, source.snrGamma) } }),
  };
}

/** Biases and norm scales/shifts are not decayed (the usual AdamW practice). */
export const unetNoWeightDecay = (key: string): boolean => key.endsWith('.bias') || /norm/.test(key);

export const unetStage: StageDefinition<UnetConfig> = {
  name: 'unet',
  description: 'U-Net-mini (UNet2DConditionModel layout) on VAE-mini latents, conditioned on CLIP-mini text; ε-prediction, caption dropout',
  schema: unetConfigSchema,

  async build(config, environment) {
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const encoders = await FrozenEncoders.open(config, config.batchSize, session);
    const side = encoders.vae.config.sample_size;
    const world = await openWorld(config.data, side, environment.report);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const preview = new CaptionedSceneStream(world, EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed, config.scenes);
    const previewScenes = Array.from({ length: config.preview.count }, (_, i) => preview.sample(i));
    const model = initialModel(config);
    environment.report(`U-Net-mini: ${(model.parameterCount() / 1e6).toFixed(2)} M parameters, ${stream.concepts().length} concepts`);
    const noised: NoisedBatchSource = { seed: config.seed, captionDropout: config.captionDropout, snrGamma: config.snrGamma, encoders, noiseSchedule: new DDPMScheduler(config.scheduler) };
    let sampler: LatentSampler | null = null;
    return {
      parameters: model.stateDict(),
      noWeightDecay: unetNoWeightDecay,
      batchSpec: noisedBatchSpec(noised, config.batchSize),
      loss: (context) => unetNoiseLoss(model, context),
      batch: (step) => noisedBatch(noised, stream.batch(step, config.batchSize), step),
      async sampleGrid(parameters) {
        sampler ??= await LatentSampler.create(model, encoders, config.scheduler, previewScenes.length, session);
        const captions = previewScenes.map((scene) => scene.caption);
        const images = await sampler.generate(parameters, captions, { steps: config.preview.steps, guidanceScale: config.preview.guidanceScale, seed: 0 });
        return imageGridPng([previewScenes.map((scene) => scene.image), images]);
      },
      async release() {
        await sampler?.release();
        await encoders.release();
      },
    };
  },

  /**
   * Writes `unet/` (diffusers config.json + fp16 weights + ATTRIBUTION.md) and `scheduler/` into a
   * pipeline folder, and its model_index.json.
   */
  async exportModel(config, parameters, directory) {
    const model = initialModel(config);
    model.loadStateDict(parameters);
    const unetDirectory = join(directory, 'unet');
    await mkdir(unetDirectory, { recursive: true });
    await writeFile(join(unetDirectory, 'config.json'), `${JSON.stringify({ _class_name: 'UNet2DConditionModel', ...config.model }, null, 2)}\n`);
    await writeSafetensors(join(unetDirectory, 'diffusion_pytorch_model.safetensors'), model.stateDict(), { dtype: 'F16' });
    const schedulerDirectory = join(directory, 'scheduler');
    await mkdir(schedulerDirectory, { recursive: true });
    await writeFile(join(schedulerDirectory, 'scheduler_config.json'), `${JSON.stringify(config.scheduler, null, 2)}\n`);
    await writeModelIndex(directory);
    const world = await openWorld(config.data, (await readAutoencoderKLConfig(config.vae)).sample_size, () => undefined);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    await writeFile(join(unetDirectory, 'ATTRIBUTION.md'), attributionMarkdown(world.catalog, { styles: stream.styles(), patterns: true }));
  },

  /** The `unet/` of a pipeline folder. */
  async importModel(_config, directory) {
    return (await UNet2DConditionModel.fromPretrained(join(directory, 'unet'))).stateDict();
  },
};
