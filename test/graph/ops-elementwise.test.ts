// Elementwise arithmetic, unary functions and activations, with broadcasting in both directions so
// that the gradient's sum back to each operand's shape is exercised. All run in float64.
import { type Generator, type InputSpec, awayFromZero, integers, opTest, uniform } from './harness.js';
import { broadcast, map } from './reference.js';
import type { Value } from '../../src/graph/graph.js';
import {
  type Operand, abs, add, cos, div, equal, erf, exp, gelu, greater, greaterOrEqual, less, log, max, min, mul, neg, not, pow, quickGelu, reciprocal, relu, rsqrt,
  sigmoid, sign, silu, sin, sqrt, sub, tanh,
} from '../../src/graph/ops/elementwise.js';

type Binary = (a: Operand, b: Operand) => Value;

const broadcastPairs: [number[], number[]][] = [
  [[2, 3], [2, 3]],
  [[2, 3], [3]],
  [[3], [2, 3]],
  [[2, 1, 4], [3, 1]],
  [[1, 3, 1], [2, 1, 4]],
  [[1], [2, 3]],
  [[2, 3], []],
];

function binaryCases(name: string, op: Binary, fn: (a: number, b: number) => number, dataA?: Generator, dataB?: Generator): void {
  for (const [shapeA, shapeB] of broadcastPairs) {
    opTest(`${name} [${shapeA}] by [${shapeB}]`, {
      build: ([a, b]) => op(a!, b!),
      inputs: [{ shape: shapeA, data: dataA }, { shape: shapeB, data: dataB }],
      reference: (inputs) => broadcast(inputs, fn),
    });
  }
  opTest(`${name} with a number on the right`, {
    build: ([a]) => op(a!, 0.75),
    inputs: [{ shape: [2, 3], data: dataA }],
    reference: ([a]) => map(a!, (v) => fn(v, 0.75)),
  });
  opTest(`${name} with a number on the left`, {
    build: ([b]) => op(1.25, b!),
    inputs: [{ shape: [2, 3], data: dataB }],
    reference: ([b]) => map(b!, (v) => fn(1.25, v)),
  });
}

binaryCases('add', add, (a, b) => a + b);
binaryCases('sub', sub, (a, b) => a - b);
binaryCases('mul', mul, (a, b) => a * b);
binaryCases('div', div, (a, b) => a / b, uniform(), awayFromZero(0.5, 1.5));
// Ties between the operands would sit on the kink; distinct ranges keep them apart.
binaryCases('max', max, Math.max, uniform(-1, 1), uniform(-0.9, 0.9));
binaryCases('min', min, Math.min, uniform(-1, 1), uniform(-0.9, 0.9));
binaryCases('pow', pow, Math.pow, uniform(0.5, 2), uniform(-1.5, 2.5));

for (const exponent of [2, 3, -1, 0.5]) {
  opTest(`pow with scalar exponent ${exponent}`, {
    build: ([x]) => pow(x!, exponent),
    inputs: [{ shape: [3, 4], data: exponent === 0.5 ? uniform(0.3, 2) : awayFromZero(0.3, 1.5) }],
    reference: ([x]) => map(x!, (v) => v ** exponent),
  });
}

function unaryCase(name: string, op: (x: Value) => Value, fn: (v: number) => number, input: Partial<InputSpec> = {}, tolerance?: number): void {
  opTest(name, {
    build: ([x]) => op(x!),
    inputs: [{ shape: [3, 5], ...input }],
    reference: ([x]) => map(x!, fn),
    tolerance,
  });
}

