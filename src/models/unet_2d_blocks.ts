// The building blocks of diffusers' UNet2DConditionModel and ControlNetModel (SD 1.x/2.x family),
// each a Module whose property paths are diffusers' checkpoint keys: the sinusoidal timestep
// projection and TimestepEmbedding, ResnetBlock2D, Attention, GEGLU FeedForward,
// BasicTransformerBlock, Transformer2DModel, Downsample2D/Upsample2D, and the down, mid and up
// blocks. Read top-down, like diffusers' unet_2d_blocks.py / attention.py / resnet.py.
import type { Dim, Value } from '../graph/graph.js';
import { add, cos, div, gelu, mul, silu, sin, cast } from '../graph/ops/elementwise.js';
import { dropout, fusedMultiHeadAttention, scaledDotProductAttention, upsampleNearest2x } from '../graph/ops/nn.js';
import { concat, pad, reshape, split, transpose } from '../graph/ops/shape.js';
import { Conv2d, GroupNorm, LayerNorm, Linear, type UniformSource } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import { hostTensor } from '../onnx/dtype.js';

/** A low-rank (or any) extra term on a projection's output: LoRA applied at run time. */
export interface ProjectionAdapter {
  /** What is added to `layer(x)`, or null when `layer` is not adapted. */
  delta(layer: Linear | Conv2d, x: Value): Value | null;
}

/** Per-call options every block passes down to its attention layers. */
export interface BlockRunOptions {
  adapter?: ProjectionAdapter;
  /**
   * com.microsoft MultiHeadAttention instead of the composed softmax(QKᵀ)V: faster and without the
   * (B, heads, T, T) score tensor, but inference only (it has no gradient rule).
   */
  fusedAttention?: boolean;
}

/** `layer(x)` plus the adapter's term for this layer, if any. */
function project(context: TraceContext, layer: Linear | Conv2d, x: Value, options: BlockRunOptions): Value {
  const base = layer.forward(context, x);
  const extra = options.adapter?.delta(layer, x);
  return extra ? add(base, extra) : base;
}

export class Dropout extends Module {
  constructor(readonly probability: number) {
    super();
  }

  /** Identity unless the graph is a training graph (it has a dropout seed). */
  forward(context: TraceContext, x: Value): Value {
    return context.dropoutSeed && this.probability > 0 ? dropout(x, this.probability, context.dropoutSeed) : x;
  }
}

// ---- time embedding -------------------------------------------------------------------------------

/**
 * diffusers `get_timestep_embedding` (max_period 10000, scale 1): frequencies
 * exp(−ln(10000)·i / (half − freq_shift)) computed with float32 roundings as torch does, then
 * [sin, cos] of t·freq, swapped to [cos, sin] by flip_sin_to_cos. `timestep` is a 0-d or (B)
 * tensor, integer or float; the result is (B or 1, dim) in `dtype`.
 */
export function timestepProjection(timestep: Value, dim: number, flipSinToCos: boolean, freqShift: number, dtype: 'float32' | 'float64'): Value {
  const half = Math.floor(dim / 2);
  const round = dtype === 'float32' ? Math.fround : (value: number) => value;
  const frequencies = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = round(round(round(-Math.log(10000)) * i) / (half - freqShift));
    frequencies[i] = round(Math.exp(exponent));
  }
  const table = timestep.graph.constant(
    dtype === 'float32' ? hostTensor('float32', [1, half], Float32Array.from(frequencies)) : hostTensor('float64', [1, half], frequencies),
    'timestep_frequencies',
  ); // (1, half)
  const steps = cast(timestep.rank === 0 ? reshape(timestep, [1]) : timestep, dtype); // (B)
  const angles = mul(reshape(steps, [steps.shape[0]!, 1]), table); // (B, half)
  const halves = flipSinToCos ? [cos(angles), sin(angles)] : [sin(angles), cos(angles)];
  let embedding = concat(halves, 1); // (B, 2·half)
  if (dim % 2 === 1) embedding = pad(embedding, [0, 0, 0, 1]); // (B, dim)
  return embedding;
}

/** diffusers TimestepEmbedding: linear_1 → SiLU → linear_2. */
export class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;

  constructor(inChannels: number, timeEmbedDim: number, random: UniformSource) {
    super();
    this.linear_1 = new Linear(inChannels, timeEmbedDim, { random });
    this.linear_2 = new Linear(timeEmbedDim, timeEmbedDim, { random });
  }

  forward(context: TraceContext, projected: Value): Value {
    const hidden = context.graph.scope('linear_1', () => this.linear_1.forward(context, projected));
    return context.graph.scope('linear_2', () => this.linear_2.forward(context, silu(hidden)));
  }
}

