// Compile-and-cache: a model is traced and turned into a session once per (key, shape signature)
// and reused for every later run with the same shapes. Session creation costs ~55 µs per node, so
// a 20k-node training step would otherwise pay a second per call. The cache is LRU-bounded and
// releases the sessions it evicts.
import type { HostTensor } from '../onnx/dtype.js';
import { type ModelMessage, encodeModel } from '../onnx/proto.js';
import { type Device, type ResolvedDevice, checkThreads, defaultThreads, resolveDevice } from './devices.js';
import { DeviceDownloader, type ExternalDataFile, GraphSession, type SessionOptions, type Tensor } from './session.js';

/** What a build function returns: a traced model, or already encoded ModelProto bytes. */
export type ModelSource = ModelMessage | Uint8Array;
export type ModelBuilder = () => ModelSource | Promise<ModelSource>;

/** Input name → concrete shape; the cache key part that decides whether a graph is traced again. */
export type InputShapes = Readonly<Record<string, readonly number[]>>;

export interface RuntimeOptions {
  /** Default 'cpu'; 'auto' takes WebGPU when an adapter is found. */
  device?: Device;
  /** Intra-op threads per session; default one per core (`os.availableParallelism()`). */
  threads?: number;
  /** Compiled sessions kept before the least recently used one is released; default 32. */
  maxSessions?: number;
  optimizationLevel?: SessionOptions['optimizationLevel'];
}

export interface CompileOptions {
  /** Outputs left in GPU memory by `runOnDevice` (webgpu only); part of the cache key. */
  keepOnDevice?: readonly string[];
  externalData?: readonly ExternalDataFile[];
  externalDataDirectory?: string;
}

/** One cache miss: time to trace and encode (`buildMs`) versus to create the session (`createMs`). */
export interface CompileRecord {
  key: string;
  signature: string;
  buildMs: number;
  createMs: number;
  modelBytes: number;
}

export interface CompileStats {
  hits: number;
  misses: number;
  evictions: number;
  /** Sessions in the cache now. */
  sessions: number;
  /** Totals over every miss. */
  buildMs: number;
  createMs: number;
  last: CompileRecord | null;
}

/** Canonical text of a shape signature: names sorted, so feed order does not matter. */
export function shapeSignature(shapes: InputShapes): string {
  return Object.keys(shapes)
    .sort()
    .map((name) => `${name}:${shapes[name]!.join('x')}`)
    .join(';');
}

/** The shapes of a set of feeds, for `compile`. */
export function shapesOf(feeds: Readonly<Record<string, { readonly shape: readonly number[] }>>): InputShapes {
  return Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, [...tensor.shape]]));
}

export function cacheKey(key: string, shapes: InputShapes, keepOnDevice: readonly string[] = []): string {
  return `${key}|${shapeSignature(shapes)}|${[...keepOnDevice].sort().join(',')}`;
}

/** The `key` a cache key was made from: input and output names hold no `|`, so the last two fields are the rest. */
function modelKeyOf(cached: string): string {
  return cached.split('|').slice(0, -2).join('|');
}

export function encodeSource(source: ModelSource): Uint8Array {
  return source instanceof Uint8Array ? source : encodeModel(source);
}

/** LRU map of pending-or-ready values; evicted values are handed to `evict` once they resolve. */
export class SessionCache<T> {
  private readonly entries = new Map<string, Promise<T>>();
  readonly counts = { hits: 0, misses: 0, evictions: 0 };

