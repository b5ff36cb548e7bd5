// Image preprocessing for Kosmos-G's vision tower, as the official demo does it (`app_model.py`):
//   PIL open → convert("RGB") → Resize(S, bicubic) on the shortest side → CenterCrop(S) → /255
//   → (x − CLIP mean) / CLIP std → (N, 3, S, S) float32
// The platform decodes (sharp on Node, createImageBitmap in a page); resizing is resample.ts, PIL's
// own BICUBIC bit for bit, so Node, the browser and the official demo see the same pixels. As in
// PIL, EXIF orientation is not applied and an alpha channel is dropped (not composited). The resized
// size follows torchvision: the short side becomes S, the long side ⌊S·long/short⌋; the crop offset
// is round((size − S)/2).
import { platform } from '#platform';
import { escapeControlCharacters } from '../io/describe-value.js';
import type { HostTensor } from '../onnx/dtype.js';
import { cropRgb, resizeBicubicRgb } from './resample.js';

/** open_clip / OpenAI CLIP normalisation. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
/** torchvision's ImageNet normalisation, which DINO's transform uses. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** A file path, a `data:` URL, or the encoded bytes of an image file (a Buffer is a Uint8Array). */
export type ImageSource = string | Uint8Array;

export interface ImageLimits {
  /** Largest encoded input accepted, in bytes (default 64 MiB). */
  maxBytes?: number;
  /** Largest decoded image accepted, width × height (default 64 megapixels). */
  maxPixels?: number;
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_PIXELS = 64 * 1024 * 1024;

/** A short name for error messages: the path (a newline in it escaped, to keep messages on one line), or the kind of source. */
export function describeImageSource(source: ImageSource, index: number): string {
  if (typeof source !== 'string') return `image ${index + 1} (${source.byteLength} bytes)`;
  if (source.startsWith('data:')) return `image ${index + 1} (data URL)`;
  return `image ${index + 1} (${escapeControlCharacters(source)})`;
}

export function decodeDataUrl(url: string, name: string): Uint8Array {
  const match = /^data:([^,]*),(.*)$/s.exec(url);
  if (!match) throw new Error(`${name}: malformed data URL (expected data:[<type>][;base64],<data>)`);
  const [, header, payload] = match as unknown as [string, string, string];
  if (header.split(';').includes('base64')) {
    const compact = payload.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(compact)) throw new Error(`${name}: the data URL's base64 payload has invalid characters`);
    let binary: string;
    try {
      binary = atob(compact.replace(/-/g, '+').replace(/_/g, '/'));
    } catch {
      throw new Error(`${name}: the data URL's base64 payload has an impossible length`);
    }
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  }
  try {
    // Latin-1: each character is one byte (its low eight bits).
    return Uint8Array.from(decodeURIComponent(payload), (char) => char.charCodeAt(0) & 0xff);
  } catch {
    throw new Error(`${name}: the data URL's percent-encoding is invalid`);
  }
}

/** The encoded bytes of a source, with the size limit applied before anything is read into memory. */
export async function readImageBytes(source: ImageSource, name: string, maxBytes = DEFAULT_MAX_BYTES): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (typeof source !== 'string') bytes = source;
  else if (source.startsWith('data:')) bytes = decodeDataUrl(source, name);
  else {
    const kind = await platform.pathKind(source);
    if (kind === null) throw new Error(`${name}: cannot read the file (ENOENT)`);
    if (kind !== 'file') throw new Error(`${name}: not a regular file`);
    const size = await platform.fileSize(source);
    if (size > maxBytes) throw new Error(`${name}: the file is ${size} bytes, over the ${maxBytes}-byte limit`);
    try {
      bytes = await platform.readBytes(source);
    } catch (error) {
      throw new Error(`${name}: cannot read the file (${(error as { code?: string }).code ?? (error as Error).message})`);
    }
  }
  if (bytes.byteLength === 0) throw new Error(`${name}: empty image`);
  if (bytes.byteLength > maxBytes) throw new Error(`${name}: the image is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`);
  return bytes;
}

/** torchvision Resize(S) + CenterCrop(S) geometry for a width × height image. */
export function resizeCropGeometry(width: number, height: number, size: number): { width: number; height: number; left: number; top: number } {
  return resizeCropBox(width, height, { resize: size, crop: size, offset: 'round' });
}

// Python's round(): halves to even (torchvision's center_crop offsets).
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  return x - floor !== 0.5 ? Math.round(x) : floor % 2 === 0 ? floor : floor + 1;
}

