// The traced graph: symbolic Values flow through op functions (ops/*.ts) that append ONNX nodes
// with inferred shapes. A Graph becomes an ONNX ModelProto with `toModel`, pruned to what the
// requested outputs need.
import { type DType, type HostTensor, bytesPerElement, elementCount, float32ToFloat16Bits } from '../onnx/dtype.js';
import type { AttributeValue, ExternalDataLocation, ModelMessage, NodeMessage, TensorMessage } from '../onnx/proto.js';

/** A dimension: a static size, or a named symbolic size fixed only when the graph runs. */
export type Dim = number | string;
export type Shape = readonly Dim[];

export const DEFAULT_OPSET = 21;

export interface Node {
  readonly opType: string;
  readonly domain: string;
  readonly name: string;
  /** `null` marks an omitted optional input. */
  readonly inputs: readonly (Value | null)[];
  readonly outputs: readonly Value[];
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

export class Value {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    /** The node that computes this value; null for graph inputs and initializers. */
    readonly producer: Node | null,
    /** Known contents when the value is a trace-time constant (used for constant folding). */
    readonly constant: HostTensor | null = null,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  /** Every dimension is a number. */
  get isStatic(): boolean {
    return this.shape.every((dim) => typeof dim === 'number');
  }

  /** The static size of dimension `axis` (negative counts from the end); throws if it is symbolic. */
  size(axis: number): number {
    const dim = this.shape[normalizeAxis(axis, this.rank)];
    if (typeof dim !== 'number') throw new Error(`${this.name}: dimension ${axis} is symbolic (${dim})`);
    return dim;
  }

  toString(): string {
    return `${this.name}: ${this.dtype}[${this.shape.join(', ')}]`;
  }
}

export function normalizeAxis(axis: number, rank: number): number {
  const normalized = axis < 0 ? axis + rank : axis;
  if (normalized < 0 || normalized >= rank) throw new Error(`axis ${axis} is out of range for rank ${rank}`);
  return normalized;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** NumPy broadcasting of two shapes; symbolic dims broadcast when equal or against 1. */
export function broadcastShapes(a: Shape, b: Shape): Dim[] {
  const rank = Math.max(a.length, b.length);
  const result: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)]!;
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)]!;
    if (da === db || db === 1) result.push(da);
    else if (da === 1) result.push(db);
    else throw new Error(`shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast`);
  }
  return result;
}

interface Initializer {
  value: Value;
  raw?: Uint8Array;
  external?: ExternalDataLocation;
}

export interface OutputSpec {
  dtype: DType;
  shape: Shape;
  constant?: HostTensor | null;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly opsets: Record<string, number> = { '': DEFAULT_OPSET };
  /** Nodes autodiff must not differentiate through (see `stopGradient`). */
  readonly stopGradientNodes = new Set<Node>();
  private readonly initializers = new Map<Value, Initializer>();
  private readonly names = new Set<string>();
  private readonly scopes: string[] = [];
  private readonly scalarConstants = new Map<string, Value>();

  constructor(readonly name = 'kosmos_g') {}

  /** Runs `build` with `name` appended to the node-name prefix (module paths: `unet.down_blocks.0`). */
  scope<T>(name: string, build: () => T): T {
    this.scopes.push(name);
    try {
      return build();
    } finally {
      this.scopes.pop();
    }
  }

  get currentScope(): string {
    return this.scopes.join('.');
  }

  private uniqueName(base: string): string {
    let name = base;
    for (let suffix = 1; this.names.has(name); suffix++) name = `${base}_${suffix}`;
    this.names.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Shape): Value {
    if (this.names.has(name)) throw new Error(`graph input name ${name} is already used`);
    const value = new Value(this, this.uniqueName(name), dtype, [...shape], null);
    this.inputs.push(value);
    return value;
  }

