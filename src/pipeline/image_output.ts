// Generated images out of the pipeline: PNG encoding (sharp) and grids of several images.
import sharp from 'sharp';
import type { GeneratedImage } from './diffusion.js';

/** PNG bytes of an RGB image. */
export async function encodePng(image: GeneratedImage): Promise<Buffer> {
  return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
}

export interface GridLayout {
  columns: number;
  rows: number;
}

/** ⌈√n⌉ columns and as many rows as needed: 2 → 2×1, 4 → 2×2, 5 → 3×2. */
export function gridLayout(count: number): GridLayout {
  const columns = Math.ceil(Math.sqrt(count));
  return { columns, rows: Math.ceil(count / columns) };
}

/** Images of one size tiled row by row (image i at column i mod columns); empty cells are black. */
export function imageGrid(images: readonly GeneratedImage[], layout: GridLayout = gridLayout(images.length)): GeneratedImage {
  const [first] = images;
  if (!first) throw new Error('a grid needs at least one image');
  const { width, height } = first;
  if (images.some((image) => image.width !== width || image.height !== height)) throw new Error('grid images must all have the same size');
  if (layout.columns * layout.rows < images.length) throw new Error(`a ${layout.columns}×${layout.rows} grid cannot hold ${images.length} images`);
  const gridWidth = width * layout.columns;
  const data = new Uint8Array(gridWidth * height * layout.rows * 3);
  images.forEach((image, index) => {
    const left = (index % layout.columns) * width;
    const top = Math.floor(index / layout.columns) * height;
    for (let y = 0; y < height; y++) {
      data.set(image.data.subarray(y * width * 3, (y + 1) * width * 3), ((top + y) * gridWidth + left) * 3);
    }
  });
  return { width: gridWidth, height: height * layout.rows, data };
}

