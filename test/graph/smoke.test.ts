import test from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { GraphSession } from '../../src/graph/session.js';
import { grad } from '../../src/graph/autodiff.js';
import { max, min, mul, sum, tanh, matmul } from '../../src/graph/ops/elementwise.js';

test('smoke: tanh(x@w) gradient', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [2, 3]);
  const w = graph.input('w', 'float64', [3, 4]);
  const y = tanh(matmul(x, w));
  const loss = sum(mul(y, y));
  const [gw] = grad(loss, [w]);
  const session = await GraphSession.create(encodeModel(graph.toModel({ loss, gw: gw! })));
  const xs = Float64Array.from({ length: 6 }, (_, i) => Math.sin(i));
  const ws = Float64Array.from({ length: 12 }, (_, i) => Math.cos(i) * 0.5);
  const out = await session.run({ x: { dtype: 'float64', shape: [2, 3], data: xs }, w: { dtype: 'float64', shape: [3, 4], data: ws } });
  const f = async (wv: Float64Array) => Number((await session.run({ x: { dtype: 'float64', shape: [2, 3], data: xs }, w: { dtype: 'float64', shape: [3, 4], data: wv } }))['loss']!.data[0]);
  for (let i = 0; i < 12; i++) {
    const p = ws.slice(); p[i]! += 1e-6; const m = ws.slice(); m[i]! -= 1e-6;
    const fd = ((await f(p)) - (await f(m))) / 2e-6;
    assert.ok(Math.abs(fd - Number(out['gw']!.data[i])) < 1e-6, `${fd} vs ${out['gw']!.data[i]}`);
  }
});

test('max and min split the cotangent evenly on ties, as torch.maximum/minimum do', async () => {
  const graph = new Graph();
  const a = graph.input('a', 'float64', [3]);
  const b = graph.input('b', 'float64', [3]);
  const [gaMax, gbMax] = grad(sum(max(a, b)), [a, b]);
  const [gaMin, gbMin] = grad(sum(min(a, b)), [a, b]);
  const session = await GraphSession.create(encodeModel(graph.toModel({ gaMax: gaMax!, gbMax: gbMax!, gaMin: gaMin!, gbMin: gbMin! })));
  const out = await session.run({ a: { dtype: 'float64', shape: [3], data: Float64Array.of(1, 2, 3) }, b: { dtype: 'float64', shape: [3], data: Float64Array.of(0, 2, 4) } });
  assert.deepEqual([...out['gaMax']!.data as Float64Array], [1, 0.5, 0]);
  assert.deepEqual([...out['gbMax']!.data as Float64Array], [0, 0.5, 1]);
  assert.deepEqual([...out['gaMin']!.data as Float64Array], [0, 0.5, 1]);
  assert.deepEqual([...out['gbMin']!.data as Float64Array], [1, 0.5, 0]);
});
