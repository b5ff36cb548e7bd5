// diffusers ControlNetModel (SD 1.x/2.x layout): a copy of the U-Net's conv_in, time embedding, down
// blocks and mid block, plus a small conv stack that embeds the control image into conv_in's
// output, and zero-initialised 1×1 convs (`controlnet_down_blocks.N`, `controlnet_mid_block`) that
// turn each skip connection and the mid-block output into a residual for the U-Net, scaled by the
// conditioning scale.
import { platform, join } from '#platform';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import { add, mean, mul, silu } from '../graph/ops/elementwise.js';
import { gather } from '../graph/ops/shape.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { Conv2d, type UniformSource, checkpointInitialized } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import { type BlockRunOptions, DownBlock2D, TimestepEmbedding, UNetMidBlock2DCrossAttn, timestepProjection } from './unet_2d_blocks.js';
import { checkSample, configError, perBlockValues, unetConfigShape } from './unet_2d_condition.js';

const positive = z.number().int().positive();

const controlNetConfigSchema = z.looseObject({
  in_channels: unetConfigShape.in_channels,
  conditioning_channels: positive.default(3),
  flip_sin_to_cos: unetConfigShape.flip_sin_to_cos,
  freq_shift: unetConfigShape.freq_shift,
  down_block_types: unetConfigShape.down_block_types,
  mid_block_type: unetConfigShape.mid_block_type,
  only_cross_attention: unetConfigShape.only_cross_attention,
  block_out_channels: unetConfigShape.block_out_channels,
  layers_per_block: unetConfigShape.layers_per_block,
  downsample_padding: unetConfigShape.downsample_padding,
  mid_block_scale_factor: unetConfigShape.mid_block_scale_factor,
  act_fn: unetConfigShape.act_fn,
  norm_num_groups: unetConfigShape.norm_num_groups,
  norm_eps: unetConfigShape.norm_eps,
  cross_attention_dim: unetConfigShape.cross_attention_dim,
  transformer_layers_per_block: unetConfigShape.transformer_layers_per_block,
  attention_head_dim: unetConfigShape.attention_head_dim,
  /** ControlNetModel, unlike the U-Net, accepts it; it wins over attention_head_dim. */
  num_attention_heads: z.union([positive, z.array(positive).min(1)]).nullable().default(null),
  use_linear_projection: unetConfigShape.use_linear_projection,
  upcast_attention: unetConfigShape.upcast_attention,
  resnet_time_scale_shift: unetConfigShape.resnet_time_scale_shift,
  class_embed_type: unetConfigShape.class_embed_type,
  addition_embed_type: unetConfigShape.addition_embed_type,
  addition_time_embed_dim: unetConfigShape.addition_time_embed_dim,
  num_class_embeds: unetConfigShape.num_class_embeds,
  projection_class_embeddings_input_dim: unetConfigShape.projection_class_embeddings_input_dim,
  encoder_hid_dim: unetConfigShape.encoder_hid_dim,
  encoder_hid_dim_type: unetConfigShape.encoder_hid_dim_type,
  controlnet_conditioning_channel_order: z.enum(['rgb', 'bgr']).default('rgb'),
  conditioning_embedding_out_channels: z.array(positive).min(1).default([16, 32, 96, 256]),
  global_pool_conditions: z.boolean().default(false),
});

/** diffusers ControlNetModel config.json. */
export type ControlNetConfig = z.infer<typeof controlNetConfigSchema>;

export function parseControlNetConfig(raw: unknown): ControlNetConfig {
  const parsed = controlNetConfigSchema.safeParse(raw);
  if (!parsed.success) throw configError('ControlNetModel', parsed.error);
  const config = parsed.data;
  const blocks = config.block_out_channels.length;
  const problems: string[] = [];
  if (config.down_block_types.length !== blocks) problems.push(`down_block_types has ${config.down_block_types.length} entries, block_out_channels ${blocks}`);
  const heads = perBlockValues(config.num_attention_heads ?? config.attention_head_dim, blocks, 'num_attention_heads / attention_head_dim');
  for (const key of ['layers_per_block', 'cross_attention_dim', 'transformer_layers_per_block', 'only_cross_attention'] as const) perBlockValues(config[key], blocks, key);
  config.block_out_channels.forEach((channels, index) => {
    if (channels % config.norm_num_groups !== 0) problems.push(`block_out_channels[${index}] = ${channels} does not split into norm_num_groups = ${config.norm_num_groups}`);
    if (channels % heads[index]! !== 0) problems.push(`block_out_channels[${index}] = ${channels} does not split into ${heads[index]} heads`);
  });
  if (problems.length) throw new Error(`invalid ControlNetModel config: ${problems.join('; ')}`);
  return config;
}

