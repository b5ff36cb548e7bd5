// Images between the world (RGBA bytes) and the models (float tensors in [−1, 1], NCHW), and the
// sample grids written during training.
import sharp from 'sharp';
import type { HostTensor } from '../onnx/dtype.js';
import type { RgbaImage } from '../world/image.js';

/** Opaque RGBA images of one size → float32 (B, 3, H, W) in [−1, 1] (alpha is ignored). */
export function imagesToTensor(images: readonly RgbaImage[]): HostTensor<'float32'> {
  const first = images[0];
  if (!first) throw new Error('imagesToTensor needs at least one image');
  const { width, height } = first;
  const plane = width * height;
  const data = new Float32Array(images.length * 3 * plane);
  images.forEach((image, b) => {
    if (image.width !== width || image.height !== height) throw new Error(`image ${b} is ${image.width}×${image.height}, expected ${width}×${height}`);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) data[(b * 3 + c) * plane + p] = image.data[p * 4 + c]! / 127.5 - 1;
    }
  });
  return { dtype: 'float32', shape: [images.length, 3, height, width], data };
}

/**
 * Float (B, 3, H, W) in [−1, 1] → RGBA images with Kosmos-G's post-processing:
 * clamp(x/2 + 0.5, 0, 1), then round(· 255).
 */
export function tensorToImages(tensor: HostTensor): RgbaImage[] {
  const [batch, channels, height, width] = tensor.shape as [number, number, number, number];
  if (tensor.shape.length !== 4 || channels !== 3) throw new Error(`expected a (B, 3, H, W) image tensor, got [${tensor.shape.join(', ')}]`);
  const plane = width * height;
  return Array.from({ length: batch }, (_, b) => {
    const data = new Uint8Array(plane * 4);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const unit = Math.min(1, Math.max(0, Number(tensor.data[(b * 3 + c) * plane + p]) / 2 + 0.5));
        data[p * 4 + c] = Math.round(unit * 255);
      }
      data[p * 4 + 3] = 255;
    }
    return { width, height, data };
  });
}

/** Rows of equally sized images as one PNG, with a 2-pixel white gutter, enlarged `scale` times (nearest). */
export async function imageGridPng(rows: readonly (readonly RgbaImage[])[], scale = 2): Promise<Buffer> {
  const cell = rows[0]?.[0];
  if (!cell) throw new Error('imageGridPng needs at least one image');
  const gutter = 2;
  const columns = Math.max(...rows.map((row) => row.length));
  const width = columns * (cell.width + gutter) + gutter;
  const height = rows.length * (cell.height + gutter) + gutter;
  const canvas = Buffer.alloc(width * height * 4, 255);
  rows.forEach((row, r) =>
    row.forEach((image, c) => {
      if (image.width !== cell.width || image.height !== cell.height) throw new Error('imageGridPng needs images of one size');
      const [x0, y0] = [gutter + c * (cell.width + gutter), gutter + r * (cell.height + gutter)];
      for (let y = 0; y < image.height; y++) {
        canvas.set(image.data.subarray(y * image.width * 4, (y + 1) * image.width * 4), ((y0 + y) * width + x0) * 4);
      }
    }),
  );
  return sharp(canvas, { raw: { width, height, channels: 4 } })
    .resize(width * scale, height * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/**
 * A retrieval matrix as a PNG: `columns` along the top, then one row per `rows` image whose cells
 * show softmax(similarity / 0.05) over the columns (white = all mass), the matching column (the
 * diagonal) outlined in green. `similarity` is (rows, columns), row-major; all images one size.
 */
export async function retrievalMatrixPng(rows: readonly RgbaImage[], columns: readonly RgbaImage[], similarity: Float32Array): Promise<Buffer> {
  const cell = columns[0]!.width;
  const [width, height] = [(columns.length + 1) * cell, (rows.length + 1) * cell];
  const canvas = Buffer.alloc(width * height * 4, 255);
  const paint = (x0: number, y0: number, pixel: (x: number, y: number) => [number, number, number]) => {
    for (let y = 0; y < cell; y++) for (let x = 0; x < cell; x++) canvas.set([...pixel(x, y), 255], ((y0 + y) * width + x0 + x) * 4);
  };
  const imagePixel = (image: RgbaImage) => (x: number, y: number) => [...image.data.subarray((y * cell + x) * 4, (y * cell + x) * 4 + 3)] as [number, number, number];
  columns.forEach((image, i) => paint((i + 1) * cell, 0, imagePixel(image)));
  rows.forEach((image, r) => {
    const row = similarity.subarray(r * columns.length, (r + 1) * columns.length);
    const top = Math.max(...row);
    const weights = Array.from(row, (s) => Math.exp((s - top) / 0.05));
    const total = weights.reduce((a, b) => a + b, 0);
    weights.forEach((weight, i) => {
      const level = Math.round((255 * weight) / total);
      const border = i === r;
      paint((i + 1) * cell, (r + 1) * cell, (x, y) => (border && (x < 3 || y < 3 || x >= cell - 3 || y >= cell - 3) ? [40, 200, 40] : [level, level, level]));
    });
    paint(0, (r + 1) * cell, imagePixel(image));
  });
  return sharp(canvas, { raw: { width, height, channels: 4 } }).png().toBuffer();
}
