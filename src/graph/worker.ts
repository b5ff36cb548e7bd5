// Sessions in a worker_threads worker: onnxruntime-node's run() holds its thread for the whole run,
// so a server runs graphs here and its own event loop keeps answering. Tracing and encoding stay
// on the caller's thread (build functions are closures); model bytes, input tensors and outputs
// cross by transfer, not copy, whenever a typed array owns its whole buffer.
import { Worker } from 'node:worker_threads';
import type { HostTensor } from '../onnx/dtype.js';
import { type Device, type ResolvedDevice, checkThreads, defaultThreads } from './devices.js';
import {
  CompileLog,
  type CompileOptions,
  type CompileStats,
  type InputShapes,
  type ModelBuilder,
  type RuntimeOptions,
  SessionCache,
  cacheKey,
  encodeSource,
  shapeSignature,
} from './runtime.js';
import type { SessionOptions } from './session.js';

/** Tensors cannot stay on the device across threads, so worker sessions return every output to the host. */
export type WorkerCompileOptions = Omit<CompileOptions, 'keepOnDevice'>;

export interface WorkerRunOptions {
  /** Copy the input buffers instead of moving them; by default they are transferred and left detached here. */
  copyInputs?: boolean;
}

// ---- messages between the two threads ------------------------------------------------------------

export type WorkerCommand =
  | { type: 'init'; device: Device; threads: number; optimizationLevel: SessionOptions['optimizationLevel'] }
  | { type: 'create'; session: number; model: Uint8Array; options: WorkerCompileOptions }
  | { type: 'run'; session: number; feeds: Record<string, HostTensor> }
  | { type: 'release'; session: number }
  /** Finish the work in flight, release every session and end the thread. */
  | { type: 'close' };

export interface WorkerRequest {
  id: number;
  command: WorkerCommand;
}

export interface SerializedError {
  name: string;
  message: string;
  stack: string;
}

export type WorkerReply = { id: number; value: unknown } | { id: number; error: SerializedError };

export interface InitReply {
  device: ResolvedDevice;
}

export interface CreateReply {
  inputNames: string[];
  outputNames: string[];
  createMs: number;
}

/** The buffers of these arrays that can move to another thread: each must be the array's whole buffer. */
export function transferList(arrays: Iterable<ArrayBufferView>): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const array of arrays) {
    const buffer = array.buffer;
    if (buffer instanceof ArrayBuffer && array.byteOffset === 0 && array.byteLength === buffer.byteLength) buffers.add(buffer);
  }
  return [...buffers];
}

// ---- the caller's side ---------------------------------------------------------------------------

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** Request/reply over one worker; every pending request fails if the worker dies. */
class WorkerChannel {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | null = null;
  private readonly exited: Promise<void>;