const positive = { data: uniform(0.3, 2.5) };
const sigmoidRef = (v: number) => 1 / (1 + Math.exp(-v));
// Abramowitz–Stegun 7.1.26 is too coarse for a 1e-9 comparison; this series/continued fraction pair
// is accurate to double precision on the ranges used here.
function erfRef(v: number): number {
  if (Math.abs(v) > 3) return Math.sign(v) * (1 - erfcContinuedFraction(Math.abs(v)));
  let term = v;
  let acc = v;
  for (let n = 1; n < 200; n++) {
    term *= (-v * v) / n;
    acc += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * acc;
}
function erfcContinuedFraction(v: number): number {
  let fraction = 0;
  for (let n = 60; n >= 1; n--) fraction = n / 2 / (v + fraction);
  return Math.exp(-v * v) / Math.sqrt(Math.PI) / (v + fraction);
}

unaryCase('neg', neg, (v) => -v);
unaryCase('sign (zero gradient)', sign, Math.sign, { data: awayFromZero() });
unaryCase('sqrt', sqrt, Math.sqrt, positive);
unaryCase('rsqrt', rsqrt, (v) => 1 / Math.sqrt(v), positive);
unaryCase('reciprocal', reciprocal, (v) => 1 / v, { data: awayFromZero(0.4, 2) });
unaryCase('exp', exp, Math.exp, { data: uniform(-2, 2) });
unaryCase('log', log, Math.log, positive);
unaryCase('abs', abs, Math.abs, { data: awayFromZero() });
unaryCase('tanh', tanh, Math.tanh, { data: uniform(-2, 2) });
unaryCase('sigmoid', sigmoid, sigmoidRef, { data: uniform(-3, 3) });
unaryCase('erf', erf, erfRef, { data: uniform(-2, 2) });
unaryCase('relu', relu, (v) => Math.max(v, 0), { data: awayFromZero() });
unaryCase('silu', silu, (v) => v * sigmoidRef(v), { data: uniform(-3, 3) });
unaryCase('quickGelu', quickGelu, (v) => v * sigmoidRef(1.702 * v), { data: uniform(-3, 3) });
unaryCase('sin', sin, Math.sin, { data: uniform(-3, 3) });
unaryCase('cos', cos, Math.cos, { data: uniform(-3, 3) });
unaryCase('gelu (erf)', (x) => gelu(x), (v) => 0.5 * v * (1 + erfRef(v / Math.SQRT2)), { data: uniform(-3, 3) });
// onnxruntime's double Gelu(tanh) kernel uses single-precision constants (relative error ~1e-9).
unaryCase(
  'gelu (tanh)',
  (x) => gelu(x, 'tanh'),
  (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  { data: uniform(-3, 3) },
  100,
);

opTest('unary ops compose: log(sigmoid(x)) · exp(−x²)', {
  build: ([x]) => mul(log(sigmoid(x!)), exp(neg(mul(x!, x!)))),
  inputs: [{ shape: [4, 3] }],
  reference: ([x]) => map(x!, (v) => Math.log(sigmoidRef(v)) * Math.exp(-v * v)),
});

opTest('broadcast operands of a product chain: (a·b + c) / b over [2,1,3], [4,1], [3]', {
  build: ([a, b, c]) => div(add(mul(a!, b!), c!), b!),
  inputs: [{ shape: [2, 1, 3] }, { shape: [4, 1], data: awayFromZero(0.5, 1.5) }, { shape: [3] }],
  reference: (inputs) => broadcast(inputs, (a, b, c) => (a * b + c) / b),
});

// Comparisons give booleans (forward only). Inputs come from a small grid so that equality occurs.
const grid = integers(-2, 2);
for (const [name, op, fn] of [
  ['equal', equal, (a: number, b: number) => a === b],
  ['less', less, (a: number, b: number) => a < b],
  ['greater', greater, (a: number, b: number) => a > b],
  ['greaterOrEqual', greaterOrEqual, (a: number, b: number) => a >= b],
] as [string, Binary, (a: number, b: number) => boolean][]) {
  opTest(`${name} [2,3] against [3]`, {
    build: ([a, b]) => op(a!, b!),
    inputs: [{ shape: [2, 3], data: grid }, { shape: [3], data: grid }],
    reference: (inputs) => broadcast(inputs, (a, b) => Number(fn(a, b))),
  });
  opTest(`${name} against a number`, {
    build: ([a]) => op(a!, 1),
    inputs: [{ shape: [5], data: grid }],
    reference: ([a]) => map(a!, (v) => Number(fn(v, 1))),
  });
}
opTest('not', {
  build: ([x]) => not(x!),
  inputs: [{ shape: [2, 3], dtype: 'bool', data: integers(0, 1) }],
  reference: ([x]) => map(x!, (v) => Number(!v)),
});
