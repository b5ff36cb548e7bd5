// Matrix products: matmul (numpy semantics), gemm (every transpose combination, alpha/beta, bias
// broadcasting) and linear. All run in float64.
import { Tensor, opTest } from './harness.js';
import { broadcast, matmulRef, transposeRef } from './reference.js';
import { gemm, matmul } from '../../src/graph/ops/elementwise.js';
import { linear } from '../../src/graph/ops/nn.js';

const matmulShapes: [number[], number[]][] = [
  [[3, 4], [4, 5]],
  [[2, 3, 4], [2, 4, 5]],
  [[2, 1, 3, 4], [3, 4, 5]],
  [[3, 4], [2, 4, 5]],
  [[2, 3, 4], [4, 5]],
  [[4], [4, 5]],
  [[3, 4], [4]],
  [[4], [4]],
  [[4], [2, 4, 5]],
  [[2, 3, 4], [4]],
];
for (const [shapeA, shapeB] of matmulShapes) {
  opTest(`matmul [${shapeA}] @ [${shapeB}]`, {
    build: ([a, b]) => matmul(a!, b!),
    inputs: [{ shape: shapeA }, { shape: shapeB }],
    reference: ([a, b]) => matmulRef(a!, b!),
  });
}

const [m, k, n] = [3, 4, 2];
const maybeTranspose = (x: Tensor, transposed: boolean) => (transposed ? transposeRef(x, [1, 0]) : x);
const biasShapes: (number[] | null)[] = [null, [n], [1, n], [m, 1], [m, n], []];
for (const transA of [false, true]) {
  for (const transB of [false, true]) {
    for (const [alpha, beta] of [[1, 1], [0.5, -2]] as const) {
      for (const biasShape of biasShapes) {
        const label = `gemm transA=${transA} transB=${transB} alpha=${alpha} beta=${beta} bias ${biasShape ? `[${biasShape}]` : 'none'}`;
        opTest(label, {
          build: ([a, b, c]) => gemm(a!, b!, c ?? null, { transA, transB, alpha, beta }),
          inputs: [{ shape: transA ? [k, m] : [m, k] }, { shape: transB ? [n, k] : [k, n] }, ...(biasShape ? [{ shape: biasShape }] : [])],
          reference: ([a, b, c]) => {
            const product = matmulRef(maybeTranspose(a!, transA), maybeTranspose(b!, transB));
            return c ? broadcast([product, c], (p, bias) => alpha * p + beta * bias) : broadcast([product], (p) => alpha * p);
          },
        });
      }
    }
  }
}

const linearRef = (x: Tensor, weight: Tensor, bias?: Tensor): Tensor => {
  const product = matmulRef(x, transposeRef(weight, [1, 0]));
  return bias ? broadcast([product, bias], (p, b) => p + b) : product;
};
for (const shape of [[3, 4], [2, 3, 4], [2, 2, 1, 4]]) {
  opTest(`linear on [${shape}] with bias`, {
    build: ([x, weight, bias]) => linear(x!, weight!, bias!),
    inputs: [{ shape }, { shape: [5, 4] }, { shape: [5] }],
    reference: ([x, weight, bias]) => linearRef(x!, weight!, bias!),
  });
  opTest(`linear on [${shape}] without bias`, {
    build: ([x, weight]) => linear(x!, weight!),
    inputs: [{ shape }, { shape: [5, 4] }],
    reference: ([x, weight]) => linearRef(x!, weight!),
  });
}

opTest('linear on a symbolic batch [batch, 3, 4] at two batch sizes', {
  build: ([x, weight, bias]) => linear(x!, weight!, bias!),
  inputs: [{ shape: ['batch', 3, 4] }, { shape: [5, 4] }, { shape: [5] }],
  sizes: [{ batch: 2 }, { batch: 1 }],
  reference: ([x, weight, bias]) => linearRef(x!, weight!, bias!),
});

opTest('matmul with a symbolic batch broadcast against a matrix', {
  build: ([a, b]) => matmul(a!, b!),
  inputs: [{ shape: ['batch', 3, 4] }, { shape: [4, 2] }],
  sizes: [{ batch: 2 }, { batch: 1 }],
  reference: ([a, b]) => matmulRef(a!, b!),
});
