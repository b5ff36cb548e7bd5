// Control maps for ControlNets, computed from images and world scenes; platform-neutral (no Node
// APIs), so the browser can make the same maps.
//
// Canny edges reproduce OpenCV's cv2.Canny(image, low, high) (aperture 3, L2gradient = false), the
// call of the ControlNet Canny annotator (lllyasviel's annotator/canny, controlnet_aux's
// CannyDetector), which passes the RGB image itself: OpenCV then takes, per pixel, the Sobel
// gradient of the channel with the largest L1 magnitude. A single-channel image (a grayscale one)
// gives cv2.Canny on that array.
//
// Layout maps colour each subject's visible pixels with its concept's colour on black, the way
// segmentation ControlNets colour classes: the colour tells the ControlNet what goes where, so two
// subjects of one caption cannot swap places, which a colour per drawing-order index could not
// tell (the caption does not say which subject was drawn first).
import type { HostTensor } from '../onnx/dtype.js';
import type { PlacedSubject } from '../world/scene.js';

export interface CannyThresholds {
  /** Hysteresis thresholds on the L1 gradient magnitude |dx| + |dy| of the 3×3 Sobel; swapped if low > high. */
  low: number;
  high: number;
}

/** OpenCV's CANNY_SHIFT and TG22 = round(tan(22.5°) · 2^15): the fixed-point sector test of the NMS. */
const CANNY_SHIFT = 15;
const TG22 = Math.round(0.4142135623730950488 * (1 << CANNY_SHIFT));

/** Map states of OpenCV's Canny: may be an edge (passed NMS, above low), is no edge, is an edge. */
const MAYBE_EDGE = 0;
const NO_EDGE = 1;
const EDGE = 2;

/**
 * cv2.Canny(image, low, high) of an interleaved 8-bit image with 1 or 3 channels (width × height ×
 * channels bytes, rows top to bottom): a width × height map of 0 (no edge) and 255 (edge).
 */
export function cannyEdges(image: Uint8Array, width: number, height: number, thresholds: CannyThresholds): Uint8Array {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) throw new Error(`cannyEdges: the size must be positive integers, got ${width}×${height}`);
  const pixels = width * height;
  const channels = image.length / pixels;
  if (channels !== 1 && channels !== 3) throw new Error(`cannyEdges: ${image.length} bytes are neither 1 nor 3 channels of ${width}×${height}`);
  const { low, high } = thresholds;
  if (!(Number.isFinite(low) && Number.isFinite(high) && low >= 0 && high >= 0)) throw new Error(`cannyEdges: thresholds must be non-negative numbers, got low ${low}, high ${high}`);
  // OpenCV swaps reversed thresholds, floors both and compares magnitudes with > against them.
  const lowBound = Math.floor(Math.min(low, high));
  const highBound = Math.floor(Math.max(low, high));

  // Gradients, and magnitudes in a (height + 2) × (width + 2) frame of zeros: OpenCV's NMS sees a
  // magnitude of 0 outside the image, while its Sobel replicates the border pixels.
  const stride = width + 2;
  const magnitude = new Int32Array(stride * (height + 2));
  const dx = new Int32Array(pixels);
  const dy = new Int32Array(pixels);
  const at = (x: number, y: number, channel: number) => image[((Math.min(height - 1, Math.max(0, y)) * width) + Math.min(width - 1, Math.max(0, x))) * channels + channel]!;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let best = -1;
      for (let channel = 0; channel < channels; channel++) {
        const [topLeft, top, topRight] = [at(x - 1, y - 1, channel), at(x, y - 1, channel), at(x + 1, y - 1, channel)];
        const [left, right] = [at(x - 1, y, channel), at(x + 1, y, channel)];
        const [bottomLeft, bottom, bottomRight] = [at(x - 1, y + 1, channel), at(x, y + 1, channel), at(x + 1, y + 1, channel)];
        const gx = topRight + 2 * right + bottomRight - (topLeft + 2 * left + bottomLeft);
        const gy = bottomLeft + 2 * bottom + bottomRight - (topLeft + 2 * top + topRight);
        const m = Math.abs(gx) + Math.abs(gy);
        // The first channel of the largest magnitude gives the gradient (OpenCV's strict >).
        if (m > best) {
          best = m;
          dx[y * width + x] = gx;
          dy[y * width + x] = gy;
        }
      }
      magnitude[(y + 1) * stride + x + 1] = best;
    }
  }

  // Non-maximum suppression across the gradient's sector (horizontal, vertical or one of the two
  // diagonals), with OpenCV's ties: strict against the left / upper / both diagonal neighbours,
  // non-strict against the right and lower ones. The map shares the magnitude frame; its border
  // is NO_EDGE, so hysteresis never leaves the image.
  const map = new Uint8Array(stride * (height + 2)).fill(NO_EDGE);
  const stack: number[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const index = (y + 1) * stride + x + 1;
      const m = magnitude[index]!;
      if (m <= lowBound) continue;
      const xs = dx[y * width + x]!;
      const ys = dy[y * width + x]!;
      const ax = Math.abs(xs);
      const ay = Math.abs(ys) * (1 << CANNY_SHIFT);
      const tg22x = ax * TG22;
      let peak: boolean;
      if (ay < tg22x) {
        peak = m > magnitude[index - 1]! && m >= magnitude[index + 1]!;
      } else if (ay > tg22x + ax * (1 << (CANNY_SHIFT + 1))) {
        peak = m > magnitude[index - stride]! && m >= magnitude[index + stride]!;
      } else {
        // Same signs: the gradient runs along the main diagonal (y grows downwards).
        const s = (xs < 0) !== (ys < 0) ? -1 : 1;
        peak = m > magnitude[index - stride - s]! && m > magnitude[index + stride + s]!;
      }
      if (!peak) continue;
      if (m > highBound) {
        map[index] = EDGE;
        stack.push(index);
      } else {
        map[index] = MAYBE_EDGE;
      }
    }
  }

  // Hysteresis: every candidate 8-connected to an edge becomes one.
  const neighbours = [-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1];
  while (stack.length > 0) {
    const index = stack.pop()!;
    for (const offset of neighbours) {
      if (map[index + offset] === MAYBE_EDGE) {
        map[index + offset] = EDGE;
        stack.push(index + offset);
      }
    }
  }
  const edges = new Uint8Array(pixels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (map[(y + 1) * stride + x + 1] === EDGE) edges[y * width + x] = 255;
  return edges;
}

