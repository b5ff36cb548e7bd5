// `torch.save` files read without PyTorch and without running their pickles (./pickle.ts).
//   zip format (torch ≥ 1.6): `<archive>/data.pkl` is the pickle; each storage is the entry
//     `<archive>/data/<key>`, named by a persistent id ('storage', torch.FloatStorage, key, device, numel).
//   legacy format: pickles back to back (magic number, protocol version, sys info, the object,
//     the storage keys), then each storage as an 8-byte element count and its raw bytes; the
//     persistent id adds a view (key, offset, size) for storages that were slices of others.
// Opening reads the pickle and the storage table only: every tensor records its storage, offset,
// shape and strides, and its bytes are read when asked (non-contiguous views made contiguous,
// float16 kept or widened, bfloat16 widened to float32). A storage several tensors share (a tied
// LM head) is one object. Every size is checked against the file before anything is allocated.
import type { HostTensor } from '../onnx/dtype.js';
import { type ByteSource, openFileSource } from './byte-source.js';
import { describeName, describeNumbers, describeValue } from './describe-value.js';
import { DATA_GLOBALS, DEFAULT_PICKLE_LIMITS, type GlobalRule, type PickleLimits, PickleGlobal, PickleTruncatedError, unpickle } from './pickle.js';
import { type ReadOptions, type SafetensorsDType, decodeTensor } from './safetensors.js';
import { DEFAULT_ZIP_LIMITS, ZipArchive, type ZipLimits } from './zip.js';

export interface TorchCheckpointLimits extends PickleLimits, ZipLimits {
  /** Largest pickle read into memory (a checkpoint's is about a hundred bytes per tensor; each opcode byte may hold a stack slot). */
  maxPickleBytes: number;
  /** Largest tensor (and largest storage span of a strided view) one read may allocate. */
  maxTensorBytes: number;
}

export const DEFAULT_CHECKPOINT_LIMITS: TorchCheckpointLimits = {
  ...DEFAULT_PICKLE_LIMITS,
  ...DEFAULT_ZIP_LIMITS,
  maxPickleBytes: 64 * 2 ** 20,
  maxTensorBytes: 8 * 2 ** 30,
};

/** torch storage classes: the element type as stored (int16 has no safetensors code and is widened on reading). */
const STORAGE_TYPES: Record<string, { dtype: SafetensorsDType | 'I16'; size: number }> = {
  FloatStorage: { dtype: 'F32', size: 4 },
  HalfStorage: { dtype: 'F16', size: 2 },
  BFloat16Storage: { dtype: 'BF16', size: 2 },
  DoubleStorage: { dtype: 'F64', size: 8 },
  LongStorage: { dtype: 'I64', size: 8 },
  IntStorage: { dtype: 'I32', size: 4 },
  ShortStorage: { dtype: 'I16', size: 2 },
  CharStorage: { dtype: 'I8', size: 1 },
  ByteStorage: { dtype: 'U8', size: 1 },
  BoolStorage: { dtype: 'BOOL', size: 1 },
  UntypedStorage: { dtype: 'U8', size: 1 },
};

/** One storage: `numel` elements at `byteOffset` in the file (known once the storage table is read). */
export class TorchStorage {
  byteOffset = -1;

  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDType | 'I16',
    readonly elementSize: number,
    readonly numel: number,
    /** For a legacy view: the storage it is a slice of, and its first element there. */
    readonly base?: { storage: TorchStorage; offset: number },
  ) {}

  /** Where element `index` of this storage lies in the file. */
  elementPosition(index: number): number {
    return this.base ? this.base.storage.elementPosition(this.base.offset + index) : this.byteOffset + index * this.elementSize;
  }
}

