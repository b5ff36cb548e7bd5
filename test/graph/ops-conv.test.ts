// Convolution, transposed convolution, nearest 2× upsampling and average pooling. onnxruntime's CPU
// provider has float-only Conv, ConvTranspose, Resize and AveragePool kernels, so every case here
// runs in float32 (the diagnostic line of each test says which type it ran in).
import test from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, opTest } from './harness.js';
import { conv2dRef, convTranspose2dRef } from './reference.js';
import { Graph } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { sum } from '../../src/graph/ops/elementwise.js';
import { avgPool2d, conv2d, convTranspose2d, upsampleNearest2x } from '../../src/graph/ops/nn.js';

interface ConvCase {
  label: string;
  input: number[];
  weight: number[];
  bias: boolean;
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
}

const convCases: ConvCase[] = [
  { label: 'stride 1, no padding', input: [2, 3, 5, 5], weight: [4, 3, 3, 3], bias: true },
  { label: 'stride 1, padding 1', input: [1, 3, 5, 4], weight: [2, 3, 3, 3], bias: true, padding: 1 },
  { label: 'stride 2 dropping a row and a column', input: [1, 2, 6, 7], weight: [3, 2, 3, 3], bias: true, stride: 2 },
  { label: 'stride 2, padding 1, odd size', input: [2, 2, 5, 6], weight: [3, 2, 3, 3], bias: true, stride: 2, padding: 1 },
  { label: 'dilation 2', input: [1, 2, 7, 6], weight: [2, 2, 3, 3], bias: true, dilation: 2 },
  { label: 'dilation 2, stride 2, padding 1', input: [1, 2, 8, 7], weight: [2, 2, 3, 2], bias: false, dilation: 2, stride: 2, padding: 1 },
  { label: 'groups 2', input: [1, 4, 5, 5], weight: [6, 2, 3, 3], bias: true, groups: 2, padding: 1 },
  { label: 'depthwise', input: [2, 3, 5, 5], weight: [3, 1, 3, 3], bias: true, groups: 3, padding: 1 },
  { label: 'depthwise with channel multiplier 2, stride 2', input: [1, 2, 5, 5], weight: [4, 1, 3, 3], bias: false, groups: 2, stride: 2 },
  { label: 'without bias', input: [2, 3, 4, 4], weight: [2, 3, 2, 2], bias: false },
  { label: '1×1 kernel', input: [2, 3, 3, 3], weight: [5, 3, 1, 1], bias: true },
];

for (const { label, input, weight, bias, ...options } of convCases) {
  opTest(`conv2d ${label}`, {
    build: ([x, w, b]) => conv2d(x!, w!, b ?? null, options),
    inputs: [{ shape: input }, { shape: weight }, ...(bias ? [{ shape: [weight[0]!] }] : [])],
    reference: ([x, w, b]) => conv2dRef(x!, w!, b ?? null, options),
  });
}

const transposedCases: (Omit<ConvCase, 'label'> & { outputPadding?: number })[] = [
  { input: [2, 3, 3, 3], weight: [3, 2, 3, 3], bias: true },
  { input: [1, 2, 3, 4], weight: [2, 3, 3, 3], bias: true, stride: 2, padding: 1, outputPadding: 1 },
  { input: [1, 4, 3, 3], weight: [4, 1, 2, 2], bias: false, stride: 2, groups: 2 },
  { input: [1, 2, 4, 3], weight: [2, 2, 3, 3], bias: true, dilation: 2, padding: 1 },
];
for (const { input, weight, bias, ...options } of transposedCases) {
  opTest(`convTranspose2d forward ${JSON.stringify(options)}`, {
    build: ([x, w, b]) => convTranspose2d(x!, w!, b ?? null, options),
    inputs: [{ shape: input, differentiable: false }, { shape: weight, differentiable: false }, ...(bias ? [{ shape: [weight[1]! * (options.groups ?? 1)], differentiable: false }] : [])],
    reference: ([x, w, b]) => convTranspose2dRef(x!, w!, b ?? null, options),
  });
}

