// The gradient table: for each ONNX op type, the vector-Jacobian product that maps the cotangents
// of a node's outputs to cotangents of its inputs. Every rule is written with standard ONNX ops
// (the shipped onnxruntime builds have no gradient kernels). Rules only build the input
// cotangents that `needs` asks for, so frozen weights and constants cost nothing.
import type { Node, Value } from './graph.js';
import {
  add, cast, cos, div, equal, erf, exp, gemm, greater, less, log, matmul, mul, neg, pow, sign, sin, sub, sum, tanh, where,
} from './ops/elementwise.js';
import { conv2d, convTranspose2d } from './ops/nn.js';
import { concat, expand, full, gather, pad, reshape, scatterElementsAdd, scatterNDAdd, shapeTensor, slice, split, transpose, unsqueeze, zerosLike } from './ops/shape.js';

export interface VjpContext {
  node: Node;
  /** Cotangent of each output (null where nothing downstream depends on that output). */
  outputGrads: readonly (Value | null)[];
  /** Which inputs need a cotangent. */
  needs: readonly boolean[];
}

export type VjpRule = (context: VjpContext) => (Value | null)[];

/** The node's i-th input; gradient rules only ask for inputs that exist. */
const input = (node: Node, index: number): Value => {
  const value = node.inputs[index];
  if (!value) throw new Error(`${node.name}: input ${index} is missing`);
  return value;
};
const output = (node: Node, index = 0): Value => node.outputs[index]!;
const gradOf = (context: VjpContext, index = 0): Value => {
  const grad = context.outputGrads[index];
  if (!grad) throw new Error(`${context.node.name}: no cotangent for output ${index}`);
  return grad;
};

/** Reshapes `x` to the (possibly symbolic) shape of `like`. */
function reshapeLike(x: Value, like: Value): Value {
  if (like.isStatic) return reshape(x, like.shape);
  const runtimeShape = x.graph.addNode('Shape', [like], [{ dtype: 'int64', shape: [like.rank] }])[0]!;
  return x.graph.addNode('Reshape', [x, runtimeShape], [{ dtype: x.dtype, shape: like.shape }])[0]!;
}

/** Sums a broadcast cotangent back down to the shape of the operand that was broadcast. */
export function unbroadcast(grad: Value, target: Value): Value {
  const extra = grad.rank - target.rank;
  const axes: number[] = [];
  grad.shape.forEach((dim, axis) => {
    if (axis < extra) axes.push(axis);
    else if (target.shape[axis - extra] === 1 && dim !== 1) axes.push(axis);
  });
  const reduced = axes.length ? sum(grad, axes, true) : grad;
  return reduced.rank === target.rank && reduced.shape.every((dim, i) => dim === target.shape[i]) ? reduced : reshapeLike(reduced, target);
}

const constantInts = (value: Value | null | undefined, what: string): number[] => {
  if (!value?.constant) throw new Error(`gradient needs constant ${what}`);
  return Array.from(value.constant.data as ArrayLike<number | bigint>, Number);
};

const attr = (node: Node, name: string, fallback: number): number => {
  const value = node.attributes[name];
  return typeof value === 'number' ? value : typeof value === 'object' && value && 'float' in value ? value.float : fallback;
};
const ints = (node: Node, name: string): number[] => node.attributes[name] as number[];

/** How many elements of `x` a reduction over `axes` combines: a number, or read from x's runtime shape when symbolic. */
function reducedCount(x: Value, axes: readonly number[]): Value | number {
  const dims = axes.map((axis) => x.shape[axis]!);
  if (dims.every((dim): dim is number => typeof dim === 'number')) return dims.reduce((count, dim) => count * dim, 1);
  const sizes = cast(shapeTensor(dims, [x]), x.dtype);
  return x.graph.addNode('ReduceProd', [sizes], [{ dtype: x.dtype, shape: [] }], { keepdims: 0 })[0]!;
}

