// Shape and indexing ops. Target shapes known at trace time become int64 constants; symbolic
// dimensions are read from a source value's runtime Shape (trace-time constant folding).
import { type DType, float32ToFloat16Bits } from '../../onnx/dtype.js';
import { type Dim, type Shape, type Value, broadcastShapes, formatShape, normalizeAxis } from '../graph.js';
import type { TensorMessage } from '../../onnx/proto.js';

function int64Constant(x: Value, values: readonly number[], name: string): Value {
  return x.graph.constant({ dtype: 'int64', shape: [values.length], data: BigInt64Array.from(values, BigInt) }, name);
}

/**
 * A 1-D int64 tensor holding `dims`. Static dims become a constant; each symbolic dim is gathered
 * from the runtime shape of the first of `sources` that has it.
 */
export function shapeTensor(dims: Shape, sources: readonly Value[]): Value {
  const anchor = sources[0];
  if (!anchor) throw new Error('shapeTensor needs a source value');
  if (dims.every((dim) => typeof dim === 'number')) return int64Constant(anchor, dims as number[], 'shape');
  const graph = anchor.graph;
  const runtimeShapes = new Map<Value, Value>();
  const pieces: Value[] = [];
  for (const dim of dims) {
    if (typeof dim === 'number') {
      pieces.push(int64Constant(anchor, [dim], 'dim'));
      continue;
    }
    const source = sources.find((candidate) => candidate.shape.includes(dim));
    if (!source) throw new Error(`symbolic dimension ${dim} is not in the shape of any source value`);
    let runtimeShape = runtimeShapes.get(source);
    if (!runtimeShape) {
      runtimeShape = graph.addNode('Shape', [source], [{ dtype: 'int64', shape: [source.rank] }])[0]!;
      runtimeShapes.set(source, runtimeShape);
    }
    const index = int64Constant(anchor, [source.shape.indexOf(dim)], 'dim_index');
    pieces.push(graph.addNode('Gather', [runtimeShape, index], [{ dtype: 'int64', shape: [1] }], { axis: 0 })[0]!);
  }
  return graph.addNode('Concat', pieces, [{ dtype: 'int64', shape: [dims.length] }], { axis: 0 })[0]!;
}

/** Reshape to `dims`; one entry may be -1 (inferred). Symbolic dims must appear in the shape of x or of one of `sources`. */
export function reshape(x: Value, dims: Shape, sources: readonly Value[] = []): Value {
  const inferredAt = dims.indexOf(-1);
  if (dims.filter((dim) => dim === -1).length > 1) throw new Error(`reshape: more than one -1 in ${formatShape(dims)}`);
  const outputShape: Dim[] = [...dims];
  if (inferredAt >= 0) {
    const known = dims.filter((_, i) => i !== inferredAt);
    if (x.isStatic && known.every((dim) => typeof dim === 'number')) {
      const total = (x.shape as number[]).reduce((p, q) => p * q, 1);
      const rest = (known as number[]).reduce((p, q) => p * q, 1);
      if (rest === 0 || total % rest !== 0) throw new Error(`reshape: cannot reshape ${x} to ${formatShape(dims)}`);
      outputShape[inferredAt] = total / rest;
    } else {
      outputShape[inferredAt] = `${x.name}_reshaped_${inferredAt}`;
    }
  } else if (x.isStatic && dims.every((dim) => typeof dim === 'number')) {
    const total = (x.shape as number[]).reduce((p, q) => p * q, 1);
    const target = (dims as number[]).reduce((p, q) => p * q, 1);
    if (total !== target) throw new Error(`reshape: cannot reshape ${x} to ${formatShape(dims)}`);
  }
  if (outputShape.length === x.rank && outputShape.every((dim, i) => dim === x.shape[i])) return x;
  const target = shapeTensor(dims, [x, ...sources]);
  return x.graph.addNode('Reshape', [x, target], [{ dtype: x.dtype, shape: outputShape }])[0]!;
}

export function unsqueeze(x: Value, axis: number): Value {
  const position = axis < 0 ? axis + x.rank + 1 : axis;
  const dims = [...x.shape];
  dims.splice(position, 0, 1);
  return reshape(x, dims);
}

