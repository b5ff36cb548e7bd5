// Losses and the behaviour of `grad` itself: accumulation over several uses, zero gradients off the
// path, no backward work for frozen inputs, stopGradient, casts, and symbolic batch dims. All
// float64 except where a test says otherwise.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, compile, hostTensor, integers, numbersOf, opTest, uniform, values } from './harness.js';
import { average, logSoftmaxLane, matmulRef, softmaxLane } from './reference.js';
import { Graph } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { add, cast, exp, matmul, mean, mul, sin, softmax, stopGradient, sum, tanh } from '../../src/graph/ops/elementwise.js';
import { crossEntropy, linear, mseLoss } from '../../src/graph/ops/nn.js';
import { slice } from '../../src/graph/ops/shape.js';

opTest('mseLoss', {
  build: ([prediction, target]) => mseLoss(prediction!, target!),
  inputs: [{ shape: [3, 4] }, { shape: [3, 4] }],
  reference: ([p, t]) => new Tensor(Float64Array.of(average(Array.from(p!.data, (v, i) => (v - t!.data[i]!) ** 2))), []),
});

opTest('mseLoss with sample weights (min-SNR-γ form)', {
  build: ([prediction, target, weights]) => mseLoss(prediction!, target!, weights!),
  inputs: [{ shape: [3, 2, 2] }, { shape: [3, 2, 2] }, { shape: [3], data: uniform(0.1, 1) }],
  reference: ([p, t, w]) => {
    const perSample = [0, 1, 2].map((b) => average(Array.from(p!.data.subarray(b * 4, b * 4 + 4), (v, i) => (v - t!.data[b * 4 + i]!) ** 2)));
    return new Tensor(Float64Array.of(average(perSample.map((loss, b) => loss * w!.data[b]!))), []);
  },
});
test('mseLoss rejects sample weights that do not match the batch', () => {
  const graph = new Graph();
  const [prediction, target] = [graph.input('p', 'float32', [3, 4]), graph.input('t', 'float32', [3, 4])];
  assert.throws(() => mseLoss(prediction, target, graph.input('w', 'float32', [2])), /sample weights \[2\] for a batch of \[3, ?4\]/);
});

/** Mean negative log-likelihood over the labels that are not `ignoreIndex` (0 when all are). */
function crossEntropyRef(logits: Tensor, labels: Tensor, ignoreIndex = -100): Tensor {
  const classes = logits.shape.at(-1)!;
  let totalLoss = 0;
  let counted = 0;
  labels.data.forEach((label, row) => {
    if (label === ignoreIndex) return;
    totalLoss -= logSoftmaxLane(Array.from(logits.data.subarray(row * classes, (row + 1) * classes)))[label]!;
    counted++;
  });
  return new Tensor(Float64Array.of(totalLoss / Math.max(counted, 1)), []);
}
for (const [label, logitShape, labelData, ignoreIndex] of [
  ['on [4,5] logits', [4, 5], [0, 4, 2, 2], -100],
  ['on [2,3,5] logits with ignored labels', [2, 3, 5], [1, -100, 4, 0, -100, 3], -100],
  ['with a custom ignoreIndex', [3, 4], [3, 0, 3], 3],
  ['with every label ignored', [2, 3], [-100, -100], -100],
] as [string, number[], number[], number][]) {
  opTest(`crossEntropy ${label}`, {
    build: ([logits, labels]) => crossEntropy(logits!, labels!, ignoreIndex),
    inputs: [{ shape: logitShape, data: uniform(-2, 2) }, { shape: logitShape.slice(0, -1), dtype: 'int64', data: values(labelData) }],
    reference: ([logits, labels]) => crossEntropyRef(logits!, labels!, ignoreIndex),
  });
}

opTest('a value used on several paths accumulates its gradient: exp(x)·x + sin(x) + x', {
  build: ([x]) => add(add(mul(exp(x!), x!), sin(x!)), x!),
  inputs: [{ shape: [2, 3] }],
  reference: ([x]) => new Tensor(x!.data.map((v) => Math.exp(v) * v + Math.sin(v) + v), x!.shape),
});

opTest('a weight shared by two matmuls accumulates both contributions', {
  build: ([x, w]) => matmul(tanh(matmul(x!, w!)), w!),
  inputs: [{ shape: [2, 3] }, { shape: [3, 3] }],
  reference: ([x, w]) => matmulRef(new Tensor(matmulRef(x!, w!).data.map(Math.tanh), [2, 3]), w!),
});