/** A conv whose weight and bias start at zero (diffusers' zero_module): a new ControlNet adds nothing. */
function zeroConv(channels: number, random: UniformSource): Conv2d {
  return zeroed(new Conv2d(channels, channels, 1, { random }));
}

function zeroed(conv: Conv2d): Conv2d {
  for (const parameter of [conv.weight, conv.bias!]) (parameter.data.data as Float32Array).fill(0);
  return conv;
}

/**
 * ControlNetConditioningEmbedding: conv_in → SiLU, then per channel step a 3×3 conv and a stride-2
 * 3×3 conv (each followed by SiLU), then a zero-initialised conv_out to the U-Net's first width.
 */
export class ControlNetConditioningEmbedding extends Module {
  readonly conv_in: Conv2d;
  readonly blocks: Conv2d[];
  readonly conv_out: Conv2d;

  constructor(embeddingChannels: number, stepChannels: number[], conditioningChannels: number, random: UniformSource) {
    super();
    this.conv_in = new Conv2d(conditioningChannels, stepChannels[0]!, 3, { random, padding: 1 });
    this.blocks = [];
    for (let step = 0; step < stepChannels.length - 1; step++) {
      this.blocks.push(new Conv2d(stepChannels[step]!, stepChannels[step]!, 3, { random, padding: 1 }));
      this.blocks.push(new Conv2d(stepChannels[step]!, stepChannels[step + 1]!, 3, { random, padding: 1, stride: 2 }));
    }
    this.conv_out = zeroed(new Conv2d(stepChannels.at(-1)!, embeddingChannels, 3, { random, padding: 1 }));
  }

  /** (B, C_cond, H·2^k, W·2^k) → (B, C_embedding, H, W). */
  forward(context: TraceContext, condition: Value): Value {
    const scope = context.graph.scope.bind(context.graph);
    let hidden = scope('conv_in', () => silu(this.conv_in.forward(context, condition)));
    this.blocks.forEach((block, index) => {
      hidden = scope(`blocks.${index}`, () => silu(block.forward(context, hidden)));
    });
    return scope('conv_out', () => this.conv_out.forward(context, hidden));
  }
}

export interface ControlNetForwardOptions extends BlockRunOptions {
  /** Multiplies every residual (a number, or a 0-d graph value to change it without retracing); default 1. */
  conditioningScale?: number | Value;
  /** diffusers guess_mode: residual i additionally scaled by logspace(−1, 0, n + 1)[i]. */
  guessMode?: boolean;
}

export interface ControlNetResiduals {
  /** One per U-Net skip connection (conv_in output first). */
  downBlockResiduals: Value[];
  midBlockResidual: Value;
}