export function squeeze(x: Value, axis: number): Value {
  const position = normalizeAxis(axis, x.rank);
  if (x.shape[position] !== 1) throw new Error(`squeeze: dimension ${axis} of ${x} is not 1`);
  return reshape(x, x.shape.filter((_, i) => i !== position));
}

export function transpose(x: Value, perm: readonly number[]): Value {
  if (perm.length !== x.rank || [...perm].sort((p, q) => p - q).some((axis, i) => axis !== i)) {
    throw new Error(`transpose: [${perm.join(', ')}] is not a permutation of ${x.rank} axes`);
  }
  if (perm.every((axis, i) => axis === i)) return x;
  const shape = perm.map((axis) => x.shape[axis]!);
  return x.graph.addNode('Transpose', [x], [{ dtype: x.dtype, shape }], { perm: [...perm] })[0]!;
}

export function concat(values: readonly Value[], axis: number): Value {
  const first = values[0];
  if (!first) throw new Error('concat of nothing');
  const position = normalizeAxis(axis, first.rank);
  if (values.length === 1) return first;
  let joined: Dim = 0;
  for (const value of values) {
    if (value.rank !== first.rank || value.dtype !== first.dtype) throw new Error(`concat: ${value} does not match ${first}`);
    value.shape.forEach((dim, i) => {
      if (i !== position && dim !== first.shape[i]) throw new Error(`concat: ${value} and ${first} differ off axis ${axis}`);
    });
    const dim = value.shape[position]!;
    joined = typeof joined === 'number' && typeof dim === 'number' ? joined + dim : `${joined}+${dim}`;
  }
  const shape = [...first.shape];
  shape[position] = joined;
  return first.graph.addNode('Concat', values, [{ dtype: first.dtype, shape }], { axis: position })[0]!;
}

export function split(x: Value, sizes: readonly number[], axis: number): Value[] {
  const position = normalizeAxis(axis, x.rank);
  const total = sizes.reduce((p, q) => p + q, 0);
  if (typeof x.shape[position] === 'number' && total !== x.shape[position]) {
    throw new Error(`split: sizes [${sizes.join(', ')}] do not add up to dimension ${axis} of ${x}`);
  }
  const outputs = sizes.map((size) => {
    const shape = [...x.shape];
    shape[position] = size;
    return { dtype: x.dtype, shape };
  });
  return x.graph.addNode('Split', [x, int64Constant(x, sizes, 'split')], outputs, { axis: position });
}

export interface SliceSpec {
  starts: readonly number[];
  ends: readonly number[];
  axes?: readonly number[];
  steps?: readonly number[];
}

/** Python-style slicing along `axes` (negative indices count from the end, ends are clamped). */
export function slice(x: Value, spec: SliceSpec): Value {
  const axes = (spec.axes ?? spec.starts.map((_, i) => i)).map((axis) => normalizeAxis(axis, x.rank));
  const steps = spec.steps ?? axes.map(() => 1);
  const shape = [...x.shape];
  axes.forEach((axis, i) => {
    const dim = x.shape[axis]!;
    const step = steps[i]!;
    if (step <= 0) throw new Error('slice: only positive steps are supported');
    if (typeof dim !== 'number') {
      shape[axis] = `${dim}_sliced`;
      return;
    }
    const clampIndex = (index: number) => Math.min(Math.max(index < 0 ? index + dim : index, 0), dim);
    const start = clampIndex(spec.starts[i]!);
    const end = clampIndex(spec.ends[i]!);
    shape[axis] = Math.max(0, Math.ceil((end - start) / step));
  });
  const inputs = [x, int64Constant(x, spec.starts, 'starts'), int64Constant(x, spec.ends, 'ends'), int64Constant(x, axes, 'axes'), int64Constant(x, steps, 'steps')];
  return x.graph.addNode('Slice', inputs, [{ dtype: x.dtype, shape }])[0]!;
}

