// The engine's reference blocks: small Modules built from the shared layers whose property paths
// match the PyTorch modules in bench/torch/models.py, so a state dict maps 1:1 between the two.
// The learning tests, the PyTorch gradient parity and the benchmarks all use these.
import type { Value } from '../src/graph/graph.js';
import { add, gelu, silu } from '../src/graph/ops/elementwise.js';
import { crossEntropy, mseLoss, scaledDotProductAttention } from '../src/graph/ops/nn.js';
import { reshape, transpose } from '../src/graph/ops/shape.js';
import { Conv2d, GroupNorm, LayerNorm, Linear, type UniformSource } from '../src/nn/layers.js';
import { Module, type TraceContext } from '../src/nn/module.js';

/** The traced batch a model's loss reads: `x` and either a float `target` or int64 `labels`. */
export type TracedBatch = Readonly<Record<string, Value>>;

const batchValue = (batch: TracedBatch, name: string): Value => {
  const value = batch[name];
  if (!value) throw new Error(`the batch has no ${name}`);
  return value;
};

/** Linear → GELU (erf) → Linear, as timm's Mlp. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(inFeatures: number, hiddenFeatures: number, outFeatures: number, random: UniformSource) {
    super();
    this.fc1 = new Linear(inFeatures, hiddenFeatures, { random });
    this.fc2 = new Linear(hiddenFeatures, outFeatures, { random });
  }

  forward(context: TraceContext, x: Value): Value {
    return this.fc2.forward(context, gelu(this.fc1.forward(context, x)));
  }

  /** Regression: mean squared error between the output and `target`. */
  loss(context: TraceContext, batch: TracedBatch): Value {
    return mseLoss(this.forward(context, batchValue(batch, 'x')), batchValue(batch, 'target'));
  }
}

/** x + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))): diffusers' ResnetBlock2D without the time embedding. */
export class ConvBlock extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;

  constructor(channels: number, random: UniformSource, groups = 32) {
    super();
    this.norm1 = new GroupNorm(groups, channels, 1e-6);
    this.conv1 = new Conv2d(channels, channels, 3, { random, padding: 1 });
    this.norm2 = new GroupNorm(groups, channels, 1e-6);
    this.conv2 = new Conv2d(channels, channels, 3, { random, padding: 1 });
  }

  /** x (N, C, H, W) → (N, C, H, W). */
  forward(context: TraceContext, x: Value): Value {
    const hidden = this.conv1.forward(context, silu(this.norm1.forward(context, x)));
    return add(x, this.conv2.forward(context, silu(this.norm2.forward(context, hidden))));
  }

  /** Regression: mean squared error between the output and `target`. */
  loss(context: TraceContext, batch: TracedBatch): Value {
    return mseLoss(this.forward(context, batchValue(batch, 'x')), batchValue(batch, 'target'));
  }
}

/** Multi-head self-attention with separate q/k/v/out projections. */
export class SelfAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  constructor(width: number, readonly heads: number, random: UniformSource) {
    super();
    if (width % heads !== 0) throw new Error(`width ${width} does not split into ${heads} heads`);
    this.q_proj = new Linear(width, width, { random });
    this.k_proj = new Linear(width, width, { random });
    this.v_proj = new Linear(width, width, { random });
    this.out_proj = new Linear(width, width, { random });
  }

  /** x (B, T, E) → (B, T, E). */
  forward(context: TraceContext, x: Value): Value {
    const [batch, tokens, width] = [x.size(0), x.size(1), x.size(2)];
    const headDim = width / this.heads;
    const splitHeads = (projected: Value): Value =>
      transpose(reshape(projected, [batch, tokens, this.heads, headDim]), [0, 2, 1, 3]); // (B, T, E) → (B, T, H, D) → (B, H, T, D)
    const query = splitHeads(this.q_proj.forward(context, x));
    const key = splitHeads(this.k_proj.forward(context, x));
    const value = splitHeads(this.v_proj.forward(context, x));
    const attended = scaledDotProductAttention(query, key, value); // (B, H, T, D)
    const merged = reshape(transpose(attended, [0, 2, 1, 3]), [batch, tokens, width]); // (B, H, T, D) → (B, T, H, D) → (B, T, E)
    return this.out_proj.forward(context, merged);
  }
}

/** Pre-LN transformer block: x + attn(norm1(x)), then + mlp(norm2(·)). */
export class TransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: SelfAttention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;

  constructor(width: number, heads: number, mlpWidth: number, random: UniformSource) {
    super();
    this.norm1 = new LayerNorm(width);
    this.attn = new SelfAttention(width, heads, random);
    this.norm2 = new LayerNorm(width);
    this.mlp = new Mlp(width, mlpWidth, width, random);
  }

  /** x (B, T, E) → (B, T, E). */
  forward(context: TraceContext, x: Value): Value {
    const attended = add(x, this.attn.forward(context, this.norm1.forward(context, x)));
    return add(attended, this.mlp.forward(context, this.norm2.forward(context, attended)));
  }

  /** Token classification: the E output features are the logits of E classes, `labels` (B, T) int64. */
  loss(context: TraceContext, batch: TracedBatch): Value {
    return crossEntropy(this.forward(context, batchValue(batch, 'x')), batchValue(batch, 'labels'));
  }
}

/** A model's shape, shared with bench/torch/models.py `build`. */
export type ModelConfig =
  | { kind: 'mlp'; inFeatures: number; hiddenFeatures: number; outFeatures: number }
  | { kind: 'conv'; channels: number; groups: number }
  | { kind: 'transformer'; width: number; heads: number; mlpWidth: number };

export type EngineModel = Mlp | ConvBlock | TransformerBlock;

export function buildModel(config: ModelConfig, random: UniformSource): EngineModel {
  switch (config.kind) {
    case 'mlp':
      return new Mlp(config.inFeatures, config.hiddenFeatures, config.outFeatures, random);
    case 'conv':
      return new ConvBlock(config.channels, random, config.groups);
    case 'transformer':
      return new TransformerBlock(config.width, config.heads, config.mlpWidth, random);
  }
}
