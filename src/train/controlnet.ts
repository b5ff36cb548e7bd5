// ControlNet stage: a diffusers ControlNetModel trained on a frozen text-to-image pipeline (U-Net,
// VAE, CLIP-mini text encoder of `base`) to follow a control map of the scene: its Canny edges or
// its layout map (control-maps.ts). As diffusers' train_controlnet.py: the ControlNet starts as
// ControlNetModel.from_unet — the base U-Net's config and encoder weights (conv_in, time embedding,
// down blocks, mid block) with zero convs, so at step 0 it adds nothing — and learns the ε-MSE of
// the frozen U-Net with its residuals added (conditioning scale 1); captions are dropped to "" for
// a share of the samples, the control map never. Batches are a pure function of (seed, step): the
// same scenes, noise and timesteps as the U-Net-mini stage would draw, plus each scene's map.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import { mseLoss } from '../graph/ops/nn.js';
import type { SessionOptions } from '../graph/session.js';
import type { LossContext } from '../graph/train-step.js';
import { readConfigJson } from '../io/config-json.js';
import { writeSafetensors } from '../io/safetensors.js';
import { readAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { type ControlNetConfig, ControlNetModel, parseControlNetConfig } from '../models/controlnet.js';
import { parseUNetConfig, perBlockValues, type UNet2DConditionConfig, UNet2DConditionModel, type UNetForwardOptions } from '../models/unet_2d_condition.js';
import { checkpointInitialized } from '../nn/layers.js';
import { contextFromValues, Module, type TraceContext } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { cannyEdges, controlTensor, layoutMap } from '../pipeline/control-maps.js';
import { DDPMScheduler } from '../schedulers/index.js';
import { deriveSeed, Random } from '../util/random.js';
import { attributionMarkdown } from '../world/attribution.js';
import type { RgbaImage } from '../world/image.js';
import { renderScene } from '../world/scene.js';
import type { World } from '../world/world.js';
import { type CaptionedScene, CaptionedSceneStream } from './captioned-scenes.js';
import { baseConfigSchema } from './config.js';
import { imageGridPng } from './images.js';
import { openDecoder } from './kosmos-align.js';
import { LatentSampler } from './latent-sampler.js';
import type { StageDefinition } from './stage.js';
import { type NoisedBatchSource, noisedBatch, noisedBatchSpec, noisedTrainingFields, previewSchema, unetNoWeightDecay } from './unet.js';
import { EVAL_SCENE_SEED, openWorld } from './world-data.js';

export const controlnetConfigSchema = baseConfigSchema.extend({
  stage: z.literal('controlnet'),
  /** A text-to-image pipeline folder (`unet/`, `vae/`, `text_encoder/`, `clip_tokenizer/`, `scheduler/`), all frozen. */
  base: z.string().min(1),
  /** The control map: the scene's Canny edges, or its layout map (a colour per concept on black). */
  control: z.enum(['canny', 'layout']),
  /** cv2.Canny thresholds of the `canny` maps (the ControlNet Canny annotator's defaults). */
  canny: z.strictObject({ low: z.number().min(0), high: z.number().min(0) }).default({ low: 100, high: 200 }),
  /**
   * ControlNetModel config.json keys over the ones ControlNetModel.from_unet derives from the base
   * U-Net (e.g. conditioning_embedding_out_channels); the encoder must keep the U-Net's shapes,
   * whose weights it starts from.
   */
  model: z.record(z.string(), z.unknown()).default({}),
  /** Caption dropout replaces the caption only; the control map stays. */
  ...noisedTrainingFields,
  /** Sample grids: evaluation-seed scenes' control maps, then generations without and with the ControlNet. */
  preview: previewSchema({ count: 6, steps: 20, guidanceScale: 4 }),
});

export type ControlnetConfig = z.output<typeof controlnetConfigSchema>;

/** The keys ControlNetModel.from_unet copies from the U-Net's config. */
const FROM_UNET_KEYS = [
  'in_channels', 'flip_sin_to_cos', 'freq_shift', 'down_block_types', 'only_cross_attention', 'block_out_channels', 'layers_per_block',
  'downsample_padding', 'mid_block_scale_factor', 'act_fn', 'norm_num_groups', 'norm_eps', 'cross_attention_dim', 'transformer_layers_per_block',
  'attention_head_dim', 'num_attention_heads', 'use_linear_projection', 'upcast_attention', 'resnet_time_scale_shift', 'mid_block_type',
] as const;

/** diffusers' default conditioning_embedding_out_channels: three stride-2 steps, for SD's 8× VAE. */
const DIFFUSERS_CONDITIONING_CHANNELS = [16, 32, 96, 256];

/** The parts of the U-Net from_unet copies into the ControlNet (parameter key prefixes). */
const FROM_UNET_PREFIXES = ['conv_in.', 'time_embedding.', 'down_blocks.', 'mid_block.'];

/**
 * The ControlNet config of a run: from_unet's keys of the base U-Net, a conditioning embedding with
 * one stride-2 step per halving of the VAE (control maps are pixel-sized, residuals latent-sized),
 * then `config.model`. Refuses what cannot work with the base: another cross-attention width, a
 * map embedding that does not land on the latent grid, a conditioning other than RGB.
 */
export function controlNetConfigFor(config: Pick<ControlnetConfig, 'model'>, unet: UNet2DConditionConfig, vaeFactor: number): ControlNetConfig {
  const steps = Math.log2(vaeFactor);
  const derived: Record<string, unknown> = Object.fromEntries(FROM_UNET_KEYS.map((key) => [key, unet[key]]));
  if (steps + 1 <= DIFFUSERS_CONDITIONING_CHANNELS.length) derived['conditioning_embedding_out_channels'] = DIFFUSERS_CONDITIONING_CHANNELS.slice(0, steps + 1);
  const known = new Set(Object.keys(parseControlNetConfig(derived)));
  const unknown = Object.keys(config.model).filter((key) => !known.has(key));
  if (unknown.length) throw new Error(`model: unknown ControlNetModel keys: ${unknown.join(', ')}`);
  const controlnet = parseControlNetConfig({ ...derived, ...config.model });
  const blocks = unet.block_out_channels.length;
  const ours = perBlockValues(controlnet.cross_attention_dim, controlnet.block_out_channels.length, 'cross_attention_dim');
  const theirs = perBlockValues(unet.cross_attention_dim, blocks, 'cross_attention_dim');
  const widths = (values: number[]) => (new Set(values).size === 1 ? String(values[0]) : `[${values.join(', ')}]`);
  if (ours.join() !== theirs.join()) throw new Error(`the ControlNet's cross_attention_dim ${widths(ours)} differs from the base U-Net's ${widths(theirs)}: both attend to the same text states`);
  if (controlnet.conditioning_channels !== 3) throw new Error(`conditioning_channels must be 3 (control maps are RGB), got ${controlnet.conditioning_channels}`);
  const embeddingFactor = 2 ** (controlnet.conditioning_embedding_out_channels.length - 1);
  if (embeddingFactor !== vaeFactor) {
    throw new Error(`conditioning_embedding_out_channels has ${controlnet.conditioning_embedding_out_channels.length} entries, which downsample control maps ${embeddingFactor}×; the VAE's latents are ${vaeFactor}× smaller than images: give ${steps + 1} entries`);
  }
  return controlnet;
}

/** The stage's parameter tree: the trained ControlNet under `controlnet.`, the frozen U-Net under `unet.`. */
export class ControlNetTrainingRoot extends Module {
  constructor(
    readonly controlnet: ControlNetModel,
    readonly unet: UNet2DConditionModel,
  ) {
    super();
  }

  /** The U-Net's ε prediction (B, C, h, w) with the ControlNet's residuals of `control` (B, 3, H, W) added. */
  predictNoise(context: TraceContext, noisyLatents: Value, timesteps: Value, encoderHiddenStates: Value, control: Value): Value {
    const residuals = context.graph.scope('controlnet', () => this.controlnet.forward(context, noisyLatents, timesteps, encoderHiddenStates, control));
    return context.graph.scope('unet', () =>
      this.unet.forward(context, noisyLatents, timesteps, encoderHiddenStates, { downBlockAdditionalResiduals: residuals.downBlockResiduals, midBlockAdditionalResidual: residuals.midBlockResidual }),
    );
  }
}

/**
 * from_unet: a ControlNet of `controlConfig` whose encoder holds copies of the U-Net's weights; its
 * conditioning embedding starts from the seed, its zero convs at zero. Strict as from_unet's
 * load_state_dict: every copied key must exist in both with one shape.
 */
export function controlNetFromUnet(controlConfig: ControlNetConfig, unet: UNet2DConditionModel, seed: number): ControlNetModel {
  const controlnet = new ControlNetModel(controlConfig, new Random(deriveSeed(seed, 0xc0e7)));
  const copied = (key: string) => FROM_UNET_PREFIXES.some((prefix) => key.startsWith(prefix));
  const source = Object.fromEntries(Object.entries(unet.stateDict()).filter(([key]) => copied(key)));
  const target = controlnet.stateDict();
  const problems = [
    ...Object.keys(source).filter((key) => target[key] && target[key]!.shape.join() !== source[key]!.shape.join()).map((key) => `${key} is [${target[key]!.shape.join(', ')}] here, [${source[key]!.shape.join(', ')}] in the U-Net`),
    ...Object.keys(target).filter((key) => copied(key) && !source[key]).map((key) => `${key} is not in the U-Net`),
    ...Object.keys(source).filter((key) => !target[key]).map((key) => `the U-Net's ${key} is not in the ControlNet`),
  ];
  if (problems.length) throw new Error(`the ControlNet's encoder must have the base U-Net's shapes to start from its weights: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (and ${problems.length - 3} more)` : ''}`);
  // Copies, not shared buffers: the ControlNet's trained values must never reach the frozen U-Net's.
  controlnet.loadStateDict(Object.fromEntries(Object.entries(source).map(([key, tensor]) => [key, { ...tensor, data: tensor.data.slice() } as HostTensor])), { strict: false });
  return controlnet;
}

/** The frozen U-Net's config and the VAE's downsampling factor of a base folder. */
async function readBase(base: string): Promise<{ unet: UNet2DConditionConfig; vaeFactor: number }> {
  const unet = parseUNetConfig(await readConfigJson(join(base, 'unet', 'config.json')), join(base, 'unet', 'config.json'));
  const vae = await readAutoencoderKLConfig(join(base, 'vae'));
  return { unet, vaeFactor: 2 ** (vae.block_out_channels.length - 1) };
}

/** The parameters under `prefix`, without it. */
function withoutPrefix(parameters: Readonly<Record<string, HostTensor>>, prefix: string): Record<string, HostTensor> {
  return Object.fromEntries(Object.entries(parameters).flatMap(([key, tensor]) => (key.startsWith(prefix) ? [[key.slice(prefix.length), tensor]] : [])));
}

/** The control map of a rendered scene: Canny edges (1 channel) or the layout map (RGB), size × size. */
function sceneControlMap(config: ControlnetConfig, world: World, scene: CaptionedScene): Uint8Array {
  const { width, height, data } = scene.image;
  // A captioned scene keeps its image, not its masks: the layout map renders its spec again.
  if (config.control === 'layout') return layoutMap(renderScene(world, scene.spec));
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) rgb.set(data.subarray(p * 4, p * 4 + 3), p * 3);
  return cannyEdges(rgb, width, height, config.canny);
}

/** A 1- or 3-channel map as an opaque RGBA image, for sample grids. */
function mapImage(map: Uint8Array, side: number): RgbaImage {
  const channels = map.length / (side * side);
  const data = new Uint8Array(side * side * 4);
  for (let p = 0; p < side * side; p++) {
    for (let c = 0; c < 3; c++) data[p * 4 + c] = map[p * channels + (channels === 1 ? 0 : c)]!;
    data[p * 4 + 3] = 255;
  }
  return { width: side, height: side, data };
}

/**
 * The frozen U-Net with a ControlNet on fixed control maps (B, 3, H, W) at scale 1: the U-Net
 * LatentSampler compiles for the grids' "with" row. Its parameters are the U-Net's under their
 * own keys and the ControlNet's under `controlnet.`, as in the training parameters.
 */
class UNetWithControl extends UNet2DConditionModel {
  constructor(
    config: UNet2DConditionConfig,
    readonly controlnet: ControlNetModel,
    private readonly controlMaps: HostTensor,
  ) {
    super(config, checkpointInitialized);
  }

  override forward(context: TraceContext, sample: Value, timestep: Value, encoderHiddenStates: Value, options: UNetForwardOptions = {}): Value {
    const control = context.graph.constant(this.controlMaps, 'control_maps');
    // Only the attention kernel choice applies to the ControlNet; a LoRA adapter is the U-Net's.
    const residuals = context.graph.scope('controlnet', () => this.controlnet.forward(context, sample, timestep, encoderHiddenStates, control, { fusedAttention: options.fusedAttention ?? false }));
    return super.forward(context, sample, timestep, encoderHiddenStates, { ...options, downBlockAdditionalResiduals: residuals.downBlockResiduals, midBlockAdditionalResidual: residuals.midBlockResidual });
  }
}

/** ε-MSE of the frozen U-Net with the ControlNet's residuals, per-sample weighted by `loss_weights` when present. */
function controlledNoiseLoss(root: ControlNetTrainingRoot, { graph, parameters, batch }: LossContext): Value {
  const context = contextFromValues(graph, root, parameters);
  const prediction = root.predictNoise(context, batch['noisy_latents']!, batch['timesteps']!, batch['encoder_hidden_states']!, batch['controlnet_cond']!); // (B, C, h, w)
  return mseLoss(prediction, batch['noise']!, batch['loss_weights']);
}

export const controlnetStage: StageDefinition<ControlnetConfig> = {
  name: 'controlnet',
  description: 'a ControlNet on a frozen U-Net, trained with CLIP-text conditioning (control maps: Canny edges or world layout maps)',
  schema: controlnetConfigSchema,

  async build(config, environment) {
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const { unet: unetConfig, vaeFactor } = await readBase(config.base);
    // Checked before anything heavy is loaded, so a mismatched config fails at once.
    const controlConfig = controlNetConfigFor(config, unetConfig, vaeFactor);
    const { encoders, unetDirectory, scheduler } = await openDecoder(config.base, config.batchSize, session);
    const unet = await UNet2DConditionModel.fromPretrained(unetDirectory);
    const root = new ControlNetTrainingRoot(controlNetFromUnet(controlConfig, unet, config.seed), unet);
    const side = encoders.vae.config.sample_size;
    const world = await openWorld(config.data, side, environment.report);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const preview = new CaptionedSceneStream(world, EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed, config.scenes);
    const previewScenes = Array.from({ length: config.preview.count }, (_, i) => preview.sample(i));
    const parameters = root.stateDict();
    const trainable = Object.keys(parameters).filter((key) => key.startsWith('controlnet.'));
    environment.report(`ControlNet (${config.control}): ${(root.controlnet.parameterCount() / 1e6).toFixed(2)} M parameters trained, U-Net ${(unet.parameterCount() / 1e6).toFixed(2)} M frozen`);
    const noised: NoisedBatchSource = { seed: config.seed, captionDropout: config.captionDropout, snrGamma: config.snrGamma, encoders, noiseSchedule: new DDPMScheduler(scheduler) };
    let previewParts: { without: RgbaImage[]; sampler: LatentSampler; maps: RgbaImage[] } | null = null;
    return {
      parameters,
      trainable,
      noWeightDecay: unetNoWeightDecay,
      // The unet stage's batch (the same draws from (seed, step)) plus each scene's control map.
      batchSpec: { ...noisedBatchSpec(noised, config.batchSize), controlnet_cond: { dtype: 'float32', shape: [config.batchSize, 3, side, side] } },
      loss: (context) => controlledNoiseLoss(root, context),
      async batch(step) {
        const scenes = stream.batch(step, config.batchSize);
        return { ...(await noisedBatch(noised, scenes, step)), controlnet_cond: controlTensor(scenes.map((scene) => sceneControlMap(config, world, scene)), side, side) };
      },
      async sampleGrid(current) {
        const captions = previewScenes.map((scene) => scene.caption);
        const settings = { steps: config.preview.steps, guidanceScale: config.preview.guidanceScale, seed: 0 };
        previewParts ??= await (async () => {
          const count = previewScenes.length;
          const maps = previewScenes.map((scene) => sceneControlMap(config, world, scene));
          // The U-Net is frozen: its generations without the ControlNet are made once.
          const plain = await LatentSampler.create(unet, encoders, scheduler, count, session);
          const without = await plain.generate(unet.stateDict(), captions, settings);
          await plain.release();
          // (2n, 3, H, W): the same maps for the unconditional and the conditional half.
          const controlled = new UNetWithControl(unet.config, new ControlNetModel(controlConfig, checkpointInitialized), controlTensor([...maps, ...maps], side, side));
          const sampler = await LatentSampler.create(controlled, encoders, scheduler, count, session);
          return { without, sampler, maps: maps.map((map) => mapImage(map, side)) };
        })();
        const controlled = { ...unet.stateDict(), ...Object.fromEntries(trainable.map((key) => [key, current[key]!])) };
        const withControl = await previewParts.sampler.generate(controlled, captions, settings);
        return imageGridPng([previewParts.maps, previewParts.without, withControl]);
      },
      async release() {
        await previewParts?.sampler.release();
        await encoders.release();
      },
    };
  },

  /**
   * Writes a diffusers ControlNetModel folder: config.json (with `_kosmos_g_control`, the map it
   * was trained on), fp16 diffusion_pytorch_model.safetensors and ATTRIBUTION.md.
   */
  async exportModel(config, parameters, directory) {
    const { unet, vaeFactor } = await readBase(config.base);
    const controlConfig = controlNetConfigFor(config, unet, vaeFactor);
    const model = new ControlNetModel(controlConfig, checkpointInitialized);
    model.loadStateDict(withoutPrefix(parameters, 'controlnet.'));
    await mkdir(directory, { recursive: true });
    const control = config.control === 'canny' ? { kind: 'canny', ...config.canny } : { kind: 'layout' };
    await writeFile(join(directory, 'config.json'), `${JSON.stringify({ _class_name: 'ControlNetModel', ...controlConfig, _kosmos_g_control: control }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'diffusion_pytorch_model.safetensors'), model.stateDict(), { dtype: 'F16' });
    const world = await openWorld(config.data, (await readAutoencoderKLConfig(join(config.base, 'vae'))).sample_size, () => undefined);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    await writeFile(join(directory, 'ATTRIBUTION.md'), attributionMarkdown(world.catalog, { styles: stream.styles(), patterns: true }));
  },

  /** A ControlNet folder, with the base U-Net beside it (frozen, so never exported). */
  async importModel(config, directory) {
    const controlnet = await ControlNetModel.fromPretrained(directory);
    const unet = await UNet2DConditionModel.fromPretrained(join(config.base, 'unet'));
    return new ControlNetTrainingRoot(controlnet, unet).stateDict();
  },
};