/** A tensor of the checkpoint: where its elements are; `read()` fetches them. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
    private readonly source: ByteSource,
    private readonly maxTensorBytes: number,
  ) {}

  get numel(): number {
    return this.shape.reduce((product, size) => product * size, 1);
  }

  /** Row-major strides, i.e. the elements lie in order and can be read as one range. */
  get isContiguous(): boolean {
    let expected = 1;
    for (let axis = this.shape.length - 1; axis >= 0; axis--) {
      if (this.shape[axis]! !== 1 && this.stride[axis]! !== expected) return false;
      expected *= this.shape[axis]!;
    }
    return true;
  }

  /** The elements in row-major order (`asFloat32` widens float16; bfloat16 is always widened, int16 becomes int32). */
  async read(options: ReadOptions = {}): Promise<HostTensor> {
    const { storage, shape } = this;
    const size = storage.elementSize;
    const count = this.numel;
    if (count * size > this.maxTensorBytes) throw new Error(`${this.source.label}: a tensor of shape ${describeNumbers(shape)} needs ${count * size} bytes, over the limit of ${this.maxTensorBytes}`);
    let bytes: Uint8Array;
    if (count === 0) bytes = new Uint8Array(0);
    else if (this.isContiguous) bytes = await this.source.read(storage.elementPosition(this.storageOffset), count * size);
    else bytes = await this.gather(count);
    if (storage.dtype !== 'I16') return decodeTensor(storage.dtype, [...shape], bytes, options);
    const values = new Int16Array(bytes.buffer, 0, count);
    return { dtype: 'int32', shape: [...shape], data: Int32Array.from(values) };
  }

  /** A strided view: reads the span of storage it touches once, then copies its elements out in row-major order. */
  private async gather(count: number): Promise<Uint8Array> {
    const size = this.storage.elementSize;
    const last = this.shape.reduce((sum, extent, axis) => sum + (extent - 1) * this.stride[axis]!, 0);
    if ((last + 1) * size > this.maxTensorBytes) throw new Error(`${this.source.label}: a strided tensor spans ${(last + 1) * size} bytes of storage, over the limit of ${this.maxTensorBytes}`);
    const span = await this.source.read(this.storage.elementPosition(this.storageOffset), (last + 1) * size);
    const out = new Uint8Array(count * size);
    const index = new Array<number>(this.shape.length).fill(0);
    let source = 0;
    for (let element = 0; element < count; element++) {
      out.set(span.subarray(source * size, source * size + size), element * size);
      // Odometer over the shape, last axis fastest; `source` follows the strides.
      for (let axis = this.shape.length - 1; axis >= 0; axis--) {
        index[axis]!++;
        source += this.stride[axis]!;
        if (index[axis]! < this.shape[axis]!) break;
        source -= index[axis]! * this.stride[axis]!;
        index[axis] = 0;
      }
    }
    return out;
  }
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function storageType(value: unknown, label: string): { dtype: SafetensorsDType | 'I16'; size: number } {
  const type = value instanceof PickleGlobal && value.module === 'torch' ? STORAGE_TYPES[value.name] : undefined;
  if (!type) throw new Error(`${label}: a persistent id names ${value instanceof PickleGlobal ? value.qualifiedName : 'no storage type'}, not a torch storage type`);
  return type;
}

/** The globals a checkpoint's pickle may name: the data-only ones, storage types and the tensor rebuild functions. */
function checkpointGlobals(source: ByteSource, limits: TorchCheckpointLimits): Map<string, GlobalRule> {
  const rebuild = (args: readonly unknown[]): TorchTensor => {
    const [storage, offset, shape, stride] = args;
    if (!(storage instanceof TorchStorage)) throw new Error('a tensor is rebuilt from something that is not a storage');
    if (!isCount(offset) || !Array.isArray(shape) || !Array.isArray(stride) || shape.length !== stride.length || ![...shape, ...stride].every(isCount)) {
      throw new Error(`a tensor has a malformed offset, shape or stride (${describeValue([offset, shape, stride])})`);
    }
    const sizes = shape as number[];
    const strides = stride as number[];
    // The last element the view touches must lie inside its storage (BigInt: hostile shapes overflow doubles).
    if (sizes.every((extent) => extent > 0)) {
      const last = sizes.reduce((sum, extent, axis) => sum + BigInt(extent - 1) * BigInt(strides[axis]!), BigInt(offset));
      if (last >= BigInt(storage.numel)) {
        throw new Error(`a tensor of shape ${describeNumbers(sizes)} with strides ${describeNumbers(strides)} at offset ${offset} reaches element ${last} of storage ${describeName(storage.key)}, which has ${storage.numel}`);
      }
    }
    return new TorchTensor(storage, offset, sizes, strides, source, limits.maxTensorBytes);
  };
  const tensorArgument = (value: unknown): TorchTensor => {
    if (!(value instanceof TorchTensor)) throw new Error('a parameter wraps something that is not a tensor');
    return value;
  };
  const globals = new Map<string, GlobalRule>(DATA_GLOBALS);
  for (const name of Object.keys(STORAGE_TYPES)) globals.set(`torch.${name}`, { kind: 'reference' });
  for (const name of ['torch.Tensor', 'torch.nn.parameter.Parameter']) globals.set(name, { kind: 'reference' });
  globals.set('torch._utils._rebuild_tensor', { kind: 'call', call: rebuild });
  globals.set('torch._utils._rebuild_tensor_v2', { kind: 'call', call: rebuild });
  globals.set('torch._utils._rebuild_parameter', { kind: 'call', call: (args) => tensorArgument(args[0]) });
  globals.set('torch._utils._rebuild_parameter_with_state', { kind: 'call', call: (args) => tensorArgument(args[0]) });
  // A tensor subclass or a tensor with attributes: the rebuild function it names, applied to its arguments.
  globals.set('torch._tensor._rebuild_from_type_v2', {
    kind: 'call',
    call: ([rebuildFunction, , args]) => {
      if (!(rebuildFunction instanceof PickleGlobal) || rebuildFunction.rule.kind !== 'call' || !Array.isArray(args)) throw new Error('malformed arguments');
      return tensorArgument(rebuildFunction.rule.call(args, new Map()));
    },
  });
  globals.set('torch.Size', { kind: 'call', call: ([sizes]) => sizes });
  return globals;
}