// ---- ResnetBlock2D ------------------------------------------------------------------------------

export interface ResnetOptions {
  groups: number;
  eps: number;
  dropout: number;
  outputScaleFactor?: number;
}

/** GroupNorm → SiLU → conv1 (+ projected time embedding) → GroupNorm → SiLU → dropout → conv2, plus the shortcut. */
export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear;
  readonly norm2: GroupNorm;
  readonly dropout: Dropout;
  readonly conv2: Conv2d;
  /** A 1×1 conv when the channel count changes. */
  readonly conv_shortcut: Conv2d | null;
  readonly outputScaleFactor: number;

  constructor(inChannels: number, outChannels: number, timeEmbedDim: number, options: ResnetOptions, random: UniformSource) {
    super();
    this.norm1 = new GroupNorm(options.groups, inChannels, options.eps);
    this.conv1 = new Conv2d(inChannels, outChannels, 3, { random, padding: 1 });
    this.time_emb_proj = new Linear(timeEmbedDim, outChannels, { random });
    this.norm2 = new GroupNorm(options.groups, outChannels, options.eps);
    this.dropout = new Dropout(options.dropout);
    this.conv2 = new Conv2d(outChannels, outChannels, 3, { random, padding: 1 });
    this.conv_shortcut = inChannels === outChannels ? null : new Conv2d(inChannels, outChannels, 1, { random });
    this.outputScaleFactor = options.outputScaleFactor ?? 1;
  }

  /** x (B, C_in, H, W), timeEmbedding (B or 1, T) → (B, C_out, H, W). */
  forward(context: TraceContext, x: Value, timeEmbedding: Value): Value {
    const scope = context.graph.scope.bind(context.graph);
    let hidden = scope('norm1', () => silu(this.norm1.forward(context, x)));
    hidden = scope('conv1', () => this.conv1.forward(context, hidden));
    const time = scope('time_emb_proj', () => this.time_emb_proj.forward(context, silu(timeEmbedding))); // (B, C_out)
    hidden = add(hidden, reshape(time, [time.shape[0]!, time.shape[1]!, 1, 1])); // (B, C_out, 1, 1) broadcast over H, W
    hidden = scope('norm2', () => silu(this.norm2.forward(context, hidden)));
    hidden = this.dropout.forward(context, hidden);
    hidden = scope('conv2', () => this.conv2.forward(context, hidden));
    const shortcut = this.conv_shortcut ? scope('conv_shortcut', () => this.conv_shortcut!.forward(context, x)) : x;
    const sum = add(shortcut, hidden);
    return this.outputScaleFactor === 1 ? sum : div(sum, this.outputScaleFactor);
  }
}

// ---- attention ----------------------------------------------------------------------------------

/** diffusers Attention (AttnProcessor2_0): bias-free q/k/v, softmax(q·kᵀ/√d)·v per head, to_out.0 with bias. */
export class Attention extends Module {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  /** diffusers' to_out is [Linear, Dropout]: the key is `to_out.0`. */
  readonly to_out: [Linear, Dropout];

  constructor(queryDim: number, keyDim: number, readonly heads: number, readonly headDim: number, dropoutProbability: number, random: UniformSource) {
    super();
    const inner = heads * headDim;
    this.to_q = new Linear(queryDim, inner, { random, bias: false });
    this.to_k = new Linear(keyDim, inner, { random, bias: false });
    this.to_v = new Linear(keyDim, inner, { random, bias: false });
    this.to_out = [new Linear(inner, queryDim, { random }), new Dropout(dropoutProbability)];
  }

  /** x (B, T, C), context states (B, S, C_kv) or null for self-attention → (B, T, C). */
  forward(context: TraceContext, x: Value, encoderHiddenStates: Value | null, options: BlockRunOptions): Value {
    const scope = context.graph.scope.bind(context.graph);
    const source = encoderHiddenStates ?? x;
    const query = scope('to_q', () => project(context, this.to_q, x, options)); // (B, T, heads·D)
    const key = scope('to_k', () => project(context, this.to_k, source, options)); // (B, S, heads·D)
    const value = scope('to_v', () => project(context, this.to_v, source, options)); // (B, S, heads·D)
    let attended: Value;
    if (options.fusedAttention) {
      attended = fusedMultiHeadAttention(query, key, value, this.heads); // (B, T, heads·D)
    } else {
      const splitHeads = (projected: Value) =>
        transpose(reshape(projected, [projected.shape[0]!, projected.shape[1]!, this.heads, this.headDim]), [0, 2, 1, 3]); // (B, heads, T|S, D)
      const perHead = scaledDotProductAttention(splitHeads(query), splitHeads(key), splitHeads(value)); // (B, heads, T, D)
      const merged = transpose(perHead, [0, 2, 1, 3]); // (B, T, heads, D)
      attended = reshape(merged, [merged.shape[0]!, merged.shape[1]!, this.heads * this.headDim]); // (B, T, heads·D)
    }
    const output = scope('to_out.0', () => project(context, this.to_out[0], attended, options));
    return this.to_out[1].forward(context, output);
  }
}

