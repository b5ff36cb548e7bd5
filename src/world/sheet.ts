// Contact sheets for people: one row per sample with its input images, its text and its target.
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

export async function contactSheet(samples: readonly InterleavedSample[], options: SheetOptions = {}): Promise<Buffer> {
  if (samples.length === 0) throw new Error('a contact sheet needs at least one sample');
  const cell = options.cell ?? 96;
  const textWidth = options.textWidth ?? 300;
  const maxInputs = Math.max(1, ...samples.map((s) => s.images.length));
  const charsPerLine = Math.floor(textWidth / (FONT * 0.58));
  const header = options.title ? LINE + PAD : 0;
  const rows = samples.map((s) => {
    const lines = wrapText(s.text, charsPerLine);
    return { sample: s, lines, height: Math.max(cell, lines.length * LINE) + PAD };
  });
  const width = PAD + maxInputs * (cell + PAD) + textWidth + PAD + cell + PAD;
  const height = header + PAD + rows.reduce((sum, r) => sum + r.height, 0);
  const layers: OverlayOptions[] = [];
  const texts: string[] = [];
  if (options.title) texts.push(`<text x="${PAD}" y="${PAD + FONT}" font-weight="bold">${escapeXml(options.title)}</text>`);
  const place = async (image: RgbaImage, left: number, top: number): Promise<void> => {
    const scaled = image.width === cell && image.height === cell ? image : resizeImage(image, cell, cell);
    layers.push({ input: await encodePng(scaled), left, top });
  };
  let top = header + PAD;
  for (const row of rows) {
    for (let k = 0; k < row.sample.images.length; k++) await place(row.sample.images[k] as RgbaImage, PAD + k * (cell + PAD), top);
    const textLeft = PAD + maxInputs * (cell + PAD);
    row.lines.forEach((line, i) => texts.push(`<text x="${textLeft}" y="${top + FONT + i * LINE}">${escapeXml(line)}</text>`));
    texts.push(`<text x="${textLeft + textWidth - FONT}" y="${top + cell / 2}">→</text>`);
    await place(row.sample.target, textLeft + textWidth + PAD, top);
    top += row.height;
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><g font-family="DejaVu Sans, sans-serif" font-size="${FONT}" fill="#222">${texts.join('')}</g></svg>`;
  layers.unshift({ input: Buffer.from(svg), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 4, background: { r: 255, g: 255, b: 255, alpha: 1 } } })
    .composite(layers)
    .png({ compressionLevel: 9, palette: true, quality: 90 })
    .toBuffer();
}