export class TorchCheckpoint {
  private constructor(
    readonly path: string,
    readonly format: 'zip' | 'legacy',
    /** The unpickled object (for a fairseq checkpoint a dict with `model`, `args`, `cfg`, …). */
    readonly root: unknown,
    private readonly source: ByteSource,
  ) {}

  static async open(path: string, limits: Partial<TorchCheckpointLimits> = {}): Promise<TorchCheckpoint> {
    const all = { ...DEFAULT_CHECKPOINT_LIMITS, ...limits };
    return openFileSource(path, async (source) => {
      const head = await source.read(0, Math.min(source.size, 512));
      if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
        return new TorchCheckpoint(path, 'zip', await readZip(source, all), source);
      }
      if (head.length >= 2 && head[0] === 0x80) return new TorchCheckpoint(path, 'legacy', await readLegacy(source, all), source);
      const tar = Buffer.from(head.subarray(257, 262)).toString('latin1') === 'ustar';
      throw new Error(`${path}: not a torch checkpoint (${tar ? 'a tar archive from torch < 0.4, which is not supported' : 'neither a zip archive nor a pickle'})`);
    });
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

async function readZip(source: ByteSource, limits: TorchCheckpointLimits): Promise<unknown> {
  const label = source.label;
  const archive = await ZipArchive.open(source, limits);
  const pickles = archive.names().filter((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickles.length !== 1) throw new Error(`${label}: a zip archive but not a torch checkpoint (${pickles.length ? 'several' : 'no'} <archive>/data.pkl entries)`);
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  const byteOrder = archive.entry(`${prefix}byteorder`);
  if (byteOrder && Buffer.from(await archive.read(byteOrder)).toString('latin1') !== 'little') throw new Error(`${label}: big-endian checkpoints are not supported`);
  const pickleEntry = archive.entry(pickles[0]!)!;
  if (pickleEntry.size > limits.maxPickleBytes) throw new Error(`${label}: data.pkl is ${pickleEntry.size} bytes, over the limit of ${limits.maxPickleBytes}`);
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): TorchStorage => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage' || typeof pid[2] !== 'string' || !isCount(pid[4])) {
      throw new Error(`${label}: malformed persistent id in data.pkl (expected ('storage', type, key, location, numel))`);
    }
    const [, typeName, key, , numel] = pid as [string, unknown, string, unknown, number];
    const type = storageType(typeName, label);
    const existing = storages.get(key);
    if (existing) {
      if (existing.dtype !== type.dtype || existing.numel !== numel) throw new Error(`${label}: storage ${describeName(key)} is named with two different types or sizes`);
      return existing;
    }
    const entry = archive.entry(`${prefix}data/${key}`);
    if (!entry) throw new Error(`${label}: storage ${describeName(key)} has no entry ${describeName(`${prefix}data/${key}`)} in the archive`);
    if (entry.size !== numel * type.size) {
      throw new Error(`${label}: storage ${describeName(key)} (${describeName(`${prefix}data/${key}`)}) holds ${entry.size} bytes where its ${numel} elements need ${numel * type.size}`);
    }
    const storage = new TorchStorage(key, type.dtype, type.size, numel);
    storages.set(key, storage);
    return storage;
  };
  const globals = checkpointGlobals(source, limits);
  const { value } = unpickle(await archive.read(pickleEntry), { label: `${label} (data.pkl)`, globals, persistentLoad, limits });
  for (const storage of storages.values()) storage.byteOffset = await archive.dataOffset(archive.entry(`${prefix}data/${storage.key}`)!);
  return value;
}

/** torch.serialization's legacy magic number and protocol version. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

/**
 * The legacy format's pickles are read from a head of the file; if they run past it, the head is
 * doubled and they are read again, up to `maxPickleBytes`.
 */
async function readLegacy(source: ByteSource, limits: TorchCheckpointLimits): Promise<unknown> {
  const label = source.label;
  for (let headSize = Math.min(source.size, 2 ** 20, limits.maxPickleBytes); ; headSize = Math.min(source.size, headSize * 2, limits.maxPickleBytes)) {
    const head = await source.read(0, headSize);
    try {
      return await readLegacyPickles(source, head, limits);
    } catch (error) {
      if (!(error instanceof PickleTruncatedError) || headSize === source.size) throw error;
      if (headSize >= limits.maxPickleBytes) throw new Error(`${label}: the pickles run past ${limits.maxPickleBytes} bytes, the limit`);
    }
  }
}

