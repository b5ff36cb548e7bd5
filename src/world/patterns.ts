// GIMP pattern files (.pat, from Debian's gimp-data and gimp-data-extras) used as scene textures.
// Format: big-endian uint32 header size, version (1), width, height, bytes per pixel (1-4), the
// magic "GPAT", a NUL-terminated UTF-8 name filling the rest of the header, then raw pixels.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import type { RgbaImage } from './image.js';
import { GENERIC_PATTERN_PHRASE, PATTERN_PHRASES } from './vocabulary.js';

export const SYSTEM_PATTERN_DIRECTORY = '/usr/share/gimp/2.0/patterns';

export interface Pattern {
  /** Path below the pattern directory without ".pat", e.g. "Wood/pine". */
  id: string;
  name: string;
  folder: string;
  image: RgbaImage;
}

export function decodePattern(bytes: Uint8Array): { name: string; image: RgbaImage } {
  if (bytes.length < 24) throw new Error(`too short for a GIMP pattern (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerSize = view.getUint32(0);
  const version = view.getUint32(4);
  const width = view.getUint32(8);
  const height = view.getUint32(12);
  const depth = view.getUint32(16);
  const magic = String.fromCharCode(...bytes.subarray(20, 24));
  if (magic !== 'GPAT') throw new Error(`bad magic '${magic}', expected 'GPAT'`);
  if (version !== 1) throw new Error(`unsupported pattern version ${version}`);
  if (depth < 1 || depth > 4) throw new Error(`unsupported ${depth} bytes per pixel`);
  if (width === 0 || height === 0 || width > 8192 || height > 8192) throw new Error(`implausible size ${width}x${height}`);
  if (headerSize < 24 || headerSize > bytes.length) throw new Error(`header size ${headerSize} outside the file`);
  const pixelBytes = width * height * depth;
  if (bytes.length < headerSize + pixelBytes) {
    throw new Error(`truncated: ${bytes.length - headerSize} pixel bytes for ${width}x${height}x${depth}`);
  }
  const nameBytes = bytes.subarray(24, headerSize);
  const nul = nameBytes.indexOf(0);
  const name = new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes);
  const src = bytes.subarray(headerSize, headerSize + pixelBytes);
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = i * depth;
    const o = i * 4;
    if (depth <= 2) {
      const grey = src[s] as number;
      data[o] = grey;
      data[o + 1] = grey;
      data[o + 2] = grey;
      data[o + 3] = depth === 2 ? (src[s + 1] as number) : 255;
    } else {
      data[o] = src[s] as number;
      data[o + 1] = src[s + 1] as number;
      data[o + 2] = src[s + 2] as number;
      data[o + 3] = depth === 4 ? (src[s + 3] as number) : 255;
    }
  }
  return { name, image: { width, height, data } };
}

function listPatternFiles(directory: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir).sort()) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (entry.endsWith('.pat')) out.push(path);
    }
  };
  walk(directory);
  return out;
}

export interface LoadPatternsOptions {
  directory?: string;
  onWarning?: (message: string) => void;
}

/** All readable patterns; corrupt files are skipped with a warning. */
export function loadPatterns(options: LoadPatternsOptions = {}): Pattern[] {
  const directory = options.directory ?? process.env['KOSMOS_G_PATTERNS'] ?? SYSTEM_PATTERN_DIRECTORY;
  if (!existsSync(directory)) {
    throw new Error(
      `GIMP patterns not found at ${directory}; install them with \`apt-get install gimp-data gimp-data-extras\` (or point KOSMOS_G_PATTERNS at a folder of .pat files)`,
    );
  }
  const warn = options.onWarning ?? ((message: string) => process.emitWarning(message));
  const patterns: Pattern[] = [];
  for (const path of listPatternFiles(directory)) {
    const id = relative(directory, path).replace(/\\/g, '/').replace(/\.pat$/, '');
    try {
      const { name, image } = decodePattern(readFileSync(path));
      const folder = id.includes('/') ? id.slice(0, id.indexOf('/')) : '';
      patterns.push({ id, name: name || basename(id), folder, image });
    } catch (error) {
      warn(`skipping corrupt GIMP pattern ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (patterns.length === 0) {
    throw new Error(`no readable .pat files under ${directory}; install them with \`apt-get install gimp-data gimp-data-extras\``);
  }
  return patterns;
}

export function patternPhrase(pattern: Pattern): string {
  const key = pattern.id.toLowerCase();
  for (const [test, phrase] of PATTERN_PHRASES) if (test.test(key)) return phrase;
  return GENERIC_PATTERN_PHRASE;
}
