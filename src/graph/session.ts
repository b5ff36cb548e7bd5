// Executes encoded graphs with onnxruntime-node: host tensors in, host tensors out.
import * as ort from 'onnxruntime-node';
import type { DType, HostTensor, TypedArray } from '../onnx/dtype.js';

export type ExecutionProvider = 'cpu' | 'webgpu';

export interface SessionOptions {
  executionProvider?: ExecutionProvider;
  /** Intra-op threads on the CPU provider (0 = ORT's default, one per core). */
  threads?: number;
  /** External data files the model references, by the location string used in its initializers. */
  externalData?: { path: string; data: Uint8Array | string }[];
  /** Output names to keep in GPU memory between runs (webgpu only). */
  keepOnDevice?: readonly string[];
  optimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
}

export function toOrtTensor(tensor: HostTensor): ort.Tensor {
  return new ort.Tensor(tensor.dtype, tensor.data as never, tensor.shape);
}

export function fromOrtTensor(tensor: ort.Tensor): HostTensor {
  return { dtype: tensor.type as DType, shape: [...tensor.dims], data: tensor.data as TypedArray };
}

/** One compiled ONNX model ready to run. */
export class GraphSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<GraphSession> {
    const provider = options.executionProvider ?? 'cpu';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      graphOptimizationLevel: options.optimizationLevel ?? 'all',
      executionMode: 'sequential',
      enableCpuMemArena: true,
      enableMemPattern: true,
    };
    if (options.threads) {
      sessionOptions.intraOpNumThreads = options.threads;
      sessionOptions.interOpNumThreads = 1;
    }
    if (options.externalData) sessionOptions.externalData = options.externalData;
    if (options.keepOnDevice && provider === 'webgpu') {
      sessionOptions.preferredOutputLocation = Object.fromEntries(options.keepOnDevice.map((name) => [name, 'gpu-buffer' as const]));
    }
    const session = await ort.InferenceSession.create(model, sessionOptions);
    return new GraphSession(session, session.inputNames, session.outputNames);
  }

  /** Runs with host tensors (or tensors kept on the device by an earlier run) as inputs. */
  async runRaw(feeds: Record<string, HostTensor | ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) {
      const feed = feeds[name];
      if (!feed) throw new Error(`missing input ${name}`);
      ortFeeds[name] = feed instanceof ort.Tensor ? feed : toOrtTensor(feed as HostTensor);
    }
    return (await this.session.run(ortFeeds)) as Record<string, ort.Tensor>;
  }

  async run(feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
    const results = await this.runRaw(feeds);
    return Object.fromEntries(Object.entries(results).map(([name, tensor]) => [name, fromOrtTensor(tensor)]));
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
