// LoRA stage: low-rank adapters on a frozen U-Net of a text-to-image pipeline folder (e.g.
// models/world-sd-mini), trained with the U-Net-mini objective — ε-MSE on VAE latents of world
// scenes, CLIP-text conditioning, caption dropout, optional min-SNR-γ — and the LoRA applied at
// alpha/rank. The base's VAE, text encoder and CLIP tokenizer encode batches on the fly (as in
// unet.ts); its U-Net weights are parameters of the run that are not `trainable`: the training
// graph feeds them and differentiates only the LoRA pairs, and `trainingOnly` keeps them out of
// exports, so `initFrom` an exported LoRA takes them from the base again.
//
// Export (`train export --format peft|kohya`), a folder with adapter_config.json, README.md,
// ATTRIBUTION.md and one weight file:
//   peft  (default)  pytorch_lora_weights.safetensors, diffusers' `save_lora_weights` layout of a
//                    UNet2DConditionModel: unet.<path>.lora_A.weight (r, in), unet.<path>.lora_B.weight
//                    (out, r), rank/alpha/targets in the `lora_adapter_metadata` header;
//   kohya            lora_kohya.safetensors: lora_unet_<path with _>.lora_down.weight (r, in),
//                    .lora_up.weight (out, r), .alpha (a scalar).
// Both load through LoraAdapter.fromSafetensors, i.e. `generate --lora FILE`.
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { SessionOptions } from '../graph/session.js';
import type { LossContext } from '../graph/train-step.js';
import type { Value } from '../graph/graph.js';
import { mseLoss } from '../graph/ops/nn.js';
import { readConfigJson } from '../io/config-json.js';
import { writeSafetensors } from '../io/safetensors.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { readAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { LoraAdapter, namedLayers } from '../models/lora.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { checkpointInitialized } from '../nn/layers.js';
import { contextFromValues, type Module } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { clipTokenizerComponent, readPipelineFolder, requireComponents } from '../pipeline/folder.js';
import { mergedContext } from '../pipeline/weights.js';
import { DDPMScheduler, type SchedulerConfig } from '../schedulers/index.js';
import { deriveSeed, Random } from '../util/random.js';
import { attributionMarkdown } from '../world/attribution.js';
import type { RgbaImage } from '../world/image.js';
import { CaptionedSceneStream } from './captioned-scenes.js';
import { baseConfigSchema } from './config.js';
import { imageGridPng } from './images.js';
import { LatentSampler } from './latent-sampler.js';
import type { StageDefinition } from './stage.js';
import { FrozenEncoders, type NoisedBatchSource, noisedBatch, noisedBatchSpec, noisedTrainingFields, previewSchema } from './unet.js';
import { EVAL_SCENE_SEED, openWorld } from './world-data.js';

/** The attention projections of every transformer block (attn1 and attn2), as diffusers' LoRA scripts target. */
const DEFAULT_TARGET_MODULES = ['to_q', 'to_k', 'to_v', 'to_out.0'] as const;
export const PEFT_FILE = 'pytorch_lora_weights.safetensors';
export const KOHYA_FILE = 'lora_kohya.safetensors';
/** The layouts `train export --format` writes, the default first. */
export const LORA_EXPORT_FORMATS = ['peft', 'kohya'] as const;
export type LoraExportFormat = (typeof LORA_EXPORT_FORMATS)[number];

export const loraConfigSchema = baseConfigSchema.extend({
  stage: z.literal('lora'),
  /** A text-to-image pipeline folder; its unet, vae, text_encoder and CLIP tokenizer stay frozen. */
  base: z.string().min(1),
  lora: z.strictObject({
    /** r: A is (r, in), B is (out, r). */
    rank: z.number().int().positive(),
    /** PEFT's lora_alpha: the update B·A is scaled by alpha / rank. Default: rank (a scale of 1). */
    alpha: z.number().positive().optional(),
    /** PEFT target_modules: a Linear or Conv2d is adapted when its path is, or ends in "." + , one of these. */
    targetModules: z.array(z.string().min(1)).min(1).default([...DEFAULT_TARGET_MODULES]),
  }),
  /** `scenes.styles` restricts the training scenes to some styles: a style LoRA. */
  ...noisedTrainingFields,
  /** Sample grids: evaluation-seed scenes, then the base's and the LoRA's generations of their captions. */
  preview: previewSchema({ count: 4, steps: 25, guidanceScale: 4 }),
});

