// transformers' `CLIPModel` folder: the text tower and the vision tower with their projections in
// one model.safetensors (`text_model.*`, `text_projection.weight`, `vision_model.*`,
// `visual_projection.weight`, `logit_scale`) and a config.json holding `text_config` and
// `vision_config` — the layout of openai/clip-vit-base-patch32, which CLIP-I and CLIP-T are
// computed with. The towers are the architectures of clip_text.ts and clip_vision.ts.
import { platform, join } from '#platform';
import { writeFileAtomic } from '../io/atomic-file.js';
import { writeSafetensors } from '../io/safetensors.js';
import type { CLIPTextModel } from './clip_text.js';
import type { CLIPVisionModel } from './clip_vision.js';

export interface SaveClipModelOptions {
  /** log of the inverse temperature written as `logit_scale` (CLIP's initial 1/0.07 by default). */
  logitScale?: number;
  /** Storage type of the weights (float32 by default). */
  dtype?: 'F32' | 'F16';
}

/** Writes config.json and model.safetensors of a CLIPModel from its two towers; the tokenizer files are the caller's. */
export async function saveClipModel(directory: string, text: CLIPTextModel, vision: CLIPVisionModel, options: SaveClipModelOptions = {}): Promise<void> {
  if (!text.text_projection || !vision.visual_projection) throw new Error('a CLIPModel needs both projections');
  const projection = text.config.projection_dim;
  if (projection === undefined || projection !== vision.config.projection_dim) throw new Error(`the towers' projection_dim differ (${projection}, ${vision.config.projection_dim})`);
  const logitScale = options.logitScale ?? Math.log(1 / 0.07);
  const config = { architectures: ['CLIPModel'], model_type: 'clip', projection_dim: projection, logit_scale_init_value: logitScale, text_config: { ...text.config, model_type: 'clip_text_model' }, vision_config: { ...vision.config, model_type: 'clip_vision_model' } };
  await platform.makeDirectory(directory);
  await writeFileAtomic(join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const tensors = { ...text.stateDict(), ...vision.stateDict(), logit_scale: { dtype: 'float32' as const, shape: [], data: Float32Array.of(logitScale) } };
  await writeSafetensors(join(directory, 'model.safetensors'), tensors, options.dtype ? { dtype: options.dtype } : {});
}