function reductionRule(context: VjpContext, scaleByCount: boolean): (Value | null)[] {
  const { node } = context;
  const x = input(node, 0);
  const axes = constantInts(node.inputs[1], 'reduction axes');
  const keptShape = x.shape.map((dim, axis) => (axes.includes(axis) ? 1 : dim));
  let grad = reshape(gradOf(context), keptShape);
  if (scaleByCount) grad = div(grad, reducedCount(x, axes));
  return [expand(grad, x.shape, [x]), null];
}

function matmulRule(context: VjpContext): (Value | null)[] {
  const { node, needs } = context;
  const a = input(node, 0);
  const b = input(node, 1);
  // Promote 1-D operands to matrices as numpy.matmul does, then undo it on the cotangents.
  const a2 = a.rank === 1 ? reshape(a, [1, a.shape[0]!]) : a; // (…, M, K)
  const b2 = b.rank === 1 ? reshape(b, [b.shape[0]!, 1]) : b; // (…, K, N)
  let grad = gradOf(context);
  if (a.rank === 1) grad = unsqueeze(grad, -2);
  if (b.rank === 1) grad = unsqueeze(grad, -1); // (…, M, N)
  const swapLast = (x: Value) => transpose(x, [...x.shape.keys()].map((axis) => (axis === x.rank - 2 ? x.rank - 1 : axis === x.rank - 1 ? x.rank - 2 : axis)));
  const gradA = needs[0] ? unbroadcast(matmul(grad, swapLast(b2)), a2) : null; // (…, M, K)
  const gradB = needs[1] ? unbroadcast(matmul(swapLast(a2), grad), b2) : null; // (…, K, N)
  return [gradA && (a.rank === 1 ? reshape(gradA, a.shape) : gradA), gradB && (b.rank === 1 ? reshape(gradB, b.shape) : gradB)];
}

function gemmRule(context: VjpContext): (Value | null)[] {
  const { node, needs } = context;
  const [a, b] = [input(node, 0), input(node, 1)];
  const c = node.inputs[2] ?? null;
  const transA = attr(node, 'transA', 0) === 1;
  const transB = attr(node, 'transB', 0) === 1;
  const alpha = attr(node, 'alpha', 1);
  const beta = attr(node, 'beta', 1);
  const grad = gradOf(context); // (M, N)
  // Y = α·op(A)·op(B) + β·C:  d op(A) = α·g·op(B)ᵀ,  d op(B) = α·op(A)ᵀ·g.
  const gradA = !needs[0] ? null : transA ? gemm(b, grad, null, { transA: transB, transB: true, alpha }) : gemm(grad, b, null, { transB: !transB, alpha });
  const gradB = !needs[1] ? null : transB ? gemm(grad, a, null, { transA: true, transB: transA, alpha }) : gemm(a, grad, null, { transA: !transA, alpha });
  const gradC = c && needs[2] ? unbroadcast(beta === 1 ? grad : mul(grad, beta), c) : null;
  return [gradA, gradB, gradC];
}

function convRule(context: VjpContext): (Value | null)[] {
  const { node, needs } = context;
  const x = input(node, 0);
  const weight = input(node, 1);
  const grad = gradOf(context); // (N, C_out, H_out, W_out)
  const strides = ints(node, 'strides');
  const pads = ints(node, 'pads');
  const dilations = ints(node, 'dilations');
  const groups = attr(node, 'group', 1);
  const kernel = [weight.size(2), weight.size(3)];
  let gradX: Value | null = null;
  if (needs[0]) {
    const flippedPads = [0, 1].map((i) => dilations[i]! * (kernel[i]! - 1) - pads[i]!);
    if (strides.every((stride) => stride === 1) && groups === 1 && flippedPads.every((p) => p >= 0)) {
      gradX = convInputGradient(grad, weight, [flippedPads[0]!, flippedPads[1]!], [dilations[0]!, dilations[1]!]);
    } else {
      // dX = ConvTranspose(dY, W); output_padding recovers the rows the strided forward conv dropped.
      const outputPadding = [0, 1].map((i) => x.size(2 + i) - ((grad.size(2 + i) - 1) * strides[i]! - 2 * pads[i]! + dilations[i]! * (kernel[i]! - 1) + 1));
      gradX = convTranspose2d(grad, weight, null, {
        stride: [strides[0]!, strides[1]!],
        padding: [pads[0]!, pads[1]!],
        dilation: [dilations[0]!, dilations[1]!],
        groups,
        outputPadding: [outputPadding[0]!, outputPadding[1]!],
      });
    }
  }
  const gradW = needs[1] ? convWeightGradient(x, grad, weight, groups, strides, pads, dilations) : null;
  const gradBias = node.inputs[2] && needs[2] ? sum(grad, [0, 2, 3]) : null;
  return [gradX, gradW, gradBias];
}

