// The generation worker: Kosmos-G entirely in the page, on onnxruntime-web. The pipeline is the
// same code the CLI and the server run; only the platform differs (src/platform/browser.ts: the
// model folder is fetched with its manifest and cached, images are decoded by the browser). It
// runs here rather than on the page's thread because a session run blocks the thread it runs on.
import * as ort from 'onnxruntime-web';
import { mountFolder, onDownloadProgress, platform } from '../../../src/platform/browser.js';
import { KosmosGPipeline } from '../../../src/pipeline/kosmos_g_pipeline.js';
import type { SchedulerChoice } from '../../../src/pipeline/diffusion.js';
import { checkThreads } from '../../../src/graph/devices.js';
import type { DeviceEvent, DeviceGenerateRequest, DeviceLoadRequest } from './protocol.js';

/** The worker's global scope, typed as far as it is used (the page's lib has no WorkerGlobalScope). */
const scope = globalThis as unknown as {
  postMessage(message: DeviceEvent, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent) => void) | null;
  crossOriginIsolated: boolean;
};

/** More wasm threads than this stop paying on the 64-channel convolutions of the mini models. */
const MAX_WASM_THREADS = 4;
const MODEL_ROOT = '/model';

let pipeline: Promise<KosmosGPipeline> | undefined;

function post(event: DeviceEvent): void {
  // Pixel buffers move to the page instead of being copied.
  const images = event.type === 'done' ? event.images : event.type === 'step' && event.preview ? [event.preview] : [];
  scope.postMessage(event, [...new Set(images.map((image) => image.data.buffer as ArrayBuffer))]);
}

async function load(request: DeviceLoadRequest): Promise<KosmosGPipeline> {
  const start = performance.now();
  // The wasm binaries are copied beside this worker by the build (web/build.mjs).
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  // Threads need SharedArrayBuffer, which only a cross-origin isolated page has.
  const threads = scope.crossOriginIsolated ? (request.threads === undefined ? Math.min(MAX_WASM_THREADS, platform.cores()) : checkThreads(request.threads)) : 1;
  ort.env.wasm.numThreads = threads;
  const stop = onDownloadProgress((progress) => post({ type: 'download', ...progress }));
  try {
    await mountFolder(MODEL_ROOT, new URL(request.modelUrl, import.meta.url));
    // The runtime resolves 'auto' as everywhere else (graph/devices.ts): WebGPU when an adapter answers.
    const loaded = await KosmosGPipeline.fromPretrained(MODEL_ROOT, { device: request.device === 'wasm' ? 'cpu' : request.device, threads });
    post({ type: 'loaded', backend: loaded.runtime.device === 'webgpu' ? 'webgpu' : 'wasm', threads, loadMs: performance.now() - start });
    return loaded;
  } finally {
    stop();
  }
}

async function generate(request: DeviceGenerateRequest): Promise<void> {
  if (!pipeline) throw new Error('no model is loaded');
  const loaded = await pipeline;
  const start = performance.now();
  const result = await loaded.generate({
    prompt: request.prompt,
    images: request.images,
    negativePrompt: request.negativePrompt,
    steps: request.steps,
    guidanceScale: request.guidance,
    scheduler: request.scheduler as SchedulerChoice,
    seed: request.seed,
    numImages: request.numImages,
    width: request.width,
    height: request.height,
    previewEvery: request.previewEvery,
    onStep: ({ step, steps, preview }) => post({ type: 'step', id: request.id, step: step + 1, steps, ...(preview?.[0] ? { preview: preview[0] } : {}) }),
  });
  post({ type: 'done', id: request.id, images: result.images, seed: result.settings.seed, generateMs: performance.now() - start });
}

scope.onmessage = (event: MessageEvent) => {
  const request = event.data as DeviceLoadRequest | DeviceGenerateRequest;
  if (request.type === 'load') {
    pipeline = load(request);
    pipeline.catch((error: unknown) => {
      pipeline = undefined;
      post({ type: 'error', message: error instanceof Error ? error.message : String(error) });
    });
  } else {
    generate(request).catch((error: unknown) => post({ type: 'error', id: request.id, message: error instanceof Error ? error.message : String(error) }));
  }
};