/** GELU-gated linear unit: proj → (hidden, gate) halves → hidden · GELU(gate), exact GELU. */
export class GEGLU extends Module {
  readonly proj: Linear;

  constructor(dim: number, readonly innerDim: number, random: UniformSource) {
    super();
    this.proj = new Linear(dim, innerDim * 2, { random });
  }

  forward(context: TraceContext, x: Value, options: BlockRunOptions): Value {
    const projected = context.graph.scope('proj', () => project(context, this.proj, x, options)); // (B, T, 2·inner)
    const [hidden, gate] = split(projected, [this.innerDim, this.innerDim], -1); // (B, T, inner) each
    return mul(hidden!, gelu(gate!));
  }
}

/** diffusers FeedForward with activation "geglu": net = [GEGLU, Dropout, Linear]. */
export class FeedForward extends Module {
  readonly net: [GEGLU, Dropout, Linear];

  constructor(dim: number, dropoutProbability: number, random: UniformSource) {
    super();
    const inner = 4 * dim;
    this.net = [new GEGLU(dim, inner, random), new Dropout(dropoutProbability), new Linear(inner, dim, { random })];
  }

  forward(context: TraceContext, x: Value, options: BlockRunOptions): Value {
    const gated = context.graph.scope('net.0', () => this.net[0].forward(context, x, options));
    const dropped = this.net[1].forward(context, gated);
    return context.graph.scope('net.2', () => project(context, this.net[2], dropped, options));
  }
}

/** Pre-LN block: self-attention, cross-attention, GEGLU feed-forward, each with a residual. */
export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(
    dim: number,
    heads: number,
    headDim: number,
    crossAttentionDim: number,
    readonly onlyCrossAttention: boolean,
    dropoutProbability: number,
    random: UniformSource,
  ) {
    super();
    this.norm1 = new LayerNorm(dim, 1e-5);
    this.attn1 = new Attention(dim, onlyCrossAttention ? crossAttentionDim : dim, heads, headDim, dropoutProbability, random);
    this.norm2 = new LayerNorm(dim, 1e-5);
    this.attn2 = new Attention(dim, crossAttentionDim, heads, headDim, dropoutProbability, random);
    this.norm3 = new LayerNorm(dim, 1e-5);
    this.ff = new FeedForward(dim, dropoutProbability, random);
  }

  /** x (B, T, C), encoderHiddenStates (B, S, C_cross) → (B, T, C). */
  forward(context: TraceContext, x: Value, encoderHiddenStates: Value, options: BlockRunOptions): Value {
    const scope = context.graph.scope.bind(context.graph);
    let hidden = x;
    const selfSource = this.onlyCrossAttention ? encoderHiddenStates : null;
    hidden = add(scope('attn1', () => this.attn1.forward(context, scope('norm1', () => this.norm1.forward(context, hidden)), selfSource, options)), hidden);
    hidden = add(scope('attn2', () => this.attn2.forward(context, scope('norm2', () => this.norm2.forward(context, hidden)), encoderHiddenStates, options)), hidden);
    return add(scope('ff', () => this.ff.forward(context, scope('norm3', () => this.norm3.forward(context, hidden)), options)), hidden);
  }
}

export interface TransformerOptions {
  heads: number;
  layers: number;
  crossAttentionDim: number;
  groups: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
  dropout: number;
}

/**
 * diffusers Transformer2DModel on continuous input: GroupNorm (eps 1e-6) → proj_in (1×1 conv, or
 * Linear after flattening when use_linear_projection) → transformer blocks over the H·W tokens →
 * proj_out → plus the input. Head size is channels / heads.
 */