/**
 * dX of a stride-1 ungrouped conv as a forward Conv of dY with the kernel flipped and its channel
 * axes swapped, padded by dilation·(k − 1) − pad: ORT's Conv is several times faster than its
 * ConvTranspose.
 */
function convInputGradient(grad: Value, weight: Value, padding: [number, number], dilation: [number, number]): Value {
  const [outChannels, inChannels, kernelH, kernelW] = [weight.size(0), weight.size(1), weight.size(2), weight.size(3)];
  const taps = kernelH * kernelW;
  const flat = reshape(weight, [outChannels, inChannels, taps]); // (C_out, C_in, kH·kW)
  // Reversing the row-major kh·kw axis flips both spatial axes at once.
  const reversedTaps = weight.graph.constant({ dtype: 'int64', shape: [taps], data: BigInt64Array.from({ length: taps }, (_, i) => BigInt(taps - 1 - i)) }, 'flip');
  const flipped = reshape(gather(flat, reversedTaps, 2), [outChannels, inChannels, kernelH, kernelW]); // (C_out, C_in, kH, kW)
  return conv2d(grad, transpose(flipped, [1, 0, 2, 3]), null, { padding, dilation }); // kernel (C_in, C_out, kH, kW)
}

/**
 * dW[o, c, i, j] = Σₙ Σₚ dY[n, o, p] · X_pad[n, c, p·stride + (i, j)·dilation]: for each kernel
 * tap (i, j), a batched MatMul of dY with that strided view of the padded input over the output
 * positions p. (A Conv over the batch axis would have an H_out×W_out kernel, which ORT runs far
 * below its GEMM speed; stacking all taps first costs a copy of 9× the input.)
 */
function convWeightGradient(x: Value, grad: Value, weight: Value, groups: number, strides: number[], pads: number[], dilations: number[]): Value {
  const batch = x.shape[0]!;
  const [outChannels, groupChannels, kernelH, kernelW] = [weight.size(0), weight.size(1), weight.size(2), weight.size(3)];
  const [outH, outW] = [grad.size(2), grad.size(3)];
  const positions = outH * outW;
  const padded = pads.some((p) => p !== 0) ? pad(x, [0, 0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!]) : x; // (N, C_in, H + 2pH, W + 2pW)
  const gradRows = reshape(grad, [batch, groups, outChannels / groups, positions]); // (N, G, C_out/G, P)
  const taps: Value[] = [];
  for (let i = 0; i < kernelH; i++) {
    for (let j = 0; j < kernelW; j++) {
      const [top, left] = [i * dilations[0]!, j * dilations[1]!];
      // The tap that lines up with the unpadded input (the centre of a 'same' conv) is x itself.
      const isInput = top === pads[0] && left === pads[1] && strides.every((stride) => stride === 1) && outH === x.size(2) && outW === x.size(3);
      const view = isInput
        ? x
        : slice(padded, {
            starts: [top, left],
            ends: [top + strides[0]! * (outH - 1) + 1, left + strides[1]! * (outW - 1) + 1],
            axes: [2, 3],
            steps: [strides[0]!, strides[1]!],
          }); // (N, C_in, H_out, W_out)
      const rows = reshape(view, [batch, groups, groupChannels, positions]); // (N, G, C_in/G, P)
      taps.push(unsqueeze(sum(matmul(gradRows, transpose(rows, [0, 1, 3, 2])), [0]), 2)); // (G, C_out/G, 1, C_in/G)
    }
  }
  const summed = reshape(concat(taps, 2), [outChannels, kernelH, kernelW, groupChannels]); // (C_out, kH, kW, C_in/G)
  return transpose(summed, [0, 3, 1, 2]); // (C_out, C_in/G, kH, kW)
}

