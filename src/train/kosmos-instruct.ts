// Kosmos-G stage 3, score-distillation instruction tuning (official `Diffusionmodel.forward`):
//   z0 = VAE.encode(target).sample() · scaling_factor, t ~ U{0 … 999}, z_t = DDPM.add_noise(z0, ε, t)
//   L = mean (UNet(z_t, t, c) − ε)², c = M(MLLM(prompt with its images))
// through the frozen U-Net, with c replaced per sample with probability 0.1 by the null condition
// M(MLLM([<s>])), computed in the same graph so that it gets gradients too. Each step draws one
// source of the mixture t2i : edit : compose = 1 : 2 : 2. Trainable: the MLLM, the XConnector, the
// vision tower's last block and ln_post, aligner M; frozen: the U-Net, the VAE and the rest of the
// vision tower. No language-modelling loss.
import { join } from 'node:path';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import { equal, where } from '../graph/ops/elementwise.js';
import { mseLoss } from '../graph/ops/nn.js';
import { reshape } from '../graph/ops/shape.js';
import type { SessionOptions } from '../graph/session.js';
import { gaussianNoise } from '../models/gaussian_noise.js';
import { PAD_INDEX } from '../models/kosmos_mllm.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { contextFromValues, Module, type TraceContext } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { DDPMScheduler } from '../schedulers/index.js';
import { loadKosmosTokenizer, type KosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { deriveSeed, Random } from '../util/random.js';
import { SAMPLE_KINDS, STAGE3_MIXTURE } from '../world/generate.js';
import { createImage, type RgbaImage } from '../world/image.js';
import type { InterleavedSample, SampleKind } from '../world/instruct.js';
import type { World } from '../world/world.js';
import { baseConfigSchema } from './config.js';
import { ForwardSession } from './forward.js';
import { imageGridPng } from './images.js';
import { openDecoder, trainSplitDataSchema } from './kosmos-align.js';
import { writeKosmosGPipeline } from './kosmos-g-export.js';
import { readKosmosGComponents } from './kosmos-g-folder.js';
import { clipPixels, encodeSequence, exportKosmosGComponents, KosmosGNetworks, packSequences, type TokenSequence } from './kosmos-g-networks.js';
import { LatentSampler } from './latent-sampler.js';
import type { StageDefinition } from './stage.js';
import { EVAL_SCENE_SEED, openWorld, WorldStream } from './world-data.js';

const weight = z.number().min(0);

export const kosmosInstructConfigSchema = baseConfigSchema.extend({
  stage: z.literal('kosmos-instruct'),
  /** The stage-2 export (or a released Kosmos-G folder): the networks' configs and initial weights, and the tokenizer. */
  kosmosG: z.string().min(1),
  /** The frozen decoder: a text-to-image folder with `unet/`, `vae/`, `text_encoder/`, `clip_tokenizer/`, `scheduler/`. */
  decoder: z.string().min(1),
  /** L: MLLM tokens per row. */
  sequenceLength: z.number().int().positive(),
  /** N: image slots per batch. */
  imagesPerBatch: z.number().int().positive(),
  /** Relative frequency of each source; one source per step (the paper's 1 : 2 : 2 by default). */
  mixture: z.strictObject({ t2i: weight, edit: weight, compose: weight }).default({ ...STAGE3_MIXTURE }),
  /** Per-sample probability that the condition is the null prompt `[<s>]`. */
  nullConditionProbability: z.number().min(0).max(1).default(0.1),
  data: trainSplitDataSchema,
  preview: z
    .strictObject({ perKind: z.number().int().positive(), steps: z.number().int().positive(), guidanceScale: z.number().min(1) })
    .default({ perKind: 2, steps: 20, guidanceScale: 3 }),
});

export type KosmosInstructConfig = z.output<typeof kosmosInstructConfigSchema>;

/** The official stage-3 checkpoint's tree: the Kosmos-G networks plus `diffusion_unet.unet.*` (frozen). */
class DiffusionUnet extends Module {
  constructor(readonly unet: UNet2DConditionModel) {
    super();
  }
}

class InstructRoot extends Module {
  readonly img_model: KosmosGNetworks['img_model'];
  readonly img_connector: KosmosGNetworks['img_connector'];
  readonly gpt_model: KosmosGNetworks['gpt_model'];
  readonly aligner: KosmosGNetworks['aligner'];
  readonly diffusion_unet: DiffusionUnet;

  constructor(readonly networks: KosmosGNetworks, unet: UNet2DConditionModel) {
    super();
    this.img_model = networks.img_model;
    this.img_connector = networks.img_connector;
    this.gpt_model = networks.gpt_model;
    this.aligner = networks.aligner;
    this.diffusion_unet = new DiffusionUnet(unet);
  }

  override namedParameters(prefix = '') {
    // `networks` holds the same modules as the properties above; list them once.
    return super.namedParameters(prefix).filter(([key]) => !key.startsWith(`${prefix}networks.`));
  }
}

/** One training sample of a step: its MLLM sequence, input images and target image. */
export interface InstructSample {
  kind: SampleKind;
  sequence: TokenSequence;
  images: RgbaImage[];
  target: RgbaImage;
}

/** Stage-3 samples: the step's source and every sample are pure functions of (seeds, step). */
export class InstructSampleSource {
  private readonly streams: Record<SampleKind, WorldStream>;

  constructor(
    world: World,
    private readonly config: KosmosInstructConfig,
    private readonly tokenizer: KosmosTokenizer,
    private readonly queries: number,
    seed = config.data.seed,
    splits: KosmosInstructConfig['data']['splits'] = config.data.splits,
  ) {
    this.streams = Object.fromEntries(SAMPLE_KINDS.map((kind, k) => [kind, new WorldStream(world, kind, deriveSeed(seed, 0x3c + k), splits, config.data.splitSeed)])) as Record<SampleKind, WorldStream>;
  }

  /**
   * `sample` as an MLLM sequence with its images; when its tokens exceed L or its images the
   * `freeSlots` left in the batch, its caption alone (as a text-to-image sample of its target).
   */
  encode(sample: InterleavedSample, freeSlots = Infinity): InstructSample {
    const sequence = encodeSequence(sample.text, sample.images.length, this.tokenizer, this.queries);
    if (sequence.tokens.length <= this.config.sequenceLength && sample.images.length <= freeSlots) return { kind: sample.kind, sequence, images: sample.images, target: sample.target };
    return { kind: sample.kind, sequence: encodeSequence(sample.caption, 0, this.tokenizer, this.queries), images: [], target: sample.target };
  }

  sample(kind: SampleKind, index: number): InstructSample {
    return this.encode(this.streams[kind].sample(index));
  }

  /** The samples of 1-based `step`, all of the step's source, within N image slots (the rest give their caption alone). */
  batch(step: number): InstructSample[] {
    const kind = stepSource(this.config, step);
    const { batchSize, imagesPerBatch } = this.config;
    let images = 0;
    return Array.from({ length: batchSize }, (_, k) => {
      const sample = this.encode(this.streams[kind].sample((step - 1) * batchSize + k), imagesPerBatch - images);
      images += sample.images.length;
      return sample;
    });
  }
}

/** The one source of 1-based `step`, drawn by the mixture weights. */
export function stepSource(config: Pick<KosmosInstructConfig, 'mixture' | 'data'>, step: number): SampleKind {
  return SAMPLE_KINDS[new Random(deriveSeed(config.data.seed ^ 0x3d1e, step)).weighted(SAMPLE_KINDS.map((kind) => config.mixture[kind]))]!;
}

/** Which samples of `step` get the null condition (B) and their timesteps t ~ U{0 … T−1}: a pure function of (seed, step). */
export function stepDraws(config: Pick<KosmosInstructConfig, 'seed' | 'batchSize' | 'nullConditionProbability'>, step: number, trainTimesteps: number): { useNull: Uint8Array; timesteps: number[] } {
  const rng = new Random(deriveSeed(config.seed ^ 0x3e11, step));
  const useNull = Uint8Array.from({ length: config.batchSize }, () => (rng.chance(config.nullConditionProbability) ? 1 : 0));
  const timesteps = Array.from({ length: config.batchSize }, () => rng.int(trainTimesteps));
  return { useNull, timesteps };
}

/** M(MLLM(sequences with images)) (B, 77, d) and the null condition M(MLLM([<s>])) (1, 77, d). */
function conditions(networks: KosmosGNetworks, context: TraceContext, batch: Readonly<Record<string, Value>>): { condition: Value; unconditional: Value } {
  const aligner = networks.aligner;
  if (!aligner) throw new Error('stage 3 needs aligner M (train stage 2 first)');
  const graph = context.graph;
  const tokens = batch['tokens']!;
  const hidden = networks.hiddenStates(context, { tokens, imageMask: batch['image_mask']!, pixels: batch['pixel_values']! }); // (B, L, D)
  const condition = graph.scope('aligner', () => aligner.forward(context, hidden, equal(tokens, PAD_INDEX))); // (B, 77, d)
  const nullTokens = graph.constant({ dtype: 'int64', shape: [1, 1], data: BigInt64Array.of(0n) }, 'null_prompt'); // [<s>]
  const nullHidden = graph.scope('gpt_model', () => networks.mllm.forward(context, nullTokens)); // (1, 1, D)
  const unconditional = graph.scope('aligner', () => aligner.forward(context, nullHidden, equal(nullTokens, PAD_INDEX))); // (1, 77, d)
  return { condition, unconditional };
}

/** The stage-3 loss: ε-MSE through the frozen U-Net with per-sample null conditions. */
function instructLoss(root: InstructRoot, context: TraceContext, batch: Readonly<Record<string, Value>>): Value {
  const { condition, unconditional } = conditions(root.networks, context, batch);
  const useNull = reshape(batch['use_null']!, [condition.size(0), 1, 1]); // (B, 1, 1)
  const mixed = where(useNull, unconditional, condition); // (B, 77, d)
  const prediction = context.graph.scope('diffusion_unet.unet', () => root.diffusion_unet.unet.forward(context, batch['noisy_latents']!, batch['timesteps']!, mixed));
  return mseLoss(prediction, batch['noise']!);
}

export const kosmosInstructStage: StageDefinition<KosmosInstructConfig> = {
  name: 'kosmos-instruct',
  description: 'Kosmos-G stage 3: score-distillation instruction tuning through the frozen U-Net (t2i : edit : compose = 1 : 2 : 2, 10 % null condition)',
  schema: kosmosInstructConfigSchema,

  async build(config, environment) {
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const rows = config.batchSize;
    const networks = await readKosmosGComponents(config.kosmosG, { aligner: true });
    const tokenizer = await loadKosmosTokenizer(join(config.kosmosG, 'tokenizer'));
    const { encoders, unetDirectory, scheduler } = await openDecoder(config.decoder, rows, session);
    const unet = await UNet2DConditionModel.fromPretrained(unetDirectory);
    const root = new InstructRoot(networks, unet);
    const [queries, width] = [networks.aligner!.config.num_queries, networks.aligner!.config.decoder_embed_dim];
    const crossDim = unet.config.cross_attention_dim;
    if (queries !== encoders.textEncoder.config.max_position_embeddings || width !== (Array.isArray(crossDim) ? crossDim[0] : crossDim)) {
      throw new Error(`aligner M gives ${queries}×${width}; the U-Net's cross-attention reads ${crossDim}-wide states`);
    }
    const imageSize = networks.configs.vision.vision_cfg.image_size;
    const side = encoders.vae.config.sample_size;
    const world = await openWorld(config.data, side, environment.report);
    const source = new InstructSampleSource(world, config, tokenizer, networks.queries);
    const noiseSchedule = new DDPMScheduler(scheduler);
    const trainTimesteps = noiseSchedule.config.num_train_timesteps;
    const latentShape = [rows, ...encoders.latentShape];
    const { sequenceLength: length, imagesPerBatch: slots } = config;
    const trainable = networks.trainableKeys();
    environment.report(`Kosmos-G stage 3: ${(trainable.reduce((count, key) => count + root.stateDict()[key]!.data.length, 0) / 1e6).toFixed(2)} M trainable parameters, U-Net ${(unet.parameterCount() / 1e6).toFixed(2)} M frozen`);
    let preview: InstructPreview | null = null;
    return {
      parameters: root.stateDict(),
      trainable,
      noWeightDecay: (key) => key.endsWith('.bias') || /norm|ln_|layer_norm|_ln\./.test(key),
      batchSpec: {
        tokens: { dtype: 'int64', shape: [rows, length] },
        image_mask: { dtype: 'bool', shape: [rows, length] },
        pixel_values: { dtype: 'float32', shape: [slots, 3, imageSize, imageSize] },
        use_null: { dtype: 'bool', shape: [rows] },
        noisy_latents: { dtype: 'float32', shape: latentShape },
        timesteps: { dtype: 'float32', shape: [rows] },
        noise: { dtype: 'float32', shape: latentShape },
      },
      loss: ({ graph, parameters, batch, dropoutSeed }) => instructLoss(root, contextFromValues(graph, root, parameters, dropoutSeed), batch),
      async batch(step) {
        const samples = source.batch(step);
        const { useNull, timesteps } = stepDraws(config, step, trainTimesteps);
        const latents = await encoders.latents(samples.map((sample) => sample.target), gaussianNoise(deriveSeed(config.seed ^ 0x3e12, step), latentShape));
        const noise = gaussianNoise(deriveSeed(config.seed ^ 0x3e13, step), latentShape);
        const packed = packSequences(samples.map((sample) => sample.sequence), length);
        return {
          tokens: packed.tokens,
          image_mask: packed.image_mask,
          pixel_values: clipPixels(samples.flatMap((sample) => sample.images), slots, imageSize),
          use_null: { dtype: 'bool', shape: [rows], data: useNull },
          noisy_latents: { dtype: 'float32', shape: latentShape, data: noiseSchedule.addNoise(latents.data as Float32Array, noise.data as Float32Array, timesteps) },
          timesteps: { dtype: 'float32', shape: [rows], data: Float32Array.from(timesteps) },
          noise,
        };
      },
      async sampleGrid(parameters) {
        preview ??= await InstructPreview.create(root, world, config, tokenizer, { encoders, scheduler, session });
        return preview.grid(parameters);
      },
      async release() {
        await preview?.release();
        await encoders.release();
      },
    };
  },

  /** Writes the complete Kosmos-G pipeline folder (the trained networks, tokenizer, and the decoder's parts). */
  async exportModel(config, parameters, directory) {
    const networks = await readKosmosGComponents(config.kosmosG, { aligner: true });
    await exportKosmosGComponents(directory, networks.configs, parameters, join(config.kosmosG, 'tokenizer'));
    await writeKosmosGPipeline(directory, config.decoder);
  },

  /** The networks of a Kosmos-G folder and the U-Net of the configured decoder. */
  async importModel(config, directory) {
    const networks = await readKosmosGComponents(directory, { aligner: true });
    const unet = await UNet2DConditionModel.fromPretrained(join(config.decoder, 'unet'));
    return new InstructRoot(networks, unet).stateDict();
  },
};

/**
 * Sample grids: held-out subjects (never trained on in this stage) per source, each row the input
 * image (blank for text-to-image), the target, and the generation from the live parameters.
 */
class InstructPreview {
  private constructor(
    private readonly root: InstructRoot,
    private readonly samples: InstructSample[],
    private readonly sampler: LatentSampler,
    private readonly conditionSession: ForwardSession,
    private readonly feeds: Record<string, HostTensor>,
    private readonly settings: { steps: number; guidanceScale: number; seed: number },
  ) {}

  static async create(
    root: InstructRoot,
    world: World,
    config: KosmosInstructConfig,
    tokenizer: KosmosTokenizer,
    decoder: Pick<Awaited<ReturnType<typeof openDecoder>>, 'encoders' | 'scheduler'> & { session: SessionOptions },
  ): Promise<InstructPreview> {
    const networks = root.networks;
    const source = new InstructSampleSource(world, config, tokenizer, networks.queries, EVAL_SCENE_SEED, ['heldout']);
    const samples = SAMPLE_KINDS.flatMap((kind) => Array.from({ length: config.preview.perKind }, (_, i) => source.sample(kind, i)));
    const count = samples.length;
    // Rows: the null prompt for each sample, then the samples ([uncond; cond], as the sampler expects).
    const sequences = [...samples.map(() => encodeSequence('', 0, tokenizer, networks.queries)), ...samples.map((sample) => sample.sequence)];
    const length = Math.max(...sequences.map((sequence) => sequence.tokens.length));
    const images = samples.flatMap((sample) => sample.images);
    const size = networks.configs.vision.vision_cfg.image_size;
    const packed = packSequences(sequences, length);
    const feeds = { tokens: packed.tokens, image_mask: packed.image_mask, pixel_values: clipPixels(images, Math.max(1, images.length), size) };
    const conditionSession = await ForwardSession.create(
      root,
      {
        tokens: { dtype: 'int64', shape: [2 * count, length] },
        image_mask: { dtype: 'bool', shape: [2 * count, length] },
        pixel_values: { dtype: 'float32', shape: feeds.pixel_values.shape },
      },
      (context, inputs) => ({ condition: conditions(networks, context, inputs).condition }),
      decoder.session,
    );
    const sampler = await LatentSampler.create(root.diffusion_unet.unet, decoder.encoders, decoder.scheduler, count, decoder.session);
    return new InstructPreview(root, samples, sampler, conditionSession, feeds, { steps: config.preview.steps, guidanceScale: config.preview.guidanceScale, seed: 0 });
  }

  async grid(parameters: Readonly<Record<string, HostTensor>>): Promise<Buffer> {
    const { condition } = await this.conditionSession.run(parameters, this.feeds);
    const unetParameters = Object.fromEntries(this.root.diffusion_unet.unet.namedParameters().map(([key]) => [key, parameters[`diffusion_unet.unet.${key}`]!]));
    const generated = await this.sampler.generateFromConditions(unetParameters, condition!, this.settings);
    const blank = createImage(generated[0]!.width, generated[0]!.height, [255, 255, 255, 255]);
    return imageGridPng(this.samples.map((sample, i) => [sample.images[0] ?? blank, sample.target, generated[i]!]));
  }

  async release(): Promise<void> {
    await Promise.all([this.sampler.release(), this.conditionSession.release()]);
  }
}

