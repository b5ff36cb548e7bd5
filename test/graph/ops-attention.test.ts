// Attention and dropout. scaledDotProductAttention runs in float64; the fused com.microsoft
// MultiHeadAttention kernel is float-only, so its comparison runs in float32.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, compile, hostTensor, numbersOf, opTest, seededRandom, uniform, values } from './harness.js';
import { attentionRef } from './reference.js';
import { Graph, type Value } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { mul, sum } from '../../src/graph/ops/elementwise.js';
import { dropout, fusedMultiHeadAttention, scaledDotProductAttention } from '../../src/graph/ops/nn.js';
import { concat, reshape, transpose, unsqueeze } from '../../src/graph/ops/shape.js';

const [batches, heads, depth] = [2, 2, 4];
const qkv = (queries: number, keys: number) => [
  { shape: [batches, heads, queries, depth] },
  { shape: [batches, heads, keys, depth] },
  { shape: [batches, heads, keys, 3] },
];

opTest('scaledDotProductAttention without a mask', {
  build: ([q, k, v]) => scaledDotProductAttention(q!, k!, v!),
  inputs: qkv(3, 4),
  reference: ([q, k, v]) => attentionRef(q!, k!, v!, () => 0),
});

// onnxruntime fuses the scaling Mul into FusedMatMul, whose alpha is a float attribute: 0.9 is
// rounded to single precision (relative error ~1e-8) even in a float64 graph.
opTest('scaledDotProductAttention with an explicit scale', {
  build: ([q, k, v]) => scaledDotProductAttention(q!, k!, v!, { scale: 0.9 }),
  inputs: qkv(2, 3),
  reference: ([q, k, v]) => attentionRef(q!, k!, v!, () => 0, 0.9),
  tolerance: 100,
});

// With fewer queries than keys the causal mask is aligned to the last key (query t sees keys up to
// t + S − T), as when decoding with cached keys.
for (const [queries, keys] of [[3, 3], [2, 4]]) {
  opTest(`scaledDotProductAttention causal, ${queries} queries and ${keys} keys`, {
    build: ([q, k, v]) => scaledDotProductAttention(q!, k!, v!, { causal: true }),
    inputs: qkv(queries, keys),
    reference: ([q, k, v]) => attentionRef(q!, k!, v!, ([, , t, s]) => (s! > t! + keys - queries ? -Infinity : 0)),
  });
}

opTest('scaledDotProductAttention with an additive mask broadcast over batch and heads', {
  build: ([q, k, v, mask]) => scaledDotProductAttention(q!, k!, v!, { mask: mask! }),
  inputs: [...qkv(3, 4), { shape: [1, 1, 3, 4], data: uniform(-2, 0) }],
  reference: ([q, k, v, mask]) => attentionRef(q!, k!, v!, ([, , t, s]) => mask!.at([0, 0, t!, s!])),
});

// Every query keeps at least one key, so no softmax row is fully masked.
const keepMask = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0];
opTest('scaledDotProductAttention with a boolean keep-mask per batch', {
  build: ([q, k, v, mask]) => scaledDotProductAttention(q!, k!, v!, { mask: mask! }),
  inputs: [...qkv(3, 4), { shape: [batches, 1, 3, 4], dtype: 'bool', data: values(keepMask) }],
  reference: ([q, k, v, mask]) => attentionRef(q!, k!, v!, ([b, , t, s]) => (mask!.at([b!, 0, t!, s!]) ? 0 : -Infinity)),
});

opTest('scaledDotProductAttention causal and masked together', {
  build: ([q, k, v, mask]) => scaledDotProductAttention(q!, k!, v!, { causal: true, mask: mask! }),
  inputs: [...qkv(3, 3), { shape: [3, 3], data: uniform(-1, 0) }],
  reference: ([q, k, v, mask]) => attentionRef(q!, k!, v!, ([, , t, s]) => (s! > t! ? -Infinity : mask!.at([t!, s!]))),
});

opTest('scaledDotProductAttention causal on a symbolic batch', {
  build: ([q, k, v]) => scaledDotProductAttention(q!, k!, v!, { causal: true }),
  inputs: [{ shape: ['batch', heads, 3, depth] }, { shape: ['batch', heads, 3, depth] }, { shape: ['batch', heads, 3, 2] }],
  sizes: [{ batch: 1 }, { batch: 3 }],
  reference: ([q, k, v]) => attentionRef(q!, k!, v!, ([, , t, s]) => (s! > t! ? -Infinity : 0)),
});

/** (B, T, H·D) → (B, H, T, D). */
const splitHeads = (x: Value) => transpose(reshape(x, [x.size(0), x.size(1), heads, -1]), [0, 2, 1, 3]);
const splitHeadsRef = (x: Tensor) => Tensor.build([x.shape[0]!, heads, x.shape[1]!, x.shape[2]! / heads], ([b, h, t, d]) => x.at([b!, t!, h! * (x.shape[2]! / heads) + d!]));
const mergeHeadsRef = (x: Tensor) => Tensor.build([x.shape[0]!, x.shape[2]!, heads * x.shape[3]!], ([b, t, e]) => x.at([b!, Math.floor(e! / x.shape[3]!), t!, e! % x.shape[3]!]));

