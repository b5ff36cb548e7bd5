// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON describing every
// tensor (dtype, shape, byte range relative to the data buffer), then the data buffer itself.
// Typed arrays are filled and read in host byte order; that is little-endian, as the format is, on
// every platform onnxruntime-node ships for.

import { replaceFileAtomically } from './atomic-file.js';
import { type ByteSource, bufferSource, openFileSource } from './byte-source.js';
import { describeNumbers, describeValue, oneLine } from './describe-value.js';
import {
  elementCount,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type DType,
  type HostTensor,
  type TypedArray,
  type TypedArrayOf,
} from '../onnx/dtype.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I8' | 'U8' | 'BOOL';

const dtypeSize: Record<SafetensorsDType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Same limit as the Rust reference: larger headers are not real checkpoints but hostile input. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute position of the first byte in the file (8 + header length + data_offsets[0]). */
  byteOffset: number;
  byteLength: number;
  /** The file (or in-memory label) the tensor lives in. */
  file: string;
}

export interface ReadOptions {
  /** Convert F16 to float32 instead of returning raw half bits. BF16 always becomes float32. */
  asFloat32?: boolean;
}

/** What single files and sharded checkpoints both offer: a lazy, by-name view of the tensors. */
export interface SafetensorsReader {
  readonly path: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  read(name: string, options?: ReadOptions): Promise<HostTensor>;
  readAll(options?: ReadOptions): Promise<Map<string, HostTensor>>;
  close(): Promise<void>;
}

