// A tiny random-weight condition-path folder (tokenizer/, vision/, connector/, mllm/, aligner/) for
// the condition encoder tests: SentencePiece model + dict.txt built in memory, networks saved with
// their own save() methods.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { AlignerNet, parseAlignerConfig } from '../../src/models/aligner.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../../src/models/kosmos_mllm.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../../src/models/openclip_vision.js';
import { XConnector, parseXConnectorConfig } from '../../src/models/xconnector.js';
import { Random } from '../../src/util/random.js';
import { encodeSentencePieceModel, wearingModelPieces } from '../tokenizers/sentencepiece-model.js';

export const TINY_QUERIES = 4;
export const TINY_IMAGE_SIZE = 16;
/** dict.txt lines: ids 4… */
export const TINY_DICTIONARY = ['▁wearing', '▁on', '▁the', '▁beach'];
/** 4 specials + dictionary + 6 appended symbols. */
const VOCABULARY = 4 + TINY_DICTIONARY.length + 6;

export async function writeTinyConditionFolder(directory: string, seed = 1): Promise<void> {
  const random = new Random(seed);
  await mkdir(join(directory, 'tokenizer'), { recursive: true });
  await writeFile(join(directory, 'tokenizer', 'sentencepiece.bpe.model'), encodeSentencePieceModel(wearingModelPieces()));
  await writeFile(join(directory, 'tokenizer', 'dict.txt'), TINY_DICTIONARY.map((piece, i) => `${piece} ${100 - i}\n`).join(''));
  const vision = new OpenClipVisionModel(
    parseOpenClipVisionConfig({ quick_gelu: true, vision_cfg: { image_size: TINY_IMAGE_SIZE, patch_size: 8, width: 16, layers: 1, head_width: 8 } }),
    { random },
  );
  await vision.save(join(directory, 'vision'));
  const connector = new XConnector(parseXConnectorConfig({ input_dim: 16, output_dim: 24, latent_query_num: TINY_QUERIES, decoder_attention_heads: 2, attention_dropout: 0 }), { random });
  await connector.save(join(directory, 'connector'));
  const mllm = new KosmosGMllm(
    parseKosmosMllmConfig({
      decoder_embed_dim: 24, decoder_attention_heads: 2, decoder_ffn_embed_dim: 48, decoder_layers: 1, vocab_size: VOCABULARY, max_target_positions: 2048,
      dropout: 0, attention_dropout: 0, activation_dropout: 0, no_scale_embedding: false, activation_fn: 'gelu', subln: true, decoder_normalize_before: true,
      share_decoder_input_output_embed: true, layernorm_embedding: false, deepnorm: false, multiway: false, rel_pos_buckets: 0, moe_freq: 0,
    }),
    { init: random },
  );
  await mllm.save(join(directory, 'mllm'));
  const aligner = new AlignerNet(
    parseAlignerConfig({
      encoder_embed_dim: 16, encoder_attention_heads: 2, encoder_ffn_embed_dim: 32, encoder_layers: 1,
      decoder_embed_dim: 16, decoder_attention_heads: 2, decoder_ffn_embed_dim: 32, decoder_layers: 1,
      input_dim: 24, num_queries: 77, position_table_size: 160, dropout: 0, attention_dropout: 0, activation_dropout: 0, no_scale_embedding: true,
      activation_fn: 'gelu', subln: true, encoder_normalize_before: true, decoder_normalize_before: true, layernorm_embedding: false, deepnorm: false,
      multiway: false, rel_pos_buckets: 0, moe_freq: 0,
    }),
    { init: random, reconstruction: false },
  );
  await aligner.save(join(directory, 'aligner'));
}

/** A PNG of `width` × `height` in one colour, or with a left half in `left`. */
export async function solidPng(width: number, height: number, colour: [number, number, number], left?: [number, number, number]): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(left && x < width / 2 ? left : colour, (y * width + x) * 3);
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}