function layerNormRule(context: VjpContext): (Value | null)[] {
  const { node, needs } = context;
  const x = input(node, 0);
  const scale = input(node, 1);
  const axis = attr(node, 'axis', -1) < 0 ? x.rank + attr(node, 'axis', -1) : attr(node, 'axis', -1);
  const normalizedAxes = [...x.shape.keys()].filter((i) => i >= axis);
  const leadingAxes = [...x.shape.keys()].filter((i) => i < axis);
  const meanValue = cast(output(node, 1), x.dtype);
  const invStd = cast(output(node, 2), x.dtype);
  const grad = gradOf(context);
  const centered = sub(x, meanValue); // x − μ; x̂ = (x − μ)·σ⁻¹
  let gradX: Value | null = null;
  if (needs[0]) {
    // dx = σ⁻¹·(g − mean(g)) − σ⁻³·mean(g·(x − μ))·(x − μ) with g = dY·γ, means over the
    // normalised axes: x̂ itself is never materialised, and γ = 1 (no affine) costs no pass.
    const scaledGrad = isAllOnes(scale) ? grad : mul(grad, scale);
    const count = normalizedAxes.reduce((n, i) => n * x.size(i), 1);
    const meanGrad = div(sum(scaledGrad, normalizedAxes, true), count);
    const meanGradCentered = div(sum(mul(scaledGrad, centered), normalizedAxes, true), count);
    const centeredScale = mul(meanGradCentered, mul(invStd, mul(invStd, invStd))); // per row
    gradX = sub(mul(sub(scaledGrad, meanGrad), invStd), mul(centered, centeredScale));
  }
  const reduceLeading = (value: Value) => (leadingAxes.length ? sum(value, leadingAxes) : value);
  const gradScale = needs[1] ? reduceLeading(mul(grad, mul(centered, invStd))) : null;
  const gradBias = node.inputs[2] && needs[2] ? reduceLeading(grad) : null;
  return [gradX, gradScale, gradBias];
}

/** A trace-time constant whose entries are all 1 (e.g. the scale of a layerNorm without weight). */
function isAllOnes(value: Value): boolean {
  const data = value.constant?.data;
  return data !== undefined && !(data instanceof BigInt64Array) && Array.prototype.every.call(data, (entry: number) => entry === 1);
}

function gatherRule(context: VjpContext): (Value | null)[] {
  const { node } = context;
  const x = input(node, 0);
  const indices = input(node, 1);
  const axis = attr(node, 'axis', 0);
  const grad = gradOf(context); // x[:axis] + indices + x[axis+1:]
  const r = indices.rank;
  // Bring the index dims first, scatter-add rows into zeros shaped (x[axis], x[:axis], x[axis+1:]).
  const gradPerm = [...Array(r).keys()].map((i) => axis + i).concat([...Array(axis).keys()], [...Array(x.rank - axis - 1).keys()].map((i) => axis + r + i));
  const gradRows = transpose(grad, gradPerm);
  const rowsShape = [x.shape[axis]!, ...x.shape.slice(0, axis), ...x.shape.slice(axis + 1)];
  const safeIndices = where(less(indices, 0), add(indices, x.size(axis)), indices); // negative indices count from the end
  const scattered = scatterNDAdd(full(x, rowsShape, 0), unsqueeze(safeIndices, -1), gradRows);
  const backPerm = [...Array(x.rank).keys()].map((i) => (i < axis ? i + 1 : i === axis ? 0 : i));
  return [transpose(scattered, backPerm), null];
}

