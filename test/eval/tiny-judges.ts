// Tiny random judges in the real judges' layouts: clip/ as transformers' CLIPModel (two towers with
// projections in one model.safetensors, config.json with text_config / vision_config, a CLIP BPE
// tokenizer beside it) and dino/ as transformers' ViTModel.
import { join } from 'node:path';
import { CLIPTextModel, parseClipTextConfig } from '../../src/models/clip_text.js';
import { CLIPVisionModel, parseClipVisionConfig } from '../../src/models/clip_vision.js';
import { ViTModel, parseViTConfig } from '../../src/models/vit.js';
import { saveClipModel } from '../../src/models/clip_model.js';
import { saveClipTokenizer, trainBpe } from '../../src/tokenizers/bpe_trainer.js';
import { END_OF_TEXT } from '../../src/tokenizers/clip_bpe.js';
import { Random } from '../../src/util/random.js';

const CORPUS = [
  'a backpack in the jungle', 'a backpack in the snow', 'a dog on the beach', 'a cat on a cobblestone street',
  'a red backpack', 'a purple dog', 'a shiny cat', 'a wet dog', 'a cube shaped backpack', 'a dog wearing a red hat',
];

export const TINY_VIT = { hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, image_size: 32, patch_size: 8, layer_norm_eps: 1e-6, qkv_bias: true };

export interface TinyJudges {
  text: CLIPTextModel;
  vision: CLIPVisionModel;
  vit: ViTModel;
}

/** Writes `directory/clip` and `directory/dino` and returns the models it wrote. */
export async function writeTinyJudges(directory: string, seed = 0): Promise<TinyJudges> {
  const random = new Random(seed);
  const trained = trainBpe(CORPUS, { vocabularySize: 600, minFrequency: 2, cleaning: 'basic' });
  const clip = join(directory, 'clip');
  await saveClipTokenizer(clip, trained);
  const text = new CLIPTextModel(
    parseClipTextConfig({
      vocab_size: trained.tokens.length, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2,
      max_position_embeddings: 77, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, eos_token_id: trained.tokens.indexOf(END_OF_TEXT), projection_dim: 8,
    }),
    { random, withProjection: true },
  );
  const vision = new CLIPVisionModel(
    parseClipVisionConfig({ hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_channels: 3, image_size: 32, patch_size: 8, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, projection_dim: 8 }),
    { random, withProjection: true },
  );
  await saveClipModel(clip, text, vision);
  const vit = new ViTModel(parseViTConfig(TINY_VIT), { random });
  await vit.save(join(directory, 'dino'));
  return { text, vision, vit };
}
