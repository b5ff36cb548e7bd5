// The layers every model file shares. Initialisation follows PyTorch's defaults so that models
// built here train like their PyTorch counterparts: Linear/Conv weights and biases
// U(−1/√fan_in, 1/√fan_in), norms γ = 1 and β = 0, embeddings N(0, 1).
import { type DType, type HostTensor, elementCount } from '../onnx/dtype.js';
import type { Value } from '../graph/graph.js';
import { conv2d, embedding, groupNorm, layerNorm, linear, quantizedLinear } from '../graph/ops/nn.js';
import { Module, Parameter, type TraceContext } from './module.js';

/** A source of uniform numbers in [0, 1), e.g. a seeded generator. */
export interface UniformSource {
  next(): number;
}

/** A fresh tensor with `value(i)` at each index; without `value` the zeros of a fresh buffer, never written. */
function filled(dtype: DType, shape: number[], value?: (index: number) => number): HostTensor {
  const count = elementCount(shape);
  const data = dtype === 'float64' ? new Float64Array(count) : new Float32Array(count);
  if (value) for (let i = 0; i < count; i++) data[i] = value(i);
  return { dtype, shape, data } as HostTensor;
}

/**
 * Draws nothing random: for models whose every parameter is about to be replaced from a checkpoint,
 * or that are built for their shapes only. Their random tensors are left zero and never written, so
 * they take no resident memory (a paper-size U-Net would otherwise touch 3.4 GB before its
 * checkpoint is even opened).
 */
export const checkpointInitialized: UniformSource = { next: () => 0.5 };

export function uniformTensor(random: UniformSource, shape: number[], bound: number, dtype: DType = 'float32'): HostTensor {
  if (random === checkpointInitialized) return filled(dtype, shape);
  return filled(dtype, shape, () => (2 * random.next() - 1) * bound);
}

/** Standard normal samples by the Box–Muller transform, scaled by `std`. */
export function normalTensor(random: UniformSource, shape: number[], std = 1, dtype: DType = 'float32'): HostTensor {
  if (random === checkpointInitialized) return filled(dtype, shape);
  return filled(dtype, shape, () => {
    const u = 1 - random.next(); // (0, 1]: log stays finite
    return std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random.next());
  });
}

export const constantTensor = (shape: number[], value: number, dtype: DType = 'float32'): HostTensor => filled(dtype, shape, () => value);

export interface LayerOptions {
  random: UniformSource;
  dtype?: DType;
}

/** The weights of every Linear built: the ones weight-only quantization may hold as MatMulNBits blocks (nn/quantize.ts). */
const LINEAR_WEIGHTS = new WeakSet<Parameter>();

export const isLinearWeight = (parameter: Parameter): boolean => LINEAR_WEIGHTS.has(parameter);

/** Marks the weight of a model file's own linear layer (its own initialisation) as one quantization may take. */
export function markLinearWeight(weight: Parameter): void {
  LINEAR_WEIGHTS.add(weight);
}

/** x·Wᵀ + b, reading W's MatMulNBits blocks where the context holds the weight quantized. */
export function linearForward(context: TraceContext, x: Value, weight: Parameter, bias: Parameter | null): Value {
  const quantized = context.quantized?.(weight);
  if (quantized) return quantizedLinear(x, quantized.codes, quantized.scales, quantized.zeroPoints, bias && context.value(bias), quantized.layout);
  return linear(x, context.value(weight), bias && context.value(bias));
}

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(inFeatures: number, outFeatures: number, options: LayerOptions & { bias?: boolean }) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = new Parameter(uniformTensor(options.random, [outFeatures, inFeatures], bound, options.dtype));
    markLinearWeight(this.weight);
    this.bias = options.bias === false ? null : new Parameter(uniformTensor(options.random, [outFeatures], bound, options.dtype));
  }

  forward(context: TraceContext, x: Value): Value {
    return linearForward(context, x, this.weight, this.bias);
  }
}

export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(
    inChannels: number,
    outChannels: number,
    kernel: number,
    readonly options: LayerOptions & { stride?: number; padding?: number; groups?: number; bias?: boolean },
  ) {
    super();
    const groups = options.groups ?? 1;
    const bound = 1 / Math.sqrt((inChannels / groups) * kernel * kernel);
    this.weight = new Parameter(uniformTensor(options.random, [outChannels, inChannels / groups, kernel, kernel], bound, options.dtype));
    this.bias = options.bias === false ? null : new Parameter(uniformTensor(options.random, [outChannels], bound, options.dtype));
  }

  forward(context: TraceContext, x: Value): Value {
    const { stride, padding, groups } = this.options;
    return conv2d(x, context.value(this.weight), this.bias && context.value(this.bias), { stride, padding, groups });
  }
}

export class LayerNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(features: number, readonly eps = 1e-5, dtype: DType = 'float32') {
    super();
    this.weight = new Parameter(constantTensor([features], 1, dtype));
    this.bias = new Parameter(constantTensor([features], 0, dtype));
  }

  forward(context: TraceContext, x: Value): Value {
    return layerNorm(x, context.value(this.weight), context.value(this.bias), this.eps);
  }
}

export class GroupNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(readonly groups: number, channels: number, readonly eps = 1e-5, dtype: DType = 'float32') {
    super();
    this.weight = new Parameter(constantTensor([channels], 1, dtype));
    this.bias = new Parameter(constantTensor([channels], 0, dtype));
  }

  forward(context: TraceContext, x: Value): Value {
    return groupNorm(x, this.groups, context.value(this.weight), context.value(this.bias), this.eps);
  }
}

export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(count: number, dim: number, options: LayerOptions) {
    super();
    this.weight = new Parameter(normalTensor(options.random, [count, dim], 1, options.dtype));
  }

  forward(context: TraceContext, ids: Value): Value {
    return embedding(context.value(this.weight), ids);
  }
}
