// Neural-network ops: linear, convolution, pooling, resampling, normalisation, attention,
// dropout and losses. Fused ONNX kernels are used where one exists with a closed-form gradient
// (Gemm, Conv, LayerNormalization, Softmax); the rest are compositions of simpler ops.
import type { DType } from '../../onnx/dtype.js';
import { type Dim, type Value, formatShape } from '../graph.js';
import {
  add, cast, clip, div, gemm, greaterOrEqual, logSoftmax, matmul, mean, mul, neg, not, requireFloat, softmax, sqrt, sub, sum, sumSquares, where, equal, max,
} from './elementwise.js';
import { gather, gatherElements, reshape, transpose, unsqueeze } from './shape.js';

/** PyTorch nn.Linear: x·Wᵀ + b with weight (out, in); x may have any number of leading dims. */
export function linear(x: Value, weight: Value, bias: Value | null = null): Value {
  const inFeatures = weight.shape[1]!;
  const outFeatures = weight.shape[0]!;
  if (x.shape[x.rank - 1] !== inFeatures) throw new Error(`linear: input ${x} does not end in ${inFeatures} features (weight ${weight})`);
  if (x.rank === 2) return gemm(x, weight, bias, { transB: true });
  const leading = x.shape.slice(0, -1);
  const flat = reshape(x, [-1, inFeatures]); // (N·…, in)
  const product = gemm(flat, weight, bias, { transB: true }); // (N·…, out)
  // Symbolic leading dims are read from x: the flattened product no longer has them.
  return reshape(product, [...leading, outFeatures], [x]); // (N, …, out)
}

/** The layout of a weight quantized for MatMulNBits (nn/quantize.ts writes it). */
export interface BlockQuantization {
  /** Input features K and output features N of the (N, K) weight. */
  k: number;
  n: number;
  bits: 4 | 8;
  /** Weights per scale along K: a power of two ≥ 16. */
  blockSize: number;
}

/**
 * Weight-only quantized nn.Linear for inference graphs (com.microsoft MatMulNBits): x (…, K) times
 * the transposed (N, K) weight held as codes (N, ⌈K/blockSize⌉, blockSize·bits/8) uint8, low bits
 * first, dequantized per block as (code − zero point) · scale, with scales (N·blocks) and zero
 * points (uint8, per block, packed two to a byte at 4 bits). Not differentiable.
 */