export type LoraConfig = z.output<typeof loraConfigSchema>;

/** Component folders of the base pipeline. */
interface BaseComponents {
  unet: string;
  vae: string;
  textEncoder: string;
  tokenizer: string;
  scheduler: string;
}

async function baseComponents(base: string): Promise<BaseComponents> {
  const folder = await readPipelineFolder(base);
  const components = requireComponents(folder, ['unet', 'vae', 'text_encoder', 'scheduler'], 'LoRA training');
  const tokenizer = clipTokenizerComponent(folder);
  if (!tokenizer) throw new Error(`model folder ${base} cannot be used for LoRA training: model_index.json lists no CLIP tokenizer`);
  const directory = (name: string) => components.get(name)!.directory;
  return { unet: directory('unet'), vae: directory('vae'), textEncoder: directory('text_encoder'), tokenizer: tokenizer.directory, scheduler: directory('scheduler') };
}

/** The base U-Net's architecture with placeholder weights: export and import only need its layer shapes. */
async function unetArchitecture(directory: string): Promise<UNet2DConditionModel> {
  return new UNet2DConditionModel(parseUNetConfig(await readConfigJson(join(directory, 'config.json')), join(directory, 'config.json')), checkpointInitialized);
}

function loraAlpha(config: LoraConfig): number {
  return config.lora.alpha ?? config.lora.rank;
}

/**
 * The adapter of `config` on `unet`, initialised as PEFT does (A Kaiming-uniform, B zero: at step 0
 * the U-Net computes exactly the base's output). Target modules that match no layer are refused.
 */
export function createAdapter(unet: UNet2DConditionModel, config: LoraConfig): LoraAdapter {
  const paths = [...namedLayers(unet).keys()];
  const matches = (name: string) => paths.some((path) => path === name || path.endsWith(`.${name}`));
  const unmatched = config.lora.targetModules.filter((name) => !matches(name));
  if (unmatched.length > 0) {
    // Layer names as target modules spell them: the last path part, with its parent for list items (to_out.0).
    const names = [...new Set(paths.map((path) => path.split('.').slice(/\.\d+$/.test(path) ? -2 : -1).join('.')))].sort();
    throw new Error(`lora.targetModules ${unmatched.join(', ')} match no Linear or Conv2d layer of the U-Net of ${config.base} (its layers end in ${names.join(', ')})`);
  }
  return LoraAdapter.create(unet, { rank: config.lora.rank, alpha: loraAlpha(config), targetModules: config.lora.targetModules, random: new Random(deriveSeed(config.seed, 0x10a)) });
}

/** The entries of `parameters` under the keys of `module` (the run's parameters hold the U-Net's and the LoRA's). */
function parametersOf(module: Module, parameters: Readonly<Record<string, HostTensor>>): Record<string, HostTensor> {
  return Object.fromEntries(
    module.namedParameters().map(([key]) => {
      const tensor = parameters[key];
      if (!tensor) throw new Error(`the parameters hold no ${key}: they are not this config's LoRA`);
      return [key, tensor];
    }),
  );
}

/** ε-MSE (weighted by `loss_weights` when the batch has them) of the U-Net with the LoRA at scale alpha/rank. */
function loraNoiseLoss(unet: UNet2DConditionModel, adapter: LoraAdapter, { graph, parameters, batch }: LossContext): Value {
  const context = mergedContext(graph, [
    { module: unet, context: contextFromValues(graph, unet, parameters) },
    { module: adapter, context: contextFromValues(graph, adapter, parameters) },
  ]);
  const prediction = unet.forward(context, batch['noisy_latents']!, batch['timesteps']!, batch['encoder_hidden_states']!, { adapter: adapter.runtime(unet, context, 1) }); // (B, C, h, w)
  return mseLoss(prediction, batch['noise']!, batch['loss_weights']);
}