for (const withBias of [false, true]) {
  opTest(`fusedMultiHeadAttention equals scaledDotProductAttention${withBias ? ' with an attention bias' : ''}`, {
    // Both paths side by side (stacked on a new leading axis), each checked against the reference.
    build: ([q, k, v, bias]) => {
      const fused = fusedMultiHeadAttention(q!, k!, v!, heads, bias ?? null);
      const unfused = scaledDotProductAttention(splitHeads(q!), splitHeads(k!), splitHeads(v!), { mask: bias ?? null });
      return concat([unsqueeze(fused, 0), unsqueeze(reshape(transpose(unfused, [0, 2, 1, 3]), fused.shape), 0)], 0);
    },
    inputs: [
      { shape: [batches, 3, heads * depth], differentiable: false },
      { shape: [batches, 5, heads * depth], differentiable: false },
      { shape: [batches, 5, heads * 2], differentiable: false },
      ...(withBias ? [{ shape: [1, heads, 3, 5], data: uniform(-1, 0), differentiable: false }] : []),
    ],
    reference: ([q, k, v, bias]) => {
      const perHead = attentionRef(splitHeadsRef(q!), splitHeadsRef(k!), splitHeadsRef(v!), ([, h, t, s]) => (bias ? bias.at([0, h!, t!, s!]) : 0));
      const merged = mergeHeadsRef(perHead);
      return Tensor.build([2, ...merged.shape], (index) => merged.at(index.slice(1)));
    },
  });
}

test('grad through fusedMultiHeadAttention throws a clear error', () => {
  const graph = new Graph();
  const q = graph.input('q', 'float32', [1, 2, 4]);
  assert.throws(() => grad(sum(fusedMultiHeadAttention(q, q, q, 2)), [q]), /inference-only; use scaledDotProductAttention/);
});

/**
 * A float32 graph applying `sites` dropout sites to ones (so each output is its mask times
 * 1/(1−p)), plus the gradient of sum(site0 · R); returns a runner taking the seed.
 */
async function dropoutRunner(count: number, probability: number, sites = 1) {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [count]);
  const seed = graph.input('seed', 'int64', []);
  const cotangent = graph.input('cotangent', 'float32', [count]);
  const outputs: Record<string, Value> = {};
  for (let site = 0; site < sites; site++) outputs[`site${site}`] = dropout(x, probability, seed);
  outputs['grad'] = grad(sum(mul(outputs['site0']!, cotangent)), [x])[0]!;
  const session = await compile(graph, outputs);
  const random = seededRandom(7);
  const feeds = {
    x: hostTensor('float32', [count], new Float32Array(count).fill(1)),
    cotangent: hostTensor('float32', [count], Array.from({ length: count }, () => random() - 0.5)),
  };
  return async (seedValue: number): Promise<Record<string, Float64Array>> => {
    const results = await session.run({ ...feeds, seed: hostTensor('int64', [], [seedValue]) });
    return { ...Object.fromEntries(Object.entries(results).map(([name, tensor]) => [name, numbersOf(tensor)])), cotangent: numbersOf(feeds.cotangent) };
  };
}

const sameMask = (a: Float64Array, b: Float64Array) => a.every((v, i) => (v === 0) === (b[i] === 0));

test('dropout masks are reproducible per seed and differ across seeds and sites', async () => {
  const run = await dropoutRunner(4096, 0.5, 2);
  const first = await run(12345);
  const again = await run(12345);
  const other = await run(12346);
  assert.ok(sameMask(first['site0']!, again['site0']!), 'the same seed must give the same mask');
  assert.ok(!sameMask(first['site0']!, other['site0']!), 'a different seed must give a different mask');
  assert.ok(!sameMask(first['site0']!, first['site1']!), 'two dropout sites must not share a mask');
  const agreement = first['site0']!.filter((v, i) => (v === 0) === (other['site0']![i] === 0)).length / 4096;
  assert.ok(Math.abs(agreement - 0.5) < 0.05, `masks of neighbouring seeds agree on ${agreement} of elements (independent: 0.5)`);
});

for (const probability of [0.1, 0.3, 0.75]) {
  test(`dropout p=${probability}: keep rate, scaling and gradient`, async () => {
    const count = 20000;
    const run = await dropoutRunner(count, probability);
    const { site0, grad: gradient, cotangent } = await run(2024);
    const scale = Math.fround(1 / (1 - probability));
    let kept = 0;
    site0!.forEach((v, i) => {
      if (v !== 0) {
        kept++;
        assert.equal(v, scale, `kept element ${i} is ${v}, expected ${scale}`);
      }
      // The gradient is the cotangent times the same mask scaling.
      assert.ok(Math.abs(gradient![i]! - v * cotangent![i]!) < 1e-6, `gradient at ${i}`);
    });
    const rate = kept / count;
    const sigma = Math.sqrt((probability * (1 - probability)) / count);
    assert.ok(Math.abs(rate - (1 - probability)) < 5 * sigma, `keep rate ${rate}, expected ${1 - probability}`);
  });
}

test('dropout with p = 0 is the identity', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [3]);
  assert.equal(dropout(x, 0, graph.input('seed', 'int64', [])), x);
});
