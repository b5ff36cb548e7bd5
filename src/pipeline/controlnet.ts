// ControlNet as a generation option (reference §8): a diffusers ControlNetModel folder and a control
// image, either the control map itself or an image a preprocessor turns into one (Canny edges). A
// layout map is drawn by the caller from a world scene (world/layout-scene.ts, a layer above) and
// arrives as the control image; its description is only recorded, so a result says how its map was
// made. As in the official demo (`resize_image`), the output size follows the control image: its
// short side becomes the model's default size and both sides are rounded to a size the U-Net
// accepts; the image is resized to the output size (no crop) before any preprocessing, scaled to
// [0, 1] RGB and duplicated for classifier-free guidance. The residuals are multiplied by the conditioning scale
// inside the guidance window [start, end] and by 0 outside it.
import { platform } from '#platform';
import { checkpointInitialized } from '../nn/layers.js';
import type { HostTensor } from '../onnx/dtype.js';
import { ControlNetModel, parseControlNetConfig } from '../models/controlnet.js';
import { type CannyThresholds, cannyEdges, controlTensor } from './control-maps.js';
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
  /** The control image (file path, data URL or encoded bytes): the map itself, or what `preprocess` makes one from. */
  image: ImageSource;
  /**
   * Canny edges of `image` (cv2.Canny's thresholds, the annotator's 100 and 200 by default); a
   * layout: `image` is the map drawn from the scene, recorded with it; absent: `image` is the map.
   */
  preprocess?: ({ kind: 'canny' } & Partial<CannyThresholds>) | LayoutPreprocess;
  /** Multiplies every residual; default 1. */
  conditioningScale?: number;
  /** Fraction of the steps after which the ControlNet starts acting; default 0. */
  guidanceStart?: number;
  /** Fraction of the steps after which it stops; default 1. */
  guidanceEnd?: number;
}

/** A control image that is the layout map of a world scene: `scene` is its description, as the world normalised it. */
export interface LayoutPreprocess {
  kind: 'layout';
  scene: Readonly<Record<string, unknown>>;
}

/** The settings of a ControlNet run, defaults filled in; `preprocess` null for a ready map. */
export interface ControlRunSettings {
  conditioningScale: number;
  guidanceStart: number;
  guidanceEnd: number;
  preprocess: ({ kind: 'canny' } & CannyThresholds) | LayoutPreprocess | null;
}

/** Checks the numeric settings and the preprocessor; returns them with defaults filled in. */
export function controlSettings(options: ControlNetOptions): ControlRunSettings {
  if (options.image === undefined || options.image === null || options.image === '') throw new Error('ControlNet needs a control image');
  const conditioningScale = options.conditioningScale ?? 1;
  const guidanceStart = options.guidanceStart ?? 0;
  const guidanceEnd = options.guidanceEnd ?? 1;
  if (!Number.isFinite(conditioningScale)) throw new Error(`ControlNet conditioning scale must be a finite number, got ${conditioningScale}`);
  if (!(guidanceStart >= 0 && guidanceStart < guidanceEnd && guidanceEnd <= 1)) {
    throw new Error(`ControlNet guidance window must satisfy 0 ≤ start < end ≤ 1, got [${guidanceStart}, ${guidanceEnd}]`);
  }
  return { conditioningScale, guidanceStart, guidanceEnd, preprocess: preprocessSettings(options.preprocess) };
}