// ConvTranspose only appears in backward graphs (as conv2d's input gradient), never in a model's
// forward pass, so it has no gradient rule; asking for one must say so.
test('grad through convTranspose2d names the missing rule', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [1, 2, 3, 3]);
  const w = graph.input('w', 'float32', [2, 2, 3, 3]);
  assert.throws(() => grad(sum(convTranspose2d(x, w)), [x]), /no gradient rule for ConvTranspose/);
});

opTest('upsampleNearest2x', {
  build: ([x]) => upsampleNearest2x(x!),
  inputs: [{ shape: [2, 2, 3, 4] }],
  reference: ([x]) => Tensor.build([2, 2, 6, 8], ([n, c, h, w]) => x!.at([n!, c!, Math.floor(h! / 2), Math.floor(w! / 2)])),
});

const avgPoolRef = (x: Tensor, kernel: number, stride: number, padding: number): Tensor => {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const outSize = (size: number) => Math.floor((size + 2 * padding - kernel) / stride) + 1;
  return Tensor.build([n, c, outSize(h), outSize(w)], ([b, ch, y, xo]) => {
    let acc = 0;
    for (let i = 0; i < kernel; i++) {
      for (let j = 0; j < kernel; j++) {
        const row = y! * stride + i - padding;
        const column = xo! * stride + j - padding;
        if (row >= 0 && row < h && column >= 0 && column < w) acc += x.at([b!, ch!, row, column]);
      }
    }
    return acc / (kernel * kernel); // count_include_pad
  });
};
for (const [shape, kernel, stride, padding] of [
  [[2, 3, 4, 6], 2, 2, 0],
  [[1, 2, 5, 5], 2, 2, 0],
  [[1, 2, 4, 5], 3, 1, 1],
  [[1, 2, 5, 6], 3, 2, 1],
] as [number[], number, number, number][]) {
  opTest(`avgPool2d on [${shape}] kernel ${kernel} stride ${stride} padding ${padding}`, {
    build: ([x]) => avgPool2d(x!, kernel, stride, padding),
    inputs: [{ shape }],
    reference: ([x]) => avgPoolRef(x!, kernel, stride, padding),
  });
}

// Traced once with a symbolic batch and run at two batch sizes (the weight gradient convolves over
// the batch axis, so the batch becomes a channel dim there).
const symbolicBatch = [{ batch: 1 }, { batch: 3 }];
opTest('conv2d on a symbolic batch, stride 2, padding 1', {
  build: ([x, w, b]) => conv2d(x!, w!, b!, { stride: 2, padding: 1 }),
  inputs: [{ shape: ['batch', 2, 5, 5] }, { shape: [3, 2, 3, 3] }, { shape: [3] }],
  sizes: symbolicBatch,
  reference: ([x, w, b]) => conv2dRef(x!, w!, b!, { stride: 2, padding: 1 }),
});
opTest('conv2d groups 2 on a symbolic batch', {
  build: ([x, w]) => conv2d(x!, w!, null, { groups: 2 }),
  inputs: [{ shape: ['batch', 4, 4, 4] }, { shape: [2, 2, 3, 3] }],
  sizes: symbolicBatch,
  reference: ([x, w]) => conv2dRef(x!, w!, null, { groups: 2 }),
});
opTest('upsampleNearest2x then avgPool2d on a symbolic batch', {
  build: ([x]) => avgPool2d(upsampleNearest2x(x!), 3, 2, 1),
  inputs: [{ shape: ['batch', 2, 3, 3] }],
  sizes: symbolicBatch,
  reference: ([x]) => avgPoolRef(Tensor.build([x!.shape[0]!, 2, 6, 6], ([n, c, h, w]) => x!.at([n!, c!, Math.floor(h! / 2), Math.floor(w! / 2)])), 3, 2, 1),
});
