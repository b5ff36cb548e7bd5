// The server's side of one generation thread (generation-thread.ts): starts it, waits until the
// pipeline is loaded, hands it one job at a time and turns its messages into job events.
import { Worker } from 'node:worker_threads';
import type { Device } from '../graph/devices.js';
import type { ControlNetOptions } from '../pipeline/controlnet.js';
import type { GeneratedImage, SchedulerChoice } from '../pipeline/diffusion.js';
import type { DiffusionMemoryModel } from '../pipeline/memory.js';
import type { WeightQuantization } from '../pipeline/weights.js';

export type PipelineKind = 'kosmos-g' | 'clip-text';

export interface WorkerInit {
  model: string;
  pipeline: PipelineKind;
  device: Device;
  threads: number;
  /** Weight-only quantization of the linear layers (`--dtype int8|int4`). */
  quantize?: WeightQuantization | undefined;
}

/** What the server needs to know of the loaded model to check requests before queueing them. */
export interface ModelInfo {
  defaultSize: number;
  sizeMultiple: number;
  memoryModel: DiffusionMemoryModel;
}

/** One generation, every setting resolved; assets are already paths of the server's own files. */
export interface JobRequest {
  id: string;
  prompt: string;
  /** Encoded image files, decoded in the thread. */
  images: Uint8Array[];
  negativePrompt: string;
  steps: number;
  guidance: number;
  scheduler: SchedulerChoice;
  seed: number;
  numImages: number;
  width: number;
  height: number;
  lora: { file: string; scale: number } | null;
  controlnet: { model: string; image: Uint8Array; conditioningScale: number; preprocess?: ControlNetOptions['preprocess'] } | null;
  previewEvery: number;
  /** An Int32Array(1) over this buffer: set to 1 to stop the job after its current step. */
  cancel: SharedArrayBuffer;
}

export type ThreadCommand = { type: 'run'; job: JobRequest } | { type: 'close' };

export type ThreadEvent =
  | { type: 'ready'; info: ModelInfo }
  | { type: 'fatal'; message: string }
  | { type: 'started'; id: string; totalSteps: number }
  | { type: 'step'; id: string; step: number; totalSteps: number; preview?: GeneratedImage }
  | { type: 'done'; id: string; images: GeneratedImage[]; seed: number; warnings: string[]; generateMs: number }
  | { type: 'failed'; id: string; message: string }
  | { type: 'cancelled'; id: string };

export type JobEvent = Exclude<ThreadEvent, { type: 'ready' } | { type: 'fatal' }>;

export class GenerationWorker {
  private current: { id: string; onEvent: (event: JobEvent) => void; resolve: () => void } | null = null;
  private failure: Error | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly info: ModelInfo,
  ) {
    worker.on('message', (event: ThreadEvent) => this.receive(event));
    worker.on('error', (error) => this.fail(new Error(`the generation thread failed: ${error.message}`)));
    worker.on('exit', (code) => this.fail(new Error(`the generation thread exited (code ${code})`)));
  }

  /** Starts a thread and resolves once its pipeline is loaded (or rejects with the loader's message). */
  static start(init: WorkerInit): Promise<GenerationWorker> {
    const worker = new Worker(new URL('./generation-thread.js', import.meta.url), { workerData: init });
    return new Promise((resolve, reject) => {
      const onMessage = (event: ThreadEvent) => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        if (event.type === 'ready') resolve(new GenerationWorker(worker, event.info));
        else {
          void worker.terminate();
          reject(new Error(event.type === 'fatal' ? event.message : `unexpected first message ${event.type} from the generation thread`));
        }
      };
      const onExit = (code: number) => reject(new Error(`the generation thread exited (code ${code}) while loading ${init.model}`));
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      worker.once('error', (error) => reject(new Error(`the generation thread failed while loading ${init.model}: ${error.message}`)));
    });
  }

  get busy(): boolean {
    return this.current !== null;
  }

  /** Why the thread is gone (it failed or exited), or null while it works. */
  get broken(): Error | null {
    return this.failure;
  }

  /** Runs one job; resolves after its last event (done, failed or cancelled). */
  run(job: JobRequest, onEvent: (event: JobEvent) => void): Promise<void> {
    if (this.current) return Promise.reject(new Error('this generation thread is busy'));
    if (this.failure) {
      onEvent({ type: 'failed', id: job.id, message: this.failure.message });
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.current = { id: job.id, onEvent, resolve };
      // Copied, not transferred: an upload's bytes may sit in Node's shared Buffer pool.
      this.worker.postMessage({ type: 'run', job } satisfies ThreadCommand);
    });
  }

  private receive(event: ThreadEvent): void {
    const current = this.current;
    if (!current || !('id' in event) || event.id !== current.id) return;
    current.onEvent(event);
    if (event.type === 'done' || event.type === 'failed' || event.type === 'cancelled') {
      this.current = null;
      current.resolve();
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const current = this.current;
    if (current) {
      this.current = null;
      current.onEvent({ type: 'failed', id: current.id, message: error.message });
      current.resolve();
    }
  }

  /** Waits for the job in flight, then disposes of the pipeline and ends the thread. */
  async close(): Promise<void> {
    if (this.failure) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ type: 'close' } satisfies ThreadCommand);
    await exited;
  }
}
