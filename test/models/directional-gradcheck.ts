// Finite-difference gradient checks of whole models in a training graph (parameters bound as graph
// inputs). The loss is the contraction of the outputs with fixed random cotangents. For each checked
// tensor two things are compared with central differences of the same compiled session: the
// directional derivative along a random unit direction over the whole tensor (every element takes
// part, which keeps float32 checks well above rounding noise) and a few single elements.
import assert from 'node:assert/strict';
import { Graph, type Value } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { GraphSession } from '../../src/graph/session.js';
import { add, mul, sum } from '../../src/graph/ops/elementwise.js';
import { type Module, type TraceContext, inputBindings } from '../../src/nn/module.js';
import { type HostTensor, elementCount } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { seededRandom } from '../graph/harness.js';

export interface DirectionalCheck {
  model: Module;
  /** Data inputs by graph input name. */
  inputs: Record<string, HostTensor>;
  /** The outputs whose contraction with random cotangents is the loss. */
  outputs: (context: TraceContext, inputs: Record<string, Value>) => Value[];
  /** Parameter keys and input names to differentiate. */
  tensors: string[];
  elementsPerTensor: number;
  step: number;
  /** Allowed |numeric − analytic| / max(1, |analytic|). */
  tolerance: number;
}

export interface CheckFigures {
  /** ⟨gradient, direction⟩ and its central difference. */
  directional: { analytic: number; numeric: number };
  /** Largest relative error over the directional and the single-element checks. */
  worstError: number;
}

function floatArray(tensor: HostTensor): Float32Array | Float64Array {
  if (!(tensor.data instanceof Float32Array || tensor.data instanceof Float64Array)) throw new Error(`${tensor.dtype} tensor is not float`);
  return tensor.data;
}

export async function checkDirectionalGradients(check: DirectionalCheck): Promise<Record<string, CheckFigures>> {
  const graph = new Graph('gradient_check');
  const context = inputBindings(graph, check.model);
  const inputValues = Object.fromEntries(Object.entries(check.inputs).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
  const random = seededRandom(23);
  let loss: Value | null = null;
  for (const output of check.outputs(context, inputValues)) {
    const count = elementCount(output.shape as number[]);
    const data = output.dtype === 'float64' ? new Float64Array(count) : new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = 2 * random() - 1;
    const contribution = sum(mul(output, graph.constant({ dtype: output.dtype, shape: output.shape as number[], data } as HostTensor, 'cotangent')));
    loss = loss ? add(loss, contribution) : contribution;
  }
  if (!loss) throw new Error('gradient check without outputs');
  const parameters = new Map(check.model.namedParameters());
  const checked = check.tensors.map((name) => {
    const parameter = parameters.get(name);
    const value = parameter ? context.value(parameter) : inputValues[name];
    if (!value) throw new Error(`no parameter or input ${name}`);
    return { name, value };
  });
  const outputs: Record<string, Value> = { loss };
  grad(loss, checked.map(({ value }) => value)).forEach((gradient, index) => (outputs[`gradient_${index}`] = gradient));
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { threads: 1 });
  try {
    const feeds: Record<string, HostTensor> = {};
    for (const [name, tensor] of Object.entries(check.inputs)) feeds[name] = { ...tensor, data: floatArray(tensor).slice() } as HostTensor;
    for (const [key, parameter] of parameters) feeds[key] = { ...parameter.data, data: floatArray(parameter.data).slice() } as HostTensor;
    const analytic = await session.run(feeds);
    const lossAt = async () => Number((await session.run(feeds))['loss']!.data[0]);
    const relativeError = (numeric: number, exact: number) => Math.abs(numeric - exact) / Math.max(1, Math.abs(exact));
    const figures: Record<string, CheckFigures> = {};
    for (const [index, { name }] of checked.entries()) {
      const data = floatArray(feeds[name]!);
      const gradient = floatArray(analytic[`gradient_${index}`]!);
      const original = data.slice();
      // A random ±1/√n direction: unit length, so the step changes the loss like a step of one element.
      const direction = Float64Array.from(data, () => (random() < 0.5 ? -1 : 1) / Math.sqrt(data.length));
      const lossAlong = async (scale: number) => {
        data.forEach((_, i) => (data[i] = original[i]! + scale * direction[i]!));
        const value = await lossAt();
        data.set(original);
        return value;
      };
      const numeric = ((await lossAlong(check.step)) - (await lossAlong(-check.step))) / (2 * check.step);
      const exact = direction.reduce((total, d, i) => total + d * gradient[i]!, 0);
      assert.ok(Math.abs(exact) > 1e-6, `${name}: the loss does not depend on this tensor`);
      let worstError = relativeError(numeric, exact);
      assert.ok(worstError <= check.tolerance, `${name}: directional derivative ${exact}, finite differences ${numeric}`);
      const samples = Math.min(check.elementsPerTensor, data.length);
      for (let sample = 0; sample < samples; sample++) {
        const element = Math.floor(((sample + 0.5) * data.length) / samples);
        data[element] = original[element]! + check.step;
        const plus = await lossAt();
        data[element] = original[element]! - check.step;
        const minus = await lossAt();
        data[element] = original[element]!;
        const elementNumeric = (plus - minus) / (2 * check.step);
        const error = relativeError(elementNumeric, gradient[element]!);
        assert.ok(error <= check.tolerance, `${name}[${element}]: analytic ${gradient[element]}, finite differences ${elementNumeric}`);
        worstError = Math.max(worstError, error);
      }
      figures[name] = { directional: { analytic: exact, numeric }, worstError };
    }
    return figures;
  } finally {
    await session.release();
  }
}
