// Finite-difference gradient checks for whole models: parameters are bound as graph inputs (a
// training graph), the outputs are contracted with fixed random cotangents into a scalar loss, and
// the reverse-mode gradient of chosen parameters and inputs is compared with central differences
// of the same compiled session at a few sampled elements.
import assert from 'node:assert/strict';
import { Graph, type Value } from '../../src/graph/graph.js';
import { grad } from '../../src/graph/autodiff.js';
import { GraphSession } from '../../src/graph/session.js';
import { add, mul, sum } from '../../src/graph/ops/elementwise.js';
import { type Module, type TraceContext, inputBindings } from '../../src/nn/module.js';
import { type HostTensor, elementCount } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { seededRandom } from '../graph/harness.js';

export interface GradientCheck {
  model: Module;
  /** Data inputs by graph input name; float ones listed in `inputsToCheck` are differentiated. */
  inputs: Record<string, HostTensor>;
  /** The outputs whose contraction with random cotangents is the loss. */
  outputs: (context: TraceContext, inputs: Record<string, Value>) => Value[];
  parametersToCheck: string[];
  inputsToCheck?: string[];
  /** Elements sampled per checked tensor. */
  samples?: number;
  step: number;
  /** Allowed |numeric − analytic| / max(1, |analytic|). */
  tolerance: number;
}

export interface GradientReport {
  /** Largest relative error per checked tensor. */
  errors: Record<string, number>;
  checkedElements: number;
}

function floatArray(tensor: HostTensor): Float32Array | Float64Array {
  if (!(tensor.data instanceof Float32Array || tensor.data instanceof Float64Array)) throw new Error(`${tensor.dtype} tensor is not float`);
  return tensor.data;
}

export async function checkGradients(check: GradientCheck): Promise<GradientReport> {
  const graph = new Graph('gradient_check');
  const context = inputBindings(graph, check.model);
  const inputValues = Object.fromEntries(Object.entries(check.inputs).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
  const random = seededRandom(11);
  let loss: Value | null = null;
  for (const output of check.outputs(context, inputValues)) {
    const count = elementCount(output.shape as number[]);
    const data = output.dtype === 'float64' ? new Float64Array(count) : new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = 2 * random() - 1;
    const cotangent = graph.constant({ dtype: output.dtype, shape: output.shape as number[], data } as HostTensor, 'cotangent');
    const contribution = sum(mul(output, cotangent));
    loss = loss ? add(loss, contribution) : contribution;
  }
  if (!loss) throw new Error('gradient check without outputs');
  const parameters = new Map(check.model.namedParameters());
  const checked = [
    ...check.parametersToCheck.map((key) => {
      const parameter = parameters.get(key);
      if (!parameter) throw new Error(`no parameter ${key}`);
      return { name: key, value: context.value(parameter) };
    }),
    ...(check.inputsToCheck ?? []).map((name) => ({ name, value: inputValues[name]! })),
  ];
  const gradients = grad(loss, checked.map(({ value }) => value));
  const outputs: Record<string, Value> = { loss };
  gradients.forEach((gradient, index) => (outputs[`gradient_${index}`] = gradient));
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { threads: 1 });
  try {
    const feeds: Record<string, HostTensor> = { ...check.inputs };
    for (const [key, parameter] of parameters) feeds[key] = { ...parameter.data, data: floatArray(parameter.data).slice() } as HostTensor;
    const analytic = await session.run(feeds);
    const lossAt = async () => Number((await session.run(feeds))['loss']!.data[0]);
    const errors: Record<string, number> = {};
    let checkedElements = 0;
    for (const [index, { name }] of checked.entries()) {
      const data = floatArray(feeds[name]!);
      const gradient = floatArray(analytic[`gradient_${index}`]!);
      const samples = Math.min(check.samples ?? 4, data.length);
      let worst = 0;
      let largest = 0;
      for (let sample = 0; sample < samples; sample++) {
        const element = Math.floor(((sample + 0.5) * data.length) / samples);
        const original = data[element]!;
        data[element] = original + check.step;
        const plus = await lossAt();
        data[element] = original - check.step;
        const minus = await lossAt();
        data[element] = original;
        const numeric = (plus - minus) / (2 * check.step);
        const error = Math.abs(numeric - gradient[element]!) / Math.max(1, Math.abs(gradient[element]!));
        worst = Math.max(worst, error);
        largest = Math.max(largest, Math.abs(numeric));
        checkedElements++;
        assert.ok(error <= check.tolerance, `${name}[${element}]: analytic ${gradient[element]}, finite differences ${numeric}`);
      }
      // A tensor the loss does not depend on would pass vacuously.
      assert.ok(largest > 1e-6, `${name}: the loss does not depend on the sampled elements`);
      errors[name] = worst;
    }
    return { errors, checkedElements };
  } finally {
    await session.release();
  }
}
