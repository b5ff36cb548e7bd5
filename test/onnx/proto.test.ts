import test from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { ProtoWriter, encodeModel, MAX_IR_VERSION, MAX_OPSET } from '../../src/onnx/proto.js';
import { Graph } from '../../src/graph/graph.js';
import { add, mul } from '../../src/graph/ops/elementwise.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../src/onnx/dtype.js';

test('varints: small, multi-byte and negative (ten-byte two\'s complement) values', () => {
  const bytes = (value: number | bigint) => [...new ProtoWriter().varint(value).finish()];
  assert.deepEqual(bytes(1), [1]);
  assert.deepEqual(bytes(300), [0xac, 0x02]);
  assert.deepEqual(bytes(-1), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.deepEqual(bytes(2n ** 40n), [0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
});

test('an encoded model with symbolic dims, inline initializers and scoped node names runs in onnxruntime', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', ['batch', 3]);
  const bias = graph.constant({ dtype: 'float32', shape: [3], data: Float32Array.of(1, 2, 3) }, 'bias');
  const y = graph.scope('block.0', () => mul(add(x, bias), 2));
  assert.match(y.producer!.name, /^block\.0\/Mul/);
  const session = await ort.InferenceSession.create(encodeModel(graph.toModel({ y })));
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(0, 0, 0, 1, 1, 1), [2, 3]) });
  assert.deepEqual([...(out['y']!.data as Float32Array)], [2, 4, 6, 4, 6, 8]);
  await session.release();
});

test('opset and IR versions above what the shipped onnxruntime accepts are refused at encoding', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [1]);
  const model = graph.toModel({ y: add(x, 1) });
  assert.throws(() => encodeModel({ ...model, opsets: { '': MAX_OPSET + 1 } }), new RegExp(`opset ${MAX_OPSET + 1} is above the supported ${MAX_OPSET}`));
  assert.throws(() => encodeModel({ ...model, irVersion: MAX_IR_VERSION + 1 }), new RegExp(`IR version ${MAX_IR_VERSION + 1} is above`));
});

test('graph outputs are pruned to what they need and renamed without clashes', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [2]);
  const unused = graph.input('unused', 'float32', [2]);
  const y = add(x, 1);
  mul(unused, 3);
  const model = graph.toModel({ y });
  assert.deepEqual(model.graph.inputs.map((input) => input.name), ['x']);
  assert.equal(model.graph.nodes.filter((node) => node.opType === 'Mul').length, 0);
  assert.throws(() => graph.toModel({ x: y }), /output name x is already the name of a value/);
});

test('float16 conversion rounds to nearest even and keeps subnormals, infinities and NaN', () => {
  for (const value of [0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8]) assert.equal(float16BitsToFloat32(float32ToFloat16Bits(value)), value);
  assert.equal(float16BitsToFloat32(float32ToFloat16Bits(1 + 2 ** -11)), 1); // halfway: to even
  assert.equal(float16BitsToFloat32(float32ToFloat16Bits(1 + 3 * 2 ** -11)), 1 + 2 ** -9);
  assert.equal(float16BitsToFloat32(float32ToFloat16Bits(1e6)), Infinity);
  assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN))));
});
