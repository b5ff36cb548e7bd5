// diffusers AutoencoderKL in the Stable Diffusion 1.5 layout: the VAE that maps 512×512 images to
// 4×64×64 latents and back. Kosmos-G keeps it frozen: stage 3 encodes training targets with
// `latent_dist.sample() · 0.18215`, and generation decodes with `clamp(decode(z / 0.18215)/2 + 0.5, 0, 1)`.
// Property paths are diffusers' state-dict keys; checkpoints saved before diffusers 0.14 name the
// mid-block attention `query/key/value/proj_attn`, and both spellings load.
import { platform, join } from '#platform';
import { z } from 'zod';
import type { HostTensor } from '../onnx/dtype.js';
import type { Graph, Value } from '../graph/graph.js';
import { add, clip, div, exp, mul, silu, sub } from '../graph/ops/elementwise.js';
import { scaledDotProductAttention, upsampleNearest2x } from '../graph/ops/nn.js';
import { pad, reshape, split, transpose } from '../graph/ops/shape.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { type SafetensorsReader, writeSafetensors, type WriteOptions } from '../io/safetensors.js';
import { Conv2d, GroupNorm, type LayerOptions, Linear, checkpointInitialized } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import { type ExternalWeights, externalBindings } from '../nn/weights.js';

// ---------------------------------------------------------------------------------------------
// Configuration: the keys of diffusers' config.json for AutoencoderKL.

const positiveInteger = z.number().int().positive();

const configSchema = z
  .object({
    in_channels: positiveInteger,
    out_channels: positiveInteger,
    down_block_types: z.array(z.literal('DownEncoderBlock2D')).min(1),
    up_block_types: z.array(z.literal('UpDecoderBlock2D')).min(1),
    block_out_channels: z.array(positiveInteger).min(1),
    layers_per_block: positiveInteger,
    act_fn: z.literal('silu'),
    latent_channels: positiveInteger,
    norm_num_groups: positiveInteger,
    sample_size: positiveInteger,
    scaling_factor: z.number().positive(),
    shift_factor: z.number().nullable().default(null),
    use_quant_conv: z.boolean().default(true),
    use_post_quant_conv: z.boolean().default(true),
    mid_block_add_attention: z.boolean().default(true),
  })
  .superRefine((config, issues) => {
    const blocks = config.block_out_channels.length;
    for (const key of ['down_block_types', 'up_block_types'] as const) {
      if (config[key].length !== blocks) {
        issues.addIssue({ code: 'custom', path: [key], message: `has ${config[key].length} entries, block_out_channels has ${blocks}` });
      }
    }
    config.block_out_channels.forEach((channels, index) => {
      if (channels % config.norm_num_groups !== 0) {
        issues.addIssue({ code: 'custom', path: ['block_out_channels', index], message: `${channels} channels do not split into norm_num_groups = ${config.norm_num_groups}` });
      }
    });
  });

export type AutoencoderKLConfig = z.output<typeof configSchema>;

/** The VAE of Stable Diffusion 1.5 (`runwayml/stable-diffusion-v1-5`, subfolder `vae`), as Kosmos-G uses it. */
export const SD15_VAE_CONFIG: AutoencoderKLConfig = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 512,
  scaling_factor: 0.18215,
  shift_factor: null,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** Validates a parsed config.json; unknown keys (`_class_name`, `force_upcast`, …) are ignored. `source` names the file in errors. */
export function parseAutoencoderKLConfig(json: unknown, source?: string): AutoencoderKLConfig {
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${source ? `${source}: ` : ''}invalid AutoencoderKL config:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint key names.

const legacyAttentionNames: Readonly<Record<string, string>> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
const modernAttentionNames: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(legacyAttentionNames).map(([modern, legacy]) => [legacy, modern]));

/** `…attentions.0.query.weight` → `…attentions.0.to_q.weight`; other keys are unchanged. */
export function modernAttentionKey(key: string): string {
  return key.replace(/(\.attentions\.\d+\.)(query|key|value|proj_attn)\./, (_, prefix: string, name: string) => `${prefix}${modernAttentionNames[name]}.`);
}

