// The page's side of on-device generation: starts the worker (worker.ts), loads the model once and
// runs one generation at a time, turning the worker's events into promises and callbacks.
import type { DeviceEvent, DeviceGenerateRequest, DeviceLoadRequest, RgbImage } from './protocol.js';

export type { RgbImage };

export interface LoadedDevice {
  backend: 'wasm' | 'webgpu';
  threads: number;
  loadMs: number;
}

export interface DeviceResult {
  images: RgbImage[];
  seed: number;
  generateMs: number;
}

export type DeviceSettings = Omit<DeviceGenerateRequest, 'type' | 'id'>;

export class DeviceGenerator {
  private readonly worker: Worker;
  private loading: Promise<LoadedDevice> | undefined;
  private nextId = 1;
  private readonly listeners = new Set<(event: DeviceEvent) => void>();

  constructor(workerUrl: string | URL) {
    this.worker = new Worker(workerUrl, { type: 'module' });
    this.worker.onmessage = (message: MessageEvent<DeviceEvent>) => {
      for (const listener of this.listeners) listener(message.data);
    };
    this.worker.onerror = (error) => {
      for (const listener of this.listeners) listener({ type: 'error', message: `the generation worker failed: ${error.message}` });
    };
  }

  /** Loads the model (once; later calls share the first load unless it failed). */
  load(modelUrl: string, device: DeviceLoadRequest['device'], onDownload: (path: string, loaded: number, total: number, cached: boolean) => void): Promise<LoadedDevice> {
    this.loading ??= new Promise<LoadedDevice>((resolve, reject) => {
      const listener = (event: DeviceEvent) => {
        if (event.type === 'download') onDownload(event.path, event.loaded, event.total, event.cached);
        else if (event.type === 'loaded') {
          this.listeners.delete(listener);
          resolve({ backend: event.backend, threads: event.threads, loadMs: event.loadMs });
        } else if (event.type === 'error' && event.id === undefined) {
          this.listeners.delete(listener);
          this.loading = undefined;
          reject(new Error(event.message));
        }
      };
      this.listeners.add(listener);
      this.worker.postMessage({ type: 'load', modelUrl, device } satisfies DeviceLoadRequest);
    });
    return this.loading;
  }

  generate(settings: DeviceSettings, onStep: (step: number, steps: number, preview?: RgbImage) => void): Promise<DeviceResult> {
    const id = this.nextId++;
    return new Promise<DeviceResult>((resolve, reject) => {
      const listener = (event: DeviceEvent) => {
        if (event.type === 'step' && event.id === id) onStep(event.step, event.steps, event.preview);
        else if (event.type === 'done' && event.id === id) {
          this.listeners.delete(listener);
          resolve({ images: event.images, seed: event.seed, generateMs: event.generateMs });
        } else if (event.type === 'error' && (event.id === id || event.id === undefined)) {
          this.listeners.delete(listener);
          reject(new Error(event.message));
        }
      };
      this.listeners.add(listener);
      this.worker.postMessage({ type: 'generate', id, ...settings } satisfies DeviceGenerateRequest);
    });
  }

  /** Stops the worker at once (a running generation included); its pending promises reject with `reason`. */
  terminate(reason = 'cancelled'): void {
    this.worker.terminate();
    for (const listener of this.listeners) listener({ type: 'error', message: reason });
  }
}

/** An RGB image as a PNG blob (through a canvas: RGBA with opaque alpha). */
export async function rgbToPng(image: RgbImage): Promise<Blob> {
  const rgba = new Uint8ClampedArray(image.width * image.height * 4);
  for (let i = 0, j = 0; j < image.data.length; i += 4, j += 3) {
    rgba[i] = image.data[j]!;
    rgba[i + 1] = image.data[j + 1]!;
    rgba[i + 2] = image.data[j + 2]!;
    rgba[i + 3] = 255;
  }
  const canvas = new OffscreenCanvas(image.width, image.height);
  canvas.getContext('2d')!.putImageData(new ImageData(rgba, image.width, image.height), 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}