/** Pads with `pads` = [begin_0, …, begin_{r-1}, end_0, …, end_{r-1}] (ONNX order); negative pads crop. */
export function pad(x: Value, pads: readonly number[], mode: 'constant' | 'reflect' | 'edge' = 'constant', value = 0): Value {
  if (pads.length !== 2 * x.rank) throw new Error(`pad: ${pads.length} pads for rank ${x.rank}`);
  const shape = x.shape.map((dim, axis) => {
    const extra = pads[axis]! + pads[axis + x.rank]!;
    return typeof dim === 'number' ? dim + extra : extra === 0 ? dim : `${dim}_padded`;
  });
  const inputs = [x, int64Constant(x, pads, 'pads')];
  if (mode === 'constant' && value !== 0) inputs.push(x.graph.scalar(value, x.dtype));
  return x.graph.addNode('Pad', inputs, [{ dtype: x.dtype, shape }], { mode })[0]!;
}

/** Take entries of `x` at integer `indices` along `axis` (embedding lookup when axis = 0). */
export function gather(x: Value, indices: Value, axis = 0): Value {
  const position = normalizeAxis(axis, x.rank);
  const shape = [...x.shape.slice(0, position), ...indices.shape, ...x.shape.slice(position + 1)];
  return x.graph.addNode('Gather', [x, indices], [{ dtype: x.dtype, shape }], { axis: position })[0]!;
}

/** torch.gather: output[i][j] = x[i][indices[i][j]] along `axis`; output has the indices' shape. */
export function gatherElements(x: Value, indices: Value, axis: number): Value {
  const position = normalizeAxis(axis, x.rank);
  return x.graph.addNode('GatherElements', [x, indices], [{ dtype: x.dtype, shape: indices.shape }], { axis: position })[0]!;
}

/** Adds `updates` into `target` at `indices` along `axis` (duplicates accumulate). */
export function scatterElementsAdd(target: Value, indices: Value, updates: Value, axis: number): Value {
  const position = normalizeAxis(axis, target.rank);
  const attributes = { axis: position, reduction: 'add' };
  return target.graph.addNode('ScatterElements', [target, indices, updates], [{ dtype: target.dtype, shape: target.shape }], attributes)[0]!;
}

/** Adds slices `updates` into `target` at index tuples `indices` (last axis of indices indexes target). */
export function scatterNDAdd(target: Value, indices: Value, updates: Value): Value {
  return target.graph.addNode('ScatterND', [target, indices, updates], [{ dtype: target.dtype, shape: target.shape }], { reduction: 'add' })[0]!;
}

export function expand(x: Value, dims: Shape, sources: readonly Value[] = []): Value {
  const shape = broadcastShapes(x.shape, dims);
  if (shape.length === x.rank && shape.every((dim, i) => dim === x.shape[i])) return x;
  return x.graph.addNode('Expand', [x, shapeTensor(dims, [x, ...sources])], [{ dtype: x.dtype, shape }])[0]!;
}

function constantAttribute(value: number, dtype: DType): TensorMessage {
  let raw: Uint8Array;
  if (dtype === 'float32') raw = new Uint8Array(Float32Array.of(value).buffer);
  else if (dtype === 'float64') raw = new Uint8Array(Float64Array.of(value).buffer);
  else if (dtype === 'float16') raw = new Uint8Array(Uint16Array.of(float32ToFloat16Bits(value)).buffer);
  else if (dtype === 'int64') raw = new Uint8Array(BigInt64Array.of(BigInt(value)).buffer);
  else if (dtype === 'int32') raw = new Uint8Array(Int32Array.of(value).buffer);
  else raw = new Uint8Array([value]);
  return { name: 'value', dtype, dims: [1], raw };
}

/** A tensor of `dims` filled with `value` (ConstantOfShape; symbolic dims read from `sources`). */
export function full(like: Value, dims: Shape, value: number, dtype: DType = like.dtype, sources: readonly Value[] = []): Value {
  const target = shapeTensor(dims, [like, ...sources]);
  return like.graph.addNode('ConstantOfShape', [target], [{ dtype, shape: dims }], { value: constantAttribute(value, dtype) })[0]!;
}

export const zerosLike = (x: Value): Value => full(x, x.shape, 0);
export const onesLike = (x: Value): Value => full(x, x.shape, 1);
