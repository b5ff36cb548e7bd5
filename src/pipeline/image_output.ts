// Generated images out of the pipeline: PNG encoding (sharp) with the settings in a text chunk,
// and grids of several images.
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import type { GeneratedImage, SamplingSettings } from './diffusion.js';

/**
 * PNG bytes of an RGB image. `text` entries become `tEXt` chunks (keyword → Latin-1 text), before
 * IEND; sharp writes no text chunks itself.
 */
export async function encodePng(image: GeneratedImage, text: Readonly<Record<string, string>> = {}): Promise<Buffer> {
  const png = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
  const chunks = Object.entries(text).map(([keyword, value]) => textChunk(keyword, value));
  if (!chunks.length) return png;
  // IEND is the last 12 bytes: length 0, "IEND", CRC.
  const end = png.length - 12;
  return Buffer.concat([png.subarray(0, end), ...chunks, png.subarray(end)]);
}

/** A PNG `tEXt` chunk: length, type, keyword NUL text, CRC-32 of type and data (PNG spec §11.3.4.3). */
function textChunk(keyword: string, value: string): Buffer {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) || /^ | $|  /.test(keyword)) throw new Error(`invalid PNG text keyword ${JSON.stringify(keyword)}`);
  // tEXt is Latin-1; characters outside it are written as '?' (iTXt would carry UTF-8, but
  // AUTOMATIC1111's readers look for tEXt "parameters").
  const latin1 = value.replace(/[^\x00-\xff]/gu, '?');
  const data = Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.of(0), Buffer.from(latin1, 'latin1')]);
  const typeAndData = Buffer.concat([Buffer.from('tEXt', 'latin1'), data]);
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  typeAndData.copy(chunk, 4);
  chunk.writeUInt32BE(crc32(typeAndData), 8 + data.length);
  return chunk;
}

/** The PNG text chunks of a file: keyword → text. */
export function readPngText(png: Uint8Array): Record<string, string> {
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const text: Record<string, string> = {};
  for (let offset = 8; offset + 12 <= bytes.length; ) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString('latin1', offset + 4, offset + 8);
    if (offset + 12 + length > bytes.length) break;
    if (type === 'tEXt') {
      const data = bytes.subarray(offset + 8, offset + 8 + length);
      const nul = data.indexOf(0);
      if (nul > 0) text[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    }
    offset += 12 + length;
  }
  return text;
}

const SAMPLER_NAMES: Record<SamplingSettings['scheduler'], string> = { 'dpm++': 'DPM++ 2M', ddim: 'DDIM', pndm: 'PLMS', euler: 'Euler' };

/**
 * The `parameters` text AUTOMATIC1111 writes into its PNGs, which its "PNG Info" tab and other tools
 * read back: the prompt, `Negative prompt: …`, then `Key: value` pairs on one line.
 */
export function generationParameters(settings: Pick<SamplingSettings, 'steps' | 'guidanceScale' | 'scheduler' | 'seed' | 'width' | 'height'> & { prompt: string; negativePrompt: string; model?: string; images?: number }): string {
  const pairs: [string, string | number][] = [
    ['Steps', settings.steps],
    ['Sampler', SAMPLER_NAMES[settings.scheduler]],
    ['CFG scale', settings.guidanceScale],
    ['Seed', settings.seed],
    ['Size', `${settings.width}x${settings.height}`],
  ];
  if (settings.model) pairs.push(['Model', settings.model]);
  if (settings.images) pairs.push(['Input images', settings.images]);
  const lines = [settings.prompt];
  if (settings.negativePrompt) lines.push(`Negative prompt: ${settings.negativePrompt}`);
  lines.push(pairs.map(([key, value]) => `${key}: ${value}`).join(', '));
  return lines.join('\n');
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

