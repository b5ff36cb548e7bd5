// Block quantization for MatMulNBits (src/nn/quantize.ts, graph/ops/nn.ts quantizedLinear): the
// round-trip error of every weight is at most half its block's step, and onnxruntime's kernel
// computes x · dequantize(codes)ᵀ (+ bias) from our packing, at 4 and 8 bits, for K not a
// multiple of the block and inputs of rank 2, 3 and 4.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { quantizedLinear } from '../../src/graph/ops/nn.js';
import { GraphSession } from '../../src/graph/session.js';
import { blocksPerRow, dequantizeBlockwise, quantizeBlockwise } from '../../src/nn/quantize.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { Random } from '../../src/util/random.js';

const randomValues = (random: Random, count: number, scale = 1) => Float32Array.from({ length: count }, () => (2 * random.next() - 1) * scale);

for (const bits of [4, 8] as const) {
  test(`${bits}-bit blocks: every weight within half a step of its value, zeros exact, padding dropped`, () => {
    const [n, k, blockSize] = [5, 40, 16];
    const weight = randomValues(new Random(bits), n * k, 0.3);
    weight[7] = 0;
    const quantized = quantizeBlockwise(weight, n, k, bits, blockSize);
    assert.equal(quantized.codes.length, n * blocksPerRow(k, blockSize) * ((blockSize * bits) / 8));
    const restored = dequantizeBlockwise(quantized);
    assert.equal(restored.length, n * k);
    for (let i = 0; i < n * k; i++) {
      const step = quantized.scales[Math.floor(i / k) * 3 + Math.floor((i % k) / blockSize)]!;
      assert.ok(Math.abs(restored[i]! - weight[i]!) <= step / 2 + 1e-7, `weight ${i}: ${weight[i]} → ${restored[i]} (step ${step})`);
    }
    assert.equal(restored[7], 0);
  });
}

test('bad settings are refused in one line', () => {
  assert.throws(() => quantizeBlockwise(new Float32Array(32), 1, 32, 3 as 4, 16), /bits must be 4 or 8, got 3/);
  assert.throws(() => quantizeBlockwise(new Float32Array(32), 1, 32, 4, 24), /block size must be a power of two ≥ 16, got 24/);
  assert.throws(() => quantizeBlockwise(new Float32Array(31), 1, 32, 4, 16), /31 values are not a 1×32 weight/);
});

for (const bits of [4, 8] as const) {
  for (const shape of [[3, 40], [2, 3, 40], [2, 1, 3, 40]]) {
    test(`MatMulNBits at ${bits} bits, input (${shape.join(', ')}): x · dequantize(codes)ᵀ + bias`, async () => {
      const random = new Random(100 + bits + shape.length);
      const [n, k, blockSize] = [6, 40, 16];
      const quantized = quantizeBlockwise(randomValues(random, n * k, 0.5), n, k, bits, blockSize);
      const bias = randomValues(random, n);
      const rows = shape.slice(0, -1).reduce((p, q) => p * q, 1);
      const x = randomValues(random, rows * k);
      const graph = new Graph('quantized_linear');
      const input = graph.input('x', 'float32', shape);
      const constant = (name: string, dtype: 'uint8' | 'float32', dims: number[], data: Uint8Array | Float32Array) => graph.constant({ dtype, shape: dims, data } as never, name);
      const blocks = blocksPerRow(k, blockSize);
      const y = quantizedLinear(
        input,
        constant('codes', 'uint8', [n, blocks, (blockSize * bits) / 8], quantized.codes),
        constant('scales', 'float32', [n * blocks], quantized.scales),
        constant('zero_points', 'uint8', [quantized.zeroPoints.length], quantized.zeroPoints),
        constant('bias', 'float32', [n], bias),
        quantized,
      );
      assert.deepEqual(y.shape, [...shape.slice(0, -1), n]);
      const session = await GraphSession.create(encodeModel(graph.toModel({ y })), { threads: 1 });
      try {
        const { y: result } = await session.run({ x: { dtype: 'float32', shape, data: x } });
        assert.deepEqual(result!.shape, [...shape.slice(0, -1), n]);
        const weight = dequantizeBlockwise(quantized);
        const got = result!.data as Float32Array;
        for (let row = 0; row < rows; row++) {
          for (let j = 0; j < n; j++) {
            let expected = bias[j]!;
            for (let i = 0; i < k; i++) expected += x[row * k + i]! * weight[j * k + i]!;
            assert.ok(Math.abs(got[row * n + j]! - expected) <= 1e-4 * (1 + Math.abs(expected)), `y[${row}, ${j}] = ${got[row * n + j]}, expected ${expected}`);
          }
        }
      } finally {
        await session.release();
      }
    });
  }
}