export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly proj_in: Conv2d | Linear;
  readonly transformer_blocks: BasicTransformerBlock[];
  readonly proj_out: Conv2d | Linear;

  constructor(channels: number, readonly options: TransformerOptions, random: UniformSource) {
    super();
    if (channels % options.heads !== 0) throw new Error(`Transformer2DModel: ${channels} channels do not split into ${options.heads} heads`);
    const headDim = channels / options.heads;
    this.norm = new GroupNorm(options.groups, channels, 1e-6);
    this.proj_in = options.useLinearProjection ? new Linear(channels, channels, { random }) : new Conv2d(channels, channels, 1, { random });
    this.transformer_blocks = Array.from(
      { length: options.layers },
      () => new BasicTransformerBlock(channels, options.heads, headDim, options.crossAttentionDim, options.onlyCrossAttention, options.dropout, random),
    );
    this.proj_out = options.useLinearProjection ? new Linear(channels, channels, { random }) : new Conv2d(channels, channels, 1, { random });
  }

  /** x (B, C, H, W), encoderHiddenStates (B, S, C_cross) → (B, C, H, W). */
  forward(context: TraceContext, x: Value, encoderHiddenStates: Value, options: BlockRunOptions): Value {
    const scope = context.graph.scope.bind(context.graph);
    const [batch, , height, width] = x.shape as [Dim, Dim, Dim, Dim];
    const toTokens = (image: Value) => reshape(transpose(image, [0, 2, 3, 1]), [batch, -1, image.size(1)], [x]); // (B, H·W, C)
    const toImage = (tokens: Value) => transpose(reshape(tokens, [batch, height, width, tokens.size(2)], [x]), [0, 3, 1, 2]); // (B, C, H, W)
    const normalized = scope('norm', () => this.norm.forward(context, x));
    let tokens = this.options.useLinearProjection
      ? scope('proj_in', () => project(context, this.proj_in, toTokens(normalized), options))
      : toTokens(scope('proj_in', () => project(context, this.proj_in, normalized, options)));
    this.transformer_blocks.forEach((block, index) => {
      tokens = scope(`transformer_blocks.${index}`, () => block.forward(context, tokens, encoderHiddenStates, options));
    });
    const output = this.options.useLinearProjection
      ? toImage(scope('proj_out', () => project(context, this.proj_out, tokens, options)))
      : scope('proj_out', () => project(context, this.proj_out, toImage(tokens), options));
    return add(output, x);
  }
}

// ---- resampling ---------------------------------------------------------------------------------

/** Stride-2 3×3 conv; with padding 0 the input is first padded by one on the right and bottom. */
export class Downsample2D extends Module {
  readonly conv: Conv2d;

  constructor(channels: number, readonly padding: number, random: UniformSource) {
    super();
    this.conv = new Conv2d(channels, channels, 3, { random, stride: 2, padding });
  }

  forward(context: TraceContext, x: Value): Value {
    const input = this.padding === 0 ? pad(x, [0, 0, 0, 0, 0, 0, 1, 1]) : x;
    return context.graph.scope('conv', () => this.conv.forward(context, input));
  }
}

/** Nearest-neighbour 2× then a 3×3 conv. */
export class Upsample2D extends Module {
  readonly conv: Conv2d;

  constructor(channels: number, random: UniformSource) {
    super();
    this.conv = new Conv2d(channels, channels, 3, { random, padding: 1 });
  }

  forward(context: TraceContext, x: Value): Value {
    return context.graph.scope('conv', () => this.conv.forward(context, upsampleNearest2x(x)));
  }
}

// ---- down, mid and up blocks ----------------------------------------------------------------------

/** What a down, mid or up block needs to know besides its channel counts. */
export interface BlockOptions {
  layers: number;
  timeEmbedDim: number;
  resnet: ResnetOptions;
  /** Null for the plain DownBlock2D / UpBlock2D. */
  transformer: TransformerOptions | null;
}

/**
 * CrossAttnDownBlock2D (`transformer` given) or DownBlock2D: `layers` resnets (each followed by a
 * Transformer2DModel in the cross-attention variant), then an optional stride-2 downsampler.
 * Every layer's output and the downsampler's output are kept for the skip connections.
 */
