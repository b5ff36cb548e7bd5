// Contact sheets for people: one row per sample with its input images, its text and its target.
// Samples are drawn one at a time into small cell images, and a sheet over MAX_SHEET_PIXELS is
// refused, so `data preview` with a huge --n or --cell fails at once instead of exhausting memory.
import sharp, { type OverlayOptions } from 'sharp';
import { encodePng, resizeImage, type RgbaImage } from './image.js';
import type { InterleavedSample } from './instruct.js';

export interface SheetOptions {
  /** Displayed side of each image. */
  cell?: number;
  /** Width of the text column in pixels. */
  textWidth?: number;
  title?: string;
}

const PAD = 6;
const LINE = 14;
const FONT = 11;

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function wrapText(text: string, maxChars: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line.length > 0 && line.length + 1 + word.length > maxChars) {
      lines.push(line);
      line = word;
    } else {
      line = line.length > 0 ? `${line} ${word}` : word;
    }
  }
  if (line.length > 0) lines.push(line);
  return lines;
}

/** Smallest and largest displayed image side. */
export const CELL_RANGE = { min: 16, max: 512 } as const;
/** Largest sheet, in pixels (256 MiB as RGBA): a larger one is refused before any sample is drawn. */
export const MAX_SHEET_PIXELS = 64 * 2 ** 20;

/** Width and height of a sheet of `count` rows of `inputs` input images at least (text lines not counted). */
export function sheetSize(count: number, inputs: number, options: SheetOptions = {}): { width: number; height: number } {
  const cell = options.cell ?? 96;
  const textWidth = options.textWidth ?? 300;
  const header = options.title ? LINE + PAD : 0;
  return { width: PAD + Math.max(1, inputs) * (cell + PAD) + textWidth + PAD + cell + PAD, height: header + PAD + count * (cell + PAD) };
}

/** Throws the one-line error when a sheet of this size would be too large to draw. */
export function checkSheetSize(size: { width: number; height: number }): void {
  if (size.width * size.height > MAX_SHEET_PIXELS) {
    throw new Error(`a ${size.width}×${size.height} contact sheet is over the ${MAX_SHEET_PIXELS / 2 ** 20} M pixel limit; draw fewer samples or smaller cells`);
  }
}

/**
 * Draws a sheet of `samples`, taken one at a time: each is scaled to its cells and dropped before
 * the next is drawn, so the memory held is the sheet's, not the samples'.
 */
export async function contactSheet(samples: Iterable<InterleavedSample>, options: SheetOptions = {}): Promise<Buffer> {
  const cell = options.cell ?? 96;
  if (!Number.isInteger(cell) || cell < CELL_RANGE.min || cell > CELL_RANGE.max) throw new Error(`cell must be an integer from ${CELL_RANGE.min} to ${CELL_RANGE.max}, got ${cell}`);
  const textWidth = options.textWidth ?? 300;
  const charsPerLine = Math.floor(textWidth / (FONT * 0.58));
  const cellPng = (image: RgbaImage) => encodePng(image.width === cell && image.height === cell ? image : resizeImage(image, cell, cell));
  const rows: { inputs: Buffer[]; target: Buffer; lines: string[]; height: number }[] = [];
  for (const sample of samples) {
    const lines = wrapText(sample.text, charsPerLine);
    rows.push({ inputs: await Promise.all(sample.images.map(cellPng)), target: await cellPng(sample.target), lines, height: Math.max(cell, lines.length * LINE) + PAD });
  }
  if (rows.length === 0) throw new Error('a contact sheet needs at least one sample');
  const maxInputs = Math.max(1, ...rows.map((row) => row.inputs.length));
  const { width } = sheetSize(rows.length, maxInputs, options);
  const header = options.title ? LINE + PAD : 0;
  const height = header + PAD + rows.reduce((sum, r) => sum + r.height, 0);
  checkSheetSize({ width, height });
  const layers: OverlayOptions[] = [];
  const texts: string[] = [];
  if (options.title) texts.push(`<text x="${PAD}" y="${PAD + FONT}" font-weight="bold">${escapeXml(options.title)}</text>`);
  let top = header + PAD;
  for (const row of rows) {
    row.inputs.forEach((input, k) => layers.push({ input, left: PAD + k * (cell + PAD), top }));
    const textLeft = PAD + maxInputs * (cell + PAD);
    row.lines.forEach((line, i) => texts.push(`<text x="${textLeft}" y="${top + FONT + i * LINE}">${escapeXml(line)}</text>`));
    texts.push(`<text x="${textLeft + textWidth - FONT}" y="${top + cell / 2}">→</text>`);
    layers.push({ input: row.target, left: textLeft + textWidth + PAD, top });
    top += row.height;
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><g font-family="DejaVu Sans, sans-serif" font-size="${FONT}" fill="#222">${texts.join('')}</g></svg>`;
  layers.unshift({ input: Buffer.from(svg), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 4, background: { r: 255, g: 255, b: 255, alpha: 1 } } })
    .composite(layers)
    .png({ compressionLevel: 9, palette: true, quality: 90 })
    .toBuffer();
}
