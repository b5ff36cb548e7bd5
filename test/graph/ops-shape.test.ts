// Shape and indexing ops: reshape, unsqueeze/squeeze, transpose, concat, split, slice, pad,
// gather, gatherElements and expand. All run in float64.
import { Tensor, opTest, values } from './harness.js';
import { broadcast, transposeRef } from './reference.js';
import {
  concat, expand, full, gather, gatherElements, onesLike, pad, reshape, scatterElementsAdd, scatterNDAdd, slice, split, squeeze, transpose, unsqueeze, zerosLike,
} from '../../src/graph/ops/shape.js';
import { embedding } from '../../src/graph/ops/nn.js';
import { mul } from '../../src/graph/ops/elementwise.js';

const reshaped = (x: Tensor, shape: number[]) => new Tensor(x.data, shape);

for (const [from, to, expected] of [
  [[2, 3, 4], [6, 4], [6, 4]],
  [[2, 3, 4], [-1, 2], [12, 2]],
  [[2, 3, 4], [4, -1, 3], [4, 2, 3]],
  [[6], [1, 2, 1, 3], [1, 2, 1, 3]],
] as [number[], number[], number[]][]) {
  opTest(`reshape [${from}] to [${to}]`, {
    build: ([x]) => reshape(x!, to),
    inputs: [{ shape: from }],
    reference: ([x]) => reshaped(x!, expected),
  });
}

opTest('reshape to the same shape returns its input', {
  build: ([x]) => reshape(x!, [2, -1]),
  inputs: [{ shape: [2, 3] }],
  reference: ([x]) => x!,
});

opTest('reshape of a symbolic batch with -1', {
  build: ([x]) => reshape(x!, ['batch', -1]),
  inputs: [{ shape: ['batch', 2, 3] }],
  sizes: [{ batch: 2 }, { batch: 3 }],
  reference: ([x]) => reshaped(x!, [x!.shape[0]!, 6]),
});

for (const axis of [0, 1, -1, -3]) {
  opTest(`unsqueeze at ${axis}`, {
    build: ([x]) => unsqueeze(x!, axis),
    inputs: [{ shape: [2, 3] }],
    reference: ([x]) => {
      const shape = [...x!.shape];
      shape.splice(axis < 0 ? axis + 3 : axis, 0, 1);
      return reshaped(x!, shape);
    },
  });
}
for (const axis of [1, -1]) {
  opTest(`squeeze at ${axis}`, {
    build: ([x]) => squeeze(x!, axis),
    inputs: [{ shape: axis === 1 ? [2, 1, 3] : [2, 3, 1] }],
    reference: ([x]) => reshaped(x!, [2, 3]),
  });
}

for (const perm of [[1, 0, 2], [2, 0, 1], [0, 2, 1], [2, 1, 0]]) {
  opTest(`transpose [2,3,4] by [${perm}]`, {
    build: ([x]) => transpose(x!, perm),
    inputs: [{ shape: [2, 3, 4] }],
    reference: ([x]) => transposeRef(x!, perm),
  });
}

/** Concatenation along `axis` by locating each output index in its source tensor. */
function concatRef(tensors: Tensor[], axis: number): Tensor {
  const position = axis < 0 ? axis + tensors[0]!.rank : axis;
  const shape = [...tensors[0]!.shape];
  shape[position] = tensors.reduce((n, t) => n + t.shape[position]!, 0);
  return Tensor.build(shape, (index) => {
    let offset = index[position]!;
    for (const t of tensors) {
      if (offset < t.shape[position]!) return t.at(index.map((v, a) => (a === position ? offset : v)));
      offset -= t.shape[position]!;
    }
    throw new Error('concat reference: index out of range');
  });
}

/** Python-style slice of one axis (clamped, negative indices from the end, positive step). */
function sliceRef(x: Tensor, axis: number, start: number, end: number, step = 1): Tensor {
  const dim = x.shape[axis]!;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + dim : i, 0), dim);
  const [from, to] = [clamp(start), clamp(end)];
  const shape = [...x.shape];
  shape[axis] = Math.max(0, Math.ceil((to - from) / step));
  return Tensor.build(shape, (index) => x.at(index.map((v, a) => (a === axis ? from + v * step : v))));
}

