// Where the subject of a single-subject image is, without any model: "difference from the
// background". The background's colours are taken from a frame of `border` pixels around the edge
// (world backgrounds — flat colours, gradients, tiled patterns, scene emoji — show their palette
// there, and subjects rarely fill the frame); each pixel is weighted by how far its colour lies
// from the nearest frame colour beyond `threshold` (RGB distance), and the weighted centre of mass
// is the subject's centre. On real evaluation scenes this puts about 80 % of single subjects
// nearest their named position (`eval world-sd` reports the rate it measures).
import type { RgbaImage } from '../world/image.js';
import { POSITION_CENTRES, POSITIONS, type Position } from '../world/vocabulary.js';

export const LOCATOR_BORDER = 2;
export const LOCATOR_THRESHOLD = 40;

/**
 * Per pixel (row-major): how far its colour lies from the nearest frame colour beyond `threshold`,
 * 0 for background-like pixels.
 */
export function foregroundWeights(image: RgbaImage, border = LOCATOR_BORDER, threshold = LOCATOR_THRESHOLD): Float64Array {
  const { width, height, data } = image;
  // Frame colours, deduplicated at 5 bits per channel.
  const frame = new Map<number, [number, number, number]>();
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (x >= border && y >= border && x < width - border && y < height - border) continue;
      const i = (y * width + x) * 4;
      frame.set(((data[i]! >> 3) << 10) | ((data[i + 1]! >> 3) << 5) | (data[i + 2]! >> 3), [data[i]!, data[i + 1]!, data[i + 2]!]);
    }
  }
  const colours = [...frame.values()];
  const weights = new Float64Array(width * height);
  for (let p = 0; p < width * height; p++) {
    let nearest = Infinity;
    for (const [r, g, b] of colours) nearest = Math.min(nearest, (r - data[p * 4]!) ** 2 + (g - data[p * 4 + 1]!) ** 2 + (b - data[p * 4 + 2]!) ** 2);
    weights[p] = Math.max(0, Math.sqrt(nearest) - threshold);
  }
  return weights;
}

/** The subject's centre as fractions of the canvas; (0.5, 0.5) when nothing stands out. */
export function subjectCentre(image: RgbaImage, border = LOCATOR_BORDER, threshold = LOCATOR_THRESHOLD): { x: number; y: number } {
  const { width, height } = image;
  const weights = foregroundWeights(image, border, threshold);
  let [total, sx, sy] = [0, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const weight = weights[y * width + x]!;
      total += weight;
      sx += (weight * (x + 0.5)) / width;
      sy += (weight * (y + 0.5)) / height;
    }
  }
  return total > 0 ? { x: sx / total, y: sy / total } : { x: 0.5, y: 0.5 };
}

/** The nearest of the nine named positions to a centre (fractions of the canvas). */
export function nearestPosition(x: number, y: number): Position {
  let best: Position = 'centre';
  let bestDistance = Infinity;
  for (const position of POSITIONS) {
    const [px, py] = POSITION_CENTRES[position];
    const distance = (px - x) ** 2 + (py - y) ** 2;
    if (distance < bestDistance) [best, bestDistance] = [position, distance];
  }
  return best;
}

/**
 * How far located centres follow the prompted positions: per axis, the least-squares slope of the
 * located coordinate on the prompted position's coordinate (1: the subject moves as far as the
 * prompt says; 0: it ignores the position words).
 */
export function positionFollowing(prompted: readonly Position[], located: readonly { x: number; y: number }[]): { x: number; y: number } {
  const axis = (index: 0 | 1, key: 'x' | 'y') => slope(prompted.map((position) => POSITION_CENTRES[position][index]), located.map((centre) => centre[key]));
  return { x: axis(0, 'x'), y: axis(1, 'y') };
}

/** Least-squares slope of `ys` on `xs`; 0 when the xs do not vary. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const mean = (values: readonly number[]) => values.reduce((total, value) => total + value, 0) / values.length;
  const [meanX, meanY] = [mean(xs), mean(ys)];
  let [covariance, variance] = [0, 0];
  xs.forEach((x, i) => {
    covariance += (x - meanX) * (ys[i]! - meanY);
    variance += (x - meanX) ** 2;
  });
  return variance > 0 ? covariance / variance : 0;
}
