// An inference graph whose parameters are graph inputs rather than constants: compiled once, it
// runs with whatever parameter values are fed (the live values of a training run for sample grids,
// or a loaded model's for evaluation), so no recompilation is needed as the weights change.
import { Graph, type Value } from '../graph/graph.js';
import { GraphSession, type SessionOptions } from '../graph/session.js';
import type { HostTensor } from '../onnx/dtype.js';
import { encodeModel } from '../onnx/proto.js';
import { inputBindings, type Module, type TraceContext } from '../nn/module.js';
import type { TensorSpec } from '../graph/train-step.js';

export class ForwardSession {
  private constructor(
    private readonly session: GraphSession,
    private readonly parameterKeys: readonly string[],
  ) {}

  /** Traces `build` over `inputs` with `root`'s parameters bound to graph inputs named by their keys. */
  static async create(
    root: Module,
    inputs: Readonly<Record<string, TensorSpec>>,
    build: (context: TraceContext, inputs: Readonly<Record<string, Value>>) => Record<string, Value>,
    options: SessionOptions = {},
  ): Promise<ForwardSession> {
    const graph = new Graph('forward');
    const context = inputBindings(graph, root);
    const values = Object.fromEntries(Object.entries(inputs).map(([name, spec]) => [name, graph.input(name, spec.dtype, spec.shape)]));
    const outputs = build(context, values);
    const model = encodeModel(graph.toModel(outputs, { keepInputs: graph.inputs }));
    const session = await GraphSession.create(model, options);
    return new ForwardSession(session, root.namedParameters().map(([key]) => key));
  }

  /** Outputs for `feeds` with the parameter values `parameters` (every key of the module). */
  async run(parameters: Readonly<Record<string, HostTensor>>, feeds: Readonly<Record<string, HostTensor>>): Promise<Record<string, HostTensor>> {
    const all: Record<string, HostTensor> = { ...feeds };
    for (const key of this.parameterKeys) {
      const tensor = parameters[key];
      if (!tensor) throw new Error(`no value for parameter ${key}`);
      all[key] = tensor;
    }
    return this.session.run(all);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
