// RGBA images as plain byte arrays (straight, non-premultiplied alpha, row-major, 4 bytes a pixel).
// Scene composition runs hundreds of times a second, so resampling and blending are hand-written
// loops over typed arrays instead of round trips through an image library.
import sharp from 'sharp';

export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export function createImage(width: number, height: number, rgba: readonly [number, number, number, number] = [0, 0, 0, 0]): RgbaImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`image size must be positive integers, got ${width}x${height}`);
  }
  const data = new Uint8Array(width * height * 4);
  if (rgba[0] || rgba[1] || rgba[2] || rgba[3]) {
    for (let i = 0; i < data.length; i += 4) {
      data[i] = rgba[0];
      data[i + 1] = rgba[1];
      data[i + 2] = rgba[2];
      data[i + 3] = rgba[3];
    }
  }
  return { width, height, data };
}

export function cloneImage(image: RgbaImage): RgbaImage {
  return { width: image.width, height: image.height, data: new Uint8Array(image.data) };
}

/** Bounding box of pixels whose alpha exceeds `threshold`, or null for a fully transparent image. */
export function alphaBounds(image: RgbaImage, threshold = 0): Box | null {
  const { width, height, data } = image;
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width * 4;
    for (let x = 0; x < width; x++) {
      if ((data[row + x * 4 + 3] as number) > threshold) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}

/** Copy of a rectangle; pixels outside the source are filled with `fill`. */
export function cropImage(image: RgbaImage, box: Box, fill: readonly [number, number, number, number] = [0, 0, 0, 0]): RgbaImage {
  const out = createImage(box.w, box.h, fill);
  for (let y = 0; y < box.h; y++) {
    const sy = box.y + y;
    if (sy < 0 || sy >= image.height) continue;
    const xStart = Math.max(0, -box.x);
    const xEnd = Math.min(box.w, image.width - box.x);
    if (xEnd <= xStart) continue;
    const src = (sy * image.width + box.x + xStart) * 4;
    out.data.set(image.data.subarray(src, src + (xEnd - xStart) * 4), (y * box.w + xStart) * 4);
  }
  return out;
}

/** Trim to the alpha bounding box, so vendor padding does not reveal the style. */
export function trimToAlpha(image: RgbaImage, threshold = 8): RgbaImage {
  const box = alphaBounds(image, threshold);
  if (!box) throw new Error('cannot trim a fully transparent image');
  return cropImage(image, box);
}

interface AxisWeights {
  start: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  stride: number;
}

// Separable triangle filter whose support widens with the downscale factor (area-like averaging
// when shrinking, bilinear when enlarging).
function axisWeights(srcSize: number, dstSize: number): AxisWeights {
  const scale = srcSize / dstSize;
  const support = Math.max(1, scale);
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(dstSize);
  const count = new Int32Array(dstSize);
  const weights = new Float32Array(dstSize * stride);
  for (let i = 0; i < dstSize; i++) {
    const centre = (i + 0.5) * scale - 0.5;
    const lo = Math.max(0, Math.ceil(centre - support));
    const hi = Math.min(srcSize - 1, Math.floor(centre + support));
    let total = 0;
    let n = 0;
    for (let s = lo; s <= hi && n < stride; s++, n++) {
      const w = Math.max(0, 1 - Math.abs(s - centre) / support);
      weights[i * stride + n] = w;
      total += w;
    }
    if (total <= 0) {
      const nearest = Math.min(srcSize - 1, Math.max(0, Math.round(centre)));
      start[i] = nearest;
      count[i] = 1;
      weights[i * stride] = 1;
      continue;
    }
    for (let k = 0; k < n; k++) weights[i * stride + k] = (weights[i * stride + k] as number) / total;
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, stride };
}

/** Resample with premultiplied alpha, so transparent pixels do not bleed dark fringes. */
export function resizeImage(image: RgbaImage, width: number, height: number): RgbaImage {
  if (width === image.width && height === image.height) return cloneImage(image);
  const sw = image.width;
  const sh = image.height;
  const src = image.data;
  const premul = new Float32Array(sw * sh * 4);
  for (let i = 0; i < sw * sh; i++) {
    const a = (src[i * 4 + 3] as number) / 255;
    premul[i * 4] = (src[i * 4] as number) * a;
    premul[i * 4 + 1] = (src[i * 4 + 1] as number) * a;
    premul[i * 4 + 2] = (src[i * 4 + 2] as number) * a;
    premul[i * 4 + 3] = src[i * 4 + 3] as number;
  }
  const wx = axisWeights(sw, width);
  const wy = axisWeights(sh, height);
  const rows = new Float32Array(width * sh * 4);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      const s0 = wx.start[x] as number;
      const n = wx.count[x] as number;
      for (let k = 0; k < n; k++) {
        const w = wx.weights[x * wx.stride + k] as number;
        const p = (y * sw + s0 + k) * 4;
        r += (premul[p] as number) * w;
        g += (premul[p + 1] as number) * w;
        b += (premul[p + 2] as number) * w;
        a += (premul[p + 3] as number) * w;
      }
      const o = (y * width + x) * 4;
      rows[o] = r;
      rows[o + 1] = g;
      rows[o + 2] = b;
      rows[o + 3] = a;
    }
  }
  const out = createImage(width, height);
  for (let y = 0; y < height; y++) {
    const s0 = wy.start[y] as number;
    const n = wy.count[y] as number;
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let k = 0; k < n; k++) {
        const w = wy.weights[y * wy.stride + k] as number;
        const p = ((s0 + k) * width + x) * 4;
        r += (rows[p] as number) * w;
        g += (rows[p + 1] as number) * w;
        b += (rows[p + 2] as number) * w;
        a += (rows[p + 3] as number) * w;
      }
      const o = (y * width + x) * 4;
      const scale = a > 0 ? 255 / a : 0;
      out.data[o] = Math.min(255, Math.round(r * scale));
      out.data[o + 1] = Math.min(255, Math.round(g * scale));
      out.data[o + 2] = Math.min(255, Math.round(b * scale));
      out.data[o + 3] = Math.min(255, Math.round(a));
    }
  }
  return out;
}