export function quantizedLinear(x: Value, codes: Value, scales: Value, zeroPoints: Value, bias: Value | null, layout: BlockQuantization): Value {
  const { k, n, bits, blockSize } = layout;
  if (x.shape[x.rank - 1] !== k) throw new Error(`quantizedLinear: input ${x} does not end in ${k} features`);
  const leading = x.shape.slice(0, -1);
  // MatMulNBits reads A as (M, K) or (B, M, K): other ranks go through (M, K).
  const flat = x.rank === 2 || x.rank === 3 ? x : reshape(x, [-1, k]);
  const attributes = { K: k, N: n, bits, block_size: blockSize };
  const product = x.graph.addNode('MatMulNBits', [flat, codes, scales, zeroPoints], [{ dtype: x.dtype, shape: [...flat.shape.slice(0, -1), n] }], attributes, 'com.microsoft')[0]!;
  const shaped = flat === x ? product : reshape(product, [...leading, n], [x]);
  return bias ? add(shaped, bias) : shaped;
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

const pair = (value: number | [number, number] | undefined, fallback: number): [number, number] =>
  value === undefined ? [fallback, fallback] : typeof value === 'number' ? [value, value] : value;

function convOutputSize(size: Dim, kernel: number, stride: number, padding: number, dilation: number): Dim {
  if (typeof size !== 'number') return `${size}_conv`;
  return Math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
}

/** PyTorch nn.Conv2d: x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out). */
export function conv2d(x: Value, weight: Value, bias: Value | null = null, options: Conv2dOptions = {}): Value {
  const [strideH, strideW] = pair(options.stride, 1);
  const [padH, padW] = pair(options.padding, 0);
  const [dilationH, dilationW] = pair(options.dilation, 1);
  const groups = options.groups ?? 1;
  if (x.rank !== 4 || weight.rank !== 4) throw new Error(`conv2d: expects 4-D input and weight, got ${x} and ${weight}`);
  const kernelH = weight.size(2);
  const kernelW = weight.size(3);
  // The weight's input-channel dim is symbolic in the weight-gradient convolution of a symbolic
  // batch (the batch plays the channels there, with groups = 1), so compare dims, not sizes.
  const inPerGroup = weight.shape[1]!;
  const inChannels = typeof inPerGroup === 'number' ? inPerGroup * groups : inPerGroup;
  if (x.shape[1] !== inChannels) throw new Error(`conv2d: ${x} has not ${inChannels} channels (weight ${weight}, groups ${groups})`);
  const shape = [
    x.shape[0]!,
    weight.shape[0]!,
    convOutputSize(x.shape[2]!, kernelH, strideH, padH, dilationH),
    convOutputSize(x.shape[3]!, kernelW, strideW, padW, dilationW),
  ];
  const attributes = {
    kernel_shape: [kernelH, kernelW],
    strides: [strideH, strideW],
    pads: [padH, padW, padH, padW],
    dilations: [dilationH, dilationW],
    group: groups,
  };
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return x.graph.addNode('Conv', inputs, [{ dtype: x.dtype, shape }], attributes)[0]!;
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  outputPadding?: number | [number, number];
}

/** PyTorch nn.ConvTranspose2d: weight (C_in, C_out/groups, kH, kW). Also the input-gradient of conv2d. */
export function convTranspose2d(x: Value, weight: Value, bias: Value | null = null, options: ConvTranspose2dOptions = {}): Value {
  const [strideH, strideW] = pair(options.stride, 1);
  const [padH, padW] = pair(options.padding, 0);
  const [dilationH, dilationW] = pair(options.dilation, 1);
  const [outPadH, outPadW] = pair(options.outputPadding, 0);
  const groups = options.groups ?? 1;
  const kernelH = weight.size(2);
  const kernelW = weight.size(3);
  const outSize = (size: Dim, kernel: number, stride: number, padding: number, dilation: number, extra: number): Dim =>
    typeof size === 'number' ? (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + extra + 1 : `${size}_convT`;
  const shape = [
    x.shape[0]!,
    weight.size(1) * groups,
    outSize(x.shape[2]!, kernelH, strideH, padH, dilationH, outPadH),
    outSize(x.shape[3]!, kernelW, strideW, padW, dilationW, outPadW),
  ];
  const attributes: Record<string, number | number[]> = {
    kernel_shape: [kernelH, kernelW],
    strides: [strideH, strideW],
    pads: [padH, padW, padH, padW],
    dilations: [dilationH, dilationW],
    group: groups,
  };
  if (outPadH || outPadW) attributes['output_padding'] = [outPadH, outPadW];
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return x.graph.addNode('ConvTranspose', inputs, [{ dtype: x.dtype, shape }], attributes)[0]!;
}

/** Nearest-neighbour 2× upsampling of (N, C, H, W), as torch F.interpolate(scale_factor=2, mode="nearest"). */
export function upsampleNearest2x(x: Value): Value {
  const scales = x.graph.constant({ dtype: 'float32', shape: [4], data: Float32Array.of(1, 1, 2, 2) }, 'scales');
  const double = (dim: Dim): Dim => (typeof dim === 'number' ? dim * 2 : `${dim}*2`);
  const shape = [x.shape[0]!, x.shape[1]!, double(x.shape[2]!), double(x.shape[3]!)];
  const attributes = { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' };
  return x.graph.addNode('Resize', [x, null, scales], [{ dtype: x.dtype, shape }], attributes)[0]!;
}

/** torch F.avg_pool2d with count_include_pad=True. */
export function avgPool2d(x: Value, kernel: number, stride = kernel, padding = 0): Value {
  const shape = [x.shape[0]!, x.shape[1]!, convOutputSize(x.shape[2]!, kernel, stride, padding, 1), convOutputSize(x.shape[3]!, kernel, stride, padding, 1)];
  const attributes = { kernel_shape: [kernel, kernel], strides: [stride, stride], pads: [padding, padding, padding, padding], count_include_pad: 1 };
  return x.graph.addNode('AveragePool', [x], [{ dtype: x.dtype, shape }], attributes)[0]!;
}

/**
 * Layer normalisation over the trailing `normalizedRank` axes (fused LayerNormalization; its Mean
 * and InvStdDev outputs are what the gradient rule reuses).
 */
export function layerNorm(x: Value, weight: Value | null, bias: Value | null, eps = 1e-5, normalizedRank = 1): Value {
  requireFloat(x, 'layerNorm');
  const axis = x.rank - normalizedRank;
  const statShape = x.shape.map((dim, i) => (i < axis ? dim : 1));
  const normalized = x.shape.slice(axis);
  const scale = weight ?? x.graph.constant(onesTensor(x.dtype, normalized as number[]), 'layer_norm_ones');
  const inputs = bias ? [x, scale, bias] : [x, scale];
  // stash_type 1 makes Mean and InvStdDev float32 for every input type (onnxruntime's CPU kernel for
  // double inputs exists only with float statistics); declaring them float32 keeps the gradient
  // rule's casts back to x's type.
  const statDtype: DType = 'float32';
  const outputs = [
    { dtype: x.dtype, shape: x.shape },
    { dtype: statDtype, shape: statShape },
    { dtype: statDtype, shape: statShape },
  ];
  return x.graph.addNode('LayerNormalization', inputs, outputs, { axis, epsilon: { float: eps }, stash_type: 1 })[0]!;
}

function onesTensor(dtype: DType, shape: number[]) {
  const count = shape.reduce((p, q) => p * q, 1);
  if (dtype === 'float64') return { dtype, shape, data: new Float64Array(count).fill(1) };
  if (dtype === 'float32') return { dtype, shape, data: new Float32Array(count).fill(1) };
  throw new Error(`layerNorm without weight: unsupported dtype ${dtype}`);
}

/** torch nn.GroupNorm on (N, C, …): layer-normalises each group, then a per-channel affine map. */
export function groupNorm(x: Value, groups: number, weight: Value | null, bias: Value | null, eps = 1e-5): Value {
  const channels = x.size(1);
  if (channels % groups !== 0) throw new Error(`groupNorm: ${channels} channels do not split into ${groups} groups`);
  // A static group size keeps the normalised axis static when only the batch is symbolic.
  const perSample = x.shape.slice(1);
  const groupSize = perSample.every((dim) => typeof dim === 'number') ? (perSample as number[]).reduce((p, q) => p * q, 1) / groups : -1;
  const grouped = reshape(x, [x.shape[0]!, groups, groupSize]); // (N, G, C/G·H·W)
  const normalized = reshape(layerNorm(grouped, null, null, eps), x.shape); // (N, C, H, W)
  const affineShape = [channels, ...x.shape.slice(2).map(() => 1)]; // (C, 1, 1)
  const scaled = weight ? mul(normalized, reshape(weight, affineShape)) : normalized;
  return bias ? add(scaled, reshape(bias, affineShape)) : scaled;
}

/** torch F.normalize: x / max(‖x‖₂, eps) along `axis`. */
export function l2Normalize(x: Value, axis = -1, eps = 1e-12): Value {
  const norm = sqrt(sum(mul(x, x), [axis], true));
  return div(x, clip(norm, eps));
}

/** Rows of `weight` (vocab, dim) at integer `ids`. */
export const embedding = (weight: Value, ids: Value): Value => gather(weight, ids, 0);

/**
 * Inverted dropout with a counter-based hash of (element index, seed, call site), computed in the
 * graph with 64-bit integer ops: the mask is reproducible from the seed on every execution
 * provider. `seed` is an int64 scalar input, a new one each training step; it must be < 2³¹.
 */
export function dropout(x: Value, probability: number, seed: Value): Value {
  if (probability <= 0) return x;
  if (probability >= 1) throw new Error(`dropout probability ${probability} must be < 1`);
  if (!x.isStatic) throw new Error(`dropout needs a static shape, got ${x}`);
  const graph = x.graph;
  const count = (x.shape as number[]).reduce((p, q) => p * q, 1);
  const callSite = graph.nodes.length; // distinct streams for distinct dropout sites in one graph
  const int = (value: number) => graph.scalar(value, 'int64');
  const lowBits = int(0x7fffffff);
  const bitwiseAnd = (a: Value, b: Value) => graph.addNode('BitwiseAnd', [a, b], [{ dtype: 'int64', shape: a.shape }])[0]!;
  const bitwiseXor = (a: Value, b: Value) => graph.addNode('BitwiseXor', [a, b], [{ dtype: 'int64', shape: a.shape }])[0]!;
  const index = graph.addNode('Range', [int(0), int(count), int(1)], [{ dtype: 'int64', shape: [count] }])[0]!;
  const streamOffset = bitwiseAnd(add(mul(seed, 0x61c88647), int(callSite * 0x3c6ef372)), lowBits);
  let hash = bitwiseAnd(add(index, streamOffset), lowBits);
  for (let round = 0; round < 3; round++) {
    // h ← ((h >> 16) ⊕ h) · 0x45d9f3b mod 2³¹; products stay below 2⁶³, division by 2¹⁶ is an exact shift.
    hash = bitwiseAnd(mul(bitwiseXor(div(hash, int(65536)), hash), int(0x45d9f3b)), lowBits);
  }
  const uniform = reshape(div(cast(hash, x.dtype), 2 ** 31), x.shape); // U[0, 1)
  const keep = cast(greaterOrEqual(uniform, probability), x.dtype);
  return mul(x, mul(keep, 1 / (1 - probability)));
}

export interface AttentionOptions {
  /** Additive float mask or boolean keep-mask, broadcastable to (B, H, T, S). */
  mask?: Value | null;
  causal?: boolean;
  /** Defaults to 1/√head_dim. */
  scale?: number;
}

/** softmax(q·kᵀ·scale + mask)·v with q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv). */
export function scaledDotProductAttention(query: Value, key: Value, value: Value, options: AttentionOptions = {}): Value {
  const headDim = query.size(-1);
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  const keyT = transpose(key, [0, 1, 3, 2]); // (B, H, D, S)
  let scores = matmul(mul(query, scale), keyT); // (B, H, T, S)
  const lowest = query.dtype === 'float64' ? -1.7976931348623157e308 : query.dtype === 'float16' ? -65504 : -3.4028234663852886e38;
  if (options.causal) {
    const queries = query.size(2);
    const keys = key.size(2);
    const causalMask = new Float32Array(queries * keys);
    for (let t = 0; t < queries; t++) for (let s = t + 1 + (keys - queries); s < keys; s++) causalMask[t * keys + s] = lowest;
    const maskValue = cast(query.graph.constant({ dtype: 'float32', shape: [queries, keys], data: causalMask }, 'causal_mask'), query.dtype);
    scores = add(scores, maskValue);
  }
  if (options.mask) {
    scores = options.mask.dtype === 'bool' ? where(options.mask, scores, lowest) : add(scores, options.mask);
  }
  return matmul(softmax(scores, -1), value); // (B, H, T, Dv)
}

/**
 * Fused attention (com.microsoft MultiHeadAttention) for inference graphs: q (B, T, H·D),
 * k/v (B, S, H·D), optional additive bias broadcastable to (B, H, T, S). Not differentiable.
 */
export function fusedMultiHeadAttention(query: Value, key: Value, value: Value, heads: number, attentionBias: Value | null = null, scale?: number): Value {
  const attributes: Record<string, number | { float: number }> = { num_heads: heads };
  if (scale !== undefined) attributes['scale'] = { float: scale };
  const inputs = [query, key, value, null, null, attentionBias];
  while (inputs.at(-1) === null) inputs.pop();
  const shape = [query.shape[0]!, query.shape[1]!, value.shape[2]!];
  return query.graph.addNode('MultiHeadAttention', inputs, [{ dtype: query.dtype, shape }], attributes, 'com.microsoft')[0]!;
}

/**
 * Mean squared error over all elements. With `sampleWeights` (B), each sample's mean over its other
 * axes is weighted before the batch mean, as diffusers' min-SNR-γ loss does:
 * `(mse(reduction="none").mean(non-batch dims) · w).mean()`.
 */
export function mseLoss(prediction: Value, target: Value, sampleWeights?: Value): Value {
  if (prediction.shape.join() !== target.shape.join()) throw new Error(`mseLoss: ${formatShape(prediction.shape)} vs ${formatShape(target.shape)}`);
  const difference = sub(prediction, target);
  if (sampleWeights) {
    if (sampleWeights.rank !== 1 || sampleWeights.shape[0] !== prediction.shape[0]) {
      throw new Error(`mseLoss: sample weights ${formatShape(sampleWeights.shape)} for a batch of ${formatShape(prediction.shape)}`);
    }
    const sampleDims = prediction.shape.slice(1);
    if (!sampleDims.every((dim) => typeof dim === 'number')) throw new Error(`mseLoss: weighted samples need static non-batch dims, got ${formatShape(prediction.shape)}`);
    const sampleAxes = sampleDims.map((_, k) => k + 1);
    const perSample = div(sumSquares(difference, sampleAxes), (sampleDims as number[]).reduce((count, dim) => count * dim, 1)); // (B)
    return mean(mul(perSample, sampleWeights));
  }
  // Σd² in one pass without materialising d², when the element count is known at trace time.
  if (!difference.isStatic) return mean(mul(difference, difference));
  return div(sumSquares(difference), (difference.shape as number[]).reduce((count, dim) => count * dim, 1));
}

/**
 * Mean cross-entropy of `logits` (…, C) against int64 `labels` (…); labels equal to `ignoreIndex`
 * contribute nothing and are not counted (torch F.cross_entropy semantics).
 */
export function crossEntropy(logits: Value, labels: Value, ignoreIndex = -100): Value {
  const classes = logits.size(-1);
  const flatLogits = reshape(logits, [-1, classes]); // (N, C)
  // Every flat (N) value takes N from flatLogits, so that symbolic leading dims stay one dim.
  const rows = flatLogits.shape[0]!;
  const flatLabels = reshape(labels, [rows], [flatLogits]); // (N)
  const valid = not(equal(flatLabels, ignoreIndex));
  const safeLabels = where(valid, flatLabels, 0);
  const logProbabilities = logSoftmax(flatLogits, -1);
  const picked = reshape(gatherElements(logProbabilities, unsqueeze(safeLabels, -1), -1), [rows], [flatLogits]); // (N)
  const weights = cast(valid, logits.dtype);
  return div(neg(sum(mul(picked, weights))), max(sum(weights), 1));
}