opTest('concat of three along axis 1', {
  build: ([a, b, c]) => concat([a!, b!, c!], 1),
  inputs: [{ shape: [2, 1, 3] }, { shape: [2, 3, 3] }, { shape: [2, 2, 3] }],
  reference: (inputs) => concatRef(inputs, 1),
});
opTest('concat along the last axis with a repeated operand', {
  build: ([a, b]) => concat([a!, b!, a!], -1),
  inputs: [{ shape: [3, 2] }, { shape: [3, 1] }],
  reference: ([a, b]) => concatRef([a!, b!, a!], -1),
});

opTest('split into three, every piece used, reordered', {
  build: ([x]) => {
    const [first, second, third] = split(x!, [1, 3, 2], 1);
    return concat([third!, mul(first!, 2), second!], 1);
  },
  inputs: [{ shape: [2, 6] }],
  reference: ([x]) => concatRef([sliceRef(x!, 1, 4, 6), new Tensor(sliceRef(x!, 1, 0, 1).data.map((v) => 2 * v), [2, 1]), sliceRef(x!, 1, 1, 4)], 1),
});
opTest('split with only the middle piece used', {
  build: ([x]) => split(x!, [2, 1, 1], 0)[1]!,
  inputs: [{ shape: [4, 3] }],
  reference: ([x]) => sliceRef(x!, 0, 2, 3),
});

for (const [start, end, axis, step] of [
  [1, 3, 1, 1],
  [-3, -1, 1, 1],
  [2, 100, 2, 1],
  [-100, 2, 0, 1],
  [0, 5, 2, 2],
] as [number, number, number, number][]) {
  const spec = { starts: [start], ends: [end], axes: [axis], steps: [step] };
  opTest(`slice [${start}:${end}:${step}] of axis ${axis}`, {
    build: ([x]) => slice(x!, spec),
    inputs: [{ shape: [3, 4, 5], differentiable: step === 1 }],
    reference: ([x]) => sliceRef(x!, axis, start, end, step),
  });
}
opTest('slice of two axes at once, one negative axis', {
  build: ([x]) => slice(x!, { starts: [1, -2], ends: [3, 10], axes: [0, -1] }),
  inputs: [{ shape: [3, 4, 5] }],
  reference: ([x]) => sliceRef(sliceRef(x!, 0, 1, 3), 2, -2, 10),
});

/** Constant padding; a negative pad crops (the output index maps outside fewer source rows). */
function padRef(x: Tensor, pads: number[], value = 0): Tensor {
  const shape = x.shape.map((dim, axis) => dim + pads[axis]! + pads[axis + x.rank]!);
  return Tensor.build(shape, (index) => {
    const source = index.map((v, axis) => v - pads[axis]!);
    return source.every((v, axis) => v >= 0 && v < x.shape[axis]!) ? x.at(source) : value;
  });
}
for (const [pads, value] of [
  [[0, 1, 1, 2], 0],
  [[1, 0, 0, 1], 2.5],
  [[0, -1, 1, 1], 0],
] as [number[], number][]) {
  opTest(`pad [${pads}] with ${value}`, {
    build: ([x]) => pad(x!, pads, 'constant', value),
    inputs: [{ shape: [2, 3] }],
    reference: ([x]) => padRef(x!, pads, value),
  });
}

function gatherRef(x: Tensor, indices: Tensor, axis: number): Tensor {
  const shape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
  return Tensor.build(shape, (index) => {
    const picked = indices.at(index.slice(axis, axis + indices.rank));
    const row = picked < 0 ? picked + x.shape[axis]! : picked;
    return x.at([...index.slice(0, axis), row, ...index.slice(axis + indices.rank)]);
  });
}
for (const [label, xShape, indexShape, indexData, axis] of [
  ['embedding rows with repeats (axis 0)', [5, 3], [2, 3], [0, 2, 2, 4, 0, 2], 0],
  ['axis 1', [2, 4, 3], [3], [3, 1, 1], 1],
  ['negative indices', [4, 3], [4], [-1, 0, -4, -1], 0],
  ['a scalar index on the last axis', [2, 3], [], [-2], 1],
  ['2-D indices on the middle axis', [2, 4, 3], [2, 2], [3, 0, 3, -1], 1],
] as [string, number[], number[], number[], number][]) {
  opTest(`gather ${label}`, {
    build: ([x, indices]) => gather(x!, indices!, axis),
    inputs: [{ shape: xShape }, { shape: indexShape, dtype: 'int64', data: values(indexData) }],
    reference: ([x, indices]) => gatherRef(x!, indices!, axis),
  });
}

