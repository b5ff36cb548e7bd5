// What the server needs of a pipeline to check requests (ModelInfo), read from the folder without
// loading it: `serve --redis` runs no generation thread it could ask (generation-thread.ts reports
// the same figures from the loaded pipeline; test/server/redis.test.ts checks that they agree).
import { join } from 'node:path';
import { readConfigJson } from '../io/config-json.js';
import { parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { parseUNetConfig } from '../models/unet_2d_condition.js';
import type { PipelineFolder } from '../pipeline/folder.js';
import { weightSummary } from '../pipeline/info.js';
import { DEFAULT_GUIDANCE, DEFAULT_STEPS, SCHEDULER_CHOICES } from '../pipeline/diffusion.js';
import type { ModelInfo, PipelineKind } from './generation-worker.js';
import { LIMITS, type ModelsResponse } from './schemas.js';

export function pipelineKindOf(folder: PipelineFolder): PipelineKind {
  return folder.className === 'KosmosGPipeline' ? 'kosmos-g' : 'clip-text';
}

/** The U-Net's and the VAE's configs and parameter counts (from the safetensors headers, no weights read). */
export async function readModelInfo(folder: PipelineFolder): Promise<ModelInfo> {
  const directory = (name: string) => {
    const component = folder.components.get(name);
    if (!component) throw new Error(`${folder.directory} has no ${name} component`);
    return component.directory;
  };
  const unetPath = join(directory('unet'), 'config.json');
  const vaePath = join(directory('vae'), 'config.json');
  const unet = parseUNetConfig(await readConfigJson(unetPath), unetPath);
  const vae = parseAutoencoderKLConfig(await readConfigJson(vaePath), vaePath);
  let parameters = 0;
  for (const name of ['unet', 'vae']) {
    const weights = await weightSummary(directory(name));
    if (!weights) throw new Error(`${directory(name)} holds no safetensors weights`);
    parameters += weights.parameters;
  }
  // As LatentDiffusion's sizeMultiple and defaultSize (diffusion.ts): one halving per VAE and U-Net downsampler.
  const vaeFactor = 2 ** (vae.block_out_channels.length - 1);
  return {
    defaultSize: (unet.sample_size ?? 64) * vaeFactor,
    sizeMultiple: vaeFactor * 2 ** (unet.block_out_channels.length - 1),
    memoryModel: {
      unet: { block_out_channels: unet.block_out_channels },
      vae: { block_out_channels: vae.block_out_channels, mid_block_add_attention: vae.mid_block_add_attention },
      parameters,
    },
  };
}

/** `GET /v1/models` for one model; a static build of the page writes the same as its `site.json`. */
export function describeModel(model: { name: string; pipeline: PipelineKind; info: ModelInfo; loras: string[]; controlnets: string[] }): ModelsResponse {
  const { info } = model;
  return {
    models: [
      {
        id: model.name,
        pipeline: model.pipeline,
        defaults: { steps: DEFAULT_STEPS, guidance: DEFAULT_GUIDANCE, scheduler: 'dpm++', width: info.defaultSize, height: info.defaultSize, numImages: 1 },
        sizeMultiple: info.sizeMultiple,
        schedulers: [...SCHEDULER_CHOICES],
        loras: model.loras,
        controlnets: model.controlnets,
        limits: { maxImages: LIMITS.maxImages, maxSteps: LIMITS.maxSteps, maxSide: LIMITS.maxSide, maxNumImages: LIMITS.maxNumImages, maxPromptLength: LIMITS.maxPromptLength },
      },
    ],
  };
}