test('a parameter off the path to the loss gets a zero gradient of its own shape', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [2, 3]);
  const unused = graph.input('unused', 'float64', ['batch', 4]);
  const [gx, gUnused] = grad(sum(mul(x, x)), [x, unused]);
  const session = await compile(graph, { gx: gx!, gUnused: gUnused! }, [unused]);
  const xs = [0.5, -1, 2, 0, 1.5, -0.25];
  const results = await session.run({ x: hostTensor('float64', [2, 3], xs), unused: hostTensor('float64', [3, 4], new Array(12).fill(7)) });
  assert.deepEqual(Array.from(numbersOf(results['gx']!)), xs.map((v) => 2 * v));
  assert.deepEqual(results['gUnused']!.shape, [3, 4]);
  assert.deepEqual(Array.from(numbersOf(results['gUnused']!)), new Array(12).fill(0));
});

test('frozen inputs (not in wrt) get no backward nodes', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [2, 3]);
  const frozen = graph.input('frozen', 'float64', [3, 4]);
  const trained = graph.input('trained', 'float64', [4, 2]);
  const loss = sum(matmul(tanh(matmul(x, frozen)), trained));
  const forwardNodes = graph.nodes.length;
  grad(loss, [trained]);
  const backward = graph.nodes.slice(forwardNodes);
  // Only the last MatMul and the ReduceSum are differentiated, and only towards `trained`.
  const differentiated = new Set(backward.map((node) => node.name.split('/')[0]));
  assert.deepEqual([...differentiated].sort(), ['backward.MatMul_1', 'backward.ReduceSum']);
  for (const node of backward) {
    for (const value of node.inputs) assert.ok(value !== frozen && value !== trained && value !== x, `${node.name} reads ${value?.name}`);
  }
});

test('stopGradient passes the value and blocks the gradient', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [4]);
  const stopped = stopGradient(x);
  const [gStopped] = grad(sum(mul(stopped, 3)), [x]);
  const [gMixed] = grad(sum(mul(stopped, x)), [x]); // d/dx (sg(x)·x) = sg(x)
  const session = await compile(graph, { stopped, gStopped: gStopped!, gMixed: gMixed! });
  const xs = [0.5, -1, 2, 3];
  const results = await session.run({ x: hostTensor('float64', [4], xs) });
  assert.deepEqual(Array.from(numbersOf(results['stopped']!)), xs);
  assert.deepEqual(Array.from(numbersOf(results['gStopped']!)), [0, 0, 0, 0]);
  assert.deepEqual(Array.from(numbersOf(results['gMixed']!)), xs);
});

test('cast between float types passes the gradient back in the source type', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [3]);
  const r = graph.input('r', 'float32', [3]);
  const [gx] = grad(sum(mul(cast(x, 'float32'), r)), [x]);
  assert.equal(gx!.dtype, 'float64');
  const session = await compile(graph, { gx: gx! });
  const rs = [0.25, -1.5, 2];
  const results = await session.run({ x: hostTensor('float64', [3], [1, 2, 3]), r: hostTensor('float32', [3], rs) });
  assert.deepEqual(Array.from(numbersOf(results['gx']!)), rs);
});

test('grad of a strided slice says it is unsupported', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [6]);
  assert.throws(() => grad(sum(slice(x, { starts: [0], ends: [6], steps: [2] })), [x]), /strided slices is not supported/);
});

// A graph traced once with a symbolic batch, run at two batch sizes: forward and gradients.
const batchSizes = [{ batch: 2 }, { batch: 5 }];
opTest('symbolic batch: softmax(linear(x)) averaged over the batch', {
  build: ([x, weight, bias]) => mean(softmax(linear(x!, weight!, bias!)), [0]),
  inputs: [{ shape: ['batch', 4] }, { shape: [3, 4] }, { shape: [3] }],
  sizes: batchSizes,
  reference: ([x, weight, bias]) => {
    const rows = x!.shape[0]!;
    const logits = matmulRef(x!, new Tensor(Float64Array.from({ length: 12 }, (_, i) => weight!.data[(i % 3) * 4 + Math.floor(i / 3)]!), [4, 3]));
    const probabilities = Array.from({ length: rows }, (_, r) => softmaxLane(Array.from(logits.data.subarray(r * 3, r * 3 + 3), (v, j) => v + bias!.data[j]!)));
    return Tensor.build([3], ([j]) => average(probabilities.map((row) => row[j!]!)));
  },
});
opTest('symbolic batch: mseLoss', {
  build: ([prediction, target]) => mseLoss(prediction!, target!),
  inputs: [{ shape: ['batch', 4] }, { shape: ['batch', 4] }],
  sizes: batchSizes,
  reference: ([p, t]) => new Tensor(Float64Array.of(average(Array.from(p!.data, (v, i) => (v - t!.data[i]!) ** 2))), []),
});
opTest('symbolic batch: crossEntropy', {
  build: ([logits, labels]) => crossEntropy(logits!, labels!),
  inputs: [{ shape: ['batch', 3] }, { shape: ['batch'], dtype: 'int64', data: integers(0, 2) }],
  sizes: batchSizes,
  reference: ([logits, labels]) => crossEntropyRef(logits!, labels!),
});