function legacyAttentionKey(key: string): string {
  return key.replace(/(\.attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\./, (_, prefix: string, name: string) => `${prefix}${legacyAttentionNames[name]}.`);
}

function scoped<T>(context: TraceContext, name: string, build: () => T): T {
  return context.graph.scope(name, build);
}

// ---------------------------------------------------------------------------------------------
// Blocks (diffusers resnet.py, attention_processor.py, unet_2d_blocks.py, vae.py). Every norm in the
// VAE uses ε = 1e-6 and `norm_num_groups` groups.

const NORM_EPS = 1e-6;

/** ResnetBlock2D without time embedding: x + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))). */
class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  /** 1×1 projection of the skip path when the channel count changes. */
  readonly conv_shortcut: Conv2d | null;

  constructor(inChannels: number, outChannels: number, groups: number, options: LayerOptions) {
    super();
    this.norm1 = new GroupNorm(groups, inChannels, NORM_EPS, options.dtype);
    this.conv1 = new Conv2d(inChannels, outChannels, 3, { ...options, padding: 1 });
    this.norm2 = new GroupNorm(groups, outChannels, NORM_EPS, options.dtype);
    this.conv2 = new Conv2d(outChannels, outChannels, 3, { ...options, padding: 1 });
    this.conv_shortcut = inChannels === outChannels ? null : new Conv2d(inChannels, outChannels, 1, options);
  }

  forward(context: TraceContext, x: Value): Value {
    let hidden = silu(scoped(context, 'norm1', () => this.norm1.forward(context, x)));
    hidden = scoped(context, 'conv1', () => this.conv1.forward(context, hidden));
    hidden = silu(scoped(context, 'norm2', () => this.norm2.forward(context, hidden)));
    hidden = scoped(context, 'conv2', () => this.conv2.forward(context, hidden));
    const shortcut = this.conv_shortcut ? scoped(context, 'conv_shortcut', () => this.conv_shortcut!.forward(context, x)) : x;
    return add(shortcut, hidden);
  }
}

/** The mid-block's single-head self-attention over all H·W positions, with a residual connection. */
class SpatialSelfAttention extends Module {
  readonly group_norm: GroupNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: [Linear];

  constructor(channels: number, groups: number, options: LayerOptions) {
    super();
    this.group_norm = new GroupNorm(groups, channels, NORM_EPS, options.dtype);
    this.to_q = new Linear(channels, channels, options);
    this.to_k = new Linear(channels, channels, options);
    this.to_v = new Linear(channels, channels, options);
    this.to_out = [new Linear(channels, channels, options)];
  }

  /** x (B, C, H, W) → (B, C, H, W). */
  forward(context: TraceContext, x: Value): Value {
    const [batch, channels] = [x.shape[0]!, x.size(1)];
    const normalized = scoped(context, 'group_norm', () => this.group_norm.forward(context, x));
    const tokens = transpose(reshape(normalized, [batch, channels, -1], [x]), [0, 2, 1]); // (B, H·W, C)
    // One head of width C: (B, 1, H·W, C), scaled by C^-1/2. Sizes come from `tokens`, so q, k and v share them even when symbolic.
    const head = (projection: Linear, name: string) =>
      scoped(context, name, () => reshape(projection.forward(context, tokens), [batch, 1, tokens.shape[1]!, channels], [tokens]));
    const attended = scaledDotProductAttention(head(this.to_q, 'to_q'), head(this.to_k, 'to_k'), head(this.to_v, 'to_v')); // (B, 1, H·W, C)
    const merged = reshape(attended, tokens.shape, [tokens]); // (B, H·W, C)
    const projected = scoped(context, 'to_out.0', () => this.to_out[0].forward(context, merged)); // (B, H·W, C)
    const spatial = reshape(transpose(projected, [0, 2, 1]), x.shape, [x]); // (B, C, H, W)
    return add(spatial, x);
  }
}

/** Downsample2D as the VAE uses it: zero-pad one row below and one column right, then a stride-2 3×3 conv. */
class Downsample2D extends Module {
  readonly conv: Conv2d;

