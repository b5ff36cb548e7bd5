// Executes encoded graphs with ONNX Runtime (onnxruntime-node, or onnxruntime-web in a page). Host tensors go in as zero-copy views; outputs come
// back as host tensors, or, on WebGPU, named outputs stay in GPU memory as DeviceTensors to be fed
// to the next run (training state). Node cannot read a GPU buffer directly, so DeviceDownloader
// copies one out through a one-node Identity session whose output lives on the CPU.
import { platform } from '#platform';
import type * as ort from 'onnxruntime-common';
import type { DType, HostTensor, TypedArray } from '../onnx/dtype.js';
import { encodeModel } from '../onnx/proto.js';
import { Graph } from './graph.js';
import { checkThreads } from './devices.js';

export type ExecutionProvider = 'cpu' | 'webgpu';

/**
 * An external data file under the location string its initializers use (`path`): its bytes, or the
 * path of the file. The platform decides how ORT gets a file given by path: on Node it is hard-linked
 * into a per-process folder that ORT reads itself (read into memory only where no link can be made),
 * in a page its fetched bytes are handed over.
 */
export interface ExternalDataFile {
  path: string;
  data: Uint8Array | string;
}

export interface SessionOptions {
  executionProvider?: ExecutionProvider;
  /** Intra-op threads (positive integer); ORT's own default, one per core, when left out. */
  threads?: number;
  externalData?: readonly ExternalDataFile[];
  /** Folder that external data locations are relative to, read by ORT from disk. */
  externalDataDirectory?: string;
  /** Output names kept in GPU memory between runs (webgpu only; on the CPU host memory is the device). */
  keepOnDevice?: readonly string[];
  optimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Whether ORT's idle worker threads spin waiting for work (its default) or sleep. Spinning saves
   * the wake-up between kernels; on a machine with no core to spare it takes time from the other
   * threads and the garbage collector.
   */
  spinning?: boolean;
  /**
   * Records ORT's time of every kernel of every run and writes it, when the session is released,
   * to `<profilePrefix>_<date>.json` (the Chrome trace format): where a run's time goes.
   */
  profilePrefix?: string;
}

/** A tensor a WebGPU run left in GPU memory: feed it to a later run, download it, or dispose it. */
export class DeviceTensor {
  constructor(readonly tensor: ort.Tensor) {}

  get dtype(): DType {
    return this.tensor.type as DType;
  }

  get shape(): number[] {
    return [...this.tensor.dims];
  }

  /** Frees the GPU buffer; callers dispose the previous step's state once the new one exists. */
  dispose(): void {
    this.tensor.dispose();
  }
}

export type Tensor = HostTensor | DeviceTensor;

export function toOrtTensor(tensor: Tensor): ort.Tensor {
  if (tensor instanceof DeviceTensor) return tensor.tensor;
  if (tensor.dtype === 'bfloat16') throw new Error('bfloat16 tensors cannot be fed to onnxruntime; convert to float32');
  return new platform.ort.Tensor(tensor.dtype, tensor.data as never, tensor.shape);
}

export function fromOrtTensor(tensor: ort.Tensor): HostTensor {
  return { dtype: tensor.type as DType, shape: [...tensor.dims], data: tensor.data as TypedArray };
}

async function sessionOptionsFor(options: SessionOptions): Promise<ort.InferenceSession.SessionOptions> {
  const provider = options.executionProvider ?? 'cpu';
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    graphOptimizationLevel: options.optimizationLevel ?? 'all',
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
  };
  if (options.profilePrefix !== undefined) Object.assign(sessionOptions, { enableProfiling: true, profileFilePrefix: options.profilePrefix });
  if (options.threads !== undefined) {
    sessionOptions.intraOpNumThreads = checkThreads(options.threads);
    // Sequential execution never uses the inter-op pool.
    sessionOptions.interOpNumThreads = 1;
  }
  let externalFolder = options.externalDataDirectory;
  if (options.externalData) {
    // Files given by path are read by ORT from a folder where the platform can offer one; only
    // bytes (or files no folder can offer) go through memory.
    const inMemory: { path: string; data: Uint8Array }[] = [];
    const made: { path: string; data: Uint8Array }[] = [];
    for (const { path, data } of options.externalData) {
      if (typeof data !== 'string') made.push({ path, data });
      else if (options.externalDataDirectory) inMemory.push({ path, data: await platform.readBytes(data) });
      else {
        const source = await platform.externalData(path, data);
        if ('folder' in source) externalFolder = source.folder;
        else inMemory.push({ path, data: source.bytes });
      }
    }
    // ORT takes external data all from files or all from memory: bytes made in memory (quantized
    // weights) join the folder of the files where there is one.
    for (const entry of made) {
      const source = externalFolder && !inMemory.length ? await platform.externalBytes(entry.path, entry.data) : null;
      if (!source || !('folder' in source) || source.folder !== externalFolder) inMemory.push(entry);
    }
    if (inMemory.length) sessionOptions.externalData = inMemory;
  }
  // Session config entries (string values, as ORT's C API takes them).
  const entries: Record<string, unknown> = {};
  if (options.spinning === false) Object.assign(entries, { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } });
  // Read by ORT when a model loaded from bytes has external initializers.
  if (externalFolder) entries['model_external_initializers_file_folder_path'] = externalFolder;
  if (Object.keys(entries).length) sessionOptions.extra = { session: entries };
  if (provider === 'webgpu' && options.keepOnDevice?.length) {
    sessionOptions.preferredOutputLocation = Object.fromEntries(options.keepOnDevice.map((name) => [name, 'gpu-buffer' as const]));
  }
  return sessionOptions;
}