  constructor(
    readonly capacity: number,
    private readonly evict: (value: T) => Promise<void>,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`maxSessions must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value for `key` (marked most recently used), or a new one from `create`. */
  getOrCreate(key: string, create: () => Promise<T>): Promise<T> {
    const cached = this.entries.get(key);
    if (cached) {
      this.counts.hits++;
      this.entries.delete(key);
      this.entries.set(key, cached);
      return cached;
    }
    this.counts.misses++;
    const created = create();
    this.entries.set(key, created);
    // A failed compile is not cached: the next call builds again.
    created.catch(() => {
      if (this.entries.get(key) === created) this.entries.delete(key);
    });
    while (this.entries.size > this.capacity) {
      const [oldestKey, oldest] = this.entries.entries().next().value!;
      this.entries.delete(oldestKey);
      this.counts.evictions++;
      oldest.then(this.evict, () => {});
    }
    return created;
  }

  /** Removes the values whose cache key `matches` and releases them. */
  async delete(matches: (key: string) => boolean): Promise<void> {
    const removed = [...this.entries].filter(([key]) => matches(key));
    for (const [key] of removed) this.entries.delete(key);
    await Promise.allSettled(removed.map(async ([, value]) => this.evict(await value)));
  }

  /** Empties the cache, releasing every value. */
  async clear(): Promise<void> {
    const values = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(values.map(async (value) => this.evict(await value)));
  }
}

/** Compile times of cache misses, for benchmarks. */
export class CompileLog {
  private readonly totals = { buildMs: 0, createMs: 0 };
  private last: CompileRecord | null = null;

  record(record: CompileRecord): void {
    this.totals.buildMs += record.buildMs;
    this.totals.createMs += record.createMs;
    this.last = record;
  }

  snapshot<T>(cache: SessionCache<T>): CompileStats {
    return { ...cache.counts, sessions: cache.size, ...this.totals, last: this.last };
  }
}

/** A device, a thread count and a cache of compiled sessions. */
export class Runtime {
  private readonly cache: SessionCache<GraphSession>;
  private readonly downloader = new DeviceDownloader();
  private readonly log = new CompileLog();
  private disposed = false;

  private constructor(
    readonly device: ResolvedDevice,
    readonly threads: number,
    private readonly optimizationLevel: SessionOptions['optimizationLevel'],
    maxSessions: number,
  ) {
    this.cache = new SessionCache(maxSessions, (session) => session.release());
  }

  static async create(options: RuntimeOptions = {}): Promise<Runtime> {
    const threads = checkThreads(options.threads ?? defaultThreads());
    const device = await resolveDevice(options.device ?? 'cpu');
    return new Runtime(device, threads, options.optimizationLevel, options.maxSessions ?? 32);
  }

  /**
   * The session for `key` at these input shapes: cached, or built by `build` (trace + encode) and
   * compiled. `key` names the model and everything else its graph depends on (dtypes, options).
   */
  compile(key: string, inputShapes: InputShapes, build: ModelBuilder, options: CompileOptions = {}): Promise<GraphSession> {
    if (this.disposed) return Promise.reject(new Error('this runtime was disposed'));
    const signature = shapeSignature(inputShapes);
    return this.cache.getOrCreate(cacheKey(key, inputShapes, options.keepOnDevice), async () => {
      const buildStart = performance.now();
      const model = encodeSource(await build());
      const buildMs = performance.now() - buildStart;
      const createStart = performance.now();
      const session = await GraphSession.create(model, {
        executionProvider: this.device,
        threads: this.threads,
        optimizationLevel: this.optimizationLevel,
        ...options,
      });
      const createMs = performance.now() - createStart;
      this.log.record({ key, signature, buildMs, createMs, modelBytes: model.byteLength });
      return session;
    });
  }

  /**
   * Releases the cached sessions compiled under `key`, at every shape signature, once their runs
   * have finished: a pipeline that runs one network at a time returns each network's memory before
   * the next one is compiled. A later `compile` of the key builds the session again.
   */
  release(key: string): Promise<void> {
    return this.cache.delete((cached) => modelKeyOf(cached) === key);
  }

  /** Host memory copy of a tensor; a DeviceTensor goes through a CPU-located output. */
  download(tensor: Tensor): Promise<HostTensor> {
    return this.downloader.download(tensor);
  }

  downloadAll(tensors: Readonly<Record<string, Tensor>>): Promise<Record<string, HostTensor>> {
    return this.downloader.downloadAll(tensors);
  }

  get stats(): CompileStats {
    return this.log.snapshot(this.cache);
  }

  /** Releases every cached session; later compiles are refused. */
  async dispose(): Promise<void> {
    this.disposed = true;
    await this.cache.clear();
    await this.downloader.release();
  }
}
