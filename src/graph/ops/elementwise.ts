// Elementwise and reduction ops: each appends one ONNX node (or a short composition) with its
// output shape inferred by NumPy broadcasting rules.
import { type DType, isFloat, onnxDataType } from '../../onnx/dtype.js';
import { type Dim, type Graph, type Shape, Value, broadcastShapes, normalizeAxis } from '../graph.js';
import { full, reshape } from './shape.js';

/** A traced value or a JavaScript number (lifted to a scalar constant of the other operand's type). */
export type Operand = Value | number;

export function graphOf(...operands: Operand[]): Graph {
  for (const operand of operands) if (operand instanceof Value) return operand.graph;
  throw new Error('at least one operand must be a traced Value');
}

function dtypeOf(operands: Operand[]): DType {
  for (const operand of operands) if (operand instanceof Value) return operand.dtype;
  throw new Error('at least one operand must be a traced Value');
}

export function lift(operand: Operand, graph: Graph, dtype: DType): Value {
  return operand instanceof Value ? operand : graph.scalar(operand, dtype);
}

function binary(opType: string, a: Operand, b: Operand, outputDtype?: DType): Value {
  const graph = graphOf(a, b);
  const dtype = dtypeOf([a, b]);
  const left = lift(a, graph, dtype);
  const right = lift(b, graph, dtype);
  if (left.dtype !== right.dtype) throw new Error(`${opType}: ${left.dtype} and ${right.dtype} differ (cast first)`);
  const shape = broadcastShapes(left.shape, right.shape);
  return graph.addNode(opType, [left, right], [{ dtype: outputDtype ?? dtype, shape }])[0]!;
}

function unary(opType: string, x: Value, attributes = {}): Value {
  return x.graph.addNode(opType, [x], [{ dtype: x.dtype, shape: x.shape }], attributes)[0]!;
}

export const add = (a: Operand, b: Operand): Value => binary('Add', a, b);
export const sub = (a: Operand, b: Operand): Value => binary('Sub', a, b);
export const mul = (a: Operand, b: Operand): Value => binary('Mul', a, b);
export const div = (a: Operand, b: Operand): Value => binary('Div', a, b);
export const pow = (a: Operand, b: Operand): Value => binary('Pow', a, b);
export const max = (a: Operand, b: Operand): Value => binary('Max', a, b);
export const min = (a: Operand, b: Operand): Value => binary('Min', a, b);
export const equal = (a: Operand, b: Operand): Value => binary('Equal', a, b, 'bool');
export const less = (a: Operand, b: Operand): Value => binary('Less', a, b, 'bool');
export const greater = (a: Operand, b: Operand): Value => binary('Greater', a, b, 'bool');
export const greaterOrEqual = (a: Operand, b: Operand): Value => binary('GreaterOrEqual', a, b, 'bool');

export const neg = (x: Value): Value => unary('Neg', x);
export const sqrt = (x: Value): Value => unary('Sqrt', x);
export const reciprocal = (x: Value): Value => unary('Reciprocal', x);
export const rsqrt = (x: Value): Value => reciprocal(sqrt(x));
export const exp = (x: Value): Value => unary('Exp', x);
export const log = (x: Value): Value => unary('Log', x);
export const abs = (x: Value): Value => unary('Abs', x);
export const sign = (x: Value): Value => unary('Sign', x);
export const tanh = (x: Value): Value => unary('Tanh', x);
export const sigmoid = (x: Value): Value => unary('Sigmoid', x);
export const erf = (x: Value): Value => unary('Erf', x);
export const relu = (x: Value): Value => unary('Relu', x);
export const sin = (x: Value): Value => unary('Sin', x);
export const cos = (x: Value): Value => unary('Cos', x);
export const not = (x: Value): Value => unary('Not', x);

/** GELU: exact (erf) by default, or the tanh approximation. */
export function gelu(x: Value, approximate: 'none' | 'tanh' = 'none'): Value {
  return unary('Gelu', x, { approximate });
}

/** SiLU / swish: x·σ(x). */
export const silu = (x: Value): Value => mul(x, sigmoid(x));

/** CLIP's QuickGELU: x·σ(1.702x). */
export const quickGelu = (x: Value): Value => mul(x, sigmoid(mul(x, 1.702)));