/** kohya's tensors of `adapter`: per target `lora_unet_<path with _>` down (r, in), up (out, r) and alpha (a scalar). */
function kohyaTensors(adapter: LoraAdapter): Record<string, HostTensor> {
  return Object.fromEntries(
    adapter.targets.flatMap((path) => {
      const layer = adapter.layer(path)!;
      const name = `lora_unet_${path.replaceAll('.', '_')}`;
      return [
        [`${name}.lora_down.weight`, layer.lora_A.weight.data],
        [`${name}.lora_up.weight`, layer.lora_B.weight.data],
        [`${name}.alpha`, { dtype: 'float32', shape: [], data: Float32Array.of(layer.alpha) } satisfies HostTensor],
      ];
    }),
  );
}

/** Writes the LoRA pairs of `parameters` into `directory` in `format`, with adapter_config.json, README.md and ATTRIBUTION.md. */
export async function exportLora(config: LoraConfig, parameters: Readonly<Record<string, HostTensor>>, directory: string, format: LoraExportFormat): Promise<string> {
  const base = await baseComponents(config.base);
  const unet = await unetArchitecture(base.unet);
  const adapter = createAdapter(unet, config);
  adapter.loadStateDict(parametersOf(adapter, parameters));
  await mkdir(directory, { recursive: true });
  const file = join(directory, format === 'peft' ? PEFT_FILE : KOHYA_FILE);
  const alpha = loraAlpha(config);
  if (format === 'peft') await adapter.save(file);
  else await writeSafetensors(file, kohyaTensors(adapter), { metadata: { ss_network_module: 'networks.lora', ss_network_dim: String(config.lora.rank), ss_network_alpha: String(alpha) } });
  // PEFT's LoraConfig fields for these adapters (kaiming-uniform A, zero B is PEFT's default init).
  const adapterConfig = {
    peft_type: 'LORA',
    base_model_name_or_path: config.base,
    r: config.lora.rank,
    lora_alpha: alpha,
    target_modules: config.lora.targetModules,
    lora_dropout: 0,
    bias: 'none',
    init_lora_weights: true,
    weight_file: file.slice(directory.length + 1),
    weight_layout: format,
  };
  await writeFile(join(directory, 'adapter_config.json'), `${JSON.stringify(adapterConfig, null, 2)}\n`);
  const world = await openWorld(config.data, (await readAutoencoderKLConfig(base.vae)).sample_size, () => undefined);
  const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
  await writeFile(join(directory, 'ATTRIBUTION.md'), attributionMarkdown(world.catalog, { styles: stream.styles(), patterns: true }));
  const readme = [
    `# LoRA for ${config.base}`,
    '',
    `Trained by \`kosmos-g train lora\` on world scenes${config.scenes.styles ? ` of style ${config.scenes.styles.join(', ')}` : ''}: rank ${config.lora.rank}, alpha ${alpha} (scale ${alpha / config.lora.rank}), ${adapter.targets.length} adapted layers (target modules ${config.lora.targetModules.join(', ')}).`,
    '',
    format === 'peft'
      ? `\`${PEFT_FILE}\`: diffusers/PEFT layout, \`unet.<path>.lora_A.weight\` (r, in) and \`.lora_B.weight\` (out, r); rank, alpha and targets in the \`lora_adapter_metadata\` header.`
      : `\`${KOHYA_FILE}\`: kohya layout, \`lora_unet_<path with _>.lora_down.weight\` (r, in), \`.lora_up.weight\` (out, r) and \`.alpha\`.`,
    '',
    `    kosmos-g generate --model ${config.base} --pipeline clip-text --prompt "…" --lora ${file} --lora-scale 1`,
    '',
  ];
  await writeFile(join(directory, 'README.md'), readme.join('\n'));
  return file;
}

