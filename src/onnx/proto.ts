// A minimal protobuf writer for the ONNX messages the project emits: ModelProto, GraphProto,
// NodeProto, AttributeProto, TensorProto (inline raw data or external data), ValueInfoProto.
// Field numbers are those of onnx/onnx.proto. Encoded messages are kept as lists of byte chunks so
// that nesting (tensor → graph → model) never copies large initializer payloads more than once.
import { type DType, onnxDataType } from './dtype.js';

/** Highest versions the shipped onnxruntime accepts (see runtime notes): opset 26, IR 13. */
export const MAX_OPSET = 26;
export const MAX_IR_VERSION = 13;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

const textEncoder = new TextEncoder();

export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private scratch = new Uint8Array(256);
  private scratchUsed = 0;
  private totalLength = 0;

  get length(): number {
    return this.totalLength + this.scratchUsed;
  }

  private reserve(bytes: number): void {
    if (this.scratchUsed + bytes <= this.scratch.length) return;
    this.flushScratch();
    if (bytes > this.scratch.length) this.scratch = new Uint8Array(bytes);
  }

  private flushScratch(): void {
    if (this.scratchUsed === 0) return;
    this.chunks.push(this.scratch.slice(0, this.scratchUsed));
    this.totalLength += this.scratchUsed;
    this.scratchUsed = 0;
  }

  private pushByte(byte: number): void {
    this.scratch[this.scratchUsed++] = byte;
  }

  /** Unsigned or negative integer as a varint (negatives use ten-byte two's complement). */
  varint(value: number | bigint): this {
    this.reserve(10);
    let remaining = BigInt.asUintN(64, BigInt(value));
    if (remaining < 0x80n) {
      this.pushByte(Number(remaining));
      return this;
    }
    while (remaining >= 0x80n) {
      this.pushByte(Number(remaining & 0x7fn) | 0x80);
      remaining >>= 7n;
    }
    this.pushByte(Number(remaining));
    return this;
  }

  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    return this.varint(value);
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    this.reserve(4);
    new DataView(this.scratch.buffer).setFloat32(this.scratchUsed, value, true);
    this.scratchUsed += 4;
    return this;
  }

  double(field: number, value: number): this {
    this.tag(field, WIRE_FIXED64);
    this.reserve(8);
    new DataView(this.scratch.buffer).setFloat64(this.scratchUsed, value, true);
    this.scratchUsed += 8;
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.varint(data.length);
    if (data.length <= 64) {
      this.reserve(data.length);
      this.scratch.set(data, this.scratchUsed);
      this.scratchUsed += data.length;
    } else {
      this.flushScratch();
      this.chunks.push(data);
      this.totalLength += data.length;
    }
    return this;
  }

  string(field: number, text: string): this {
    return this.bytes(field, textEncoder.encode(text));
  }

  /** Repeated int64 in packed encoding (accepted by every protobuf parser for proto2 too). */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const packed = new ProtoWriter();
    for (const value of values) packed.varint(value);
    return this.message(field, packed);
  }

  packedFloats(field: number, values: readonly number[]): this {
    const data = new Uint8Array(values.length * 4);
    const view = new DataView(data.buffer);
    values.forEach((value, index) => view.setFloat32(index * 4, value, true));
    return this.bytes(field, data);
  }

  message(field: number, child: ProtoWriter): this {
    child.flushScratch();
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.varint(child.totalLength);
    this.flushScratch();
    for (const chunk of child.chunks) this.chunks.push(chunk);
    this.totalLength += child.totalLength;
    return this;
  }

  finish(): Uint8Array {
    this.flushScratch();
    if (this.chunks.length === 1) return this.chunks[0]!;
    const out = new Uint8Array(this.totalLength);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

// ---- ONNX message shapes -------------------------------------------------------------------------

export type AttributeValue = number | string | number[] | string[] | TensorMessage | { float: number } | { floats: number[] };

export interface ExternalDataLocation {
  /** File name relative to the model's directory, or the key of an in-memory external data entry. */
  location: string;
  /** Byte offset into that file: for a safetensors tensor, 8 + header length + data_offsets[0]. */
  offset: number;
  length: number;
}

export interface TensorMessage {
  name: string;
  dtype: DType;
  dims: readonly number[];
  /** Little-endian element bytes, or a pointer into an external file. */
  raw?: Uint8Array;
  external?: ExternalDataLocation;
}

export interface ValueInfoMessage {
  name: string;
  dtype: DType;
  /** Static sizes or named symbolic dimensions. */
  dims: readonly (number | string)[];
}

export interface NodeMessage {
  opType: string;
  domain?: string;
  name: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes: Readonly<Record<string, AttributeValue>>;
}

export interface GraphMessage {
  name: string;
  nodes: readonly NodeMessage[];
  inputs: readonly ValueInfoMessage[];
  outputs: readonly ValueInfoMessage[];
  initializers: readonly TensorMessage[];
}

export interface ModelMessage {
  graph: GraphMessage;
  opsets: Readonly<Record<string, number>>;
  producerName?: string;
  producerVersion?: string;
  irVersion?: number;
}

// AttributeProto.AttributeType
const ATTRIBUTE_FLOAT = 1;
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_STRING = 3;
const ATTRIBUTE_TENSOR = 4;
const ATTRIBUTE_FLOATS = 6;
const ATTRIBUTE_INTS = 7;
const ATTRIBUTE_STRINGS = 8;

function encodeTensor(tensor: TensorMessage): ProtoWriter {
  const writer = new ProtoWriter();
  writer.packedInts(1, tensor.dims);
  writer.int(2, onnxDataType[tensor.dtype]);
  writer.string(8, tensor.name);
  if (tensor.external) {
    const entries: [string, string][] = [
      ['location', tensor.external.location],
      ['offset', String(tensor.external.offset)],
      ['length', String(tensor.external.length)],
    ];
    for (const [key, value] of entries) writer.message(13, new ProtoWriter().string(1, key).string(2, value));
    writer.int(14, 1); // data_location = EXTERNAL
  } else {
    writer.bytes(9, tensor.raw ?? new Uint8Array(0));
  }
  return writer;
}

function isTensorMessage(value: AttributeValue): value is TensorMessage {
  return typeof value === 'object' && value !== null && 'dtype' in value;
}

function encodeAttribute(name: string, value: AttributeValue): ProtoWriter {
  const writer = new ProtoWriter().string(1, name);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: ${value} is not an integer; wrap floats as { float }`);
    return writer.int(3, value).int(20, ATTRIBUTE_INT);
  }
  if (typeof value === 'string') return writer.string(4, value).int(20, ATTRIBUTE_STRING);
  if (Array.isArray(value)) {
    if (value.every((item) => typeof item === 'string')) {
      for (const item of value as string[]) writer.string(9, item);
      return writer.int(20, ATTRIBUTE_STRINGS);
    }
    return writer.packedInts(8, value as number[]).int(20, ATTRIBUTE_INTS);
  }
  if (isTensorMessage(value)) return writer.message(5, encodeTensor(value)).int(20, ATTRIBUTE_TENSOR);
  if ('float' in value) return writer.float(2, value.float).int(20, ATTRIBUTE_FLOAT);
  return writer.packedFloats(7, value.floats).int(20, ATTRIBUTE_FLOATS);
}

function encodeNode(node: NodeMessage): ProtoWriter {
  const writer = new ProtoWriter();
  for (const input of node.inputs) writer.string(1, input);
  for (const output of node.outputs) writer.string(2, output);
  writer.string(3, node.name).string(4, node.opType);
  for (const [name, value] of Object.entries(node.attributes)) writer.message(5, encodeAttribute(name, value));
  if (node.domain) writer.string(7, node.domain);
  return writer;
}

function encodeValueInfo(info: ValueInfoMessage): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of info.dims) {
    const dimension = new ProtoWriter();
    if (typeof dim === 'number') dimension.int(1, dim);
    else dimension.string(2, dim);
    shape.message(1, dimension);
  }
  const tensorType = new ProtoWriter().int(1, onnxDataType[info.dtype]).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, info.name).message(2, type);
}

export function encodeGraph(graph: GraphMessage): ProtoWriter {
  const writer = new ProtoWriter();
  for (const node of graph.nodes) writer.message(1, encodeNode(node));
  writer.string(2, graph.name);
  for (const tensor of graph.initializers) writer.message(5, encodeTensor(tensor));
  for (const input of graph.inputs) writer.message(11, encodeValueInfo(input));
  for (const output of graph.outputs) writer.message(12, encodeValueInfo(output));
  return writer;
}

export function encodeModel(model: ModelMessage): Uint8Array {
  const irVersion = model.irVersion ?? 10;
  if (irVersion > MAX_IR_VERSION) throw new Error(`IR version ${irVersion} is above the supported ${MAX_IR_VERSION}`);
  const writer = new ProtoWriter();
  writer.int(1, irVersion);
  writer.string(2, model.producerName ?? 'kosmos-g');
  if (model.producerVersion) writer.string(3, model.producerVersion);
  writer.message(7, encodeGraph(model.graph));
  for (const [domain, version] of Object.entries(model.opsets)) {
    if (domain === '' && version > MAX_OPSET) throw new Error(`opset ${version} is above the supported ${MAX_OPSET}`);
    writer.message(8, new ProtoWriter().string(1, domain).int(2, version));
  }
  return writer.finish();
}
