// Op-by-op checking in the spirit of tinygrad's test_ops.py: one case per op configuration. A case
// traces a small graph, checks the inferred output shape against what onnxruntime returns,
// compares the output with a plain-JavaScript reference, and compares the reverse-mode gradient of
// sum(output · R) (R a fixed random cotangent) with central finite differences obtained by
// re-running the same compiled session.
//
// Cases run in float64 where onnxruntime's CPU provider has double kernels for every op in the
// forward and backward graph. Where one is missing, session creation fails (NOT_IMPLEMENTED, or a
// type error for schemas without double) and the case is traced again in float32 with a larger
// step and looser tolerances. The ops that need this (Conv, ConvTranspose, Resize, AveragePool,
// com.microsoft MultiHeadAttention) are named in the test files' comments, and each test's
// diagnostic line says which type it ran in.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, type Shape, type Value } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { GraphSession } from '../../src/graph/session.js';
import { mul, sum } from '../../src/graph/ops/elementwise.js';
import { type DType, type HostTensor, elementCount, isFloat } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';

export type FloatDType = 'float32' | 'float64';

/** Produces element `index` of an input from a seeded uniform [0, 1) source. */
export type Generator = (random: () => number, index: number) => number;

/** mulberry32: a small deterministic PRNG. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const uniform = (low = -1, high = 1): Generator => (random) => low + (high - low) * random();
/** ±[low, high]: keeps kinks (relu, abs, clip bounds at 0) out of the finite-difference stencil. */
export const awayFromZero = (low = 0.2, high = 1.5): Generator => (random) => (random() < 0.5 ? -1 : 1) * (low + (high - low) * random());
/** Integers in [low, high]. */
export const integers = (low: number, high: number): Generator => (random) => low + Math.floor(random() * (high - low + 1));
export const values = (list: readonly number[]): Generator => (_, index) => list[index % list.length]!;

/** A row-major float64 tensor for references. */
export class Tensor {
  readonly strides: number[];

  constructor(
    readonly data: Float64Array,
    readonly shape: number[],
  ) {
    this.strides = shape.map((_, axis) => shape.slice(axis + 1).reduce((p, q) => p * q, 1));
    if (data.length !== elementCount(shape)) throw new Error(`reference tensor: ${data.length} elements for [${shape.join(', ')}]`);
  }

  get rank(): number {
    return this.shape.length;
  }

  at(index: readonly number[]): number {
    let offset = 0;
    for (let axis = 0; axis < this.rank; axis++) offset += index[axis]! * this.strides[axis]!;
    return this.data[offset]!;
  }

  /** Element at `index` of a shape this tensor broadcasts to (trailing-aligned, size-1 dims repeat). */
  atBroadcast(index: readonly number[]): number {
    const extra = index.length - this.rank;
    let offset = 0;
    for (let axis = 0; axis < this.rank; axis++) offset += (this.shape[axis] === 1 ? 0 : index[axis + extra]!) * this.strides[axis]!;
    return this.data[offset]!;
  }

  /** Calls `visit` with every multi-index of `shape` in row-major order (and its flat offset). */
  static forEachIndex(shape: readonly number[], visit: (index: number[], flat: number) => void): void {
    const count = elementCount(shape);
    const index = shape.map(() => 0);
    for (let flat = 0; flat < count; flat++) {
      visit(index, flat);
      for (let axis = shape.length - 1; axis >= 0; axis--) {
        if (++index[axis]! < shape[axis]!) break;
        index[axis] = 0;
      }
    }
  }

  /** A tensor of `shape` whose element at each multi-index is `valueAt(index)`. */
  static build(shape: readonly number[], valueAt: (index: number[]) => number): Tensor {
    const data = new Float64Array(elementCount(shape));
    Tensor.forEachIndex(shape, (index, flat) => (data[flat] = valueAt(index)));
    return new Tensor(data, [...shape]);
  }
}

export interface InputSpec {
  /** The graph input's shape; symbolic dims take their sizes from the case's `sizes`. */
  shape: Shape;
  /** Integer and boolean inputs are data; float inputs take the case's float type. */
  dtype?: 'int64' | 'bool';
  /** Defaults to uniform in [-1, 1]. */
  data?: Generator;
  /** Float inputs are differentiated unless this is false. */
  differentiable?: boolean;
}

