// Normalisation: layerNorm (fused LayerNormalization, whose Mean/InvStdDev outputs the gradient
// reuses), groupNorm and l2Normalize. All run in float64.
import { Tensor, opTest, uniform } from './harness.js';
import { average, broadcast } from './reference.js';
import { groupNorm, l2Normalize, layerNorm } from '../../src/graph/ops/nn.js';

/** Normalises each block of the trailing `blockSize` elements (x̂ = (x − μ)/√(σ² + ε)). */
function normalizeBlocks(x: Tensor, blockSize: number, eps: number): Tensor {
  const data = new Float64Array(x.data.length);
  for (let start = 0; start < data.length; start += blockSize) {
    const block = Array.from(x.data.subarray(start, start + blockSize));
    const mu = average(block);
    const variance = average(block.map((v) => (v - mu) ** 2));
    block.forEach((v, i) => (data[start + i] = (v - mu) / Math.sqrt(variance + eps)));
  }
  return new Tensor(data, x.shape);
}

function layerNormRef(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, normalizedRank: number, eps = 1e-5): Tensor {
  const normalized = normalizeBlocks(x, x.shape.slice(x.rank - normalizedRank).reduce((p, q) => p * q, 1), eps);
  const scaled = weight ? broadcast([normalized, weight], (v, w) => v * w) : normalized;
  return bias ? broadcast([scaled, bias], (v, b) => v + b) : scaled;
}

for (const normalizedRank of [1, 2]) {
  const shape = [2, 3, 4];
  const normalizedShape = shape.slice(shape.length - normalizedRank);
  opTest(`layerNorm over ${normalizedRank} axes with weight and bias`, {
    build: ([x, weight, bias]) => layerNorm(x!, weight!, bias!, 1e-5, normalizedRank),
    inputs: [{ shape, data: uniform(-2, 2) }, { shape: normalizedShape, data: uniform(0.5, 1.5) }, { shape: normalizedShape }],
    reference: ([x, weight, bias]) => layerNormRef(x!, weight, bias, normalizedRank),
  });
  opTest(`layerNorm over ${normalizedRank} axes with weight only`, {
    build: ([x, weight]) => layerNorm(x!, weight!, null, 1e-5, normalizedRank),
    inputs: [{ shape, data: uniform(-2, 2) }, { shape: normalizedShape, data: uniform(0.5, 1.5) }],
    reference: ([x, weight]) => layerNormRef(x!, weight, undefined, normalizedRank),
  });
  opTest(`layerNorm over ${normalizedRank} axes without weight or bias`, {
    build: ([x]) => layerNorm(x!, null, null, 1e-5, normalizedRank),
    inputs: [{ shape, data: uniform(-2, 2) }],
    reference: ([x]) => layerNormRef(x!, undefined, undefined, normalizedRank),
  });
}

opTest('layerNorm with a large epsilon on a 2-D input', {
  build: ([x, weight, bias]) => layerNorm(x!, weight!, bias!, 0.5),
  inputs: [{ shape: [3, 5] }, { shape: [5] }, { shape: [5] }],
  reference: ([x, weight, bias]) => layerNormRef(x!, weight, bias, 1, 0.5),
});

opTest('layerNorm on a symbolic batch', {
  build: ([x, weight, bias]) => layerNorm(x!, weight!, bias!),
  inputs: [{ shape: ['batch', 4] }, { shape: [4] }, { shape: [4] }],
  sizes: [{ batch: 3 }, { batch: 1 }],
  reference: ([x, weight, bias]) => layerNormRef(x!, weight, bias, 1),
});

function groupNormRef(x: Tensor, groups: number, weight: Tensor | undefined, bias: Tensor | undefined, eps = 1e-5): Tensor {
  const normalized = normalizeBlocks(x, x.data.length / x.shape[0]! / groups, eps);
  const affine = (t: Tensor | undefined) => t && new Tensor(t.data, [t.shape[0]!, ...x.shape.slice(2).map(() => 1)]);
  const scaled = weight ? broadcast([normalized, affine(weight)!], (v, w) => v * w) : normalized;
  return bias ? broadcast([scaled, affine(bias)!], (v, b) => v + b) : scaled;
}

for (const [groups, shape] of [[2, [2, 4, 3, 3]], [1, [1, 3, 2, 2]], [3, [2, 3, 5]]] as [number, number[]][]) {
  opTest(`groupNorm ${groups} groups on [${shape}] with affine`, {
    build: ([x, weight, bias]) => groupNorm(x!, groups, weight!, bias!),
    inputs: [{ shape, data: uniform(-2, 2) }, { shape: [shape[1]!], data: uniform(0.5, 1.5) }, { shape: [shape[1]!] }],
    reference: ([x, weight, bias]) => groupNormRef(x!, groups, weight, bias),
  });
}
opTest('groupNorm on a symbolic batch', {
  build: ([x, weight, bias]) => groupNorm(x!, 2, weight!, bias!),
  inputs: [{ shape: ['batch', 4, 2, 2], data: uniform(-2, 2) }, { shape: [4], data: uniform(0.5, 1.5) }, { shape: [4] }],
  sizes: [{ batch: 1 }, { batch: 3 }],
  reference: ([x, weight, bias]) => groupNormRef(x!, 2, weight, bias),
});
opTest('groupNorm without affine', {
  build: ([x]) => groupNorm(x!, 2, null, null),
  inputs: [{ shape: [1, 4, 2, 3], data: uniform(-2, 2) }],
  reference: ([x]) => groupNormRef(x!, 2, undefined, undefined),
});

function l2NormalizeRef(x: Tensor, axis: number): Tensor {
  const position = axis < 0 ? axis + x.rank : axis;
  return Tensor.build(x.shape, (index) => {
    let squares = 0;
    for (let i = 0; i < x.shape[position]!; i++) squares += x.at(index.map((v, a) => (a === position ? i : v))) ** 2;
    return x.at(index) / Math.max(Math.sqrt(squares), 1e-12);
  });
}
for (const axis of [-1, 0, 1]) {
  opTest(`l2Normalize along axis ${axis}`, {
    build: ([x]) => l2Normalize(x!, axis),
    inputs: [{ shape: [3, 4] }],
    reference: ([x]) => l2NormalizeRef(x!, axis),
  });
}