  constructor(private readonly worker: Worker) {
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (reply: WorkerReply) => this.settle(reply));
    worker.on('error', (error) => this.fail(new Error(`the worker thread failed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => this.fail(new Error(`the worker thread exited with code ${code}`)));
    // Referenced only while a request is pending: an idle runtime does not keep the process alive.
    worker.unref();
  }

  get closed(): boolean {
    return this.failure !== null;
  }

  request<T>(command: WorkerCommand, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      try {
        this.worker.postMessage({ id, command } satisfies WorkerRequest, transfer);
      } catch (error) {
        this.finish(id);
        reject(error as Error);
      }
    });
  }

  private finish(id: number): Pending | undefined {
    const pending = this.pending.get(id);
    // A late reply to a request already rejected by close() must not unref the closing worker.
    if (!pending) return undefined;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    return pending;
  }

  private settle(reply: WorkerReply): void {
    const pending = this.finish(reply.id);
    if (!pending) return;
    if ('error' in reply) {
      // The worker's message, unchanged, with both threads' stacks.
      const error = new Error(reply.error.message);
      error.name = reply.error.name;
      error.stack = `${error.stack}\n  in the worker thread:\n${reply.error.stack}`;
      pending.reject(error);
    } else {
      pending.resolve(reply.value);
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const id of [...this.pending.keys()]) this.finish(id)!.reject(this.failure);
  }

  /**
   * Rejects pending requests now and ends the worker once its native work is done. Terminating the
   * thread during a run would abort the whole process: onnxruntime-node's binding cannot hand the
   * finished run back to a stopped JavaScript environment.
   */
  async close(): Promise<void> {
    this.fail(new Error('the worker runtime was closed'));
    this.worker.ref();
    this.worker.postMessage({ id: 0, command: { type: 'close' } } satisfies WorkerRequest);
    await this.exited;
  }
}

/** A session compiled inside the worker. */
export class WorkerSession {
  private released = false;

  constructor(
    private readonly channel: WorkerChannel,
    private readonly id: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  /** Runs in the worker; the outputs' buffers are transferred back. */
  run(feeds: Readonly<Record<string, HostTensor>>, options: WorkerRunOptions = {}): Promise<Record<string, HostTensor>> {
    if (this.released) return Promise.reject(new Error('this session was released (evicted from its runtime cache or closed); compile it again'));
    const needed: Record<string, HostTensor> = {};
    for (const name of this.inputNames) {
      const feed = feeds[name];
      if (!feed) return Promise.reject(new Error(`missing input ${name} (inputs: ${this.inputNames.join(', ')})`));
      needed[name] = feed;
    }
    const transfer = options.copyInputs ? [] : transferList(Object.values(needed).map((tensor) => tensor.data));
    return this.channel.request({ type: 'run', session: this.id, feeds: needed }, transfer);
  }

  /** Releases the session in the worker once its runs already started have finished. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (!this.channel.closed) await this.channel.request({ type: 'release', session: this.id });
  }
}

/** The Runtime surface (`compile`, then `run` on the session) with every session in one worker thread. */
export class WorkerRuntime {
  private readonly cache: SessionCache<WorkerSession>;
  private readonly log = new CompileLog();
  private nextSession = 1;

  private constructor(
    private readonly channel: WorkerChannel,
    readonly device: ResolvedDevice,
    readonly threads: number,
    maxSessions: number,
  ) {
    this.cache = new SessionCache(maxSessions, (session) => session.release());
  }

  /** Starts the worker; it resolves the device itself, so a GPU context is only ever opened there. */
  static async create(options: RuntimeOptions = {}): Promise<WorkerRuntime> {
    const threads = checkThreads(options.threads ?? defaultThreads());
    const channel = new WorkerChannel(new Worker(new URL('./worker-entry.js', import.meta.url)));
    try {
      const { device } = await channel.request<InitReply>({
        type: 'init',
        device: options.device ?? 'cpu',
        threads,
        optimizationLevel: options.optimizationLevel,
      });
      return new WorkerRuntime(channel, device, threads, options.maxSessions ?? 32);
    } catch (error) {
      await channel.close();
      throw error;
    }
  }

  /**
   * As `Runtime.compile`. Bytes returned by `build` are moved to the worker (their buffer is
   * detached here); in-memory external data is copied, so large weights are best given as
   * `externalDataDirectory`, which the worker reads from disk itself.
   */
  compile(key: string, inputShapes: InputShapes, build: ModelBuilder, options: WorkerCompileOptions = {}): Promise<WorkerSession> {
    if (this.channel.closed) return Promise.reject(new Error('the worker runtime was closed'));
    const signature = shapeSignature(inputShapes);
    return this.cache.getOrCreate(cacheKey(key, inputShapes), async () => {
      const buildStart = performance.now();
      const model = encodeSource(await build());
      const buildMs = performance.now() - buildStart;
      const id = this.nextSession++;
      const modelBytes = model.byteLength;
      const created = await this.channel.request<CreateReply>({ type: 'create', session: id, model, options }, transferList([model]));
      this.log.record({ key, signature, buildMs, createMs: created.createMs, modelBytes });
      return new WorkerSession(this.channel, id, created.inputNames, created.outputNames);
    });
  }

  get stats(): CompileStats {
    return this.log.snapshot(this.cache);
  }

  /** Ends the worker once its current run is done; pending and later calls reject at once. */
  async close(): Promise<void> {
    await this.channel.close();
    await this.cache.clear();
  }
}
