// The worker thread that generates: it loads the pipeline once and runs one job at a time, so
// onnxruntime-node's blocking run(), the graph tracing and the image decoding all stay off the
// server's event loop. It talks to generation-worker.ts by messages; a job is cancelled through a
// shared flag the sampling loop reads after every step.
import { parentPort, workerData } from 'node:worker_threads';
import type { GeneratedImage, SamplingSettings } from '../pipeline/diffusion.js';
import { KosmosGPipeline } from '../pipeline/kosmos_g_pipeline.js';
import { TextToImagePipeline } from '../pipeline/text_to_image.js';
import type { JobRequest, ThreadCommand, ThreadEvent, WorkerInit } from './generation-worker.js';

if (!parentPort) throw new Error('generation-thread must be started as a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;

class Cancelled extends Error {}

function post(event: ThreadEvent, transfer: ArrayBuffer[] = []): void {
  port.postMessage(event, transfer);
}

/** The image's own buffer when it owns it whole (moved, not copied), else a copy. */
function ownedBuffer(image: GeneratedImage): ArrayBuffer {
  const { data } = image;
  if (data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) return data.buffer;
  return data.slice().buffer;
}

type Pipeline = KosmosGPipeline | TextToImagePipeline;

async function run(pipeline: Pipeline, job: JobRequest): Promise<void> {
  const cancelled = new Int32Array(job.cancel);
  const isCancelled = () => Atomics.load(cancelled, 0) !== 0;
  const started = performance.now();
  let announced = false;
  try {
    if (isCancelled()) throw new Cancelled();
    const options = {
      prompt: job.prompt,
      negativePrompt: job.negativePrompt,
      steps: job.steps,
      guidanceScale: job.guidance,
      scheduler: job.scheduler,
      seed: job.seed,
      numImages: job.numImages,
      width: job.width,
      height: job.height,
      lora: job.lora ?? undefined,
      controlnet: job.controlnet ?? undefined,
      previewEvery: job.previewEvery,
      onStep: (info: { step: number; steps: number; preview?: GeneratedImage[] }) => {
        if (!announced) {
          announced = true;
          post({ type: 'started', id: job.id, totalSteps: info.steps });
        }
        const preview = info.preview?.[0];
        post({ type: 'step', id: job.id, step: info.step + 1, totalSteps: info.steps, preview }, preview ? [ownedBuffer(preview)] : []);
        // Between steps is the only safe place to stop: a run in flight cannot be interrupted.
        if (isCancelled()) throw new Cancelled();
      },
    };
    const result = pipeline instanceof KosmosGPipeline ? await pipeline.generate({ ...options, images: job.images }) : await pipeline.generate(options);
    const settings: SamplingSettings = result.settings;
    post(
      { type: 'done', id: job.id, images: result.images, seed: settings.seed, warnings: result.warnings, generateMs: performance.now() - started },
      result.images.map(ownedBuffer),
    );
  } catch (error) {
    if (error instanceof Cancelled) post({ type: 'cancelled', id: job.id });
    else post({ type: 'failed', id: job.id, message: error instanceof Error ? error.message : String(error) });
  }
}

async function main(): Promise<void> {
  let pipeline: Pipeline;
  try {
    const options = { device: init.device, threads: init.threads, ...(init.quantize ? { quantize: init.quantize } : {}) };
    pipeline = init.pipeline === 'kosmos-g' ? await KosmosGPipeline.fromPretrained(init.model, options) : await TextToImagePipeline.fromPretrained(init.model, options);
  } catch (error) {
    post({ type: 'fatal', message: error instanceof Error ? error.message : String(error) });
    return;
  }
  const { diffusion } = pipeline;
  post({
    type: 'ready',
    info: {
      defaultSize: diffusion.defaultSize,
      sizeMultiple: diffusion.sizeMultiple,
      memoryModel: {
        unet: { block_out_channels: diffusion.unet.model.config.block_out_channels },
        vae: { block_out_channels: diffusion.vae.model.config.block_out_channels, mid_block_add_attention: diffusion.vae.model.config.mid_block_add_attention },
        parameters: diffusion.unet.model.parameterCount() + diffusion.vae.model.parameterCount(),
      },
    },
  });
  // Jobs arrive one at a time (the caller waits for each to end); the chain keeps them in order anyway.
  let chain = Promise.resolve();
  port.on('message', (command: ThreadCommand) => {
    if (command.type === 'run') chain = chain.then(() => run(pipeline, command.job));
    else
      chain = chain.then(async () => {
        await pipeline.dispose();
        port.close();
      });
  });
}

void main();
