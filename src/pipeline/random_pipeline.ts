// `init-random`: a complete pipeline folder with random weights, so every code path (prompt
// processing, condition encoding, guidance, sampling, decoding, the CLI) runs without trained
// models. The `mini` config has exactly the shapes of the embedded kosmos-g-mini. The `tiny` config keeps each component a few thousand parameters with consistent widths:
//   vision width 24 → connector 24→48 (8 queries) → MLLM width 48 → aligner 48→32 (77 queries)
//   = U-Net cross_attention_dim 32 = CLIP-text hidden size 32
// and a VAE with factor 8 under a two-level U-Net, so images are multiples of 16 px (default 64).
// Each model is written by its own `save()`; the scheduler config is SD 1.5's (PNDM class with the
// SD keys, the sampler being chosen at generation time), as SD ships it.
import { cp, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { AlignerNet, parseAlignerConfig } from '../models/aligner.js';
import { AutoencoderKL, parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { CLIPTextModel, parseClipTextConfig } from '../models/clip_text.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../models/kosmos_mllm.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { UNet2DConditionModel, parseUNetConfig } from '../models/unet_2d_condition.js';
import { XConnector, parseXConnectorConfig } from '../models/xconnector.js';
import { saveClipTokenizer, saveMiniKosmosTokenizer, trainBpe } from '../tokenizers/bpe_trainer.js';
import { END_OF_TEXT } from '../tokenizers/clip_bpe.js';
import { loadKosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { Random, deriveSeed } from '../util/random.js';
import { readConfigJson } from '../io/config-json.js';
import { DEFAULT_MODEL } from './default_model.js';
import { KOSMOS_G_NETWORK_ENTRIES } from './folder.js';

export const RANDOM_CONFIGS = ['tiny', 'mini'] as const;
export type RandomConfigName = (typeof RANDOM_CONFIGS)[number];

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

/** The model_index.json of a Kosmos-G folder with the CLIP-text path. */
const MODEL_INDEX = {
  _class_name: 'KosmosGPipeline',
  tokenizer: ['kosmos_g', 'MiniKosmosTokenizer'],
  ...KOSMOS_G_NETWORK_ENTRIES,
  scheduler: ['diffusers', 'PNDMScheduler'],
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

/**
 * The two tokenizers of the tiny pipeline from one byte-level BPE trained on TOKENIZER_CORPUS: the
 * CLIP tokenizer (clip_tokenizer/) and the MLLM tokenizer in kosmos-g-mini's layout (tokenizer/:
 * fairseq specials 0-3, the BPE, `<image>` and `</image>` last). Returns both vocabulary sizes,
 * the MLLM's read back through the loader the pipeline uses.
 */
async function writeTinyTokenizers(directory: string): Promise<{ clip: number; endOfText: number; mllm: number }> {
  const trained = trainBpe(TOKENIZER_CORPUS, { vocabularySize: 600, minFrequency: 2, cleaning: 'basic' });
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
export async function createRandomPipeline(directory: string, options: { config: RandomConfigName; seed?: number }): Promise<void> {
  if (!RANDOM_CONFIGS.includes(options.config)) throw new Error(`unknown config ${JSON.stringify(options.config)} (choose ${RANDOM_CONFIGS.join(', ')})`);
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
    const random = (index: number) => new Random(deriveSeed(seed, index));
    if (options.config === 'mini') await writeMiniComponents(temporary, random, seed);
    else await writeTinyComponents(temporary, random, seed);
    await rename(temporary, directory).catch((error: NodeJS.ErrnoException) => {
      throw new Error(error.code === 'ENOTEMPTY' || error.code === 'EEXIST' ? `${directory} already exists` : `cannot create ${directory}: ${error.code ?? error.message}`);
    });
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}

const NETWORK_NAMES = ['vision', 'connector', 'mllm', 'aligner', 'unet', 'vae'] as const;
type NetworkName = (typeof NETWORK_NAMES)[number];

/** The six networks of a Kosmos-G folder from their config.json contents, each with its own random stream. */
async function writeRandomNetworks(temporary: string, random: (index: number) => Random, configs: Record<NetworkName, unknown>): Promise<void> {
  await new OpenClipVisionModel(parseOpenClipVisionConfig(configs.vision), { random: random(1) }).save(join(temporary, 'vision'));
  await new XConnector(parseXConnectorConfig(configs.connector), { random: random(2) }).save(join(temporary, 'connector'));
  await new KosmosGMllm(parseKosmosMllmConfig(configs.mllm), { init: random(3) }).save(join(temporary, 'mllm'));
  await new AlignerNet(parseAlignerConfig(configs.aligner), { init: random(4), reconstruction: false }).save(join(temporary, 'aligner'));
  await new UNet2DConditionModel(parseUNetConfig(configs.unet), random(5)).save(join(temporary, 'unet'));
  await new AutoencoderKL(parseAutoencoderKLConfig(configs.vae), { random: random(6) }).save(join(temporary, 'vae'));
}

/** The tiny components: a few thousand parameters each, both tokenizers trained on TOKENIZER_CORPUS. */
async function writeTinyComponents(temporary: string, random: (index: number) => Random, seed: number): Promise<void> {
  const vocabulary = await writeTinyTokenizers(temporary);
  await writeRandomNetworks(temporary, random, { ...TINY_CONFIGS, mllm: { ...TINY_CONFIGS.mllm, vocab_size: vocabulary.mllm } });
  const textConfig = parseClipTextConfig({ ...TINY_CONFIGS.textEncoder, vocab_size: vocabulary.clip, eos_token_id: vocabulary.endOfText });
  await new CLIPTextModel(textConfig, { random: random(7) }).save(join(temporary, 'text_encoder'));
  await mkdir(join(temporary, 'scheduler'));
  await writeFile(join(temporary, 'scheduler', 'scheduler_config.json'), `${JSON.stringify(SD15_SCHEDULER_CONFIG, null, 2)}\n`);
  await writeFile(join(temporary, 'model_index.json'), `${JSON.stringify({ ...MODEL_INDEX, _init_random: { config: 'tiny', seed } }, null, 2)}\n`);
}

/**
 * The shapes of the embedded kosmos-g-mini: each component's config.json read from
 * `models/kosmos-g-mini`, random weights; its tokenizer, scheduler and world description copied.
 */
async function writeMiniComponents(temporary: string, random: (index: number) => Random, seed: number): Promise<void> {
  const configs: Partial<Record<NetworkName, unknown>> = {};
  for (const name of NETWORK_NAMES) configs[name] = await readConfigJson(join(DEFAULT_MODEL, name, 'config.json'));
  await writeRandomNetworks(temporary, random, configs as Record<NetworkName, unknown>);
  for (const name of ['tokenizer', 'scheduler', 'world.json']) await cp(join(DEFAULT_MODEL, name), join(temporary, name), { recursive: true });
  const index = (await readConfigJson(join(DEFAULT_MODEL, 'model_index.json'))) as Record<string, unknown>;
  await writeFile(join(temporary, 'model_index.json'), `${JSON.stringify({ ...index, _init_random: { config: 'mini', seed } }, null, 2)}\n`);
}