const sqrtTwoOverPi = Math.sqrt(2 / Math.PI);

function geluRule(context: VjpContext): (Value | null)[] {
  const x = input(context.node, 0);
  const grad = gradOf(context);
  if (context.node.attributes['approximate'] === 'tanh') {
    // d/dx ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³)
    const inner = mul(sqrtTwoOverPi, add(x, mul(0.044715, mul(x, mul(x, x)))));
    const t = tanh(inner);
    const du = mul(sqrtTwoOverPi, add(1, mul(3 * 0.044715, mul(x, x))));
    const derivative = add(mul(0.5, add(1, t)), mul(mul(0.5, x), mul(sub(1, mul(t, t)), du)));
    return [mul(grad, derivative)];
  }
  // d/dx x·Φ(x) = Φ(x) + x·φ(x)
  const cdf = mul(0.5, add(1, erf(mul(x, Math.SQRT1_2))));
  const pdf = mul(1 / Math.sqrt(2 * Math.PI), exp(mul(-0.5, mul(x, x))));
  return [mul(grad, add(cdf, mul(x, pdf)))];
}

/** Elementwise max/min: the winner takes the cotangent; ties split it evenly, as torch.maximum does. */
function selectionRule({ node, outputGrads: [g], needs }: VjpContext, wins: (a: Value, b: Value) => Value): (Value | null)[] {
  const [a, b] = [input(node, 0), input(node, 1)];
  const shareOfA = where(equal(a, b), 0.5, cast(wins(a, b), g!.dtype));
  return [needs[0] ? unbroadcast(mul(g!, shareOfA), a) : null, needs[1] ? unbroadcast(mul(g!, sub(1, shareOfA)), b) : null];
}

const unary = (derivative: (x: Value, y: Value) => Value): VjpRule => (context) => [
  mul(gradOf(context), derivative(input(context.node, 0), output(context.node))),
];

/** Ops whose outputs are piecewise constant or integer: they pass no gradient. */
const nonDifferentiable = ['Sign', 'Equal', 'Less', 'Greater', 'GreaterOrEqual', 'LessOrEqual', 'Not', 'And', 'Or', 'Shape', 'ConstantOfShape', 'Range', 'BitwiseAnd', 'BitwiseXor', 'Floor', 'Ceil', 'Round', 'ArgMax'];

