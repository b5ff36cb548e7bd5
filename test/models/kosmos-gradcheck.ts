// Finite-difference gradient checks for the Kosmos-G MLLM and AlignerNet tests: a training graph
// (parameters bound as inputs) computes a scalar loss and its reverse-mode gradients, compared with
// central differences of the loss from the same session. Both models use exact GELU, and
// onnxruntime's CPU provider has no double Erf/Gelu kernel, so the graphs are float32: each tensor
// is checked along a random unit direction over all its elements (a derivative well above float32
// rounding noise) and at a few single elements.
import { Graph, type Value } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { GraphSession } from '../../src/graph/session.js';
import { type Module, type TraceContext, inputBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import type { Random } from '../../src/util/random.js';

export interface GradientCheck {
  model: Module;
  /** Data inputs by graph input name. */
  inputs: Record<string, HostTensor>;
  loss: (context: TraceContext, inputs: Record<string, Value>) => Value;
  /** Parameter keys and float input names to differentiate. */
  tensors: string[];
  elementsPerTensor: number;
  random: Random;
  step?: number;
}

export interface CheckedElement {
  tensor: string;
  /** Element index, or -1 for the directional derivative over the whole tensor. */
  index: number;
  analytic: number;
  numeric: number;
}

type FloatData = Float32Array | Float64Array;

function floatData(tensor: HostTensor, name: string): FloatData {
  if (!(tensor.data instanceof Float32Array || tensor.data instanceof Float64Array)) throw new Error(`${name} is ${tensor.dtype}, not float`);
  return tensor.data;
}

/** Runs the check and returns every compared derivative (the caller asserts the tolerance). */
export async function finiteDifferenceCheck(check: GradientCheck): Promise<CheckedElement[]> {
  const graph = new Graph('gradient_check');
  const context = inputBindings(graph, check.model);
  const inputValues = Object.fromEntries(Object.entries(check.inputs).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
  const loss = check.loss(context, inputValues);
  const parameters = new Map(check.model.namedParameters());
  const wrt = check.tensors.map((name) => {
    const parameter = parameters.get(name);
    const value = parameter ? context.value(parameter) : inputValues[name];
    if (!value) throw new Error(`no parameter or input ${name}`);
    return value;
  });
  const gradients = grad(loss, wrt);
  const outputs: Record<string, Value> = { loss };
  check.tensors.forEach((name, i) => (outputs[`grad/${name}`] = gradients[i]!));
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { threads: 1 });
  try {
    const feeds: Record<string, HostTensor> = { ...check.inputs };
    for (const [key, parameter] of parameters) feeds[key] = parameter.data;
    const analytic = await session.run(feeds);
    const step = check.step ?? 1e-2;
    /** Central difference of the loss along `direction` (sparse: index → weight) in tensor `name`. */
    const derivativeAlong = async (name: string, direction: Map<number, number>): Promise<number> => {
      const original = feeds[name]!;
      const lossAt = async (delta: number) => {
        const data = floatData(original, name).slice();
        for (const [index, weight] of direction) data[index]! += delta * weight;
        return Number((await session.run({ ...feeds, [name]: { ...original, data } as HostTensor }))['loss']!.data[0]);
      };
      return ((await lossAt(step)) - (await lossAt(-step))) / (2 * step);
    };
    const checked: CheckedElement[] = [];
    for (const name of check.tensors) {
      const gradient = floatData(analytic[`grad/${name}`]!, `grad/${name}`);
      // A random ±1/√n direction has unit length: the step moves the loss as much as a one-element step.
      const direction = new Map(Array.from(gradient, (_, i) => [i, (check.random.next() < 0.5 ? -1 : 1) / Math.sqrt(gradient.length)] as [number, number]));
      const directional = Array.from(direction).reduce((total, [i, weight]) => total + weight * gradient[i]!, 0);
      checked.push({ tensor: name, index: -1, analytic: directional, numeric: await derivativeAlong(name, direction) });
      for (let n = 0; n < check.elementsPerTensor; n++) {
        const index = check.random.int(gradient.length);
        checked.push({ tensor: name, index, analytic: gradient[index]!, numeric: await derivativeAlong(name, new Map([[index, 1]])) });
      }
    }
    return checked;
  } finally {
    await session.release();
  }
}

/** Largest |numeric − analytic| / max(1, |analytic|) over the checked derivatives. */
export function worstRelativeError(checked: readonly CheckedElement[]): number {
  return Math.max(...checked.map(({ analytic, numeric }) => Math.abs(numeric - analytic) / Math.max(1, Math.abs(analytic))));
}