export interface OpCase {
  build: (inputs: Value[]) => Value;
  inputs: InputSpec[];
  reference?: (inputs: Tensor[]) => Tensor;
  /** Concrete sizes for the symbolic dims of the input shapes; the session runs once per entry. */
  sizes?: Record<string, number>[];
  /** Scales the float type's tolerances (kernels that approximate, ill-conditioned references). */
  tolerance?: number;
  seed?: number;
}

const tolerances: Record<FloatDType, { forward: number; step: number; gradient: number }> = {
  float64: { forward: 1e-9, step: 1e-6, gradient: 1e-6 },
  float32: { forward: 2e-5, step: 1e-2, gradient: 5e-3 },
};

/** Inputs with more elements than this get an evenly spread sample of finite-difference checks. */
const finiteDifferenceLimit = 48;

// A missing double kernel, or an op schema without double in its type constraint (com.microsoft ops).
const missingKernel = /NOT_IMPLEMENTED|Could not find an implementation|Type 'tensor\(double\)' of input parameter \(\S+\) of operator \(\w+\) in node \(\S+\) is invalid/;

/** Encodes `outputs` of `graph` and compiles a single-threaded CPU session. */
export async function compile(graph: Graph, outputs: Record<string, Value>, keepInputs: readonly Value[] = []): Promise<GraphSession> {
  return GraphSession.create(encodeModel(graph.toModel(outputs, { keepInputs })), { threads: 1 });
}

export function hostTensor(dtype: DType, shape: readonly number[], numbers: ArrayLike<number>): HostTensor {
  const count = elementCount(shape);
  if (numbers.length !== count) throw new Error(`${numbers.length} numbers for shape [${shape.join(', ')}]`);
  const list = Array.from(numbers);
  const data =
    dtype === 'float64' ? Float64Array.from(list)
    : dtype === 'float32' ? Float32Array.from(list)
    : dtype === 'int64' ? BigInt64Array.from(list, (n) => BigInt(n))
    : dtype === 'bool' ? Uint8Array.from(list, (n) => (n ? 1 : 0))
    : null;
  if (!data) throw new Error(`hostTensor: unsupported dtype ${dtype}`);
  return { dtype, shape: [...shape], data };
}

