// diffusers UNet2DConditionModel, SD 1.x/2.x family: conv_in → sinusoidal time embedding → down
// blocks (CrossAttnDownBlock2D / DownBlock2D) → UNetMidBlock2DCrossAttn → up blocks (UpBlock2D /
// CrossAttnUpBlock2D, concatenating the down path's skips) → GroupNorm → SiLU → conv_out. The
// config is diffusers' config.json; keys left out take diffusers' defaults, as the SD 1.5 file
// leaves most of them out. Blocks are in unet_2d_blocks.ts.
import { platform, join } from '#platform';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import { add, mul, silu, sub } from '../graph/ops/elementwise.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors, type WriteOptions } from '../io/safetensors.js';
import { Conv2d, GroupNorm, type UniformSource, checkpointInitialized } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import {
  type BlockOptions,
  type BlockRunOptions,
  DownBlock2D,
  TimestepEmbedding,
  UNetMidBlock2DCrossAttn,
  UpBlock2D,
  timestepProjection,
} from './unet_2d_blocks.js';

const positive = z.number().int().positive();
const perBlock = z.union([positive, z.array(positive).min(1)]);
/** A config key whose only implemented value is null (or absent). */
const unsupportedOption = (what: string) => z.null({ error: `${what} is not supported (SD 1.x/2.x U-Nets only); only null is accepted` }).default(null);

/** The keys this implementation reads, with diffusers' defaults where SD 1.5's config.json omits them. */
export const unetConfigShape = {
  in_channels: positive,
  out_channels: positive,
  sample_size: positive.nullable().default(null),
  center_input_sample: z.boolean().default(false),
  flip_sin_to_cos: z.boolean(),
  freq_shift: z.number().int().nonnegative(),
  down_block_types: z.array(z.enum(['CrossAttnDownBlock2D', 'DownBlock2D'])).min(1),
  mid_block_type: z.literal('UNetMidBlock2DCrossAttn', { error: 'mid_block_type: only UNetMidBlock2DCrossAttn is implemented' }).default('UNetMidBlock2DCrossAttn'),
  up_block_types: z.array(z.enum(['UpBlock2D', 'CrossAttnUpBlock2D'])).min(1),
  only_cross_attention: z.union([z.boolean(), z.array(z.boolean())]).default(false),
  block_out_channels: z.array(positive).min(1),
  layers_per_block: perBlock,
  downsample_padding: z.number().int().nonnegative().default(1),
  mid_block_scale_factor: z.number().positive().default(1),
  dropout: z.number().min(0).lt(1).default(0),
  act_fn: z.literal('silu', { error: 'act_fn: only silu is implemented' }).default('silu'),
  norm_num_groups: positive.default(32),
  norm_eps: z.number().positive().default(1e-5),
  cross_attention_dim: perBlock.default(1280),
  transformer_layers_per_block: perBlock.default(1),
  /** In SD 1.x/2.x configs this is the number of heads (diffusers' naming quirk). */
  attention_head_dim: perBlock.default(8),
  num_attention_heads: unsupportedOption('num_attention_heads (diffusers rejects it too; heads come from attention_head_dim)'),
  use_linear_projection: z.boolean().default(false),
  /** Float32 attention is already computed in float32: accepted and without effect. */
  upcast_attention: z.boolean().nullable().default(false),
  conv_in_kernel: positive.default(3),
  conv_out_kernel: positive.default(3),
  dual_cross_attention: z.literal(false, { error: 'dual_cross_attention is not supported' }).default(false),
  resnet_time_scale_shift: z.literal('default', { error: 'resnet_time_scale_shift: only "default" is implemented' }).default('default'),
  resnet_skip_time_act: z.literal(false, { error: 'resnet_skip_time_act is not supported' }).default(false),
  resnet_out_scale_factor: z.literal(1, { error: 'resnet_out_scale_factor: only 1 is implemented' }).default(1),
  time_embedding_type: z.literal('positional', { error: 'time_embedding_type: only "positional" is implemented' }).default('positional'),
  time_embedding_dim: positive.nullable().default(null),
  attention_type: z.literal('default', { error: 'attention_type: only "default" is implemented' }).default('default'),
  class_embeddings_concat: z.literal(false, { error: 'class_embeddings_concat is not supported' }).default(false),
  /** Read by diffusers only for UNetMidBlock2DSimpleCrossAttn: accepted and without effect here. */
  mid_block_only_cross_attention: z.boolean().nullable().default(null),
  reverse_transformer_layers_per_block: unsupportedOption('reverse_transformer_layers_per_block'),
  encoder_hid_dim: unsupportedOption('encoder_hid_dim'),
  encoder_hid_dim_type: unsupportedOption('encoder_hid_dim_type'),
  class_embed_type: unsupportedOption('class_embed_type'),
  addition_embed_type: unsupportedOption('addition_embed_type'),
  addition_time_embed_dim: unsupportedOption('addition_time_embed_dim'),
  num_class_embeds: unsupportedOption('num_class_embeds'),
  time_embedding_act_fn: unsupportedOption('time_embedding_act_fn'),
  timestep_post_act: unsupportedOption('timestep_post_act'),
  time_cond_proj_dim: unsupportedOption('time_cond_proj_dim'),
  projection_class_embeddings_input_dim: unsupportedOption('projection_class_embeddings_input_dim'),
  cross_attention_norm: unsupportedOption('cross_attention_norm'),
};