/** Decodes, resizes and crops one image to S × S RGB bytes (row-major, interleaved). */
export async function loadImageRgb(source: ImageSource, size: number, name: string, limits: ImageLimits = {}): Promise<Uint8Array> {
  const bytes = await readImageBytes(source, name, limits.maxBytes);
  const maxPixels = limits.maxPixels ?? DEFAULT_MAX_PIXELS;
  let decoded: Awaited<ReturnType<typeof platform.decodeImage>>;
  try {
    decoded = await platform.decodeImage(bytes, maxPixels);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EPIXELS') throw new Error(`${name}: ${singleLine(error)}`);
    throw new Error(`${name}: ${code === 'EFORMAT' ? 'not a readable image' : 'cannot decode the image'} (${singleLine(error)})`);
  }
  const geometry = resizeCropGeometry(decoded.width, decoded.height, size);
  const resized = resizeBicubicRgb(decoded.rgb, decoded.width, decoded.height, geometry.width, geometry.height);
  return cropRgb(resized, geometry.width, geometry.height, geometry.left, geometry.top, size, size);
}

function singleLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
}

/** Interleaved RGB bytes (S·S·3) → channel-first CLIP-normalised floats written at `offset`. */
export function normalizeClipInto(rgb: Uint8Array, size: number, out: Float32Array, offset: number): void {
  const plane = size * size;
  for (let channel = 0; channel < 3; channel++) {
    const mean = CLIP_MEAN[channel]!;
    const std = CLIP_STD[channel]!;
    const base = offset + channel * plane;
    for (let i = 0; i < plane; i++) out[base + i] = (rgb[i * 3 + channel]! / 255 - mean) / std;
  }
}

/**
 * The vision tower's input for a list of images: (N, 3, S, S) float32, in list order. Every image
 * is checked before any is returned; an error names the image (index and path).
 */
export async function preprocessImages(sources: readonly ImageSource[], size: number, limits: ImageLimits = {}): Promise<HostTensor<'float32'>> {
  if (!Number.isInteger(size) || size < 1) throw new Error(`image size must be a positive integer, got ${size}`);
  const plane = 3 * size * size;
  const data = new Float32Array(sources.length * plane);
  for (const [index, source] of sources.entries()) {
    if (typeof source !== 'string' && !(source instanceof Uint8Array)) {
      throw new Error(`image ${index + 1}: expected a file path, a data URL or encoded image bytes`);
    }
    const rgb = await loadImageRgb(source, size, describeImageSource(source, index), limits);
    normalizeClipInto(rgb, size, data, index * plane);
  }
  return { dtype: 'float32', shape: [sources.length, 3, size, size], data };
}

// ---- the judges' preprocessing geometry (CLIPImageProcessor, torchvision's DINO transform) ----------

export interface Preprocessing {
  /** The short side after resizing. */
  resize: number;
  /** The side of the centre crop, the model's image_size. */
  crop: number;
  /** CLIPImageProcessor floors the crop offset; torchvision's CenterCrop rounds it (half to even). */
  offset: 'floor' | 'round';
  mean: readonly number[];
  std: readonly number[];
}

export const clipPreprocessing = (imageSize: number): Preprocessing => ({ resize: imageSize, crop: imageSize, offset: 'floor', mean: CLIP_MEAN, std: CLIP_STD });
export const dinoPreprocessing = (imageSize: number): Preprocessing => ({ resize: Math.round((imageSize * 256) / 224), crop: imageSize, offset: 'round', mean: IMAGENET_MEAN, std: IMAGENET_STD });

/** Resize(short side → resize) then CenterCrop(crop): the resized size and the crop's corner. */
export function resizeCropBox(width: number, height: number, p: Pick<Preprocessing, 'resize' | 'crop' | 'offset'>): { width: number; height: number; left: number; top: number } {
  const short = Math.min(width, height);
  const scaledLong = Math.floor((p.resize * Math.max(width, height)) / short);
  const [resizedWidth, resizedHeight] = width <= height ? [p.resize, scaledLong] : [scaledLong, p.resize];
  if (resizedWidth < p.crop || resizedHeight < p.crop) throw new Error(`a ${p.crop}-pixel crop does not fit a ${resizedWidth}×${resizedHeight} resize`);
  const offset = (dim: number) => (p.offset === 'floor' ? Math.floor((dim - p.crop) / 2) : roundHalfEven((dim - p.crop) / 2));
  return { width: resizedWidth, height: resizedHeight, left: offset(resizedWidth), top: offset(resizedHeight) };
}