  constructor(channels: number, options: LayerOptions) {
    super();
    this.conv = new Conv2d(channels, channels, 3, { ...options, stride: 2, padding: 0 });
  }

  forward(context: TraceContext, x: Value): Value {
    const padded = pad(x, [0, 0, 0, 0, 0, 0, 1, 1]); // (B, C, H+1, W+1), torch F.pad(x, (0, 1, 0, 1))
    return scoped(context, 'conv', () => this.conv.forward(context, padded)); // (B, C, H/2, W/2)
  }
}

/** Upsample2D: nearest-neighbour 2× then a 3×3 conv. */
class Upsample2D extends Module {
  readonly conv: Conv2d;

  constructor(channels: number, options: LayerOptions) {
    super();
    this.conv = new Conv2d(channels, channels, 3, { ...options, padding: 1 });
  }

  forward(context: TraceContext, x: Value): Value {
    return scoped(context, 'conv', () => this.conv.forward(context, upsampleNearest2x(x))); // (B, C, 2H, 2W)
  }
}

function runResnets(context: TraceContext, resnets: readonly ResnetBlock2D[], x: Value): Value {
  return resnets.reduce((hidden, resnet, index) => scoped(context, `resnets.${index}`, () => resnet.forward(context, hidden)), x);
}

class DownEncoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers: Downsample2D[];

  constructor(layers: number, inChannels: number, outChannels: number, addDownsample: boolean, groups: number, options: LayerOptions) {
    super();
    this.resnets = Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, groups, options));
    this.downsamplers = addDownsample ? [new Downsample2D(outChannels, options)] : [];
  }

  forward(context: TraceContext, x: Value): Value {
    const hidden = runResnets(context, this.resnets, x);
    return this.downsamplers.reduce((h, downsampler, i) => scoped(context, `downsamplers.${i}`, () => downsampler.forward(context, h)), hidden);
  }
}

class UpDecoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly upsamplers: Upsample2D[];

  constructor(layers: number, inChannels: number, outChannels: number, addUpsample: boolean, groups: number, options: LayerOptions) {
    super();
    this.resnets = Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, groups, options));
    this.upsamplers = addUpsample ? [new Upsample2D(outChannels, options)] : [];
  }

  forward(context: TraceContext, x: Value): Value {
    const hidden = runResnets(context, this.resnets, x);
    return this.upsamplers.reduce((h, upsampler, i) => scoped(context, `upsamplers.${i}`, () => upsampler.forward(context, h)), hidden);
  }
}

/** UNetMidBlock2D without time embedding: resnet, attention, resnet. */
class UNetMidBlock2D extends Module {
  readonly resnets: [ResnetBlock2D, ResnetBlock2D];
  readonly attentions: SpatialSelfAttention[];

  constructor(channels: number, groups: number, addAttention: boolean, options: LayerOptions) {
    super();
    this.resnets = [new ResnetBlock2D(channels, channels, groups, options), new ResnetBlock2D(channels, channels, groups, options)];
    this.attentions = addAttention ? [new SpatialSelfAttention(channels, groups, options)] : [];
  }

  forward(context: TraceContext, x: Value): Value {
    let hidden = scoped(context, 'resnets.0', () => this.resnets[0].forward(context, x));
    const attention = this.attentions[0];
    if (attention) hidden = scoped(context, 'attentions.0', () => attention.forward(context, hidden));
    return scoped(context, 'resnets.1', () => this.resnets[1].forward(context, hidden));
  }
}