/** Alpha-composite `src` over `dst` in place with its top-left corner at (x, y); clipped to `dst`. */
export function drawOver(dst: RgbaImage, src: RgbaImage, x: number, y: number): void {
  const x0 = Math.max(0, x);
  const y0 = Math.max(0, y);
  const x1 = Math.min(dst.width, x + src.width);
  const y1 = Math.min(dst.height, y + src.height);
  const d = dst.data;
  const s = src.data;
  for (let py = y0; py < y1; py++) {
    let si = ((py - y) * src.width + (x0 - x)) * 4;
    let di = (py * dst.width + x0) * 4;
    for (let px = x0; px < x1; px++, si += 4, di += 4) {
      const sa = s[si + 3] as number;
      if (sa === 0) continue;
      if (sa === 255) {
        d[di] = s[si] as number;
        d[di + 1] = s[si + 1] as number;
        d[di + 2] = s[si + 2] as number;
        d[di + 3] = 255;
        continue;
      }
      const da = d[di + 3] as number;
      const outA = sa + (da * (255 - sa)) / 255;
      const ks = sa / outA;
      const kd = (da * (255 - sa)) / 255 / outA;
      d[di] = Math.round((s[si] as number) * ks + (d[di] as number) * kd);
      d[di + 1] = Math.round((s[si + 1] as number) * ks + (d[di + 1] as number) * kd);
      d[di + 2] = Math.round((s[si + 2] as number) * ks + (d[di + 2] as number) * kd);
      d[di + 3] = Math.round(outA);
    }
  }
}

/** Flatten onto an opaque colour. */
export function flattenImage(image: RgbaImage, rgb: readonly [number, number, number]): RgbaImage {
  const out = createImage(image.width, image.height, [rgb[0], rgb[1], rgb[2], 255]);
  drawOver(out, image, 0, 0);
  return out;
}

export async function encodePng(image: RgbaImage): Promise<Buffer> {
  return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 4 },
  })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

export async function decodeImage(bytes: Uint8Array | string): Promise<RgbaImage> {
  const input = typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { data, info } = await sharp(input).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
