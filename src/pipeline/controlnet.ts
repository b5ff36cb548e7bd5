// ControlNet as a generation option (reference §8): a diffusers ControlNetModel folder and a control
// image. The image is resized to the output size (diffusers' image processor: no crop), scaled to
// [0, 1] RGB and duplicated for classifier-free guidance; the residuals are multiplied by the
// conditioning scale inside the guidance window [start, end] and by 0 outside it.
import { platform } from '#platform';
import { checkpointInitialized } from '../nn/layers.js';
import type { HostTensor } from '../onnx/dtype.js';
import { ControlNetModel, parseControlNetConfig } from '../models/controlnet.js';

import { type ImageSource, readImageBytes } from './images.js';
import { resizeBicubicRgb } from './resample.js';
import { BoundModel } from './weights.js';

/** Largest decoded control image accepted, width × height. */
const MAX_CONTROL_PIXELS = 64 * 1024 * 1024;

export type LoadedControlNet = BoundModel<ControlNetModel>;

export function loadControlNet(directory: string): Promise<LoadedControlNet> {
  return BoundModel.open('controlnet', directory, (config) => new ControlNetModel(parseControlNetConfig(config), checkpointInitialized));
}

export interface ControlNetOptions {
  /** A ControlNet folder (config.json + weights) or one loaded with `loadControlNet`. */
  model: string | LoadedControlNet;
  /** The control image (file path, data URL or encoded bytes), e.g. an edge map. */
  image: ImageSource;
  /** Multiplies every residual; default 1. */
  conditioningScale?: number;
  /** Fraction of the steps after which the ControlNet starts acting; default 0. */
  guidanceStart?: number;
  /** Fraction of the steps after which it stops; default 1. */
  guidanceEnd?: number;
}

/** Checks the numeric settings; returns them with defaults filled in. */
export function controlSettings(options: ControlNetOptions): { conditioningScale: number; guidanceStart: number; guidanceEnd: number } {
  if (options.image === undefined || options.image === null || options.image === '') throw new Error('ControlNet needs a control image');
  const conditioningScale = options.conditioningScale ?? 1;
  const guidanceStart = options.guidanceStart ?? 0;
  const guidanceEnd = options.guidanceEnd ?? 1;
  if (!Number.isFinite(conditioningScale)) throw new Error(`ControlNet conditioning scale must be a finite number, got ${conditioningScale}`);
  if (!(guidanceStart >= 0 && guidanceStart < guidanceEnd && guidanceEnd <= 1)) {
    throw new Error(`ControlNet guidance window must satisfy 0 ≤ start < end ≤ 1, got [${guidanceStart}, ${guidanceEnd}]`);
  }
  return { conditioningScale, guidanceStart, guidanceEnd };
}

/**
 * diffusers' controlnet_keep: 1 at step i of n unless i/n < start or (i + 1)/n > end. The
 * conditioning scale of step i is the user's scale times this.
 */
export function controlKeep(step: number, steps: number, guidanceStart: number, guidanceEnd: number): number {
  return step / steps < guidanceStart || (step + 1) / steps > guidanceEnd ? 0 : 1;
}

/** The control image as (1, 3, height, width) float32 in [0, 1], resized to the output size. */
export async function loadControlImage(source: ImageSource, width: number, height: number): Promise<HostTensor<'float32'>> {
  const name = typeof source === 'string' && !source.startsWith('data:') ? `control image ${source}` : 'control image';
  const bytes = await readImageBytes(source, name);
  let decoded: Awaited<ReturnType<typeof platform.decodeImage>>;
  try {
    decoded = await platform.decodeImage(bytes, MAX_CONTROL_PIXELS);
  } catch (error) {
    throw new Error(`${name}: not a readable image (${(error as Error).message.replace(/\s+/g, ' ').trim()})`);
  }
  const rgb = resizeBicubicRgb(decoded.rgb, decoded.width, decoded.height, width, height);
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  // Interleaved (H, W, 3) bytes → (3, H, W) in [0, 1].
  for (let i = 0; i < plane; i++) for (let channel = 0; channel < 3; channel++) data[channel * plane + i] = rgb[i * 3 + channel]! / 255;
  return { dtype: 'float32', shape: [1, 3, height, width], data };
}
