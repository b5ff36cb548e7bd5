// Messages between the page and the generation worker (worker.ts). The worker holds the whole
// Kosmos-G pipeline; the page only sends prompts and receives progress and pixels.

export interface DeviceLoadRequest {
  type: 'load';
  /** The model folder's URL (it must serve files.json). */
  modelUrl: string;
  /** 'auto' takes WebGPU when the browser has an adapter, else wasm. */
  device: 'auto' | 'wasm' | 'webgpu';
  /** wasm threads; default: up to 4 in a cross-origin isolated page, else 1. */
  threads?: number;
}

export interface DeviceGenerateRequest {
  type: 'generate';
  id: number;
  prompt: string;
  /** Data URLs, one per `<i>`, in order. */
  images: string[];
  negativePrompt: string;
  steps: number;
  guidance: number;
  scheduler: string;
  seed: number;
  numImages: number;
  /** Absent: the model's default size. */
  width?: number;
  height?: number;
  /** Decode a preview every this many steps; 0: none. */
  previewEvery: number;
}

export type DeviceRequest = DeviceLoadRequest | DeviceGenerateRequest;

/** Interleaved RGB, row-major, as the pipeline returns it. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type DeviceEvent =
  | { type: 'download'; path: string; loaded: number; total: number; cached: boolean }
  | { type: 'loaded'; backend: 'wasm' | 'webgpu'; threads: number; loadMs: number }
  | { type: 'step'; id: number; step: number; steps: number; preview?: RgbImage }
  | { type: 'done'; id: number; images: RgbImage[]; seed: number; generateMs: number }
  | { type: 'error'; id?: number; message: string };
