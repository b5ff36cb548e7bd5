// `init-random`: a complete pipeline folder with random weights, so every code path (prompt
// processing, condition encoding, guidance, sampling, decoding, the CLI) runs without trained
// models. Three configs:
//   tiny      each component a few thousand parameters with consistent widths:
//               vision width 24 → connector 24→48 (8 queries) → MLLM width 48 → aligner 48→32
//               (77 queries) = U-Net cross_attention_dim 32 = CLIP-text hidden size 32
//             and a VAE with factor 8 under a two-level U-Net, so images are multiples of 16 px
//             (default 64).
//   mini      exactly the shapes of the embedded kosmos-g-mini.
//   kosmos-g  the paper's shapes (src/models/configs/): 2.83 B parameters, 11.3 GB in float32,
//             for measuring the real model's speed and memory without its weights.
// Each model is written by its own `save()`, float32 or float16 (`dtype`), one network at a time:
// a network's random weights are dropped before the next one is drawn, so the largest network (the
// MLLM, 5.4 GB in float32) bounds the memory (measured for kosmos-g: 6.0 GiB peak RSS). The scheduler config is SD 1.5's (PNDM class with the
// SD keys, the sampler being chosen at generation time), as SD ships it.
import { cp, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AlignerNet, parseAlignerConfig } from '../models/aligner.js';
import { AutoencoderKL, parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { CLIPTextModel, parseClipTextConfig } from '../models/clip_text.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../models/kosmos_mllm.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { UNet2DConditionModel, parseUNetConfig } from '../models/unet_2d_condition.js';
import { XConnector, parseXConnectorConfig } from '../models/xconnector.js';
import { type TrainedBpe, saveClipTokenizer, saveMiniKosmosTokenizer, trainBpe } from '../tokenizers/bpe_trainer.js';
import { END_OF_TEXT } from '../tokenizers/clip_bpe.js';
import { loadKosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { Random, deriveSeed } from '../util/random.js';
import { readConfigJson } from '../io/config-json.js';
import type { Module } from '../nn/module.js';
import { DEFAULT_MODEL } from './default_model.js';
import { KOSMOS_G_NETWORK_ENTRIES } from './folder.js';

export const RANDOM_CONFIGS = ['tiny', 'mini', 'kosmos-g'] as const;
export type RandomConfigName = (typeof RANDOM_CONFIGS)[number];

/** How the weights are stored: float16 halves the folder; every loader reads it back as float32. */
export const RANDOM_DTYPES = ['float32', 'float16'] as const;
export type RandomWeightsDtype = (typeof RANDOM_DTYPES)[number];

export interface RandomPipelineOptions {
  config: RandomConfigName;
  seed?: number;
  /** Default float32. */
  dtype?: RandomWeightsDtype;
  /** Called after each network is written, with its parameter count (the paper config takes minutes). */
  onNetwork?: (name: NetworkName, parameters: number) => void;
}

const NETWORK_NAMES = ['vision', 'connector', 'mllm', 'aligner', 'unet', 'vae'] as const;
export type NetworkName = (typeof NETWORK_NAMES)[number];

/** The paper-size config.json files, found from this module's location (dist/src/pipeline/ → the package root). */
export const PAPER_CONFIG_DIRECTORY = fileURLToPath(new URL('../../../src/models/configs/', import.meta.url));

/** The `kosmos-g` config: each network's config.json in PAPER_CONFIG_DIRECTORY. */
export const PAPER_CONFIG_FILES: Readonly<Record<NetworkName, string>> = {
  vision: 'openclip-vit-l-14-kosmos-g.json',
  connector: 'kosmos-g-xconnector.json',
  mllm: 'kosmos-g-mllm.json',
  aligner: 'kosmos-g-aligner.json',
  unet: 'unet-sd15.json',
  vae: 'vae-sd15.json',
};

/** The Stable Diffusion 1.5 `scheduler/scheduler_config.json`. */
export const SD15_SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

const CROSS_DIM = 32;
const MLLM_DIM = 48;
const VISION_WIDTH = 24;

/** The `tiny` components' config.json contents (the tokenizers add the vocabulary sizes); the benches train them too. */
export const TINY_CONFIGS = {
  vision: { quick_gelu: true, vision_cfg: { image_size: 32, patch_size: 8, width: VISION_WIDTH, layers: 2, head_width: 8, mlp_ratio: 4 } },
  connector: { input_dim: VISION_WIDTH, output_dim: MLLM_DIM, latent_query_num: 8, decoder_attention_heads: 4, attention_dropout: 0.1 },
  mllm: {
    decoder_embed_dim: MLLM_DIM, decoder_attention_heads: 4, decoder_ffn_embed_dim: 192, decoder_layers: 2, max_target_positions: 2048,
    dropout: 0.1, attention_dropout: 0.1, activation_dropout: 0, no_scale_embedding: false, activation_fn: 'gelu', subln: true,
    decoder_normalize_before: true, share_decoder_input_output_embed: true, layernorm_embedding: false, deepnorm: false, multiway: false,
    rel_pos_buckets: 0, moe_freq: 0,
  },
  aligner: {
    encoder_embed_dim: CROSS_DIM, encoder_attention_heads: 4, encoder_ffn_embed_dim: 128, encoder_layers: 2,
    decoder_embed_dim: CROSS_DIM, decoder_attention_heads: 4, decoder_ffn_embed_dim: 128, decoder_layers: 2,
    input_dim: MLLM_DIM, num_queries: 77, position_table_size: 512, dropout: 0, attention_dropout: 0, activation_dropout: 0,
    no_scale_embedding: true, activation_fn: 'gelu', subln: true, encoder_normalize_before: true, decoder_normalize_before: true,
    layernorm_embedding: false, deepnorm: false, multiway: false, rel_pos_buckets: 0, moe_freq: 0,
  },
  unet: {
    in_channels: 4, out_channels: 4, sample_size: 8, flip_sin_to_cos: true, freq_shift: 0,
    down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
    block_out_channels: [8, 16], layers_per_block: 1, cross_attention_dim: CROSS_DIM, attention_head_dim: 2, norm_num_groups: 4,
  },
  vae: {
    in_channels: 3, out_channels: 3, down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'),
    block_out_channels: [8, 8, 16, 16], layers_per_block: 1, act_fn: 'silu', latent_channels: 4, norm_num_groups: 4, sample_size: 64,
    scaling_factor: 0.18215,
  },
  textEncoder: {
    hidden_size: CROSS_DIM, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 77,
    hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
  },
};

/** The model_index.json entries of a Kosmos-G folder; the tiny one adds the CLIP-text path. */
const KOSMOS_G_INDEX = {
  _class_name: 'KosmosGPipeline',
  tokenizer: ['kosmos_g', 'MiniKosmosTokenizer'],
  ...KOSMOS_G_NETWORK_ENTRIES,
  scheduler: ['diffusers', 'PNDMScheduler'],
};
const CLIP_TEXT_INDEX = {
  text_encoder: ['transformers', 'CLIPTextModel'],
  clip_tokenizer: ['transformers', 'CLIPTokenizer'],
};

/** Captions the tiny tokenizers' merges are learned from (the mini models learn theirs from the emoji world). */
const TOKENIZER_CORPUS = [
  'a photo of a dog wearing a red hat on the beach',
  'a cat in the snow',
  'a dog and a cat on the grass',
  'a red apple on a wooden table',
  'an image of a bear wearing sunglasses in the jungle',
  'a teddy bear on the beach at sunset',
  'a backpack on a bench in the city',
  'a vase of flowers on the table',
];

/** The tiny config's byte-level BPE, learned from TOKENIZER_CORPUS (600 tokens). */
const trainTinyBpe = (): TrainedBpe => trainBpe(TOKENIZER_CORPUS, { vocabularySize: 600, minFrequency: 2, cleaning: 'basic' });

/**
 * The two tokenizers of the tiny pipeline from one BPE: the CLIP tokenizer (clip_tokenizer/) and
 * the MLLM tokenizer in kosmos-g-mini's layout (tokenizer/: fairseq specials 0-3, the BPE,
 * `<image>` and `</image>` last). Returns both vocabulary sizes, the MLLM's read back through the
 * loader the pipeline uses.
 */
async function writeTinyTokenizers(directory: string): Promise<{ clip: number; endOfText: number; mllm: number }> {
  const trained = trainTinyBpe();
  await saveClipTokenizer(join(directory, 'clip_tokenizer'), trained);
  await saveMiniKosmosTokenizer(join(directory, 'tokenizer'), trained);
  const mllm = (await loadKosmosTokenizer(join(directory, 'tokenizer'))).vocabularySize;
  return { clip: trained.tokens.length, endOfText: trained.tokens.indexOf(END_OF_TEXT), mllm };
}

/**
 * Writes a random-weight pipeline folder. Everything goes to a temporary sibling folder that is
 * renamed into place at the end, so `directory` is either absent or complete; an existing
 * `directory` is refused.
 */
export async function createRandomPipeline(directory: string, options: RandomPipelineOptions): Promise<void> {
  if (!RANDOM_CONFIGS.includes(options.config)) throw new Error(`unknown config ${JSON.stringify(options.config)} (choose ${RANDOM_CONFIGS.join(', ')})`);
  const dtype = options.dtype ?? 'float32';
  if (!RANDOM_DTYPES.includes(dtype)) throw new Error(`unknown dtype ${JSON.stringify(dtype)} (choose ${RANDOM_DTYPES.join(', ')})`);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  if (await stat(directory).then(() => true, () => false)) throw new Error(`${directory} already exists`);
  await mkdir(dirname(directory), { recursive: true });
  const temporary = join(dirname(directory), `.${basename(directory)}.${process.pid}.tmp`);
  try {
    await mkdir(temporary);
  } catch (error) {
    throw new Error(`cannot create ${temporary}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    const writer: NetworkWriter = {
      directory: temporary,
      random: (index) => new Random(deriveSeed(seed, index)),
      dtype: dtype === 'float16' ? 'F16' : 'F32',
      onNetwork: options.onNetwork,
    };
    const writeComponents = { tiny: writeTinyComponents, mini: writeMiniComponents, 'kosmos-g': writePaperComponents }[options.config];
    const index = await writeComponents(writer);
    await writeFile(join(temporary, 'model_index.json'), `${JSON.stringify({ ...index, _init_random: { config: options.config, seed, dtype } }, null, 2)}\n`);
    await rename(temporary, directory).catch((error: NodeJS.ErrnoException) => {
      throw new Error(error.code === 'ENOTEMPTY' || error.code === 'EEXIST' ? `${directory} already exists` : `cannot create ${directory}: ${error.code ?? error.message}`);
    });
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}

/** Where and how the networks of one folder are written. */
interface NetworkWriter {
  directory: string;
  /** Random stream `index` of the seed: the six networks draw from 1 to 6, the tiny text encoder from 7, so none depends on another's draws. */
  random: (index: number) => Random;
  dtype: 'F32' | 'F16';
  onNetwork?: RandomPipelineOptions['onNetwork'];
}

type SavableModule = Module & { save(directory: string, options: { dtype: 'F32' | 'F16' }): Promise<void> };

/** Each network's constructor from its config.json contents, drawing from `random(network)`. */
function networkBuilders(configs: Record<NetworkName, unknown>, random: (network: NetworkName) => Random): Record<NetworkName, () => SavableModule> {
  return {
    vision: () => new OpenClipVisionModel(parseOpenClipVisionConfig(configs.vision), { random: random('vision') }),
    connector: () => new XConnector(parseXConnectorConfig(configs.connector), { random: random('connector') }),
    mllm: () => new KosmosGMllm(parseKosmosMllmConfig(configs.mllm), { init: random('mllm') }),
    aligner: () => new AlignerNet(parseAlignerConfig(configs.aligner), { init: random('aligner'), reconstruction: false }),
    unet: () => new UNet2DConditionModel(parseUNetConfig(configs.unet), random('unet')),
    vae: () => new AutoencoderKL(parseAutoencoderKLConfig(configs.vae), { random: random('vae') }),
  };
}

async function readNetworkConfigs(file: (network: NetworkName) => string): Promise<Record<NetworkName, unknown>> {
  const configs: Partial<Record<NetworkName, unknown>> = {};
  for (const name of NETWORK_NAMES) configs[name] = await readConfigJson(file(name));
  return configs as Record<NetworkName, unknown>;
}

/**
 * The six networks of a Kosmos-G folder from their config.json contents, one at a time: each is
 * built, saved and dropped (nothing keeps it) before the next one is drawn.
 */
async function writeRandomNetworks(writer: NetworkWriter, configs: Record<NetworkName, unknown>): Promise<void> {
  const builders = networkBuilders(configs, (network) => writer.random(NETWORK_NAMES.indexOf(network) + 1));
  for (const name of NETWORK_NAMES) {
    // Only this iteration's binding holds the model: its weights can be collected when the next network is drawn.
    const model = builders[name]();
    await model.save(join(writer.directory, name), { dtype: writer.dtype });
    writer.onNetwork?.(name, model.parameterCount());
  }
}

async function writeSchedulerConfig(directory: string): Promise<void> {
  await mkdir(join(directory, 'scheduler'));
  await writeFile(join(directory, 'scheduler', 'scheduler_config.json'), `${JSON.stringify(SD15_SCHEDULER_CONFIG, null, 2)}\n`);
}

/** The tiny components: a few thousand parameters each, both tokenizers trained on TOKENIZER_CORPUS. */
async function writeTinyComponents(writer: NetworkWriter): Promise<Record<string, unknown>> {
  const vocabulary = await writeTinyTokenizers(writer.directory);
  await writeRandomNetworks(writer, { ...TINY_CONFIGS, mllm: { ...TINY_CONFIGS.mllm, vocab_size: vocabulary.mllm } });
  const textConfig = parseClipTextConfig({ ...TINY_CONFIGS.textEncoder, vocab_size: vocabulary.clip, eos_token_id: vocabulary.endOfText });
  await new CLIPTextModel(textConfig, { random: writer.random(7) }).save(join(writer.directory, 'text_encoder'), { dtype: writer.dtype });
  await writeSchedulerConfig(writer.directory);
  return { ...KOSMOS_G_INDEX, ...CLIP_TEXT_INDEX };
}

/**
 * The shapes of the embedded kosmos-g-mini: each component's config.json read from
 * `models/kosmos-g-mini`, random weights; its tokenizer, scheduler and world description copied.
 */
async function writeMiniComponents(writer: NetworkWriter): Promise<Record<string, unknown>> {
  await writeRandomNetworks(writer, await readNetworkConfigs((name) => join(DEFAULT_MODEL, name, 'config.json')));
  for (const name of ['tokenizer', 'scheduler', 'world.json']) await cp(join(DEFAULT_MODEL, name), join(writer.directory, name), { recursive: true });
  return readConfigJson(join(DEFAULT_MODEL, 'model_index.json'));
}

/**
 * The paper's shapes: open_clip ViT-L/14, the XConnector (1024 → 2048, 64 queries), the 24-layer
 * MLLM with the official 64,007-row embedding, AlignerNet M, the SD 1.5 U-Net and VAE, and SD 1.5's
 * scheduler config.
 *
 * The tokenizer: the official one is a SentencePiece model and a fairseq dictionary learned from
 * data, which no random draw can stand in for, so the folder gets the tiny config's BPE in
 * kosmos-g-mini's layout (tokenizer.json). Its 600 ids index the first rows of the embedding, which
 * the pipeline accepts (a tokenizer may be smaller than the embedding, never larger); the embedding
 * keeps the official row count so that the MLLM has exactly the paper's parameters. "wearing" is one
 * token of this BPE as of the official one, so "<i> wearing <i>" is the paper's 134 tokens and the
 * MLLM's work is the paper's too.
 */
async function writePaperComponents(writer: NetworkWriter): Promise<Record<string, unknown>> {
  await saveMiniKosmosTokenizer(join(writer.directory, 'tokenizer'), trainTinyBpe());
  await writeRandomNetworks(writer, await readNetworkConfigs((name) => join(PAPER_CONFIG_DIRECTORY, PAPER_CONFIG_FILES[name])));
  await writeSchedulerConfig(writer.directory);
  return KOSMOS_G_INDEX;
}