const unetConfigSchema = z.looseObject(unetConfigShape);

/** diffusers UNet2DConditionModel config.json (the keys above; other keys are kept for saving). */
export type UNet2DConditionConfig = z.infer<typeof unetConfigSchema>;

/** Zod issues as one readable message naming each key, after `source` (the file) when given. */
export function configError(kind: string, error: z.ZodError, source?: string): Error {
  const lines = error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  return new Error(`${source ? `${source}: ` : ''}invalid ${kind} config: ${lines.join('; ')}`);
}

/** A per-block setting (a number, or one per block) as one value per block. */
export function perBlockValues<T>(value: T | T[], blocks: number, key: string): T[] {
  if (!Array.isArray(value)) return Array.from({ length: blocks }, () => value);
  if (value.length !== blocks) throw new Error(`${key} has ${value.length} entries for ${blocks} blocks`);
  return value;
}

/** Parses and cross-checks a config: block counts agree, channels split into groups and heads. `source` names the file in errors. */
export function parseUNetConfig(raw: unknown, source?: string): UNet2DConditionConfig {
  const parsed = unetConfigSchema.safeParse(raw);
  if (!parsed.success) throw configError('UNet2DConditionModel', parsed.error, source);
  const invalid = `${source ? `${source}: ` : ''}invalid UNet2DConditionModel config`;
  const config = parsed.data;
  const blocks = config.block_out_channels.length;
  const problems: string[] = [];
  if (config.down_block_types.length !== blocks) problems.push(`down_block_types has ${config.down_block_types.length} entries, block_out_channels ${blocks}`);
  if (config.up_block_types.length !== blocks) problems.push(`up_block_types has ${config.up_block_types.length} entries, block_out_channels ${blocks}`);
  for (const key of ['conv_in_kernel', 'conv_out_kernel'] as const) if (config[key] % 2 === 0) problems.push(`${key} must be odd, got ${config[key]}`);
  if (problems.length) throw new Error(`${invalid}: ${problems.join('; ')}`);
  const heads = perBlockValues(config.attention_head_dim, blocks, 'attention_head_dim');
  perBlockValues(config.layers_per_block, blocks, 'layers_per_block');
  perBlockValues(config.cross_attention_dim, blocks, 'cross_attention_dim');
  perBlockValues(config.transformer_layers_per_block, blocks, 'transformer_layers_per_block');
  perBlockValues(config.only_cross_attention, blocks, 'only_cross_attention');
  config.block_out_channels.forEach((channels, index) => {
    if (channels % config.norm_num_groups !== 0) problems.push(`block_out_channels[${index}] = ${channels} does not split into norm_num_groups = ${config.norm_num_groups}`);
    if (channels % heads[index]! !== 0) problems.push(`block_out_channels[${index}] = ${channels} does not split into ${heads[index]} heads`);
  });
  if (problems.length) throw new Error(`${invalid}: ${problems.join('; ')}`);
  return config;
}