/** The preprocessor checked, Canny's default thresholds filled in. */
function preprocessSettings(preprocess: ControlNetOptions['preprocess']): ControlRunSettings['preprocess'] {
  if (preprocess === undefined) return null;
  if (preprocess?.kind === 'layout') {
    if (typeof preprocess.scene !== 'object' || preprocess.scene === null) throw new Error(`ControlNet layout preprocess needs the scene it was drawn from, got ${JSON.stringify(preprocess.scene)}`);
    return { kind: 'layout', scene: preprocess.scene };
  }
  if (preprocess?.kind !== 'canny') throw new Error(`ControlNet preprocess must be {kind: 'canny'} or {kind: 'layout', scene}, got ${JSON.stringify(preprocess)}`);
  for (const key of ['low', 'high'] as const) {
    const value = preprocess[key];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) throw new Error(`Canny threshold ${key} must be a non-negative number, got ${value}`);
  }
  return { kind: 'canny', low: preprocess.low ?? 100, high: preprocess.high ?? 200 };
}

/**
 * diffusers' controlnet_keep: 1 at step i of n unless i/n < start or (i + 1)/n > end. The
 * conditioning scale of step i is the user's scale times this.
 */
export function controlKeep(step: number, steps: number, guidanceStart: number, guidanceEnd: number): number {
  return step / steps < guidanceStart || (step + 1) / steps > guidanceEnd ? 0 : 1;
}

/** A decoded control image, before it is sized to the output. */
export interface ControlSource {
  name: string;
  width: number;
  height: number;
  /** Interleaved RGB bytes. */
  rgb: Uint8Array;
}

/**
 * Reads and decodes the control image of `options` (checked against the decoded-size limit), after
 * the cheap checks of its settings, so a bad setting is reported before any file is read.
 */
export async function readControlImage(options: ControlNetOptions): Promise<ControlSource> {
  controlSettings(options);
  const source = options.image;
  const name = typeof source === 'string' && !source.startsWith('data:') ? `control image ${source}` : 'control image';
  const bytes = await readImageBytes(source, name);
  try {
    const { width, height, rgb } = await platform.decodeImage(bytes, MAX_CONTROL_PIXELS);
    return { name, width, height, rgb };
  } catch (error) {
    throw new Error(`${name}: not a readable image (${(error as Error).message.replace(/\s+/g, ' ').trim()})`);
  }
}

const roundTo = (value: number, multiple: number) => Math.max(multiple, Math.round(value / multiple) * multiple);

/**
 * The output size for a control image and the sizes asked (either may be absent): with neither, the
 * image's short side becomes `base` (the official demo's `resize_image` with the model's default
 * resolution); with one, the other follows the image's aspect; each is rounded to `multiple`. With
 * both, they must have the image's aspect within that rounding, or the map would be stretched.
 */
export function controlOutputSize(source: Pick<ControlSource, 'name' | 'width' | 'height'>, asked: { width?: number | undefined; height?: number | undefined }, base: number, multiple: number): { width: number; height: number } {
  const aspect = source.width / source.height;
  if (asked.width === undefined && asked.height === undefined) {
    const scale = base / Math.min(source.width, source.height);
    return { width: roundTo(source.width * scale, multiple), height: roundTo(source.height * scale, multiple) };
  }
  if (asked.height === undefined) return { width: asked.width!, height: roundTo(asked.width! / aspect, multiple) };
  if (asked.width === undefined) return { width: roundTo(asked.height * aspect, multiple), height: asked.height };
  if (roundTo(asked.width / aspect, multiple) !== asked.height && roundTo(asked.height * aspect, multiple) !== asked.width) {
    throw new Error(`${source.name} is ${source.width}×${source.height}, another aspect ratio than the ${asked.width}×${asked.height} asked; leave out the width or the height (or both) to follow the control image`);
  }
  return { width: asked.width, height: asked.height };
}

/** The ControlNet's input at the output size: (1, 3, height, width) float32 in [0, 1], the image resized, then any Canny edges taken. */
export function controlInput(source: ControlSource, width: number, height: number, preprocess: ControlRunSettings['preprocess']): HostTensor<'float32'> {
  const resized = resizeBicubicRgb(source.rgb, source.width, source.height, width, height);
  return controlTensor([preprocess?.kind === 'canny' ? cannyEdges(resized, width, height, preprocess) : resized], width, height);
}
