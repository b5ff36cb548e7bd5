// A tiny random-weight pipeline folder per test process (init-random's `tiny` config), removed at exit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ControlNetModel, parseControlNetConfig } from '../../src/models/controlnet.js';
import { LoraAdapter } from '../../src/models/lora.js';
import { UNet2DConditionModel } from '../../src/models/unet_2d_condition.js';
import type { Module } from '../../src/nn/module.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { Random } from '../../src/util/random.js';

export const scratch = mkdtempSync(join(tmpdir(), 'kosmos-g-pipeline-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

let tiny: Promise<string> | undefined;

/** The folder of a `tiny` pipeline (seed 0), created on first use. */
export function tinyPipeline(): Promise<string> {
  tiny ??= (async () => {
    const directory = join(scratch, 'tiny');
    await createRandomPipeline(directory, { config: 'tiny', seed: 0 });
    return directory;
  })();
  return tiny;
}

export function sameBytes(a: Uint8Array | Float32Array, b: Uint8Array | Float32Array): boolean {
  return a.length === b.length && a.every((value, index) => Object.is(value, b[index]));
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Overwrites every parameter with uniform values in ±0.3, zero-initialised layers included (so they act). */
function randomize(module: Module, random: Random): void {
  for (const [, parameter] of module.namedParameters()) {
    const values = parameter.data.data as Float32Array;
    for (let i = 0; i < values.length; i++) values[i] = (random.next() - 0.5) * 0.6;
  }
}

let extras: Promise<{ controlnet: string; lora: string; controlImage: string }> | undefined;

/**
 * For the tiny pipeline: a ControlNet folder matching its U-Net (residual convs non-zero), a PEFT
 * LoRA file on attn1/attn2 (B non-zero) and a 48×48 control image.
 */
export function tinyExtras(): Promise<{ controlnet: string; lora: string; controlImage: string }> {
  extras ??= (async () => {
    const unet = await UNet2DConditionModel.fromPretrained(join(await tinyPipeline(), 'unet'));
    const { in_channels, flip_sin_to_cos, freq_shift, down_block_types, block_out_channels, layers_per_block, cross_attention_dim, attention_head_dim, norm_num_groups } = unet.config;
    const config = { in_channels, flip_sin_to_cos, freq_shift, down_block_types, block_out_channels, layers_per_block, cross_attention_dim, attention_head_dim, norm_num_groups };
    const controlnetModel = new ControlNetModel(parseControlNetConfig({ ...config, conditioning_embedding_out_channels: [4, 4, 8, 8] }), new Random(21));
    randomize(controlnetModel, new Random(22));
    const controlnet = join(scratch, 'controlnet');
    await controlnetModel.save(controlnet);
    const adapter = LoraAdapter.create(unet, { rank: 2, targetModules: ['to_q', 'to_k', 'to_v', 'to_out.0'], random: new Random(23) });
    randomize(adapter, new Random(24));
    const lora = join(scratch, 'lora.safetensors');
    await adapter.save(lora);
    const pixels = Buffer.alloc(48 * 48 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 256;
    const controlImage = join(scratch, 'edges.png');
    await sharp(pixels, { raw: { width: 48, height: 48, channels: 3 } }).png().toFile(controlImage);
    return { controlnet, lora, controlImage };
  })();
  return extras;
}