export class ControlNetModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbedding;
  readonly controlnet_cond_embedding: ControlNetConditioningEmbedding;
  readonly down_blocks: DownBlock2D[];
  readonly controlnet_down_blocks: Conv2d[];
  readonly mid_block: UNetMidBlock2DCrossAttn;
  readonly controlnet_mid_block: Conv2d;

  constructor(readonly config: ControlNetConfig, random: UniformSource) {
    super();
    const channels = config.block_out_channels;
    const blocks = channels.length;
    const heads = perBlockValues(config.num_attention_heads ?? config.attention_head_dim, blocks, 'num_attention_heads');
    const layers = perBlockValues(config.layers_per_block, blocks, 'layers_per_block');
    const crossDims = perBlockValues(config.cross_attention_dim, blocks, 'cross_attention_dim');
    const transformerLayers = perBlockValues(config.transformer_layers_per_block, blocks, 'transformer_layers_per_block');
    const onlyCross = perBlockValues(config.only_cross_attention, blocks, 'only_cross_attention');
    const timeEmbedDim = channels[0]! * 4;
    const resnet = { groups: config.norm_num_groups, eps: config.norm_eps, dropout: 0 };
    const transformerFor = (block: number, onlyCrossAttention: boolean) => ({
      heads: heads[block]!,
      layers: transformerLayers[block]!,
      crossAttentionDim: crossDims[block]!,
      groups: config.norm_num_groups,
      useLinearProjection: config.use_linear_projection,
      onlyCrossAttention,
      dropout: 0,
    });

    this.conv_in = new Conv2d(config.in_channels, channels[0]!, 3, { random, padding: 1 });
    this.time_embedding = new TimestepEmbedding(channels[0]!, timeEmbedDim, random);
    this.controlnet_cond_embedding = new ControlNetConditioningEmbedding(channels[0]!, config.conditioning_embedding_out_channels, config.conditioning_channels, random);
    this.down_blocks = [];
    this.controlnet_down_blocks = [zeroConv(channels[0]!, random)];
    config.down_block_types.forEach((type, block) => {
      const transformer = type === 'CrossAttnDownBlock2D' ? transformerFor(block, onlyCross[block]!) : null;
      const addDownsample = block < blocks - 1;
      const inChannels = channels[Math.max(block - 1, 0)]!;
      this.down_blocks.push(new DownBlock2D(inChannels, channels[block]!, addDownsample, config.downsample_padding, { layers: layers[block]!, timeEmbedDim, resnet, transformer }, random));
      for (let index = 0; index < layers[block]! + (addDownsample ? 1 : 0); index++) this.controlnet_down_blocks.push(zeroConv(channels[block]!, random));
    });
    const midChannels = channels[blocks - 1]!;
    this.controlnet_mid_block = zeroConv(midChannels, random);
    this.mid_block = new UNetMidBlock2DCrossAttn(
      midChannels,
      { layers: 1, timeEmbedDim, resnet: { ...resnet, outputScaleFactor: config.mid_block_scale_factor }, transformer: transformerFor(blocks - 1, false) },
      random,
    );
  }

  /**
   * sample (B, in_channels, H, W), timestep 0-d or (B), encoderHiddenStates (B, S, C_cross),
   * controlnetCond (B, conditioning_channels, 8H, 8W) in [0, 1] → residuals for the U-Net.
   */
  forward(context: TraceContext, sample: Value, timestep: Value, encoderHiddenStates: Value, controlnetCond: Value, options: ControlNetForwardOptions = {}): ControlNetResiduals {
    const scope = context.graph.scope.bind(context.graph);
    const config = this.config;
    checkSample(sample, config.in_channels, 2 ** (config.block_out_channels.length - 1));
    const dtype = sample.dtype === 'float64' ? 'float64' : 'float32';
    const projected = timestepProjection(timestep, config.block_out_channels[0]!, config.flip_sin_to_cos, config.freq_shift, dtype);
    const time = scope('time_embedding', () => this.time_embedding.forward(context, projected)); // (B or 1, 4·C0)
    let condition = controlnetCond;
    if (config.controlnet_conditioning_channel_order === 'bgr') {
      const reversed = Array.from({ length: config.conditioning_channels }, (_, channel) => BigInt(config.conditioning_channels - 1 - channel));
      condition = gather(condition, context.graph.constant({ dtype: 'int64', shape: [reversed.length], data: BigInt64Array.from(reversed) }, 'bgr_order'), 1);
    }
    let hidden = scope('conv_in', () => this.conv_in.forward(context, sample));
    hidden = add(hidden, scope('controlnet_cond_embedding', () => this.controlnet_cond_embedding.forward(context, condition)));
    const skips: Value[] = [hidden];
    this.down_blocks.forEach((block, index) => {
      const result = scope(`down_blocks.${index}`, () => block.forward(context, hidden, time, encoderHiddenStates, options));
      hidden = result.hidden;
      skips.push(...result.skips);
    });
    hidden = scope('mid_block', () => this.mid_block.forward(context, hidden, time, encoderHiddenStates, options));
    if (skips.length !== this.controlnet_down_blocks.length) throw new Error(`ControlNet: ${skips.length} skips for ${this.controlnet_down_blocks.length} controlnet_down_blocks`);
    let down = skips.map((skip, index) => scope(`controlnet_down_blocks.${index}`, () => this.controlnet_down_blocks[index]!.forward(context, skip)));
    let mid = scope('controlnet_mid_block', () => this.controlnet_mid_block.forward(context, hidden));
    const conditioningScale = options.conditioningScale ?? 1;
    if (options.guessMode && !config.global_pool_conditions) {
      // torch.logspace(-1, 0, n + 1): 10^(−1 + i/n), from 0.1 for the first skip to 1 for the mid block.
      const count = down.length + 1;
      const factor = (index: number) => Math.fround(10 ** (-1 + index / (count - 1)));
      down = down.map((residual, index) => mul(mul(residual, factor(index)), conditioningScale));
      mid = mul(mul(mid, factor(count - 1)), conditioningScale);
    } else if (conditioningScale !== 1) {
      down = down.map((residual) => mul(residual, conditioningScale));
      mid = mul(mid, conditioningScale);
    }
    if (config.global_pool_conditions) {
      down = down.map((residual) => mean(residual, [2, 3], true)); // (B, C, 1, 1)
      mid = mean(mid, [2, 3], true);
    }
    return { downBlockResiduals: down, midBlockResidual: mid };
  }

  static async fromPretrained(directory: string): Promise<ControlNetModel> {
    const config = parseControlNetConfig(JSON.parse(await platform.readText(join(directory, 'config.json'))));
    const model = new ControlNetModel(config, checkpointInitialized);
    const reader = await openSafetensors(directory);
    try {
      model.loadStateDict(Object.fromEntries(await reader.readAll({ asFloat32: true })));
    } finally {
      await reader.close();
    }
    return model;
  }

  async save(directory: string): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify({ _class_name: 'ControlNetModel', ...this.config }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'diffusion_pytorch_model.safetensors'), this.stateDict());
  }
}