/** A visible-alpha share above which a pixel belongs to a subject: half covered. */
const LAYOUT_ALPHA = 128;

/**
 * The layout colour of a concept: the three low bytes of its id's FNV-1a hash, each scaled into
 * 64…255 so no subject is near the black background. A pure function of the id, so a colour
 * means one concept in every world and at generation time.
 */
export function layoutColour(concept: string): [number, number, number] {
  let hash = 0x811c9dc5;
  for (let i = 0; i < concept.length; i++) hash = Math.imul(hash ^ concept.charCodeAt(i), 0x01000193) >>> 0;
  const level = (byte: number) => 64 + Math.floor((byte * 192) / 256);
  return [level(hash & 0xff), level((hash >>> 8) & 0xff), level((hash >>> 16) & 0xff)];
}

/**
 * The layout map of a rendered scene (world/scene.ts's RenderedScene): size × size interleaved RGB, black except where a subject's
 * visible alpha (what remains of it after the subjects in front) is at least half, there the
 * colour of the concept with the largest visible alpha (the front one on a tie).
 */
export function layoutMap(scene: { spec: { size: number; subjects: readonly Pick<PlacedSubject, 'concept'>[] }; visibleMasks: readonly Uint8Array[] }): Uint8Array {
  const { size, subjects } = scene.spec;
  if (scene.visibleMasks.length !== subjects.length) throw new Error(`layoutMap: ${scene.visibleMasks.length} visible masks for ${subjects.length} subjects`);
  const pixels = size * size;
  scene.visibleMasks.forEach((mask, index) => {
    if (mask.length !== pixels) throw new Error(`layoutMap: visible mask ${index} has ${mask.length} pixels, the scene ${size}×${size}`);
  });
  const colours = subjects.map((subject) => layoutColour(subject.concept));
  const rgb = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    let owner = -1;
    let strongest = 0;
    scene.visibleMasks.forEach((mask, index) => {
      const alpha = mask[p]!;
      if (alpha >= LAYOUT_ALPHA && alpha >= strongest) {
        owner = index;
        strongest = alpha;
      }
    });
    if (owner >= 0) rgb.set(colours[owner]!, p * 3);
  }
  return rgb;
}

/**
 * Control maps of one size (1 channel, as Canny edges, or interleaved RGB, width × height each) as
 * the ControlNet's input: float32 (B, 3, height, width) in [0, 1]; a single channel is repeated
 * into all three, as the annotators' HWC3 does.
 */
export function controlTensor(maps: readonly Uint8Array[], width: number, height: number): HostTensor<'float32'> {
  if (maps.length === 0) throw new Error('controlTensor needs at least one map');
  const plane = width * height;
  const data = new Float32Array(maps.length * 3 * plane);
  maps.forEach((map, b) => {
    const channels = map.length / plane;
    if (channels !== 1 && channels !== 3) throw new Error(`controlTensor: map ${b} has ${map.length} bytes, neither 1 nor 3 channels of ${width}×${height}`);
    // Interleaved (H, W, C) bytes → planes (3, H, W).
    for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) data[(b * 3 + c) * plane + p] = map[p * channels + (channels === 1 ? 0 : c)]! / 255;
  });
  return { dtype: 'float32', shape: [maps.length, 3, height, width], data };
}