/** Image (B, in_channels, H, W) → moments (B, 2·latent_channels, H/f, W/f), f = 2^(blocks−1). */
class Encoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks: DownEncoderBlock2D[];
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(config: AutoencoderKLConfig, options: LayerOptions) {
    super();
    const channels = config.block_out_channels;
    const groups = config.norm_num_groups;
    const last = channels.at(-1)!;
    this.conv_in = new Conv2d(config.in_channels, channels[0]!, 3, { ...options, padding: 1 });
    this.down_blocks = channels.map(
      (out, i) => new DownEncoderBlock2D(config.layers_per_block, i === 0 ? channels[0]! : channels[i - 1]!, out, i < channels.length - 1, groups, options),
    );
    this.mid_block = new UNetMidBlock2D(last, groups, config.mid_block_add_attention, options);
    this.conv_norm_out = new GroupNorm(groups, last, NORM_EPS, options.dtype);
    this.conv_out = new Conv2d(last, 2 * config.latent_channels, 3, { ...options, padding: 1 });
  }

  forward(context: TraceContext, image: Value): Value {
    let hidden = scoped(context, 'conv_in', () => this.conv_in.forward(context, image));
    this.down_blocks.forEach((block, i) => (hidden = scoped(context, `down_blocks.${i}`, () => block.forward(context, hidden))));
    hidden = scoped(context, 'mid_block', () => this.mid_block.forward(context, hidden));
    hidden = silu(scoped(context, 'conv_norm_out', () => this.conv_norm_out.forward(context, hidden)));
    return scoped(context, 'conv_out', () => this.conv_out.forward(context, hidden));
  }
}

/** Latents (B, latent_channels, h, w) → image (B, out_channels, h·f, w·f). */
class Decoder extends Module {
  readonly conv_in: Conv2d;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: UpDecoderBlock2D[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(config: AutoencoderKLConfig, options: LayerOptions) {
    super();
    const reversed = [...config.block_out_channels].reverse();
    const groups = config.norm_num_groups;
    this.conv_in = new Conv2d(config.latent_channels, reversed[0]!, 3, { ...options, padding: 1 });
    this.mid_block = new UNetMidBlock2D(reversed[0]!, groups, config.mid_block_add_attention, options);
    this.up_blocks = reversed.map(
      (out, i) => new UpDecoderBlock2D(config.layers_per_block + 1, i === 0 ? reversed[0]! : reversed[i - 1]!, out, i < reversed.length - 1, groups, options),
    );
    this.conv_norm_out = new GroupNorm(groups, reversed.at(-1)!, NORM_EPS, options.dtype);
    this.conv_out = new Conv2d(reversed.at(-1)!, config.out_channels, 3, { ...options, padding: 1 });
  }

  forward(context: TraceContext, latents: Value): Value {
    let hidden = scoped(context, 'conv_in', () => this.conv_in.forward(context, latents));
    hidden = scoped(context, 'mid_block', () => this.mid_block.forward(context, hidden));
    this.up_blocks.forEach((block, i) => (hidden = scoped(context, `up_blocks.${i}`, () => block.forward(context, hidden))));
    hidden = silu(scoped(context, 'conv_norm_out', () => this.conv_norm_out.forward(context, hidden)));
    return scoped(context, 'conv_out', () => this.conv_out.forward(context, hidden));
  }
}

// ---------------------------------------------------------------------------------------------
// The autoencoder.

/** diffusers DiagonalGaussianDistribution: each value (B, latent_channels, h, w). `mode()` is the mean. */
export interface LatentDistribution {
  mean: Value;
  /** Log-variance clamped to [−30, 20]. */
  logvar: Value;
  /** exp(logvar / 2). */
  std: Value;
}

export class AutoencoderKL extends Module {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv: Conv2d | null;
  readonly post_quant_conv: Conv2d | null;

  constructor(readonly config: AutoencoderKLConfig, options: LayerOptions) {
    super();
    const latent = config.latent_channels;
    this.encoder = new Encoder(config, options);
    this.decoder = new Decoder(config, options);
    this.quant_conv = config.use_quant_conv ? new Conv2d(2 * latent, 2 * latent, 1, options) : null;
    this.post_quant_conv = config.use_post_quant_conv ? new Conv2d(latent, latent, 1, options) : null;
  }

  /** Spatial downsampling factor between image and latents (8 for SD 1.5). */
  get downsamplingFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /** image (B, in_channels, H, W) in [−1, 1] → the posterior over latents. */
  encode(context: TraceContext, image: Value): LatentDistribution {
    let moments = scoped(context, 'encoder', () => this.encoder.forward(context, image)); // (B, 2L, h, w)
    if (this.quant_conv) moments = scoped(context, 'quant_conv', () => this.quant_conv!.forward(context, moments));
    const latent = this.config.latent_channels;
    const [mean, rawLogvar] = split(moments, [latent, latent], 1) as [Value, Value]; // 2 × (B, L, h, w)
    const logvar = clip(rawLogvar, -30, 20);
    return { mean, logvar, std: exp(mul(logvar, 0.5)) };
  }