export class DownBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly downsamplers: [Downsample2D] | null;

  constructor(inChannels: number, outChannels: number, addDownsample: boolean, downsamplePadding: number, options: BlockOptions, random: UniformSource) {
    super();
    this.resnets = [];
    const attentions: Transformer2DModel[] = [];
    for (let layer = 0; layer < options.layers; layer++) {
      this.resnets.push(new ResnetBlock2D(layer === 0 ? inChannels : outChannels, outChannels, options.timeEmbedDim, options.resnet, random));
      if (options.transformer) attentions.push(new Transformer2DModel(outChannels, options.transformer, random));
    }
    this.attentions = options.transformer ? attentions : null;
    this.downsamplers = addDownsample ? [new Downsample2D(outChannels, downsamplePadding, random)] : null;
  }

  forward(context: TraceContext, x: Value, timeEmbedding: Value, encoderHiddenStates: Value, options: BlockRunOptions): { hidden: Value; skips: Value[] } {
    const scope = context.graph.scope.bind(context.graph);
    const skips: Value[] = [];
    let hidden = x;
    this.resnets.forEach((resnet, index) => {
      hidden = scope(`resnets.${index}`, () => resnet.forward(context, hidden, timeEmbedding));
      const attention = this.attentions?.[index];
      if (attention) hidden = scope(`attentions.${index}`, () => attention.forward(context, hidden, encoderHiddenStates, options));
      skips.push(hidden);
    });
    if (this.downsamplers) {
      hidden = scope('downsamplers.0', () => this.downsamplers![0].forward(context, hidden));
      skips.push(hidden);
    }
    return { hidden, skips };
  }
}

/** UNetMidBlock2DCrossAttn: resnet, then (Transformer2DModel, resnet) × layers. */
export class UNetMidBlock2DCrossAttn extends Module {
  readonly attentions: Transformer2DModel[];
  readonly resnets: ResnetBlock2D[];

  constructor(channels: number, options: BlockOptions & { transformer: TransformerOptions }, random: UniformSource) {
    super();
    this.resnets = [new ResnetBlock2D(channels, channels, options.timeEmbedDim, options.resnet, random)];
    this.attentions = [];
    for (let layer = 0; layer < options.layers; layer++) {
      this.attentions.push(new Transformer2DModel(channels, options.transformer, random));
      this.resnets.push(new ResnetBlock2D(channels, channels, options.timeEmbedDim, options.resnet, random));
    }
  }

  forward(context: TraceContext, x: Value, timeEmbedding: Value, encoderHiddenStates: Value, options: BlockRunOptions): Value {
    const scope = context.graph.scope.bind(context.graph);
    let hidden = scope('resnets.0', () => this.resnets[0]!.forward(context, x, timeEmbedding));
    this.attentions.forEach((attention, index) => {
      hidden = scope(`attentions.${index}`, () => attention.forward(context, hidden, encoderHiddenStates, options));
      hidden = scope(`resnets.${index + 1}`, () => this.resnets[index + 1]!.forward(context, hidden, timeEmbedding));
    });
    return hidden;
  }
}

/**
 * CrossAttnUpBlock2D (`transformer` given) or UpBlock2D: each resnet takes the running hidden state
 * concatenated with the next skip connection (taken from the end of the list), then an optional
 * nearest-2× upsampler. Resnet i gets `prevOutputChannels` (i = 0) or `outChannels` hidden channels
 * plus `outChannels` skip channels, except the last, whose skip has `inChannels`.
 */
export class UpBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly upsamplers: [Upsample2D] | null;

  constructor(inChannels: number, outChannels: number, prevOutputChannels: number, addUpsample: boolean, options: BlockOptions, random: UniformSource) {
    super();
    this.resnets = [];
    const attentions: Transformer2DModel[] = [];
    for (let layer = 0; layer < options.layers; layer++) {
      const skipChannels = layer === options.layers - 1 ? inChannels : outChannels;
      const hiddenChannels = layer === 0 ? prevOutputChannels : outChannels;
      this.resnets.push(new ResnetBlock2D(hiddenChannels + skipChannels, outChannels, options.timeEmbedDim, options.resnet, random));
      if (options.transformer) attentions.push(new Transformer2DModel(outChannels, options.transformer, random));
    }
    this.attentions = options.transformer ? attentions : null;
    this.upsamplers = addUpsample ? [new Upsample2D(outChannels, random)] : null;
  }

  /** `skips` is consumed from its end, one per resnet. */
  forward(context: TraceContext, x: Value, skips: Value[], timeEmbedding: Value, encoderHiddenStates: Value, options: BlockRunOptions): Value {
    const scope = context.graph.scope.bind(context.graph);
    let hidden = x;
    this.resnets.forEach((resnet, index) => {
      const skip = skips.pop();
      if (!skip) throw new Error('UpBlock2D: ran out of skip connections');
      hidden = concat([hidden, skip], 1); // (B, C_hidden + C_skip, H, W)
      hidden = scope(`resnets.${index}`, () => resnet.forward(context, hidden, timeEmbedding));
      const attention = this.attentions?.[index];
      if (attention) hidden = scope(`attentions.${index}`, () => attention.forward(context, hidden, encoderHiddenStates, options));
    });
    if (this.upsamplers) hidden = scope('upsamplers.0', () => this.upsamplers![0].forward(context, hidden));
    return hidden;
  }
}
