// `convert`: an official Kosmos-G checkpoint (fairseq `.pt` through the safe reader, or safetensors
// with the official key names) → a pipeline folder `generate` reads:
//   vision, connector, mllm, aligner   from the checkpoint (official prefixes kept), configs derived
//                                      from the shapes and args (./architecture.ts)
//   unet, vae, scheduler               copied from the Stable Diffusion folder `--sd` (read as
//                                      ./diffusers.ts reads a decoder), else from the checkpoint's
//                                      diffusion_unet.unet.* / vae.vae.* (SD 1.5 configs)
//   tokenizer                          the SentencePiece model and fairseq dict.txt
// Everything is checked before the first byte is written (configs, shapes, the tokenizer against
// the embedding, the condition width against the U-Net), then written into a temporary sibling of
// `--out` that is renamed into place, so `--out` is either untouched or complete.
import { constants } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ALIGNER_PREFIX, AlignerNet, parseAlignerConfig } from '../models/aligner.js';
import { AutoencoderKL, modernAttentionKey, parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { KOSMOS_MLLM_PREFIX, KosmosGMllm, parseKosmosMllmConfig } from '../models/kosmos_mllm.js';
import { KOSMOS_G_PREFIX, OpenClipVisionModel, parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { UNet2DConditionModel, parseUNetConfig } from '../models/unet_2d_condition.js';
import { XCONNECTOR_PREFIX, XConnector, parseXConnectorConfig } from '../models/xconnector.js';
import type { Module } from '../nn/module.js';
import { checkpointInitialized } from '../nn/layers.js';
import { KOSMOS_G_COMPONENTS, KOSMOS_G_NETWORK_ENTRIES, readPipelineFolder, requireComponents } from '../pipeline/folder.js';
import { SD15_SCHEDULER_CONFIG } from '../pipeline/random_pipeline.js';
import { DICTIONARY_FILE, SENTENCEPIECE_MODEL_FILE, SentencePieceKosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { type ArchitectureOverrides, alignerConfig, connectorConfig, diffusionConfigs, mllmConfig, visionConfig } from './architecture.js';
import { type ComponentPlan, matchTensors, writeComponent } from './components.js';
import { type Decoder, openDecoder, singleCrossAttentionDim, writeDecoder, writeDecoderScheduler } from './diffusers.js';
import { type ComponentReport, checkOutput, writeFolderAtomically } from './output_folder.js';
import { type CheckpointSource, openCheckpointSource } from './source.js';

/** Where the official model keeps its Stable Diffusion parts (fairseq saves the whole state dict). */
const UNET_PREFIX = 'diffusion_unet.unet.';
const VAE_PREFIX = 'vae.vae.';

export interface ConvertOptions {
  /** A `.pt` checkpoint, a `.safetensors` file or index, or a folder of safetensors, with the official key names. */
  from: string;
  out: string;
  /** A Stable Diffusion folder in the diffusers layout (unet/, vae/, scheduler/); required unless the checkpoint holds them. */
  sd?: string;
  /** Weights variant of the `sd` folder to read (`fp16`), where a component has it. */
  variant?: string;
  sentencePiece: string;
  dictionary: string;
  architecture?: ArchitectureOverrides;
  /** Replace an existing `out` folder. */
  force?: boolean;
}

export interface ConversionReport {
  out: string;
  format: CheckpointSource['format'];
  /** Each component and where it came from. */
  components: ComponentReport[];
  /** Checkpoint tensors no component reads (training buffers, the tied LM head, stage-2 parts, a replaced U-Net/VAE). */
  leftOut: string[];
  /** What the `--sd` folder's components left out or changed (unused tensors, a scheduler's class). */
  notes: string[];
}

/** Builds a component's model, putting the component's name in front of a config error (one line). */
function build<M>(name: string, make: () => M): M {
  try {
    return make();
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message.replace(/\s*\n\s*/g, '; ')}`);
  }
}

function plan(name: string, model: Module & { config: object }, prefixes: { source: string; output: string }, extra: Partial<ComponentPlan> = {}): ComponentPlan {
  return { name, model, config: { ...model.config }, sourcePrefix: prefixes.source, outputPrefix: prefixes.output, weightsFile: 'model.safetensors', ...extra };
}

/** The four networks of the condition path, built from the derived configs and checked to fit together. */
function conditionPlans(source: CheckpointSource, overrides: ArchitectureOverrides): { plans: ComponentPlan[]; vocabulary: number; conditionWidth: number } {
  const shapes = new Map([...source.tensors].map(([key, tensor]) => [key, tensor.shape]));
  const vision = build('vision', () => new OpenClipVisionModel(parseOpenClipVisionConfig(visionConfig(shapes, KOSMOS_G_PREFIX, overrides.vision)), { random: checkpointInitialized }));
  const connector = build('connector', () => new XConnector(parseXConnectorConfig(connectorConfig(shapes, XCONNECTOR_PREFIX, source.args, overrides.connector)), { random: checkpointInitialized }));
  const mllm = build('mllm', () => new KosmosGMllm(parseKosmosMllmConfig(mllmConfig(shapes, KOSMOS_MLLM_PREFIX, source.args, overrides.mllm)), { init: null }));
  const aligner = build('aligner', () => new AlignerNet(parseAlignerConfig(alignerConfig(shapes, ALIGNER_PREFIX, overrides.aligner)), { init: null, reconstruction: false }));
  const width = vision.config.vision_cfg.width;
  const dim = mllm.config.decoder_embed_dim;
  if (connector.config.input_dim !== width) throw new Error(`connector: input_dim ${connector.config.input_dim} does not match the vision width ${width}`);
  if (connector.config.output_dim !== dim) throw new Error(`connector: output_dim ${connector.config.output_dim} does not match the MLLM width ${dim}`);
  if (aligner.config.input_dim !== dim) throw new Error(`aligner: input_dim ${aligner.config.input_dim} does not match the MLLM width ${dim}`);
  const same = (prefix: string) => ({ source: prefix, output: prefix });
  return {
    plans: [plan('vision', vision, same(KOSMOS_G_PREFIX)), plan('connector', connector, same(XCONNECTOR_PREFIX)), plan('mllm', mllm, same(KOSMOS_MLLM_PREFIX)), plan('aligner', aligner, same(ALIGNER_PREFIX))],
    vocabulary: mllm.config.vocab_size,
    conditionWidth: aligner.config.decoder_embed_dim,
  };
}

/** The decoder: a checked `--sd` folder to copy, or the checkpoint's own U-Net and VAE to write. */
type DiffusionSource = { kind: 'sd'; decoder: Decoder; crossAttentionDim: number } | { kind: 'checkpoint'; plans: ComponentPlan[]; crossAttentionDim: number };

async function diffusionSource(source: CheckpointSource, options: ConvertOptions): Promise<DiffusionSource> {
  if (options.sd) {
    const decoder = await openDecoder(options.sd, '--sd', options.variant);
    return { kind: 'sd', decoder, crossAttentionDim: decoder.crossAttentionDim };
  }
  const held = (prefix: string) => [...source.tensors.keys()].some((key) => key.startsWith(prefix));
  const absent = [held(UNET_PREFIX) ? '' : `${UNET_PREFIX}*`, held(VAE_PREFIX) ? '' : `${VAE_PREFIX}*`].filter(Boolean);
  if (absent.length) throw new Error(`${source.path} holds no ${absent.join(' and ')}: give --sd DIR, a Stable Diffusion 1.5 folder in the diffusers layout`);
  const configs = diffusionConfigs(options.architecture ?? {});
  const unet = build('unet', () => new UNet2DConditionModel(parseUNetConfig(configs.unet), checkpointInitialized));
  const vae = build('vae', () => new AutoencoderKL(parseAutoencoderKLConfig(configs.vae), { random: checkpointInitialized }));
  const diffusers = { weightsFile: 'diffusion_pytorch_model.safetensors' };
  return {
    kind: 'checkpoint',
    crossAttentionDim: singleCrossAttentionDim(unet.config, 'unet'),
    plans: [
      { ...plan('unet', unet, { source: UNET_PREFIX, output: '' }, diffusers), config: { _class_name: 'UNet2DConditionModel', ...unet.config } },
      // Checkpoints written before diffusers 0.14 name the VAE's attention query/key/value/proj_attn.
      { ...plan('vae', vae, { source: VAE_PREFIX, output: '' }, { ...diffusers, modelKey: modernAttentionKey }), config: { _class_name: 'AutoencoderKL', ...vae.config } },
    ],
  };
}

/** The official tokenizer, checked against the MLLM: every id it gives must have an embedding row. */
async function checkTokenizer(options: ConvertOptions, vocabulary: number): Promise<void> {
  const tokenizer = await SentencePieceKosmosTokenizer.fromFiles(options.sentencePiece, options.dictionary);
  if (tokenizer.vocabularySize > vocabulary) {
    throw new Error(`${options.dictionary} gives ${tokenizer.vocabularySize} ids but the MLLM's embedding has ${vocabulary} rows (is it the dict.txt of this checkpoint?)`);
  }
}

const MODEL_INDEX_ENTRIES = { tokenizer: ['kosmos_g', 'SentencePieceKosmosTokenizer'], ...KOSMOS_G_NETWORK_ENTRIES };

export async function convertKosmosG(options: ConvertOptions): Promise<ConversionReport> {
  const force = options.force ?? false;
  const out = await checkOutput(options.out, force, [['--from', options.from], ['--sd', options.sd]]);
  const source = await openCheckpointSource(options.from);
  let diffusion: DiffusionSource | undefined;
  try {
    const condition = conditionPlans(source, options.architecture ?? {});
    await checkTokenizer(options, condition.vocabulary);
    diffusion = await diffusionSource(source, options);
    if (diffusion.crossAttentionDim !== condition.conditionWidth) {
      throw new Error(`the aligner's output is ${condition.conditionWidth} wide but the U-Net cross-attends to ${diffusion.crossAttentionDim}`);
    }
    const decoder = diffusion.kind === 'sd' ? diffusion.decoder : null;
    const plans = [...condition.plans, ...(diffusion.kind === 'checkpoint' ? diffusion.plans : [])];
    // Every plan's tensors are matched before anything is written.
    for (const component of plans) matchTensors(source, component);
    decoder?.match();
    return await writeFolderAtomically(out, force, async (directory) => {
      const report: ConversionReport = { out, format: source.format, components: [], leftOut: [], notes: [] };
      const used = new Set<string>();
      for (const component of plans) {
        const keys = await writeComponent(join(directory, component.name), source, component);
        keys.forEach((key) => used.add(key));
        report.components.push({ name: component.name, source: `${keys.length} tensors from ${basename(options.from)}` });
      }
      if (decoder) {
        await writeDecoder(decoder, directory, report, 'copied from --sd: ');
        await writeDecoderScheduler(decoder.scheduler, directory, report, 'copied from --sd: ');
      } else {
        await mkdir(join(directory, 'scheduler'));
        await writeFile(join(directory, 'scheduler', 'scheduler_config.json'), `${JSON.stringify(SD15_SCHEDULER_CONFIG, null, 2)}\n`);
      }
      await mkdir(join(directory, 'tokenizer'));
      await copyFile(options.sentencePiece, join(directory, 'tokenizer', SENTENCEPIECE_MODEL_FILE), constants.COPYFILE_FICLONE);
      await copyFile(options.dictionary, join(directory, 'tokenizer', DICTIONARY_FILE), constants.COPYFILE_FICLONE);
      const scheduler = decoder ? decoder.scheduler.config._class_name : SD15_SCHEDULER_CONFIG._class_name;
      const index = { _class_name: 'KosmosGPipeline', _converted_from: basename(options.from), ...MODEL_INDEX_ENTRIES, scheduler: ['diffusers', scheduler] };
      await writeFile(join(directory, 'model_index.json'), `${JSON.stringify(index, null, 2)}\n`);
      // The same folder check `generate` makes, before the folder is moved into place.
      requireComponents(await readPipelineFolder(directory), KOSMOS_G_COMPONENTS, 'Kosmos-G generation');
      report.leftOut = [...source.tensors.keys()].filter((key) => !used.has(key));
      return report;
    });
  } finally {
    if (diffusion?.kind === 'sd') await diffusion.decoder.close();
    await source.close();
  }
}
