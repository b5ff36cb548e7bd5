import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { Module, constantBindings, type TraceContext } from '../../src/nn/module.js';
import { Linear, LayerNorm, normalTensor } from '../../src/nn/layers.js';
import { dequantizeBlockwise, quantizeLinearWeights } from '../../src/nn/quantize.js';
import { type ExternalWeights, externalBindings } from '../../src/nn/weights.js';
import { Random } from '../../src/util/random.js';
import type { Value } from '../../src/graph/graph.js';
import type { HostTensor } from '../../src/onnx/dtype.js';

class TwoLayer extends Module {
  readonly norm: LayerNorm;
  readonly layers: Linear[];
  constructor(random: Random) {
    super();
    this.norm = new LayerNorm(6);
    this.layers = [new Linear(6, 5, { random }), new Linear(5, 3, { random, bias: false })];
  }
  forward(context: TraceContext, x: Value): Value {
    return this.layers[1]!.forward(context, this.layers[0]!.forward(context, this.norm.forward(context, x)));
  }
}

async function runWith(model: TwoLayer, bind: (graph: Graph) => { context: TraceContext; externalData?: ExternalWeights['externalData'] }, input: HostTensor) {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [2, 6]);
  const { context, externalData } = bind(graph);
  const y = model.forward(context, x);
  const session = await GraphSession.create(encodeModel(graph.toModel({ y })), { externalData });
  const out = (await session.run({ x: input }))['y']!;
  await session.release();
  return out;
}

test('parameter keys are property paths, and an inference graph reads weights from a safetensors file by byte offset', async () => {
  const random = new Random(7);
  const model = new TwoLayer(random);
  model.norm.weight.data = normalTensor(random, [6], 1);
  assert.deepEqual(model.namedParameters().map(([key]) => key), ['norm.weight', 'norm.bias', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight']);
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-weights-'));
  try {
    const input: HostTensor = normalTensor(random, [2, 6], 1);
    const expected = await runWith(model, (graph) => ({ context: constantBindings(graph, model) }), input);
    for (const dtype of ['F32', 'F16'] as const) {
      const path = join(directory, `model-${dtype}.safetensors`);
      await writeSafetensors(path, model.stateDict(), { dtype });
      const reader = await openSafetensors(path);
      const actual = await runWith(model, (graph) => externalBindings(graph, model, reader), input);
      await reader.close();
      const tolerance = dtype === 'F32' ? 0 : 5e-3;
      (expected.data as Float32Array).forEach((value, i) => assert.ok(Math.abs(value - Number(actual.data[i])) <= tolerance * (1 + Math.abs(value)), `${dtype} [${i}]`));
    }
    const bad = new TwoLayer(new Random(1));
    const badPath = join(directory, 'bad.safetensors');
    const state = bad.stateDict();
    await writeSafetensors(badPath, { ...state, 'layers.0.bias': normalTensor(random, [4], 1) });
    const reader = await openSafetensors(badPath);
    assert.throws(() => externalBindings(new Graph(), model, reader), /layers\.0\.bias: checkpoint shape \[4\] does not match model shape \[5\]/);
    assert.throws(() => externalBindings(new Graph(), model, reader, { prefix: 'unet.' }), /missing tensors: unet\.norm\.weight/);
    await reader.close();
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('weight-only quantization: the linear layers read MatMulNBits blocks of their checkpoint weights, the rest stays float', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-quantized-'));
  try {
    const model = new TwoLayer(new Random(9));
    const path = join(directory, 'model.safetensors');
    await writeSafetensors(path, model.stateDict(), { dtype: 'F16' });
    const reader = await openSafetensors(path);
    const input = normalTensor(new Random(10), [2, 6], 1);
    for (const bits of [4, 8] as const) {
      const quantized = await quantizeLinearWeights(model, reader, { bits, blockSize: 16, location: 'quantized-linears' });
      assert.deepEqual([...quantized.tensors.values()].map((tensor) => tensor.key), ['layers.0.weight', 'layers.1.weight']);
      // The same model with its linear weights replaced by what the blocks stand for, in float.
      const float = new TwoLayer(new Random(9));
      float.loadStateDict(Object.fromEntries(await Promise.all(Object.keys(float.stateDict()).map(async (key) => [key, await reader.read(key, { asFloat32: true })]))));
      for (const [parameter, tensor] of quantized.tensors) {
        const { codes, scales, zeroPoints } = tensor;
        const part = (range: { offset: number; length: number }) => (quantized.data as Uint8Array).slice(range.offset, range.offset + range.length);
        const weight = dequantizeBlockwise({ ...tensor.layout, codes: part(codes), scales: new Float32Array(part(scales).buffer), zeroPoints: part(zeroPoints) });
        const target = float.namedParameters().find(([key]) => key === tensor.key)![1];
        target.data = { dtype: 'float32', shape: parameter.shape, data: weight };
      }
      const expected = await runWith(float, (graph) => ({ context: constantBindings(graph, float) }), input);
      let nodes: string[] = [];
      const actual = await runWith(model, (graph) => {
        const bound = externalBindings(graph, model, reader, { quantized });
        nodes = graph.nodes.map((node) => node.opType);
        return bound;
      }, input);
      (expected.data as Float32Array).forEach((value, i) => assert.ok(Math.abs(value - Number(actual.data[i])) <= 1e-5 * (1 + Math.abs(value)), `${bits} bits [${i}]: ${value} vs ${actual.data[i]}`));
      assert.ok(!nodes.includes('MatMulNBits'), 'nothing is traced before the forward pass');
    }
    await reader.close();
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('loadStateDict is strict: missing and unexpected keys by name, shape mismatches with both shapes', () => {
  const model = new TwoLayer(new Random(3));
  const state = { ...model.stateDict() };
  const removed = state['layers.1.weight']!;
  delete state['layers.1.weight'];
  assert.throws(() => model.loadStateDict({ ...state, extra: removed }), /missing keys: layers\.1\.weight; unexpected keys: extra/);
  assert.throws(() => model.loadStateDict({ ...state, 'layers.1.weight': normalTensor(new Random(1), [3, 4], 1) }), /layers\.1\.weight: checkpoint shape \[3, 4\] does not match model shape \[3, 5\]/);
  const other = new TwoLayer(new Random(4));
  model.loadStateDict(other.stateDict());
  assert.deepEqual(model.stateDict()['layers.0.weight']!.data, other.stateDict()['layers.0.weight']!.data);
  assert.equal(model.parameterCount(), 6 + 6 + 30 + 5 + 15);
});
