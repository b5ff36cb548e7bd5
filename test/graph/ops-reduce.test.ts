// Reductions, softmax along several axes, and the selection ops clip, where, cast and identity.
// All run in float64.
import assert from 'node:assert/strict';
import test from 'node:test';
import { grad } from '../../src/graph/autodiff.js';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { Tensor, integers, opTest, uniform, values } from './harness.js';
import { alongAxis, average, broadcast, logSoftmaxLane, map, reduce, softmaxLane, total } from './reference.js';
import { argMax, cast, clip, identity, logSoftmax, mean, mul, reduceMax, softmax, sum, sumSquares, where } from '../../src/graph/ops/elementwise.js';

for (const axis of [-1, 0, 1, 2]) {
  opTest(`softmax over axis ${axis} of [2,3,4]`, {
    build: ([x]) => softmax(x!, axis),
    inputs: [{ shape: [2, 3, 4], data: uniform(-2, 2) }],
    reference: ([x]) => alongAxis(x!, axis, softmaxLane),
  });
  opTest(`logSoftmax over axis ${axis} of [2,3,4]`, {
    build: ([x]) => logSoftmax(x!, axis),
    inputs: [{ shape: [2, 3, 4], data: uniform(-2, 2) }],
    reference: ([x]) => alongAxis(x!, axis, logSoftmaxLane),
  });
}

const reductionAxes: (number[] | undefined)[] = [undefined, [0], [1], [-1], [0, 2], [2, 0, 2]];
for (const axes of reductionAxes) {
  for (const keepDims of [false, true]) {
    const label = `${axes ? `axes [${axes}]` : 'all axes'}${keepDims ? ', keepDims' : ''}`;
    opTest(`sum over ${label}`, {
      build: ([x]) => sum(x!, axes, keepDims),
      inputs: [{ shape: [2, 3, 4] }],
      reference: ([x]) => reduce(x!, axes, keepDims, total),
    });
    opTest(`mean over ${label}`, {
      build: ([x]) => mean(x!, axes, keepDims),
      inputs: [{ shape: [2, 3, 4] }],
      reference: ([x]) => reduce(x!, axes, keepDims, average),
    });
    opTest(`reduceMax over ${label}`, {
      build: ([x]) => reduceMax(x!, axes, keepDims),
      inputs: [{ shape: [2, 3, 4] }],
      reference: ([x]) => reduce(x!, axes, keepDims, (elements) => Math.max(...elements)),
    });
  }
}

for (const [axes, keepDims] of [[undefined, false], [[1], true], [[2, 0], false]] as const) {
  opTest(`sumSquares over ${axes ? `axes [${axes}]` : 'all axes'}${keepDims ? ', keepDims' : ''}`, {
    build: ([x]) => sumSquares(x!, axes ? [...axes] : undefined, keepDims),
    inputs: [{ shape: [2, 3, 4] }],
    reference: ([x]) => reduce(x!, axes ? [...axes] : undefined, keepDims, (elements) => total(elements.map((e) => e * e))),
  });
}

opTest('sumSquares of a scalar is its square', {
  build: ([x]) => sumSquares(x!),
  inputs: [{ shape: [] }],
  reference: ([x]) => map(x!, (e) => e * e),
});

opTest('sum over an empty axis list reduces nothing', {
  build: ([x]) => sum(x!, []),
  inputs: [{ shape: [2, 3] }],
  reference: ([x]) => x!,
});

// Two-way ties: the rule splits the cotangent equally, which is exactly what a central difference
// measures at a two-way tie (one side moves the maximum, the other does not).
opTest('reduceMax with tied maxima shares the gradient', {
  build: ([x]) => reduceMax(x!, [1]),
  inputs: [{ shape: [3, 4], data: values([0.5, 0.9, 0.9, -0.3, 0.1, -0.2, 0.7, 0.3, 0.4, 0.4, -1, 0.2]) }],
  reference: ([x]) => reduce(x!, [1], false, (elements) => Math.max(...elements)),
});

opTest('reduceMax over all axes with a tie', {
  build: ([x]) => reduceMax(x!),
  inputs: [{ shape: [2, 3], data: values([0.2, 0.8, -0.1, 0.8, 0.3, 0.5]) }],
  reference: ([x]) => reduce(x!, undefined, false, (elements) => Math.max(...elements)),
});

// argMax returns int64 indices (no gradient); on ties the first index wins, as torch.argmax.
for (const [axis, keepDims] of [[1, false], [-1, true], [0, false]] as const) {
  opTest(`argMax over axis ${axis}${keepDims ? ', keepDims' : ''} with ties`, {
    build: ([x]) => argMax(x!, axis, keepDims),
    inputs: [{ shape: [3, 4], data: values([0.5, 0.9, 0.9, -0.3, 0.1, -0.2, 0.7, 0.3, 0.4, 0.4, -1, 0.7]) }],
    reference: ([x]) => reduce(x!, [axis], keepDims, (elements) => elements.indexOf(Math.max(...elements))),
  });
}