async function readLegacyPickles(source: ByteSource, head: Uint8Array, limits: TorchCheckpointLimits): Promise<unknown> {
  const label = source.label;
  const plain = { label, globals: new Map<string, GlobalRule>(), limits };
  const magic = unpickle(head, plain);
  if (magic.value !== LEGACY_MAGIC) throw new Error(`${label}: not a torch checkpoint (a pickle, but without torch's magic number)`);
  const protocol = unpickle(head, plain, magic.end);
  if (protocol.value !== LEGACY_PROTOCOL) throw new Error(`${label}: legacy torch protocol ${describeValue(protocol.value)} is not supported (expected ${LEGACY_PROTOCOL})`);
  const sysInfo = unpickle(head, plain, protocol.end);
  if (!(sysInfo.value instanceof Map) || sysInfo.value.get('little_endian') !== true) throw new Error(`${label}: big-endian checkpoints are not supported`);
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): TorchStorage => {
    if (!Array.isArray(pid) || pid.length !== 6 || pid[0] !== 'storage' || typeof pid[2] !== 'string' || !isCount(pid[4])) {
      throw new Error(`${label}: malformed persistent id (expected ('storage', type, key, location, numel, view))`);
    }
    const [, typeName, key, , numel, view] = pid as [string, unknown, string, unknown, number, unknown];
    const type = storageType(typeName, label);
    let root = storages.get(key);
    if (!root) {
      root = new TorchStorage(key, type.dtype, type.size, numel);
      storages.set(key, root);
    } else if (root.dtype !== type.dtype || root.numel !== numel) throw new Error(`${label}: storage ${describeName(key)} is named with two different types or sizes`);
    if (view === null) return root;
    if (!Array.isArray(view) || view.length !== 3 || typeof view[0] !== 'string' || !isCount(view[1]) || !isCount(view[2]) || view[1] + view[2] > numel) {
      throw new Error(`${label}: malformed storage view of ${describeName(key)}: ${describeValue(view)}`);
    }
    return new TorchStorage(view[0], type.dtype, type.size, view[2], { storage: root, offset: view[1] });
  };
  const globals = checkpointGlobals(source, limits);
  const main = unpickle(head, { label, globals, persistentLoad, limits }, sysInfo.end);
  const keys = unpickle(head, plain, main.end);
  if (!Array.isArray(keys.value) || !keys.value.every((key) => typeof key === 'string')) throw new Error(`${label}: the storage key list is malformed`);
  // Each storage: an 8-byte little-endian element count, then its bytes.
  let position = keys.end;
  for (const key of keys.value as string[]) {
    const storage = storages.get(key);
    if (!storage) throw new Error(`${label}: storage ${describeName(key)} is listed but no tensor names it, so its element size is unknown`);
    if (position + 8 > source.size) throw new Error(`${label}: the file ends at byte ${source.size}, before storage ${describeName(key)} (truncated)`);
    const count = new DataView((await source.read(position, 8)).buffer).getBigInt64(0, true);
    if (count !== BigInt(storage.numel)) throw new Error(`${label}: storage ${describeName(key)} records ${count} elements where its tensors expect ${storage.numel}`);
    storage.byteOffset = position + 8;
    position = storage.byteOffset + storage.numel * storage.elementSize;
    if (position > source.size) throw new Error(`${label}: storage ${describeName(key)} needs ${storage.numel * storage.elementSize} bytes at ${storage.byteOffset}, but the file ends at ${source.size} (truncated)`);
  }
  const unlisted = [...storages.keys()].filter((key) => !(keys.value as string[]).includes(key));
  if (unlisted.length) throw new Error(`${label}: storages ${unlisted.map(describeName).join(', ')} are named but not in the storage list`);
  return main.value;
}

/**
 * The tensors of a checkpoint's state dict, by key: the root itself when it is one, else its
 * `model`, `state_dict` or `module` entry (fairseq keeps the weights under `model`).
 */
export function stateDictOf(root: unknown, label: string): Map<string, TorchTensor> {
  const isStateDict = (value: unknown): value is Map<unknown, unknown> =>
    value instanceof Map && value.size > 0 && [...value.values()].some((entry) => entry instanceof TorchTensor);
  const candidates = root instanceof Map ? [root, root.get('model'), root.get('state_dict'), root.get('module')] : [];
  const dict = candidates.find(isStateDict);
  if (!dict) throw new Error(`${label}: holds no state dict (a dict of tensors, or one under 'model', 'state_dict' or 'module')`);
  const tensors = new Map<string, TorchTensor>();
  for (const [key, value] of dict) {
    if (typeof key !== 'string') throw new Error(`${label}: a state dict key is not a string`);
    if (value instanceof TorchTensor) tensors.set(key, value);
  }
  return tensors;
}