interface ParsedHeader {
  tensors: Map<string, { dtype: SafetensorsDType; shape: number[]; begin: number; end: number }>;
  metadata: Record<string, string>;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSafeNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function parseHeader(label: string, headerBytes: Uint8Array, dataLength: number): ParsedHeader {
  const fail = (problem: string): never => {
    throw new Error(`${label}: invalid safetensors header: ${problem}`);
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (error) {
    return fail(`not valid UTF-8 JSON (${oneLine((error as Error).message)})`);
  }
  if (!isPlainObject(json)) return fail(`expected a JSON object, got ${Array.isArray(json) ? 'an array' : typeof json}`);

  const tensors: ParsedHeader['tensors'] = new Map();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) return fail('__metadata__ must be an object of strings');
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== 'string') fail(`__metadata__[${describeValue(key)}] must be a string, got ${describeValue(value)}`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const tensor = `tensor ${describeValue(name)}`;
    if (!isPlainObject(entry)) return fail(`${tensor} must be an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !Object.hasOwn(dtypeSize, dtype)) {
      return fail(`${tensor} has unknown dtype ${describeValue(dtype)} (supported: ${Object.keys(dtypeSize).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isSafeNonNegativeInteger)) {
      return fail(`${tensor} has shape ${describeValue(shape)}, expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeNonNegativeInteger) || offsets[0] > offsets[1]) {
      return fail(`${tensor} has data_offsets ${describeValue(offsets)}, expected two ordered non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      return fail(`${tensor} data_offsets [${begin}, ${end}] are out of range of the ${dataLength}-byte data buffer`);
    }
    const size = dtypeSize[dtype as SafetensorsDType];
    // BigInt because a hostile shape's element count may exceed the safe-integer range.
    const expectedBytes = shape.reduce((product: bigint, dim: number) => product * BigInt(dim), 1n) * BigInt(size);
    if (expectedBytes !== BigInt(end - begin)) {
      return fail(`${tensor} is ${dtype} ${describeNumbers(shape)}, which needs ${expectedBytes} bytes, but data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    tensors.set(name, { dtype: dtype as SafetensorsDType, shape: [...shape], begin, end });
  }

  // Gaps between tensors are tolerated (some writers align), shared bytes are not.
  const ranges = [...tensors].filter(([, t]) => t.end > t.begin).sort(([, a], [, b]) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    const [previousName, previous] = ranges[i - 1]!;
    const [name, current] = ranges[i]!;
    if (current.begin < previous.end) {
      fail(`tensors ${describeValue(previousName)} [${previous.begin}, ${previous.end}] and ${describeValue(name)} [${current.begin}, ${current.end}] overlap`);
    }
  }
  return { tensors, metadata };
}

/** A short "did you mean" list: names sharing the longest prefix with the one asked for. */
export function describeAvailable(wanted: string, available: string[]): string {
  const commonPrefix = (name: string) => {
    let length = 0;
    while (length < name.length && name[length] === wanted[length]) length++;
    return length;
  };
  const closest = [...available].sort((a, b) => commonPrefix(b) - commonPrefix(a) || a.localeCompare(b)).slice(0, 5);
  if (closest.length === 0) return 'the file has no tensors';
  const more = available.length > closest.length ? `, ... (${available.length} in total)` : '';
  return `available: ${closest.map((n) => describeValue(n)).join(', ')}${more}`;
}

/** Little-endian tensor bytes (a fresh array at offset 0 of its own buffer) as a host tensor; also used by the torch checkpoint reader. */
export function decodeTensor(dtype: SafetensorsDType, shape: number[], bytes: Uint8Array, options: ReadOptions): HostTensor {
  const buffer = bytes.buffer as ArrayBuffer;
  const count = elementCount(shape);
  switch (dtype) {
    case 'F32':
      return { dtype: 'float32', shape, data: new Float32Array(buffer, 0, count) };
    case 'F16': {
      const bits = new Uint16Array(buffer, 0, count);
      if (!options.asFloat32) return { dtype: 'float16', shape, data: bits };
      const values = new Float32Array(count);
      for (let i = 0; i < count; i++) values[i] = float16BitsToFloat32(bits[i]!);
      return { dtype: 'float32', shape, data: values };
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32, so widening is a 16-bit shift.
      const bits = new Uint16Array(buffer, 0, count);
      const widened = new Uint32Array(count);
      for (let i = 0; i < count; i++) widened[i] = bits[i]! << 16;
      return { dtype: 'float32', shape, data: new Float32Array(widened.buffer) };
    }
    case 'F64':
      return { dtype: 'float64', shape, data: new Float64Array(buffer, 0, count) };
    case 'I64':
      return { dtype: 'int64', shape, data: new BigInt64Array(buffer, 0, count) };
    case 'I32':
      return { dtype: 'int32', shape, data: new Int32Array(buffer, 0, count) };
    case 'I8':
      return { dtype: 'int8', shape, data: new Int8Array(buffer, 0, count) };
    case 'U8':
      return { dtype: 'uint8', shape, data: bytes };
    case 'BOOL':
      return { dtype: 'bool', shape, data: bytes };
  }
}

/** One safetensors file. Opening reads and validates only the header; tensors are read on demand. */
export class SafetensorsFile implements SafetensorsReader {
  private closed = false;

  private constructor(
    /** The file path, or the label given to an in-memory buffer. */
    readonly path: string,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly header: ParsedHeader,
    private readonly dataStart: number,
    private readonly source: ByteSource,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    return openFileSource(path, (source) => SafetensorsFile.fromSource(path, source));
  }

  static fromBuffer(buffer: Uint8Array, label = 'in-memory safetensors'): SafetensorsFile {
    const source = bufferSource(buffer, label);
    const headerLength = checkHeaderLength(label, buffer.subarray(0, 8), buffer.byteLength);
    const header = parseHeader(label, buffer.subarray(8, 8 + headerLength), buffer.byteLength - 8 - headerLength);
    return new SafetensorsFile(label, header.metadata, header, 8 + headerLength, source);
  }

  private static async fromSource(label: string, source: ByteSource): Promise<SafetensorsFile> {
    const lengthBytes = source.size >= 8 ? await source.read(0, 8) : new Uint8Array(0);
    const headerLength = checkHeaderLength(label, lengthBytes, source.size);
    const header = parseHeader(label, await source.read(8, headerLength), source.size - 8 - headerLength);
    return new SafetensorsFile(label, header.metadata, header, 8 + headerLength, source);
  }

  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const tensor = this.header.tensors.get(name);
    if (!tensor) throw new Error(`${this.path}: no tensor named ${describeValue(name)}; ${describeAvailable(name, this.names())}`);
    return {
      dtype: tensor.dtype,
      shape: [...tensor.shape],
      byteOffset: this.dataStart + tensor.begin,
      byteLength: tensor.end - tensor.begin,
      file: this.path,
    };
  }

  async read(name: string, options: ReadOptions = {}): Promise<HostTensor> {
    const { dtype, shape, byteOffset, byteLength } = this.info(name);
    if (this.closed) throw new Error(`${this.path}: cannot read ${describeValue(name)}, the file has been closed`);
    return decodeTensor(dtype, shape, await this.source.read(byteOffset, byteLength), options);
  }

  async readAll(options: ReadOptions = {}): Promise<Map<string, HostTensor>> {
    const tensors = new Map<string, HostTensor>();
    for (const name of this.names()) tensors.set(name, await this.read(name, options));
    return tensors;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close();
  }
}

function checkHeaderLength(label: string, lengthBytes: Uint8Array, size: number): number {
  if (size < 8) throw new Error(`${label}: truncated safetensors file: ${size} bytes, shorter than the 8-byte header length`);
  const length = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${label}: header length ${length} is absurdly large (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file?`);
  }
  if (length > BigInt(size - 8)) {
    throw new Error(`${label}: header length ${length} goes beyond the end of the ${size}-byte file`);
  }
  return Number(length);
}

/** Reads every tensor of a file or in-memory safetensors buffer. */
export async function readSafetensors(pathOrBuffer: string | Uint8Array, options: ReadOptions = {}): Promise<Map<string, HostTensor>> {
  const file = typeof pathOrBuffer === 'string' ? await SafetensorsFile.open(pathOrBuffer) : SafetensorsFile.fromBuffer(pathOrBuffer);
  try {
    return await file.readAll(options);
  } finally {
    await file.close();
  }
}

export interface WriteOptions {
  /** Stored as `__metadata__`; `format: "pt"` is added unless given, as torch does. */
  metadata?: Record<string, string>;
  /** How float32 tensors are stored; other element types keep their own. */
  dtype?: 'F32' | 'F16';
}

const storedDtype: Record<DType, SafetensorsDType> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  int64: 'I64',
  int32: 'I32',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

const arrayTypeOf: { [K in DType]: new (length: number) => TypedArrayOf[K] } = {
  float32: Float32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

/** What the header needs of a tensor: its element type and shape. */
interface TensorLayout {
  dtype: DType;
  shape: number[];
}

/** A tensor written by `writeSafetensorsDeferred`: declared up front, its data produced only when its turn comes. */
export interface DeferredTensor extends TensorLayout {
  read(): Promise<HostTensor>;
}

interface Layout {
  header: Uint8Array;
  /** Names in file order with their stored element types. */
  order: { name: string; dtype: SafetensorsDType }[];
}

/** Checks the header fields of every tensor and lays them out, so a bad tensor never leaves a partial file. */
function planLayout(tensors: Iterable<[string, TensorLayout]>, options: WriteOptions): Layout {
  const entries = [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const metadata = { format: 'pt', ...options.metadata };
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new Error(`safetensors metadata "${key}" must be a string, got ${typeof value}`);
  }
  const header: Record<string, unknown> = { __metadata__: metadata };
  const order: Layout['order'] = [];
  let offset = 0;
  for (const [name, { dtype: elementType, shape }] of entries) {
    if (name === '__metadata__') throw new Error('"__metadata__" is reserved and cannot name a tensor');
    if (!Object.hasOwn(storedDtype, elementType)) throw new Error(`tensor "${name}" has unsupported dtype ${JSON.stringify(elementType)}`);
    if (!Array.isArray(shape) || !shape.every(isSafeNonNegativeInteger)) {
      throw new Error(`tensor "${name}" has shape ${JSON.stringify(shape)}, expected non-negative integers`);
    }
    const dtype = elementType === 'float32' && options.dtype === 'F16' ? 'F16' : storedDtype[elementType];
    const byteLength = elementCount(shape) * dtypeSize[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + byteLength] };
    order.push({ name, dtype });
    offset += byteLength;
  }
  // Padding to a multiple of 8 keeps the data buffer 8-byte aligned, as the Rust writer does.
  const json = new TextEncoder().encode(JSON.stringify(header));
  const paddedLength = Math.ceil(json.length / 8) * 8;
  // (8-byte little-endian length)(JSON)(spaces up to the padded length)
  const prefixed = new Uint8Array(8 + paddedLength).fill(0x20, 8 + json.length);
  new DataView(prefixed.buffer).setBigUint64(0, BigInt(paddedLength), true);
  prefixed.set(json, 8);
  return { header: prefixed, order };
}

/** The data must be the typed array of its dtype with as many elements as the shape needs. */
function checkData(name: string, tensor: HostTensor): void {
  const { data, shape } = tensor;
  if (!(data instanceof arrayTypeOf[tensor.dtype])) {
    throw new Error(`tensor "${name}" is ${tensor.dtype} but its data is a ${data?.constructor?.name ?? typeof data}`);
  }
  if (data.length !== elementCount(shape)) {
    throw new Error(`tensor "${name}" has ${data.length} elements but shape [${shape.join(', ')}] needs ${elementCount(shape)}`);
  }
}

function entriesOf(tensors: Record<string, HostTensor> | Map<string, HostTensor>): Map<string, HostTensor> {
  const entries = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  for (const [name, tensor] of entries) {
    if (Object.hasOwn(storedDtype, tensor.dtype)) checkData(name, tensor);
  }
  return entries;
}

function storedBytes(tensor: HostTensor, dtype: SafetensorsDType): Uint8Array {
  if (tensor.dtype === 'float32' && dtype === 'F16') {
    const values = tensor.data as Float32Array;
    const bits = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) bits[i] = float32ToFloat16Bits(values[i]!);
    return new Uint8Array(bits.buffer);
  }
  const data: TypedArray = tensor.data;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The whole file in memory. */
export function encodeSafetensors(tensors: Record<string, HostTensor> | Map<string, HostTensor>, options: WriteOptions = {}): Uint8Array {
  const entries = entriesOf(tensors);
  const layout = planLayout(entries, options);
  const parts = [layout.header, ...layout.order.map(({ name, dtype }) => storedBytes(entries.get(name)!, dtype))];
  const bytes = new Uint8Array(parts.reduce((total, part) => total + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes;
}

/**
 * Writes tensor by tensor (no whole-file buffer) to a temporary file beside `path`, syncs it and
 * renames it into place, so readers see either the previous file or the complete new one.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, HostTensor> | Map<string, HostTensor>,
  options: WriteOptions = {},
): Promise<void> {
  const entries = entriesOf(tensors);
  await writeLayout(path, planLayout(entries, options), async (name) => entries.get(name)!);
}

/**
 * Like `writeSafetensors`, but each tensor's data is produced by its `read()` only when it is
 * written and dropped right after, so the peak memory is one tensor, not the whole file. A tensor
 * whose data does not match its declared dtype and shape fails the write (and leaves no file).
 */
export async function writeSafetensorsDeferred(path: string, tensors: Map<string, DeferredTensor>, options: WriteOptions = {}): Promise<void> {
  await writeLayout(path, planLayout(tensors, options), async (name) => {
    const declared = tensors.get(name)!;
    const tensor = await declared.read();
    if (tensor.dtype !== declared.dtype || tensor.shape.join() !== declared.shape.join()) {
      throw new Error(`tensor "${name}" was declared ${declared.dtype} [${declared.shape.join(', ')}] but read as ${tensor.dtype} [${tensor.shape.join(', ')}]`);
    }
    checkData(name, tensor);
    return tensor;
  });
}

async function writeLayout(path: string, layout: Layout, tensor: (name: string) => Promise<HostTensor>): Promise<void> {
  await replaceFileAtomically(path, async (sink) => {
    await sink.write(layout.header, 0);
    let position = layout.header.byteLength;
    for (const { name, dtype } of layout.order) {
      const bytes = storedBytes(await tensor(name), dtype);
      await sink.write(bytes, position);
      position += bytes.byteLength;
    }
  });
}

