// Modules: parameters are found by walking a module's own properties, so the property path of a
// parameter is its checkpoint key (`layers.0.attn.q_proj.weight`), as in PyTorch state dicts.
// A module's forward pass takes a TraceContext that maps each Parameter to a traced Value.
import { type DType, type HostTensor, elementCount, hostTensor } from '../onnx/dtype.js';
import type { Graph, Value } from '../graph/graph.js';
import type { BlockQuantization } from '../graph/ops/nn.js';
import { formatShape } from '../graph/graph.js';

export class Parameter {
  /** Frozen parameters are fed to training graphs but never differentiated or updated. */
  trainable = true;

  constructor(public data: HostTensor) {}

  get shape(): number[] {
    return this.data.shape;
  }

  get dtype(): DType {
    return this.data.dtype;
  }
}

/** A linear layer's weight held as MatMulNBits blocks (nn/quantize.ts): its traced parts and layout. */
export interface QuantizedLinearValues {
  codes: Value;
  scales: Value;
  zeroPoints: Value;
  layout: BlockQuantization;
}

export interface TraceContext {
  graph: Graph;
  /** The traced value of a parameter (a graph input in training graphs, an initializer in inference). */
  value(parameter: Parameter): Value;
  /** Inference graphs with weight-only quantization: a linear weight's blocks; undefined for a weight kept in float. */
  quantized?(parameter: Parameter): QuantizedLinearValues | undefined;
  /** int64 scalar for dropout masks; absent in inference graphs, where dropout is the identity. */
  dropoutSeed?: Value;
}

export abstract class Module {
  /** Parameters (and sub-modules' parameters) keyed by property path. */
  namedParameters(prefix = ''): [string, Parameter][] {
    const found: [string, Parameter][] = [];
    const visit = (value: unknown, path: string): void => {
      if (value instanceof Parameter) found.push([path, value]);
      else if (value instanceof Module) found.push(...value.namedParameters(`${path}.`));
      else if (Array.isArray(value)) value.forEach((item, index) => visit(item, `${path}.${index}`));
    };
    for (const [name, value] of Object.entries(this)) visit(value, `${prefix}${name}`);
    return found;
  }

  /**
   * Checkpoint keys this model may find in its file and leave unread, each exact or, ending in
   * ".", everything under it: derived buffers, a tied head stored twice, parts it was built
   * without. Any other tensor it does not read makes a strict load fail.
   */
  unreadCheckpointKeys(): readonly string[] {
    return [];
  }

  /** The parameters as host tensors under their checkpoint keys (shared, not copied). */
  stateDict(): Record<string, HostTensor> {
    return Object.fromEntries(this.namedParameters().map(([key, parameter]) => [key, parameter.data]));
  }

  /**
   * Replaces parameter data from `tensors`. Strict by default: missing and unexpected keys are
   * listed by name; a shape mismatch names the key and both shapes. Floats are converted to the
   * parameter's type (e.g. float16 checkpoints into float32 models).
   */
  loadStateDict(tensors: Readonly<Record<string, HostTensor>>, options: { strict?: boolean } = {}): void {
    const strict = options.strict ?? true;
    const parameters = new Map(this.namedParameters());
    const missing = [...parameters.keys()].filter((key) => !(key in tensors));
    const unexpected = Object.keys(tensors).filter((key) => !parameters.has(key));
    if (strict && (missing.length || unexpected.length)) {
      const parts = [];
      if (missing.length) parts.push(`missing keys: ${missing.join(', ')}`);
      if (unexpected.length) parts.push(`unexpected keys: ${unexpected.join(', ')}`);
      throw new Error(`state dict does not match the model (${parts.join('; ')})`);
    }
    for (const [key, tensor] of Object.entries(tensors)) {
      const parameter = parameters.get(key);
      if (!parameter) continue;
      if (tensor.shape.join() !== parameter.shape.join()) {
        throw new Error(`${key}: checkpoint shape ${formatShape(tensor.shape)} does not match model shape ${formatShape(parameter.shape)}`);
      }
      parameter.data = convertTensor(tensor, parameter.dtype);
    }
  }

  parameterCount(): number {
    return this.namedParameters().reduce((count, [, parameter]) => count + elementCount(parameter.shape), 0);
  }
}

function convertTensor(tensor: HostTensor, dtype: DType): HostTensor {
  if (tensor.dtype === dtype) return tensor;
  if (dtype === 'float32' || dtype === 'float64') {
    const source = tensor.data;
    if (source instanceof BigInt64Array) throw new Error(`cannot load ${tensor.dtype} into a ${dtype} parameter`);
    if (tensor.dtype === 'float16') throw new Error('float16 tensors must be read as float32 (asFloat32) before loading');
    const data = dtype === 'float32' ? Float32Array.from(source as ArrayLike<number>) : Float64Array.from(source as ArrayLike<number>);
    return hostTensor(dtype, tensor.shape, data as never);
  }
  throw new Error(`cannot load ${tensor.dtype} into a ${dtype} parameter`);
}

/** Binds every parameter of `root` to a graph input named by its key (training graphs). */
export function inputBindings(graph: Graph, root: Module, dropoutSeed?: Value): TraceContext {
  const values = new Map<Parameter, Value>();
  for (const [key, parameter] of root.namedParameters()) values.set(parameter, graph.input(key, parameter.dtype, parameter.shape));
  return contextFromMap(graph, values, dropoutSeed);
}

/** Binds parameters to values created elsewhere (e.g. the inputs of a TrainingStep graph). */
export function contextFromValues(graph: Graph, root: Module, valuesByKey: Readonly<Record<string, Value>>, dropoutSeed?: Value): TraceContext {
  const values = new Map<Parameter, Value>();
  for (const [key, parameter] of root.namedParameters()) {
    const value = valuesByKey[key];
    if (!value) throw new Error(`no traced value for parameter ${key}`);
    values.set(parameter, value);
  }
  return contextFromMap(graph, values, dropoutSeed);
}

/** Embeds every parameter as a constant initializer (inference graphs with weights in the model). */
export function constantBindings(graph: Graph, root: Module): TraceContext {
  const values = new Map<Parameter, Value>();
  for (const [key, parameter] of root.namedParameters()) values.set(parameter, graph.constant(parameter.data, key));
  return contextFromMap(graph, values);
}

function contextFromMap(graph: Graph, values: Map<Parameter, Value>, dropoutSeed?: Value): TraceContext {
  return {
    graph,
    dropoutSeed,
    value(parameter) {
      const value = values.get(parameter);
      if (!value) throw new Error(`parameter of shape ${formatShape(parameter.shape)} is not bound in this graph`);
      return value;
    },
  };
}