/** One compiled ONNX model ready to run. */
export class GraphSession {
  private readonly inFlight = new Set<Promise<unknown>>();
  private released = false;

  private constructor(
    private readonly session: ort.InferenceSession,
    /** The options the session was created with (threads, providers, output locations), external data left out. */
    readonly sessionOptions: Readonly<ort.InferenceSession.SessionOptions>,
    /** Outputs this session leaves in GPU memory. Empty on the CPU. */
    readonly deviceOutputs: ReadonlySet<string>,
  ) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<GraphSession> {
    const sessionOptions = await sessionOptionsFor(options);
    const session = await platform.ort.InferenceSession.create(model, sessionOptions);
    // Names are checked on every provider, so a wrong one shows on a CPU-only machine too.
    for (const name of options.keepOnDevice ?? []) {
      if (!session.outputNames.includes(name)) {
        await session.release();
        throw new Error(`keepOnDevice names ${name}, which is not an output (outputs: ${session.outputNames.join(', ')})`);
      }
    }
    // The external bytes are ORT's now; keeping them referenced here would double their memory.
    const { externalData, ...kept } = sessionOptions;
    return new GraphSession(session, kept, new Set(Object.keys(sessionOptions.preferredOutputLocation ?? {})));
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs; outputs in `deviceOutputs` stay on the device, the rest come back to host memory. Host
   * outputs named in `outputsInto` are written into those tensors (same dtype and shape, not aliasing
   * any feed) and returned as they are, so ORT allocates no output buffer of its own for them.
   */
  async runOnDevice(feeds: Readonly<Record<string, Tensor>>, outputsInto: Readonly<Record<string, HostTensor>> = {}): Promise<Record<string, Tensor>> {
    if (this.released) throw new Error('this session was released (evicted from its runtime cache or disposed); compile it again');
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.session.inputNames) {
      const feed = feeds[name];
      if (!feed) throw new Error(`missing input ${name} (inputs: ${this.session.inputNames.join(', ')})`);
      ortFeeds[name] = toOrtTensor(feed);
    }
    const fetches = Object.fromEntries(this.session.outputNames.map((name) => {
      const target = outputsInto[name];
      return [name, target && !this.deviceOutputs.has(name) ? toOrtTensor(target) : null];
    }));
    const running = this.session.run(ortFeeds, fetches);
    this.inFlight.add(running);
    try {
      const results = await running;
      return Object.fromEntries(
        Object.entries(results).map(([name, tensor]) => [name, fetches[name] ? outputsInto[name]! : this.deviceOutputs.has(name) ? new DeviceTensor(tensor) : fromOrtTensor(tensor)]),
      );
    } finally {
      this.inFlight.delete(running);
    }
  }

  /** Runs with every output in host memory; a session keeping outputs on the device needs runOnDevice. */
  async run(feeds: Readonly<Record<string, Tensor>>): Promise<Record<string, HostTensor>> {
    if (this.deviceOutputs.size) {
      throw new Error(`this session keeps ${[...this.deviceOutputs].join(', ')} on the device: use runOnDevice and download them`);
    }
    return (await this.runOnDevice(feeds)) as Record<string, HostTensor>;
  }

  /** Releases the native session once the runs already started have finished. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await Promise.allSettled(this.inFlight);
    await this.session.release();
  }
}

/**
 * Copies DeviceTensors to host memory. Every WebGPU session of the process shares one GPU context,
 * so a buffer from any of them can feed an Identity session whose output is CPU-located; one such
 * session is kept per element type and rank (dimensions symbolic).
 */
export class DeviceDownloader {
  private readonly sessions = new Map<string, Promise<GraphSession>>();

  async download(tensor: Tensor): Promise<HostTensor> {
    if (!(tensor instanceof DeviceTensor)) return tensor;
    const session = await this.identitySession(tensor.dtype, tensor.shape.length);
    const { y } = await session.run({ x: tensor });
    return y!;
  }

  async downloadAll(tensors: Readonly<Record<string, Tensor>>): Promise<Record<string, HostTensor>> {
    const entries = await Promise.all(Object.entries(tensors).map(async ([name, tensor]) => [name, await this.download(tensor)] as const));
    return Object.fromEntries(entries);
  }

  private identitySession(dtype: DType, rank: number): Promise<GraphSession> {
    const key = `${dtype}/${rank}`;
    let session = this.sessions.get(key);
    if (!session) {
      const graph = new Graph('download');
      const x = graph.input('x', dtype, Array.from({ length: rank }, (_, axis) => `d${axis}`));
      session = GraphSession.create(encodeModel(graph.toModel({ y: x })), { executionProvider: 'webgpu' });
      session.catch(() => this.sessions.delete(key));
      this.sessions.set(key, session);
    }
    return session;
  }

  async release(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.allSettled(sessions.map(async (session) => (await session).release()));
  }
}