export function numbersOf(tensor: HostTensor): Float64Array {
  return Float64Array.from(tensor.data as ArrayLike<number | bigint>, Number);
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} elements, expected ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const difference = Math.abs(actual[i]! - expected[i]!);
    if (!(difference <= tolerance * Math.max(1, Math.abs(expected[i]!)))) {
      assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (tolerance ${tolerance})`);
    }
  }
}

interface TracedCase {
  inputs: Value[];
  output: Value;
  /** Indices (into inputs) of the differentiated inputs. */
  wrt: number[];
  session: GraphSession;
}

async function traceCase(opCase: OpCase, dtype: FloatDType): Promise<TracedCase> {
  const graph = new Graph('op_case');
  const inputs = opCase.inputs.map((spec, i) => graph.input(`input${i}`, spec.dtype ?? dtype, spec.shape));
  const output = opCase.build(inputs);
  const outputs: Record<string, Value> = { output };
  const wrt = inputs.flatMap((value, i) => (isFloat(value.dtype) && opCase.inputs[i]!.differentiable !== false ? [i] : []));
  if (isFloat(output.dtype) && wrt.length) {
    const cotangent = graph.input('cotangent', output.dtype, output.shape);
    const loss = sum(mul(output, cotangent));
    outputs['loss'] = loss;
    grad(loss, wrt.map((i) => inputs[i]!)).forEach((gradient, k) => (outputs[`grad${k}`] = gradient));
  }
  return { inputs, output, wrt, session: await compile(graph, outputs, inputs) };
}

function concreteShape(shape: Shape, sizes: Record<string, number>, fallback?: readonly number[]): number[] {
  return shape.map((dim, axis) => {
    if (typeof dim === 'number') return dim;
    const size = sizes[dim] ?? fallback?.[axis];
    if (size === undefined) throw new Error(`no size for symbolic dimension ${dim}`);
    return size;
  });
}

function assertShape(actual: readonly number[], inferred: Shape, sizes: Record<string, number>, what: string): void {
  const message = `${what}: runtime shape [${actual.join(', ')}], inferred [${inferred.join(', ')}]`;
  assert.equal(actual.length, inferred.length, message);
  const bound = new Map<string, number>(Object.entries(sizes));
  inferred.forEach((dim, axis) => {
    if (typeof dim === 'number') assert.equal(actual[axis], dim, message);
    else if (bound.has(dim)) assert.equal(actual[axis], bound.get(dim), message);
    else bound.set(dim, actual[axis]!);
  });
}

async function checkRun(opCase: OpCase, traced: TracedCase, dtype: FloatDType, sizes: Record<string, number>, runIndex: number): Promise<void> {
  const { session, inputs, output, wrt } = traced;
  const limits = { ...tolerances[dtype] };
  const scale = opCase.tolerance ?? 1;
  const random = seededRandom((opCase.seed ?? 20240611) + runIndex);
  const feeds: Record<string, HostTensor> = {};
  const references: Tensor[] = [];
  opCase.inputs.forEach((spec, i) => {
    const shape = concreteShape(spec.shape, sizes);
    const generate = spec.data ?? uniform();
    const tensor = hostTensor(inputs[i]!.dtype, shape, Array.from({ length: elementCount(shape) }, (_, index) => generate(random, index)));
    feeds[inputs[i]!.name] = tensor;
    references.push(new Tensor(numbersOf(tensor), shape));
  });
  const expected = opCase.reference?.(references);
  if (isFloat(output.dtype) && wrt.length) {
    const shape = concreteShape(output.shape, sizes, expected?.shape);
    feeds['cotangent'] = hostTensor(output.dtype, shape, Array.from({ length: elementCount(shape) }, () => uniform()(random, 0)));
  }
  const results = await session.run(feeds);
  const actual = results['output']!;
  assertShape(actual.shape, output.shape, sizes, 'output');
  if (expected) {
    assert.deepEqual(actual.shape, expected.shape, 'output shape differs from the reference');
    assertClose(numbersOf(actual), expected.data, limits.forward * scale, 'forward');
  }
  if (!results['loss']) return;
  const lossAt = async (name: string, perturbed: HostTensor): Promise<number> => Number((await session.run({ ...feeds, [name]: perturbed }))['loss']!.data[0]);
  for (const [k, inputIndex] of wrt.entries()) {
    const name = inputs[inputIndex]!.name;
    const base = feeds[name]!;
    const gradient = results[`grad${k}`]!;
    assert.deepEqual(gradient.shape, base.shape, `gradient of input ${inputIndex} has the wrong shape`);
    const analytic = numbersOf(gradient);
    const count = base.data.length;
    const elements = count <= finiteDifferenceLimit ? [...Array(count).keys()] : Array.from({ length: finiteDifferenceLimit }, (_, j) => Math.floor((j * (count - 1)) / (finiteDifferenceLimit - 1)));
    for (const element of elements) {
      const plus = base.data.slice() as Float64Array;
      const minus = base.data.slice() as Float64Array;
      plus[element] = plus[element]! + limits.step;
      minus[element] = minus[element]! - limits.step;
      // In float32 the perturbed values are rounded; divide by the step actually taken.
      const step = plus[element]! - minus[element]!;
      const difference = ((await lossAt(name, { ...base, data: plus })) - (await lossAt(name, { ...base, data: minus }))) / step;
      if (!(Math.abs(analytic[element]! - difference) <= limits.gradient * scale * Math.max(1, Math.abs(difference)))) {
        assert.fail(`gradient of input ${inputIndex} at element ${element}: analytic ${analytic[element]}, finite difference ${difference}`);
      }
    }
  }
}

/** Runs one case; returns the float type it ran in. */
export async function checkOp(opCase: OpCase): Promise<FloatDType> {
  for (const dtype of ['float64', 'float32'] as const) {
    let traced: TracedCase;
    try {
      traced = await traceCase(opCase, dtype);
    } catch (error) {
      if (dtype === 'float64' && missingKernel.test(String(error))) continue;
      throw error;
    }
    try {
      const runs = opCase.sizes ?? [{}];
      for (const [runIndex, sizes] of runs.entries()) await checkRun(opCase, traced, dtype, sizes, runIndex);
    } finally {
      await traced.session.release();
    }
    return dtype;
  }
  throw new Error('unreachable: float32 either ran or threw');
}

/** Registers a node:test case for `opCase`; the diagnostic line says which float type it ran in. */
export function opTest(name: string, opCase: OpCase): void {
  test(name, async (context: TestContext) => {
    context.diagnostic(await checkOp(opCase));
  });
}