function gatherElementsRef(x: Tensor, indices: Tensor, axis: number): Tensor {
  return Tensor.build(indices.shape, (index) => {
    const picked = indices.at(index);
    return x.at(index.map((v, a) => (a === axis ? (picked < 0 ? picked + x.shape[axis]! : picked) : v)));
  });
}
for (const [label, xShape, indexShape, indexData, axis] of [
  ['along the last axis with repeats', [2, 4], [2, 3], [3, 0, 3, 1, 1, 2], 1],
  ['along axis 0', [3, 2], [2, 2], [2, 0, 2, 2], 0],
  ['with negative indices', [2, 3], [2, 2], [-1, 0, -3, -1], 1],
] as [string, number[], number[], number[], number][]) {
  opTest(`gatherElements ${label}`, {
    build: ([x, indices]) => gatherElements(x!, indices!, axis),
    inputs: [{ shape: xShape }, { shape: indexShape, dtype: 'int64', data: values(indexData) }],
    reference: ([x, indices]) => gatherElementsRef(x!, indices!, axis),
  });
}

for (const [from, to] of [
  [[3, 1], [3, 4]],
  [[4], [2, 3, 4]],
  [[1, 3, 1], [2, 3, 2]],
] as [number[], number[]][]) {
  opTest(`expand [${from}] to [${to}]`, {
    build: ([x]) => expand(x!, to),
    inputs: [{ shape: from }],
    reference: ([x]) => broadcast([x!, Tensor.build(to, () => 0)], (v) => v),
  });
}

opTest('embedding looks up rows with repeats', {
  build: ([weight, ids]) => embedding(weight!, ids!),
  inputs: [{ shape: [6, 4] }, { shape: [2, 3], dtype: 'int64', data: values([5, 0, 5, 2, 2, 1]) }],
  reference: ([weight, ids]) => gatherRef(weight!, ids!, 0),
});

// Reflect and edge padding have no gradient rule (forward only).
for (const mode of ['reflect', 'edge'] as const) {
  opTest(`pad in ${mode} mode`, {
    build: ([x]) => pad(x!, [1, 2, 2, 1], mode),
    inputs: [{ shape: [3, 4], differentiable: false }],
    reference: ([x]) =>
      Tensor.build([6, 7], ([i, j]) => {
        const source = (v: number, dim: number) => (mode === 'edge' ? Math.min(Math.max(v, 0), dim - 1) : v < 0 ? -v : v >= dim ? 2 * (dim - 1) - v : v);
        return x!.at([source(i! - 1, 3), source(j! - 2, 4)]);
      }),
  });
}

// The scatter-adds only appear in backward graphs (Gather, GatherElements rules): forward only.
opTest('scatterElementsAdd accumulates duplicate indices', {
  build: ([target, indices, updates]) => scatterElementsAdd(target!, indices!, updates!, 1),
  inputs: [{ shape: [2, 4], differentiable: false }, { shape: [2, 3], dtype: 'int64', data: values([1, 1, 3, 0, 2, 0]) }, { shape: [2, 3], differentiable: false }],
  reference: ([target, indices, updates]) => {
    const out = new Tensor(target!.data.slice(), target!.shape);
    Tensor.forEachIndex(indices!.shape, ([i, j]) => {
      const offset = i! * 4 + indices!.at([i!, j!]);
      out.data[offset] = out.data[offset]! + updates!.at([i!, j!]);
    });
    return out;
  },
});
opTest('scatterNDAdd accumulates rows at repeated index tuples', {
  build: ([target, indices, updates]) => scatterNDAdd(target!, indices!, updates!),
  inputs: [{ shape: [4, 3], differentiable: false }, { shape: [3, 1], dtype: 'int64', data: values([2, 0, 2]) }, { shape: [3, 3], differentiable: false }],
  reference: ([target, indices, updates]) => {
    const out = new Tensor(target!.data.slice(), target!.shape);
    Tensor.forEachIndex(updates!.shape, ([u, c]) => {
      const offset = indices!.at([u!, 0]) * 3 + c!;
      out.data[offset] = out.data[offset]! + updates!.at([u!, c!]);
    });
    return out;
  },
});

opTest('full, zerosLike and onesLike on a symbolic batch', {
  build: ([x]) => concat([full(x!, x!.shape, 2.5), zerosLike(x!), onesLike(x!)], 1),
  inputs: [{ shape: ['batch', 2], differentiable: false }],
  sizes: [{ batch: 1 }, { batch: 3 }],
  reference: ([x]) => Tensor.build([x!.shape[0]!, 6], ([, j]) => [2.5, 2.5, 0, 0, 1, 1][j!]!),
});
