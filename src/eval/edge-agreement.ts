// Edge agreement between a generated image and the scene it should show: both are reduced to
// Canny edges (the ControlNet annotator's cv2.Canny, pipeline/control-maps.ts) and compared as the
// boundary-detection benchmarks compare edge maps, with a small tolerance for edges that moved by
// a pixel:
//   precision  generated edge pixels within `tolerance` (Chebyshev distance) of a reference edge
//   recall     reference edge pixels within `tolerance` of a generated edge
//   F1         2·P·R / (P + R); 1 when neither map has an edge, 0 when only one has.
// A Canny ControlNet should raise it well above the same model without the ControlNet, whose
// image only shares the reference's edges where it happens to put its subjects and background.
import sharp from 'sharp';
import { type CannyThresholds, cannyEdges } from '../pipeline/control-maps.js';
import { resizeBicubicRgb } from '../pipeline/resample.js';

/** The annotator's default thresholds, as `generate --control canny` uses them. */
export const DEFAULT_CANNY: CannyThresholds = { low: 100, high: 200 };

export interface EdgeMatch {
  precision: number;
  recall: number;
  f1: number;
}

/** The map with every edge pixel grown to its (2·tolerance + 1)² neighbourhood. */
function dilate(edges: Uint8Array, width: number, height: number, tolerance: number): Uint8Array {
  const grown = new Uint8Array(edges.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!edges[y * width + x]) continue;
      for (let v = Math.max(0, y - tolerance); v <= Math.min(height - 1, y + tolerance); v++) {
        grown.fill(1, v * width + Math.max(0, x - tolerance), v * width + Math.min(width - 1, x + tolerance) + 1);
      }
    }
  }
  return grown;
}

/** Fraction of the edge pixels of `edges` that fall on `near` (a dilated map); null without edges. */
function matchedFraction(edges: Uint8Array, near: Uint8Array): number | null {
  let total = 0;
  let matched = 0;
  for (let p = 0; p < edges.length; p++) {
    if (!edges[p]) continue;
    total++;
    if (near[p]) matched++;
  }
  return total ? matched / total : null;
}

/** Precision, recall and F1 of `generated` edges against `reference` edges (width × height maps, non-zero = edge). */
export function edgeMatch(reference: Uint8Array, generated: Uint8Array, width: number, height: number, tolerance = 1): EdgeMatch {
  if (reference.length !== width * height || generated.length !== width * height) throw new Error(`edgeMatch: both maps must be ${width}×${height}`);
  if (!Number.isInteger(tolerance) || tolerance < 0) throw new Error(`edgeMatch: the tolerance must be a non-negative integer, got ${tolerance}`);
  const precision = matchedFraction(generated, dilate(reference, width, height, tolerance));
  const recall = matchedFraction(reference, dilate(generated, width, height, tolerance));
  if (precision === null && recall === null) return { precision: 1, recall: 1, f1: 1 };
  if (precision === null || recall === null) return { precision: precision ?? 0, recall: recall ?? 0, f1: 0 };
  return { precision, recall, f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0 };
}

/** An image file's RGB bytes at `size` (its own size when absent; resized as the ControlNet input is, PIL's bicubic). */
async function rgbOf(path: string, size?: { width: number; height: number }): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(path).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const rgb = new Uint8Array(data.buffer, data.byteOffset, data.length);
  if (!size || (size.width === info.width && size.height === info.height)) return { rgb, width: info.width, height: info.height };
  return { rgb: resizeBicubicRgb(rgb, info.width, info.height, size.width, size.height), ...size };
}

/** F1 of the Canny edges of the image at `generated` against those of `reference`, the reference taken at the generated image's size. */
export async function edgeF1OfFiles(reference: string, generated: string, thresholds: CannyThresholds = DEFAULT_CANNY, tolerance = 1): Promise<number> {
  const made = await rgbOf(generated);
  const truth = await rgbOf(reference, made);
  return edgeMatch(cannyEdges(truth.rgb, truth.width, truth.height, thresholds), cannyEdges(made.rgb, made.width, made.height, thresholds), made.width, made.height, tolerance).f1;
}