/** Optional inputs of a U-Net call. */
export interface UNetForwardOptions extends BlockRunOptions {
  /** ControlNet residuals, one per skip connection of the down path (conv_in output included). */
  downBlockAdditionalResiduals?: readonly Value[];
  midBlockAdditionalResidual?: Value;
}

export class UNet2DConditionModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbedding;
  readonly down_blocks: DownBlock2D[];
  readonly mid_block: UNetMidBlock2DCrossAttn;
  readonly up_blocks: UpBlock2D[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(readonly config: UNet2DConditionConfig, random: UniformSource) {
    super();
    const channels = config.block_out_channels;
    const blocks = channels.length;
    const heads = perBlockValues(config.attention_head_dim, blocks, 'attention_head_dim');
    const layers = perBlockValues(config.layers_per_block, blocks, 'layers_per_block');
    const crossDims = perBlockValues(config.cross_attention_dim, blocks, 'cross_attention_dim');
    const transformerLayers = perBlockValues(config.transformer_layers_per_block, blocks, 'transformer_layers_per_block');
    const onlyCross = perBlockValues(config.only_cross_attention, blocks, 'only_cross_attention');
    const timeEmbedDim = config.time_embedding_dim ?? channels[0]! * 4;
    const resnet = { groups: config.norm_num_groups, eps: config.norm_eps, dropout: config.dropout };
    const transformerFor = (block: number, crossAttention: boolean) =>
      crossAttention
        ? {
            heads: heads[block]!,
            layers: transformerLayers[block]!,
            crossAttentionDim: crossDims[block]!,
            groups: config.norm_num_groups,
            useLinearProjection: config.use_linear_projection,
            onlyCrossAttention: onlyCross[block]!,
            dropout: config.dropout,
          }
        : null;

    this.conv_in = new Conv2d(config.in_channels, channels[0]!, config.conv_in_kernel, { random, padding: (config.conv_in_kernel - 1) / 2 });
    this.time_embedding = new TimestepEmbedding(channels[0]!, timeEmbedDim, random);
    this.down_blocks = config.down_block_types.map((type, block) => {
      const options: BlockOptions = { layers: layers[block]!, timeEmbedDim, resnet, transformer: transformerFor(block, type === 'CrossAttnDownBlock2D') };
      const inChannels = channels[Math.max(block - 1, 0)]!;
      return new DownBlock2D(inChannels, channels[block]!, block < blocks - 1, config.downsample_padding, options, random);
    });
    // diffusers builds UNetMidBlock2DCrossAttn without only_cross_attention: its attn1 is always self-attention.
    const midTransformer = { ...transformerFor(blocks - 1, true)!, onlyCrossAttention: false };
    this.mid_block = new UNetMidBlock2DCrossAttn(
      channels[blocks - 1]!,
      { layers: 1, timeEmbedDim, resnet: { ...resnet, outputScaleFactor: config.mid_block_scale_factor }, transformer: midTransformer },
      random,
    );
    this.up_blocks = config.up_block_types.map((type, index) => {
      // Up block i mirrors down block (blocks − 1 − i).
      const mirrored = blocks - 1 - index;
      const options: BlockOptions = { layers: layers[mirrored]! + 1, timeEmbedDim, resnet, transformer: transformerFor(mirrored, type === 'CrossAttnUpBlock2D') };
      const prevOutput = channels[Math.min(mirrored + 1, blocks - 1)]!;
      const inChannels = channels[Math.max(mirrored - 1, 0)]!;
      return new UpBlock2D(inChannels, channels[mirrored]!, prevOutput, index < blocks - 1, options, random);
    });
    this.conv_norm_out = new GroupNorm(config.norm_num_groups, channels[0]!, config.norm_eps);
    this.conv_out = new Conv2d(channels[0]!, config.out_channels, config.conv_out_kernel, { random, padding: (config.conv_out_kernel - 1) / 2 });
  }

  /** Height and width must be multiples of this (one halving per downsampler). */
  get sizeMultiple(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /** Sinusoidal projection then time_embedding: timestep (0-d or (B)) → (B or 1, time_embed_dim). */
  timeEmbedding(context: TraceContext, timestep: Value, dtype: 'float32' | 'float64'): Value {
    const projected = timestepProjection(timestep, this.config.block_out_channels[0]!, this.config.flip_sin_to_cos, this.config.freq_shift, dtype);
    return context.graph.scope('time_embedding', () => this.time_embedding.forward(context, projected));
  }

  /**
   * sample (B, in_channels, H, W), timestep 0-d (shared by the batch) or (B), integer or float;
   * encoderHiddenStates (B, S, cross_attention_dim) → noise prediction (B, out_channels, H, W).
   */
  forward(context: TraceContext, sample: Value, timestep: Value, encoderHiddenStates: Value, options: UNetForwardOptions = {}): Value {
    const scope = context.graph.scope.bind(context.graph);
    checkSample(sample, this.config.in_channels, this.sizeMultiple);
    const dtype = sample.dtype === 'float64' ? 'float64' : 'float32';
    // A 0-d timestep gives a (1, T) embedding that broadcasts over the batch, as diffusers' expand does.
    const time = this.timeEmbedding(context, timestep, dtype);
    const input = this.config.center_input_sample ? sub(mul(sample, 2), 1) : sample;
    let hidden = scope('conv_in', () => this.conv_in.forward(context, input));
    let skips: Value[] = [hidden];
    this.down_blocks.forEach((block, index) => {
      const result = scope(`down_blocks.${index}`, () => block.forward(context, hidden, time, encoderHiddenStates, options));
      hidden = result.hidden;
      skips.push(...result.skips);
    });
    const residuals = options.downBlockAdditionalResiduals;
    if (residuals) {
      if (residuals.length !== skips.length) throw new Error(`down_block_additional_residuals: ${residuals.length} given, the down path has ${skips.length} skip connections`);
      skips = skips.map((skip, index) => add(skip, checkSameShape(residuals[index]!, skip, `down_block_additional_residuals[${index}]`)));
    }
    hidden = scope('mid_block', () => this.mid_block.forward(context, hidden, time, encoderHiddenStates, options));
    if (options.midBlockAdditionalResidual) hidden = add(hidden, checkSameShape(options.midBlockAdditionalResidual, hidden, 'mid_block_additional_residual'));
    this.up_blocks.forEach((block, index) => {
      hidden = scope(`up_blocks.${index}`, () => block.forward(context, hidden, skips, time, encoderHiddenStates, options));
    });
    hidden = scope('conv_norm_out', () => silu(this.conv_norm_out.forward(context, hidden)));
    return scope('conv_out', () => this.conv_out.forward(context, hidden));
  }

  /** Reads `config.json` and the safetensors weights (single file or sharded) of a diffusers folder; strict. */
  static async fromPretrained(directory: string): Promise<UNet2DConditionModel> {
    const config = parseUNetConfig(JSON.parse(await platform.readText(join(directory, 'config.json'))));
    const model = new UNet2DConditionModel(config, checkpointInitialized);
    const reader = await openSafetensors(directory);
    try {
      model.loadStateDict(Object.fromEntries(await reader.readAll({ asFloat32: true })));
    } finally {
      await reader.close();
    }
    return model;
  }

  /** Writes `config.json` and `diffusion_pytorch_model.safetensors` under diffusers' names. */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify({ _class_name: 'UNet2DConditionModel', ...this.config }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'diffusion_pytorch_model.safetensors'), this.stateDict(), options);
  }
}

export function checkSample(sample: Value, channels: number, multiple: number): void {
  if (sample.rank !== 4 || sample.shape[1] !== channels) throw new Error(`sample must be (B, ${channels}, H, W), got ${sample}`);
  for (const axis of [2, 3]) {
    const size = sample.shape[axis];
    if (typeof size === 'number' && size % multiple !== 0) throw new Error(`sample height and width must be multiples of ${multiple}, got ${sample}`);
  }
}

function checkSameShape(value: Value, like: Value, what: string): Value {
  if (value.shape.join() !== like.shape.join()) throw new Error(`${what} is ${value}, expected shape [${like.shape.join(', ')}]`);
  return value;
}
