// Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB, bit-exact, in plain TypeScript.
//
// Why it exists: the official Kosmos-G demo preprocesses images with PIL (bicubic resize, then a
// centre crop), and Node and the browser must feed the model identical pixels. Native resizers
// (sharp/libvips, canvas) round differently from PIL, so this re-implements libImaging/Resample.c
// (Pillow 9.x) step for step: the same double-precision coefficients, the same 22-bit fixed-point
// rounding, the same clipping, and the same 8-bit intermediate image between the two passes.
// It uses no Node APIs and no dependencies, so the same code runs in both places.

/** Fixed-point precision of Pillow's 8-bit path: 32 bits − 8 (pixel) − 2 (headroom). */
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
/** Pillow's BICUBIC filter reaches 2 input pixels either side at scale 1. */
const BICUBIC_SUPPORT = 2.0;

/** Keys' cubic convolution with a = −0.5, written exactly as Resample.c's `bicubic_filter`. */
function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/** Per output pixel: first input index, input count, and `ksize` fixed-point coefficients. */
interface Coefficients {
  ksize: number;
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
}

/**
 * Resample.c's `precompute_coeffs` (no box: the whole input) followed by
 * `normalize_coeffs_8bpc`. JS numbers are IEEE doubles evaluated in the same order as the C,
 * so every weight is the same double; C's `(int)` truncation is Math.trunc.
 */
function precomputeCoeffs(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0); // downscaling widens the filter
  const support = BICUBIC_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize); // unused tail entries stay 0, as in Pillow
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubicFilter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0.0 ? k[x]! / ww : k[x]!;
      // Round half away from zero, as C's (int)(±0.5 + w·2^22).
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, first, count, weights };
}

/** Resample.c's `clip8`: a fixed-point sum back to a byte. */
function clip8(value: number): number {
  if (value >= ONE << 8) return 255;
  if (value <= 0) return 0;
  return value >> PRECISION_BITS;
}

/**
 * One separable pass over interleaved RGB: along x (`horizontal`) or along y, to `outSize`
 * pixels on that axis. Output is clipped to 8 bits, as Pillow's intermediate image is.
 */
function resamplePass(src: Uint8Array, width: number, height: number, outSize: number, horizontal: boolean): Uint8Array {
  const inSize = horizontal ? width : height;
  const across = horizontal ? height : width; // lines processed independently
  const outWidth = horizontal ? outSize : width;
  const outHeight = horizontal ? height : outSize;
  const { ksize, first, count, weights } = precomputeCoeffs(inSize, outSize);
  // Byte strides in the source along the resampled axis and across it.
  const along = horizontal ? 3 : width * 3;
  const acrossStride = horizontal ? width * 3 : 3;
  const out = new Uint8Array(outWidth * outHeight * 3);
  for (let o = 0; o < outSize; o++) {
    const kOffset = o * ksize;
    const n = count[o]!;
    for (let c = 0; c < across; c++) {
      let s = c * acrossStride + first[o]! * along;
      // Pillow starts each sum at one half, so the final shift rounds to nearest.
      let r = ONE >> 1;
      let g = ONE >> 1;
      let b = ONE >> 1;
      for (let i = 0; i < n; i++, s += along) {
        const w = weights[kOffset + i]!;
        // Sums stay well inside ±2^31 (as in C's INT32), so plain doubles are exact.
        r += src[s]! * w;
        g += src[s + 1]! * w;
        b += src[s + 2]! * w;
      }
      const d = horizontal ? (c * outWidth + o) * 3 : (o * outWidth + c) * 3;
      out[d] = clip8(r);
      out[d + 1] = clip8(g);
      out[d + 2] = clip8(b);
    }
  }
  return out;
}

function checkSize(fn: string, name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`${fn}: ${name} must be a positive integer (got ${String(value)})`);
}

function checkImage(fn: string, rgb: Uint8Array, width: number, height: number): void {
  if (!(rgb instanceof Uint8Array)) throw new Error(`${fn}: rgb must be a Uint8Array`);
  checkSize(fn, 'width', width);
  checkSize(fn, 'height', height);
  const expected = width * height * 3;
  if (rgb.length !== expected) {
    throw new Error(`${fn}: rgb has ${rgb.length} bytes, expected ${width}×${height}×3 = ${expected}`);
  }
}

/**
 * Resizes interleaved 8-bit RGB (row-major, `width × height × 3` bytes) to `outWidth × outHeight`
 * exactly as Pillow's `Image.resize((outWidth, outHeight), Image.BICUBIC)`: horizontal pass first,
 * then vertical, each skipped when that dimension is unchanged. Always returns a new array.
 */
export function resizeBicubicRgb(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  const fn = 'resizeBicubicRgb';
  checkImage(fn, rgb, width, height);
  checkSize(fn, 'outWidth', outWidth);
  checkSize(fn, 'outHeight', outHeight);
  let image = rgb;
  if (outWidth !== width) image = resamplePass(image, width, height, outWidth, true);
  if (outHeight !== height) image = resamplePass(image, outWidth, height, outHeight, false);
  return image === rgb ? rgb.slice() : image;
}

/**
 * Cuts the `cropWidth × cropHeight` rectangle at (`left`, `top`) out of interleaved 8-bit RGB,
 * like PIL's `crop((left, top, left + cropWidth, top + cropHeight))`. Unlike PIL, the rectangle
 * must lie inside the image (PIL would pad with black), since a centre crop never leaves it.
 */
export function cropRgb(rgb: Uint8Array, width: number, height: number, left: number, top: number, cropWidth: number, cropHeight: number): Uint8Array {
  const fn = 'cropRgb';
  checkImage(fn, rgb, width, height);
  for (const [name, value] of [['left', left], ['top', top]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${fn}: ${name} must be a non-negative integer (got ${String(value)})`);
  }
  checkSize(fn, 'cropWidth', cropWidth);
  checkSize(fn, 'cropHeight', cropHeight);
  if (left + cropWidth > width || top + cropHeight > height) {
    throw new Error(`${fn}: crop ${cropWidth}×${cropHeight} at (${left}, ${top}) does not fit in the ${width}×${height} image`);
  }
  const out = new Uint8Array(cropWidth * cropHeight * 3);
  const rowBytes = cropWidth * 3;
  for (let y = 0; y < cropHeight; y++) {
    const start = ((top + y) * width + left) * 3;
    out.set(rgb.subarray(start, start + rowBytes), y * rowBytes);
  }
  return out;
}
