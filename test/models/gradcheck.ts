// Finite-difference gradient checks of whole models in a training graph (parameters bound as graph
// inputs). The scalar loss is either given by the test or is the contraction of chosen outputs with
// fixed random cotangents. For each checked tensor, central differences of the same compiled
// session are compared with the reverse-mode gradient along a random unit direction over the whole
// tensor (every element takes part, which keeps float32 checks well above rounding noise) and at a
// few single elements, spread evenly so that a check is the same on every run.
import assert from 'node:assert/strict';
import { Graph, type Value } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { add, mul, sum } from '../../src/graph/ops/elementwise.js';
import { type Module, type TraceContext, inputBindings } from '../../src/nn/module.js';
import { type HostTensor, elementCount } from '../../src/onnx/dtype.js';
import { compile, seededRandom } from '../graph/harness.js';

type Trace<T> = (context: TraceContext, inputs: Record<string, Value>) => T;

/** The scalar loss itself, or outputs whose contraction with random cotangents is the loss. */
export type LossDefinition = { loss: Trace<Value>; outputs?: never } | { outputs: Trace<Value[]>; loss?: never };

export type GradientCheck = LossDefinition & {
  model: Module;
  /** Data inputs by graph input name. */
  inputs: Record<string, HostTensor>;
  /** Parameter keys and float input names to differentiate. */
  tensors: string[];
  /** Single elements checked per tensor besides the directional derivative. */
  elementsPerTensor: number;
  step: number;
  /** Allowed |numeric − analytic| / max(1, |analytic|). */
  tolerance: number;
};

export interface TensorFigures {
  /** ⟨gradient, direction⟩ and its central difference. */
  directional: { analytic: number; numeric: number };
  /** Largest relative error over the directional and the single-element derivatives. */
  worstError: number;
  /** Derivatives compared: the directional one and the single elements. */
  derivatives: number;
}

/** Below this every gradient element counts as rounding noise around zero. */
const vanishingGradient = 1e-6;

function floatArray(tensor: HostTensor, name: string): Float32Array | Float64Array {
  if (!(tensor.data instanceof Float32Array || tensor.data instanceof Float64Array)) throw new Error(`${name} is ${tensor.dtype}, not float`);
  return tensor.data;
}

function contractWithRandomCotangents(graph: Graph, outputs: Value[], random: () => number): Value {
  const contributions = outputs.map((output) => {
    const shape = output.shape as number[];
    const data = output.dtype === 'float64' ? new Float64Array(elementCount(shape)) : new Float32Array(elementCount(shape));
    data.forEach((_, i) => (data[i] = 2 * random() - 1));
    return sum(mul(output, graph.constant({ dtype: output.dtype, shape, data } as HostTensor, 'cotangent')));
  });
  if (!contributions.length) throw new Error('gradient check without outputs');
  return contributions.reduce((total, contribution) => add(total, contribution));
}

const relativeError = (numeric: number, analytic: number) => Math.abs(numeric - analytic) / Math.max(1, Math.abs(analytic));

/** Asserts every compared derivative within the tolerance and every gradient non-zero; returns figures per tensor. */
export async function checkGradients(check: GradientCheck): Promise<Record<string, TensorFigures>> {
  const graph = new Graph('gradient_check');
  const context = inputBindings(graph, check.model);
  const inputValues = Object.fromEntries(Object.entries(check.inputs).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
  const random = seededRandom(23);
  const loss = check.loss ? check.loss(context, inputValues) : contractWithRandomCotangents(graph, check.outputs(context, inputValues), random);
  const parameters = new Map(check.model.namedParameters());
  const wrt = check.tensors.map((name) => {
    const parameter = parameters.get(name);
    const value = parameter ? context.value(parameter) : inputValues[name];
    if (!value) throw new Error(`no parameter or input ${name}`);
    return value;
  });
  const outputs: Record<string, Value> = { loss };
  grad(loss, wrt).forEach((gradient, index) => (outputs[`gradient_${index}`] = gradient));
  const session = await compile(graph, outputs);
  try {
    const feeds: Record<string, HostTensor> = { ...check.inputs };
    for (const [key, parameter] of parameters) feeds[key] = parameter.data;
    const analytic = await session.run(feeds);
    const figures: Record<string, TensorFigures> = {};
    for (const [index, name] of check.tensors.entries()) {
      const gradient = floatArray(analytic[`gradient_${index}`]!, `gradient of ${name}`);
      // A tensor the loss does not depend on would pass every comparison vacuously.
      assert.ok(
        gradient.some((value) => Math.abs(value) > vanishingGradient),
        `${name}: the gradient is zero (the loss does not depend on this tensor)`,
      );
      const original = floatArray(feeds[name]!, name);
      /** Central difference of the loss along `direction` (index → weight) in this tensor. */
      const derivativeAlong = async (direction: ReadonlyMap<number, number>): Promise<number> => {
        const lossAt = async (delta: number) => {
          const data = original.slice();
          for (const [element, weight] of direction) data[element]! += delta * weight;
          return Number((await session.run({ ...feeds, [name]: { ...feeds[name]!, data } as HostTensor }))['loss']!.data[0]);
        };
        return ((await lossAt(check.step)) - (await lossAt(-check.step))) / (2 * check.step);
      };
      // A random ±1/√n direction has unit length: the step moves the loss about as much as a one-element step.
      const direction = new Map(Array.from(original, (_, element) => [element, (random() < 0.5 ? -1 : 1) / Math.sqrt(original.length)] as const));
      const directional = { analytic: Array.from(direction).reduce((total, [element, weight]) => total + weight * gradient[element]!, 0), numeric: await derivativeAlong(direction) };
      let worstError = relativeError(directional.numeric, directional.analytic);
      assert.ok(worstError <= check.tolerance, `${name}: directional derivative ${directional.analytic}, finite differences ${directional.numeric}`);
      const elements = Math.min(check.elementsPerTensor, original.length);
      for (let sample = 0; sample < elements; sample++) {
        const element = Math.floor(((sample + 0.5) * original.length) / elements);
        const numeric = await derivativeAlong(new Map([[element, 1]]));
        const error = relativeError(numeric, gradient[element]!);
        assert.ok(error <= check.tolerance, `${name}[${element}]: analytic ${gradient[element]}, finite differences ${numeric}`);
        worstError = Math.max(worstError, error);
      }
      figures[name] = { directional, worstError, derivatives: 1 + elements };
    }
    return figures;
  } finally {
    await session.release();
  }
}

/** One diagnostic line per checked tensor. */
export function describeFigures(figures: Record<string, TensorFigures>, significantDigits = 6): string[] {
  return Object.entries(figures).map(
    ([name, { directional, worstError, derivatives }]) =>
      `${name}: directional ${directional.analytic.toPrecision(significantDigits)} vs ${directional.numeric.toPrecision(significantDigits)}, worst relative error ${worstError.toExponential(1)} over ${derivatives} derivatives`,
  );
}