export function softmax(x: Value, axis = -1): Value {
  return unary('Softmax', x, { axis: normalizeAxis(axis, x.rank) });
}

export function logSoftmax(x: Value, axis = -1): Value {
  return unary('LogSoftmax', x, { axis: normalizeAxis(axis, x.rank) });
}

/** Clamps to [minimum, maximum]; either bound may be omitted. */
export function clip(x: Value, minimum?: number, maximum?: number): Value {
  const graph = x.graph;
  const low = minimum === undefined ? null : graph.scalar(minimum, x.dtype);
  const high = maximum === undefined ? null : graph.scalar(maximum, x.dtype);
  return graph.addNode('Clip', [x, low, high], [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

export function cast(x: Value, dtype: DType): Value {
  if (x.dtype === dtype) return x;
  return x.graph.addNode('Cast', [x], [{ dtype, shape: x.shape }], { to: onnxDataType[dtype] })[0]!;
}


export function identity(x: Value): Value {
  return unary('Identity', x);
}

/** Passes `x` through unchanged; autodiff treats the result as a constant (no gradient flows back). */
export function stopGradient(x: Value): Value {
  const output = identity(x);
  x.graph.stopGradientNodes.add(output.producer!);
  return output;
}

export function where(condition: Value, a: Operand, b: Operand): Value {
  const graph = condition.graph;
  const dtype = dtypeOf([a, b]);
  const left = lift(a, graph, dtype);
  const right = lift(b, graph, dtype);
  const shape = broadcastShapes(broadcastShapes(condition.shape, left.shape), right.shape);
  return graph.addNode('Where', [condition, left, right], [{ dtype, shape }])[0]!;
}

// ---- matmul ---------------------------------------------------------------------------------------

/** Batched, broadcasting matrix product with numpy.matmul semantics (1-D operands promoted). */
export function matmul(a: Value, b: Value): Value {
  if (a.rank === 0 || b.rank === 0) throw new Error('matmul: operands must have rank ≥ 1');
  if (a.dtype !== b.dtype) throw new Error(`matmul: ${a.dtype} and ${b.dtype} differ`);
  const aShape = a.rank === 1 ? [1, a.shape[0]!] : a.shape;
  const bShape = b.rank === 1 ? [b.shape[0]!, 1] : b.shape;
  const k1 = aShape[aShape.length - 1]!;
  const k2 = bShape[bShape.length - 2]!;
  if (k1 !== k2) throw new Error(`matmul: inner dimensions differ: ${a} and ${b}`);
  const batch = broadcastShapes(aShape.slice(0, -2), bShape.slice(0, -2));
  const shape: Dim[] = [...batch];
  if (a.rank > 1) shape.push(aShape[aShape.length - 2]!);
  if (b.rank > 1) shape.push(bShape[bShape.length - 1]!);
  return a.graph.addNode('MatMul', [a, b], [{ dtype: a.dtype, shape }])[0]!;
}

/** General matrix product of 2-D operands: alpha·op(A)·op(B) + beta·C. */
export function gemm(
  a: Value,
  b: Value,
  c: Value | null,
  options: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {},
): Value {
  if (a.rank !== 2 || b.rank !== 2) throw new Error(`gemm: operands must be 2-D, got ${a} and ${b}`);
  const [m, k1] = options.transA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
  const [k2, n] = options.transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (k1 !== k2) throw new Error(`gemm: inner dimensions differ: ${a} and ${b}`);
  const attributes: Record<string, number | { float: number }> = {};
  if (options.transA) attributes['transA'] = 1;
  if (options.transB) attributes['transB'] = 1;
  if (options.alpha !== undefined && options.alpha !== 1) attributes['alpha'] = { float: options.alpha };
  if (options.beta !== undefined && options.beta !== 1) attributes['beta'] = { float: options.beta };
  const inputs = c ? [a, b, c] : [a, b];
  return a.graph.addNode('Gemm', inputs, [{ dtype: a.dtype, shape: [m, n] }], attributes)[0]!;
}

// ---- reductions -----------------------------------------------------------------------------------

function reducedShape(shape: Shape, axes: number[], keepDims: boolean): Dim[] {
  const reduced = new Set(axes);
  const result: Dim[] = [];
  shape.forEach((dim, axis) => {
    if (!reduced.has(axis)) result.push(dim);
    else if (keepDims) result.push(1);
  });
  return result;
}

function reduce(opType: string, x: Value, axes: number[] | undefined, keepDims: boolean): Value {
  const graph = x.graph;
  const normalized = (axes ?? x.shape.map((_, axis) => axis)).map((axis) => normalizeAxis(axis, x.rank));
  const unique = [...new Set(normalized)].sort((p, q) => p - q);
  // An empty axes input makes ONNX reduce every axis; an empty list here means reduce none.
  if (unique.length === 0) return x;
  const shape = reducedShape(x.shape, unique, keepDims);
  const axesValue = graph.constant({ dtype: 'int64', shape: [unique.length], data: BigInt64Array.from(unique, BigInt) }, 'axes');
  return graph.addNode(opType, [x, axesValue], [{ dtype: x.dtype, shape }], { keepdims: keepDims ? 1 : 0 })[0]!;
}

/**
 * Sum over `axes` (all axes when omitted). A float32 sum over the leading axes only — the batch sums
 * of bias and weight gradients — is a MatMul with a row of ones: ORT's ReduceSum over leading axes
 * is 2–3× slower than over trailing ones (measured on 2 cores: (2048, 512) over axis 0 1.40 ms as
 * ReduceSum, 0.44 ms as MatMul; (8, 1, 192, 384) 1.93 vs 1.05 ms), and such sums were a fifth of a
 * U-Net-mini training step.
 */
export function sum(x: Value, axes?: number[], keepDims = false): Value {
  const leading = leadingAxes(x, axes);
  if (leading === 0) return reduce('ReduceSum', x, axes, keepDims);
  const kept = x.shape.slice(leading) as number[];
  const count = (x.shape.slice(0, leading) as number[]).reduce((product, dim) => product * dim, 1);
  const size = kept.reduce((product, dim) => product * dim, 1);
  const summed = matmul(full(x, [1, count], 1), reshape(x, [count, size])); // (1, K)·(K, rest) → (1, rest)
  return reshape(summed, keepDims ? [...Array<number>(leading).fill(1), ...kept] : kept);
}

/** k when `axes` are exactly the first k < rank axes of a float32 `x` of static shape; else 0. */
function leadingAxes(x: Value, axes: number[] | undefined): number {
  if (axes === undefined || x.dtype !== 'float32' || !x.shape.every((dim) => typeof dim === 'number')) return 0;
  const unique = [...new Set(axes.map((axis) => normalizeAxis(axis, x.rank)))].sort((p, q) => p - q);
  return unique.length < x.rank && unique.every((axis, index) => axis === index) ? unique.length : 0;
}
export const mean = (x: Value, axes?: number[], keepDims = false): Value => reduce('ReduceMean', x, axes, keepDims);
export const reduceMax = (x: Value, axes?: number[], keepDims = false): Value => reduce('ReduceMax', x, axes, keepDims);
/** Σx² over `axes` (all axes when omitted) in one pass, without materialising x². */
export function sumSquares(x: Value, axes?: number[], keepDims = false): Value {
  const reduced = reduce('ReduceSumSquare', x, axes, keepDims);
  return reduced === x ? mul(x, x) : reduced; // nothing to reduce (e.g. a scalar): just the square
}

/** Index of the largest entry along `axis`, the first one on ties (torch.argmax); int64, no gradient. */
export function argMax(x: Value, axis = -1, keepDims = false): Value {
  const position = normalizeAxis(axis, x.rank);
  const shape = reducedShape(x.shape, [position], keepDims);
  return x.graph.addNode('ArgMax', [x], [{ dtype: 'int64', shape }], { axis: position, keepdims: keepDims ? 1 : 0 })[0]!;
}

/** Inclusive running sum along `axis` (ONNX CumSum), e.g. fairseq positions from a padding mask. */
export function cumsum(x: Value, axis: number): Value {
  const position = normalizeAxis(axis, x.rank);
  const axisValue = x.graph.constant({ dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(position)) }, 'axis');
  return x.graph.addNode('CumSum', [x, axisValue], [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

export function requireFloat(x: Value, opName: string): void {
  if (!isFloat(x.dtype)) throw new Error(`${opName}: ${x.name} is ${x.dtype}; a floating type is needed`);
}