  /** latent_dist.sample() with the noise given: mean + std · noise. */
  sample(distribution: LatentDistribution, noise: Value): Value {
    return add(distribution.mean, mul(distribution.std, noise));
  }

  /** latents (B, latent_channels, h, w) → image (B, out_channels, h·f, w·f), nominally in [−1, 1]. */
  decode(context: TraceContext, latents: Value): Value {
    const quantized = this.post_quant_conv ? scoped(context, 'post_quant_conv', () => this.post_quant_conv!.forward(context, latents)) : latents;
    return scoped(context, 'decoder', () => this.decoder.forward(context, quantized));
  }

  /** diffusers forward(): decode(posterior sample) when noise is given, else decode(posterior mode). */
  forward(context: TraceContext, image: Value, noise?: Value): Value {
    const distribution = this.encode(context, image);
    return this.decode(context, noise ? this.sample(distribution, noise) : distribution.mean);
  }

  /** Diffusion latents of an image, as Kosmos-G's stage 3 builds its targets: (sample − shift) · scaling_factor. */
  encodeToLatents(context: TraceContext, image: Value, noise: Value): Value {
    const sampled = this.sample(this.encode(context, image), noise);
    return mul(sub(sampled, this.config.shift_factor ?? 0), this.config.scaling_factor);
  }

  /** Kosmos-G VAE.decode: clamp(decode(latents / scaling_factor + shift) / 2 + 0.5, 0, 1), an image in [0, 1]. */
  decodeToImage(context: TraceContext, latents: Value): Value {
    const unscaled = add(div(latents, this.config.scaling_factor), this.config.shift_factor ?? 0);
    return clip(add(mul(this.decode(context, unscaled), 0.5), 0.5), 0, 1);
  }

  /** A model from config.json and a safetensors checkpoint (single or sharded), loaded strictly. */
  static async fromPretrained(directory: string): Promise<AutoencoderKL> {
    const model = new AutoencoderKL(await readAutoencoderKLConfig(directory), { random: checkpointInitialized });
    const reader = await openSafetensors(directory);
    try {
      const tensors: Record<string, HostTensor> = {};
      for (const [name, tensor] of await reader.readAll({ asFloat32: true })) tensors[modernAttentionKey(name)] = tensor;
      model.loadStateDict(tensors);
    } finally {
      await reader.close();
    }
    return model;
  }

  /** Inference bindings to a checkpoint's tensors by byte offset (no copy); legacy attention names resolve. */
  externalWeights(graph: Graph, reader: SafetensorsReader): ExternalWeights {
    return externalBindings(graph, this, reader, { checkpointKey: (key) => (reader.has(key) ? key : reader.has(legacyAttentionKey(key)) ? legacyAttentionKey(key) : key) });
  }

  /** Writes config.json and model.safetensors (diffusers key names). */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify({ _class_name: 'AutoencoderKL', ...this.config }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'model.safetensors'), this.stateDict(), options);
  }
}

export async function readAutoencoderKLConfig(directory: string): Promise<AutoencoderKLConfig> {
  const path = join(directory, 'config.json');
  try {
    return parseAutoencoderKLConfig(JSON.parse(await platform.readText(path)));
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Host-side image helper.

/** numpy's `(x · 255).round()` (ties to even) of a [0, 1] image, as bytes in the tensor's layout. */
export function imageToBytes(image: HostTensor): Uint8Array {
  const bytes = new Uint8Array(image.data.length);
  for (let i = 0; i < bytes.length; i++) {
    const scaled = Math.fround(Number(image.data[i]) * 255);
    const floor = Math.floor(scaled);
    const fraction = scaled - floor;
    const rounded = fraction > 0.5 || (fraction === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
    bytes[i] = Math.min(255, Math.max(0, rounded));
  }
  return bytes;
}