export const loraStage: StageDefinition<LoraConfig> = {
  name: 'lora',
  description: 'LoRA adapters on a frozen U-Net, trained with CLIP-text conditioning',
  schema: loraConfigSchema,

  async build(config, environment) {
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const base = await baseComponents(config.base);
    const unet = await UNet2DConditionModel.fromPretrained(base.unet);
    const adapter = createAdapter(unet, config);
    const schedulerConfig = (await readConfigJson(join(base.scheduler, 'scheduler_config.json'))) as SchedulerConfig;
    const encoders = await FrozenEncoders.open({ vae: base.vae, textEncoder: base.textEncoder, tokenizer: base.tokenizer, model: unet.config }, config.batchSize, session);
    const world = await openWorld(config.data, encoders.vae.config.sample_size, environment.report);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const preview = new CaptionedSceneStream(world, EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed, config.scenes);
    const previewScenes = Array.from({ length: config.preview.count }, (_, i) => preview.sample(i));
    const unetParameters = unet.stateDict();
    const loraParameters = adapter.stateDict();
    environment.report(
      `LoRA: ${adapter.targets.length} layers of ${config.base}'s U-Net, ${adapter.parameterCount()} parameters (rank ${config.lora.rank}, alpha ${loraAlpha(config)}); ` +
        `${(unet.parameterCount() / 1e6).toFixed(2)} M frozen; ${stream.subjects.length} subjects`,
    );
    const noised: NoisedBatchSource = { seed: config.seed, captionDropout: config.captionDropout, snrGamma: config.snrGamma, encoders, noiseSchedule: new DDPMScheduler(schedulerConfig) };
    // Sample grids: one sampler for both rows; the LoRA row feeds U-Net weights with B·A fused in,
    // held by a second U-Net and adapter so the traced training modules keep the base's values.
    let sampler: LatentSampler | null = null;
    let baseImages: RgbaImage[] | null = null;
    let fusing: { unet: UNet2DConditionModel; adapter: LoraAdapter } | null = null;
    return {
      parameters: { ...unetParameters, ...loraParameters },
      trainable: Object.keys(loraParameters),
      trainingOnly: Object.keys(unetParameters),
      batchSpec: noisedBatchSpec(noised, config.batchSize),
      loss: (context) => loraNoiseLoss(unet, adapter, context),
      batch: (step) => noisedBatch(noised, stream.batch(step, config.batchSize), step),
      async sampleGrid(parameters) {
        sampler ??= await LatentSampler.create(unet, encoders, schedulerConfig, previewScenes.length, session);
        const captions = previewScenes.map((scene) => scene.caption);
        const settings = { steps: config.preview.steps, guidanceScale: config.preview.guidanceScale, seed: 0 };
        baseImages ??= await sampler.generate(unetParameters, captions, settings);
        if (!fusing) {
          const copy = new UNet2DConditionModel(unet.config, checkpointInitialized);
          fusing = { unet: copy, adapter: createAdapter(copy, config) };
        }
        fusing.unet.loadStateDict(unetParameters);
        fusing.adapter.loadStateDict(parametersOf(fusing.adapter, parameters));
        fusing.adapter.fuseInto(fusing.unet, 1);
        const loraImages = await sampler.generate(fusing.unet.stateDict(), captions, settings);
        return imageGridPng([previewScenes.map((scene) => scene.image), baseImages, loraImages]);
      },
      async release() {
        await sampler?.release();
        await encoders.release();
      },
    };
  },

  exportFormats: LORA_EXPORT_FORMATS,

  /** The LoRA pairs only, in the diffusers/PEFT or kohya layout (header comment). */
  async exportModel(config, parameters, directory, format = 'peft') {
    await exportLora(config, parameters, directory, format as LoraExportFormat);
  },

  /** The LoRA pairs of an exported folder (either layout); its alpha must be this config's. */
  async importModel(config, directory) {
    const candidates = [join(directory, PEFT_FILE), join(directory, KOHYA_FILE)];
    const present = await Promise.all(candidates.map((file) => stat(file).then((entry) => entry.isFile(), () => false)));
    const file = candidates[present.indexOf(true)];
    if (!file) throw new Error(`${directory} holds neither ${PEFT_FILE} nor ${KOHYA_FILE}`);
    const unet = await unetArchitecture((await baseComponents(config.base)).unet);
    const reader = await openSafetensors(file);
    const adapter = await LoraAdapter.fromSafetensors(unet, reader).finally(() => reader.close());
    const alpha = loraAlpha(config);
    const other = adapter.targets.find((path) => adapter.layer(path)!.alpha !== alpha);
    if (other) throw new Error(`${file}: ${other} has alpha ${adapter.layer(other)!.alpha}, this config ${alpha}`);
    return adapter.stateDict();
  },
};