export const vjpRules: Record<string, VjpRule> = {
  Add: ({ node, outputGrads: [g], needs }) => [needs[0] ? unbroadcast(g!, input(node, 0)) : null, needs[1] ? unbroadcast(g!, input(node, 1)) : null],
  Sub: ({ node, outputGrads: [g], needs }) => [needs[0] ? unbroadcast(g!, input(node, 0)) : null, needs[1] ? unbroadcast(neg(g!), input(node, 1)) : null],
  Mul: ({ node, outputGrads: [g], needs }) => {
    const [a, b] = [input(node, 0), input(node, 1)];
    return [needs[0] ? unbroadcast(mul(g!, b), a) : null, needs[1] ? unbroadcast(mul(g!, a), b) : null];
  },
  Div: ({ node, outputGrads: [g], needs }) => {
    const [a, b] = [input(node, 0), input(node, 1)];
    const gradA = needs[0] || needs[1] ? div(g!, b) : null;
    return [needs[0] ? unbroadcast(gradA!, a) : null, needs[1] ? unbroadcast(neg(mul(gradA!, output(node))), b) : null];
  },
  Pow: ({ node, outputGrads: [g], needs }) => {
    const [a, b] = [input(node, 0), input(node, 1)];
    // d(aᵇ)/da = b·aᵇ⁻¹ (computed directly, so a = 0 stays finite); d(aᵇ)/db = aᵇ·ln a.
    const gradA = needs[0] ? unbroadcast(mul(g!, mul(b, pow(a, sub(b, 1)))), a) : null;
    const gradB = needs[1] ? unbroadcast(mul(g!, mul(output(node), log(a))), b) : null;
    return [gradA, gradB];
  },
  Max: (context) => selectionRule(context, greater),
  Min: (context) => selectionRule(context, less),
  Neg: ({ outputGrads: [g] }) => [neg(g!)],
  Identity: ({ outputGrads: [g] }) => [g!],
  Sqrt: unary((_, y) => div(0.5, y)),
  Reciprocal: unary((_, y) => neg(mul(y, y))),
  Exp: unary((_, y) => y),
  Log: unary((x) => div(1, x)),
  Abs: unary((x) => sign(x)),
  Tanh: unary((_, y) => sub(1, mul(y, y))),
  Sigmoid: unary((_, y) => mul(y, sub(1, y))),
  Erf: unary((x) => mul(2 / Math.sqrt(Math.PI), exp(neg(mul(x, x))))),
  Relu: unary((x) => cast(greater(x, 0), x.dtype)),
  Sin: unary((x) => cos(x)),
  Cos: unary((x) => neg(sin(x))),
  Gelu: geluRule,
  Softmax: ({ node, outputGrads: [g] }) => {
    const y = output(node);
    const axis = attr(node, 'axis', -1);
    return [mul(y, sub(g!, sum(mul(g!, y), [axis], true)))];
  },
  LogSoftmax: ({ node, outputGrads: [g] }) => {
    const axis = attr(node, 'axis', -1);
    return [sub(g!, mul(exp(output(node)), sum(g!, [axis], true)))];
  },
  Clip: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    let pass = g!;
    if (node.inputs[1]) pass = where(less(x, node.inputs[1]), 0, pass);
    if (node.inputs[2]) pass = where(greater(x, node.inputs[2]), 0, pass);
    return [pass, null, null];
  },
  Cast: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    return [x.dtype.startsWith('float') ? cast(g!, x.dtype) : null];
  },
  Where: ({ node, outputGrads: [g], needs }) => {
    const [condition, a, b] = [input(node, 0), input(node, 1), input(node, 2)];
    return [null, needs[1] ? unbroadcast(where(condition, g!, 0), a) : null, needs[2] ? unbroadcast(where(condition, 0, g!), b) : null];
  },
  MatMul: matmulRule,
  Gemm: gemmRule,
  Conv: convRule,
  LayerNormalization: layerNormRule,
  Reshape: ({ node, outputGrads: [g] }) => [reshapeLike(g!, input(node, 0)), null],
  Transpose: ({ node, outputGrads: [g] }) => {
    const perm = ints(node, 'perm');
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [transpose(g!, inverse)];
  },
  Concat: ({ node, outputGrads: [g] }) => {
    const axis = attr(node, 'axis', 0);
    const sizes = node.inputs.map((_, i) => input(node, i).size(axis));
    return split(g!, sizes, axis);
  },
  Split: (context) => {
    const { node } = context;
    const pieces = node.outputs.map((piece, i) => context.outputGrads[i] ?? zerosLike(piece));
    return [concat(pieces, attr(node, 'axis', 0)), null];
  },
  Slice: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    const starts = constantInts(node.inputs[1], 'slice starts');
    const ends = constantInts(node.inputs[2], 'slice ends');
    const axes = constantInts(node.inputs[3], 'slice axes');
    const steps = node.inputs[4] ? constantInts(node.inputs[4], 'slice steps') : axes.map(() => 1);
    if (steps.some((step) => step !== 1)) throw new Error(`${node.name}: gradient of strided slices is not supported`);
    const pads = new Array(2 * x.rank).fill(0);
    axes.forEach((axis, i) => {
      const dim = x.size(axis);
      const clampIndex = (index: number) => Math.min(Math.max(index < 0 ? index + dim : index, 0), dim);
      pads[axis] = clampIndex(starts[i]!);
      pads[axis + x.rank] = dim - Math.max(clampIndex(ends[i]!), clampIndex(starts[i]!));
    });
    return [pad(g!, pads), null, null, null, null];
  },
  Pad: ({ node, outputGrads: [g] }) => {
    if ((node.attributes['mode'] ?? 'constant') !== 'constant') throw new Error(`${node.name}: gradient of ${String(node.attributes['mode'])} padding is not supported`);
    const pads = constantInts(node.inputs[1], 'pads');
    return [pad(g!, pads.map((p) => -p)), null, null];
  },
  Gather: gatherRule,
  GatherElements: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    return [scatterElementsAdd(full(x, x.shape, 0), input(node, 1), g!, attr(node, 'axis', 0)), null];
  },
  Expand: ({ node, outputGrads: [g] }) => [unbroadcast(g!, input(node, 0)), null],
  ReduceSum: (context) => reductionRule(context, false),
  ReduceMean: (context) => reductionRule(context, true),
  ReduceSumSquare: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    const axes = constantInts(node.inputs[1], 'reduction axes');
    const keptShape = x.shape.map((dim, axis) => (axes.includes(axis) ? 1 : dim));
    // 2x·g. g is expanded explicitly: a Mul by a broadcast scalar ahead of a MatMul is fused by
    // ORT into the MatMul's float `alpha`, which rounds float64 graphs to float32 precision.
    return [mul(x, expand(mul(reshape(g!, keptShape), 2), x.shape, [x])), null];
  },
  ReduceMax: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    const axes = constantInts(node.inputs[1], 'reduction axes');
    const keptShape = x.shape.map((dim, axis) => (axes.includes(axis) ? 1 : dim));
    const maximum = reshape(output(node), keptShape);
    // Ties share the cotangent equally, as torch.amax does.
    const isMax = cast(equal(x, maximum), x.dtype);
    const share = div(isMax, sum(isMax, axes, true));
    return [mul(share, reshape(g!, keptShape)), null];
  },
  Resize: ({ node, outputGrads: [g] }) => {
    const scales = node.inputs[2]?.constant?.data;
    if (node.attributes['mode'] !== 'nearest' || !scales || Array.from(scales as Float32Array).join() !== '1,1,2,2') {
      throw new Error(`${node.name}: gradient exists only for nearest 2× upsampling`);
    }
    const x = input(node, 0);
    const [n, c, h, w] = x.shape;
    const blocks = reshape(g!, [n!, c!, h!, 2, w!, 2]); // (N, C, H, 2, W, 2)
    return [sum(blocks, [3, 5]), null, null];
  },
  AveragePool: ({ node, outputGrads: [g] }) => {
    const x = input(node, 0);
    const [kernelH, kernelW] = ints(node, 'kernel_shape');
    const strides = ints(node, 'strides');
    const pads = ints(node, 'pads');
    const channels = x.size(1);
    const weights = new Float64Array(channels * kernelH! * kernelW!).fill(1 / (kernelH! * kernelW!));
    const kernel = cast(x.graph.constant({ dtype: 'float64', shape: [channels, 1, kernelH!, kernelW!], data: weights }, 'avg_pool_kernel'), x.dtype);
    const outputPadding = [0, 1].map((i) => x.size(2 + i) - ((g!.size(2 + i) - 1) * strides[i]! - 2 * pads[i]! + [kernelH!, kernelW!][i]!));
    return [convTranspose2d(g!, kernel, null, { stride: [strides[0]!, strides[1]!], padding: [pads[0]!, pads[1]!], groups: channels, outputPadding: [outputPadding[0]!, outputPadding[1]!] })];
  },
  'com.microsoft.MultiHeadAttention': ({ node }) => {
    throw new Error(`${node.name}: the fused com.microsoft attention is inference-only; use scaledDotProductAttention in training graphs`);
  },
  ...Object.fromEntries(nonDifferentiable.map((opType) => [opType, ({ node }: VjpContext) => node.inputs.map(() => null)])),
};