// Inputs stay 0.05 away from the bounds so the finite-difference stencil never straddles them.
const clipData = values([-0.9, -0.3, 0.1, 0.7, 0.45, -0.6, 0.2, 1.2, -0.45, 0.05, -1.4, 0.33]);
opTest('clip with both bounds', {
  build: ([x]) => clip(x!, -0.5, 0.5),
  inputs: [{ shape: [3, 4], data: clipData }],
  reference: ([x]) => map(x!, (v) => Math.min(Math.max(v, -0.5), 0.5)),
});
opTest('clip with a lower bound only', {
  build: ([x]) => clip(x!, -0.5),
  inputs: [{ shape: [3, 4], data: clipData }],
  reference: ([x]) => map(x!, (v) => Math.max(v, -0.5)),
});
opTest('clip with an upper bound only', {
  build: ([x]) => clip(x!, undefined, 0.5),
  inputs: [{ shape: [3, 4], data: clipData }],
  reference: ([x]) => map(x!, (v) => Math.min(v, 0.5)),
});

const pick = (condition: number, a: number, b: number) => (condition ? a : b);
opTest('where with equal shapes', {
  build: ([condition, a, b]) => where(condition!, a!, b!),
  inputs: [{ shape: [2, 3], dtype: 'bool', data: integers(0, 1) }, { shape: [2, 3] }, { shape: [2, 3] }],
  reference: (inputs) => broadcast(inputs, pick),
});
opTest('where broadcasting condition [3], a [2,3], b [2,1]', {
  build: ([condition, a, b]) => where(condition!, a!, b!),
  inputs: [{ shape: [3], dtype: 'bool', data: values([1, 0, 1]) }, { shape: [2, 3] }, { shape: [2, 1] }],
  reference: (inputs) => broadcast(inputs, pick),
});
opTest('where with a number for the false branch', {
  build: ([condition, a]) => where(condition!, a!, -2),
  inputs: [{ shape: [2, 3], dtype: 'bool', data: integers(0, 1) }, { shape: [2, 3] }],
  reference: ([condition, a]) => broadcast([condition!, a!], (c, v) => (c ? v : -2)),
});

opTest('cast float to int64 truncates toward zero', {
  build: ([x]) => cast(x!, 'int64'),
  inputs: [{ shape: [2, 4], data: values([-2.7, -1.2, -0.5, 0.4, 0.9, 1.5, 2.6, 3.1]) }],
  reference: ([x]) => map(x!, Math.trunc),
});
opTest('cast int64 to float', {
  build: ([x]) => cast(x!, 'float32'),
  inputs: [{ shape: [5], dtype: 'int64', data: integers(-50, 50) }],
  reference: ([x]) => x!,
});
opTest('cast bool to float scales the other operand', {
  build: ([mask, x]) => mul(cast(mask!, x!.dtype), x!),
  inputs: [{ shape: [2, 3], dtype: 'bool', data: integers(0, 1) }, { shape: [2, 3] }],
  reference: (inputs) => broadcast(inputs, (m, v) => m * v),
});
opTest('identity', {
  build: ([x]) => identity(x!),
  inputs: [{ shape: [2, 3] }],
  reference: ([x]) => new Tensor(x!.data, x!.shape),
});

// float32 sums over leading axes are MatMuls with a row of ones (faster on ORT's CPU provider); the
// float64 cases above never take that path, so it is checked here in float32: values against the
// reference, gradients (the cotangent broadcast back) against the host, and the node chosen.
for (const [axes, keepDims] of [[[0], false], [[0, 1], true], [[-3], true], [[1, 0], false]] as const) {
  test(`float32 sum over leading axes [${axes}]${keepDims ? ', keepDims' : ''} is a MatMul with ones, values and gradient exact`, async () => {
    const shape = [3, 2, 5];
    const graph = new Graph('leading_sum');
    const x = graph.input('x', 'float32', shape);
    const y = sum(x, [...axes], keepDims);
    const cotangent = graph.input('cotangent', 'float32', y.shape);
    const [gradient] = grad(sum(mul(y, cotangent)), [x]);
    const ops = graph.nodes.map((node) => node.opType);
    assert.ok(ops.includes('MatMul') && !ops.slice(0, ops.indexOf('MatMul') + 1).includes('ReduceSum'), ops.join(' '));
    const session = await GraphSession.create(encodeModel(graph.toModel({ y, gradient: gradient! })));
    try {
      const input = Tensor.build(shape, (index) => (index[0]! * 10 + index[1]! * 3 - index[2]!) / 8);
      const expected = reduce(input, [...axes], keepDims, total);
      const weights = Tensor.build(expected.shape, (index) => index.reduce((p, q) => p * 7 + q, 1) / 16);
      const out = await session.run({
        x: { dtype: 'float32', shape, data: Float32Array.from(input.data) },
        cotangent: { dtype: 'float32', shape: expected.shape, data: Float32Array.from(weights.data) },
      });
      assert.deepEqual(out['y']!.shape, expected.shape);
      assert.deepEqual([...(out['y']!.data as Float32Array)], [...Float32Array.from(expected.data)]);
      // d/dx Σ y·w = w at the reduced position of each element.
      const kept = shape.length - axes.length;
      const back = Tensor.build(shape, (index) => weights.at(keepDims ? [...Array<number>(axes.length).fill(0), ...index.slice(-kept)] : index.slice(-kept)));
      assert.deepEqual([...(out['gradient']!.data as Float32Array)], [...Float32Array.from(back.data)]);
    } finally {
      await session.release();
    }
  });
}