  /** A constant initializer holding `tensor` (inline in the model). */
  constant(tensor: HostTensor, nameHint = 'const'): Value {
    const scoped = this.currentScope ? `${this.currentScope}/${nameHint}` : nameHint;
    const value = new Value(this, this.uniqueName(scoped), tensor.dtype, [...tensor.shape], null, tensor);
    const data = tensor.data;
    this.initializers.set(value, { value, raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return value;
  }

  /** A scalar constant, shared by every use of the same value and type. */
  scalar(value: number, dtype: DType): Value {
    const key = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
    const existing = this.scalarConstants.get(key);
    if (existing) return existing;
    const tensor = scalarTensor(value, dtype);
    const created = new Value(this, this.uniqueName(`scalar_${dtype}_${this.scalarConstants.size}`), dtype, [], null, tensor);
    const data = tensor.data;
    this.initializers.set(created, { value: created, raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    this.scalarConstants.set(key, created);
    return created;
  }

  /** A weight stored outside the model, e.g. a tensor inside a safetensors file, read by byte offset. */
  externalInitializer(name: string, dtype: DType, shape: number[], location: ExternalDataLocation): Value {
    const expected = elementCount(shape) * bytesPerElement[dtype];
    if (location.length !== expected) {
      throw new Error(`external initializer ${name}: ${location.length} bytes, ${dtype}${formatShape(shape)} needs ${expected}`);
    }
    const value = new Value(this, this.uniqueName(name), dtype, [...shape], null);
    this.initializers.set(value, { value, external: location });
    return value;
  }

  isInitializer(value: Value): boolean {
    return this.initializers.has(value);
  }

  /** Appends one node; op functions call this after inferring their output shapes. */
  addNode(
    opType: string,
    inputs: readonly (Value | null)[],
    outputs: readonly OutputSpec[],
    attributes: Record<string, AttributeValue> = {},
    domain = '',
  ): Value[] {
    for (const input of inputs) {
      if (input && input.graph !== this) throw new Error(`${opType}: input ${input.name} belongs to another graph`);
    }
    const prefix = this.currentScope ? `${this.currentScope}/` : '';
    const nodeName = this.uniqueName(`${prefix}${opType}`);
    const outputValues: Value[] = [];
    const node: Node = { opType, domain, name: nodeName, inputs, outputs: outputValues, attributes };
    outputs.forEach((spec, index) => {
      const outputName = this.uniqueName(outputs.length === 1 ? `${nodeName}:0` : `${nodeName}:${index}`);
      outputValues.push(new Value(this, outputName, spec.dtype, [...spec.shape], node, spec.constant ?? null));
    });
    this.nodes.push(node);
    return outputValues;
  }

  /**
   * The ONNX model computing `outputs` (graph output name → value). Only nodes, inputs and
   * initializers the outputs depend on are kept; `keepInputs` lists inputs kept even if unused.
   */
  toModel(outputs: Readonly<Record<string, Value>>, options: { keepInputs?: readonly Value[] } = {}): ModelMessage {
    const finalNodes: NodeMessage[] = [];
    const outputInfos = [];
    const renames: NodeMessage[] = [];
    const needed = new Set<Value>();
    for (const [outputName, value] of Object.entries(outputs)) {
      if (value.graph !== this) throw new Error(`output ${outputName} belongs to another graph`);
      needed.add(value);
      outputInfos.push({ name: outputName, dtype: value.dtype, dims: value.shape });
      if (outputName === value.name) continue;
      // Graph outputs get the caller's names through Identity nodes; such a name must be new.
      if (this.names.has(outputName)) throw new Error(`output name ${outputName} is already the name of a value in the graph`);
      renames.push({ opType: 'Identity', name: `output/${outputName}`, inputs: [value.name], outputs: [outputName], attributes: {} });
    }
    const keptNodes: Node[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i]!;
      if (!node.outputs.some((output) => needed.has(output))) continue;
      keptNodes.push(node);
      for (const input of node.inputs) if (input) needed.add(input);
    }
    keptNodes.reverse();
    for (const node of keptNodes) {
      finalNodes.push({
        opType: node.opType,
        domain: node.domain,
        name: node.name,
        // An output no later node reads is still written; ONNX allows unused outputs.
        inputs: node.inputs.map((input) => input?.name ?? ''),
        outputs: node.outputs.map((output) => output.name),
        attributes: node.attributes,
      });
    }
    finalNodes.push(...renames);
    const keepInputs = new Set(options.keepInputs ?? []);
    const initializers: TensorMessage[] = [];
    for (const [value, init] of this.initializers) {
      if (!needed.has(value)) continue;
      const dims = value.shape as number[];
      initializers.push({ name: value.name, dtype: value.dtype, dims, raw: init.raw, external: init.external });
    }
    const usesMicrosoft = keptNodes.some((node) => node.domain === 'com.microsoft');
    const opsets: Record<string, number> = { '': this.opsets['']! };
    if (usesMicrosoft) opsets['com.microsoft'] = 1;
    return {
      graph: {
        name: this.name,
        nodes: finalNodes,
        inputs: this.inputs
          .filter((input) => needed.has(input) || keepInputs.has(input))
          .map((input) => ({ name: input.name, dtype: input.dtype, dims: input.shape })),
        outputs: outputInfos,
        initializers,
      },
      opsets,
    };
  }
}

export function scalarTensor(value: number, dtype: DType): HostTensor {
  switch (dtype) {
    case 'float32':
      return { dtype, shape: [], data: Float32Array.of(value) };
    case 'float64':
      return { dtype, shape: [], data: Float64Array.of(value) };
    case 'int64':
      return { dtype, shape: [], data: BigInt64Array.of(BigInt(value)) };
    case 'int32':
      return { dtype, shape: [], data: Int32Array.of(value) };
    case 'bool':
      return { dtype, shape: [], data: Uint8Array.of(value ? 1 : 0) };
    case 'uint8':
      return { dtype, shape: [], data: Uint8Array.of(value) };
    case 'int8':
      return { dtype, shape: [], data: Int8Array.of(value) };
    case 'float16':
      return { dtype, shape: [], data: Uint16Array.of(float32ToFloat16Bits(value)) };
    case 'bfloat16':
      throw new Error('bfloat16 values can only be cast; make the scalar float32');
  }
}
