// On-disk cache of rendered images, kept outside the repository and rebuilt from node_modules.
// Each image is one small file: "KGRI", width and height (uint16 LE), then raw RGBA bytes; raw
// bytes load in microseconds, which PNG decoding would not.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { RgbaImage } from './image.js';

const MAGIC = 0x4952474b; // "KGRI" little-endian

/** Cache root: explicit option, then $KOSMOS_G_CACHE, then $XDG_CACHE_HOME/kosmos-g, then ~/.cache/kosmos-g. */
export function cacheRoot(explicit?: string): string {
  if (explicit) return explicit;
  const fromEnv = process.env['KOSMOS_G_CACHE'];
  if (fromEnv) return fromEnv;
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'kosmos-g');
}

export function writeCachedImage(path: string, image: RgbaImage): void {
  if (image.width > 65535 || image.height > 65535) throw new Error(`image too large to cache: ${image.width}x${image.height}`);
  const bytes = Buffer.alloc(8 + image.data.length);
  bytes.writeUInt32LE(MAGIC, 0);
  bytes.writeUInt16LE(image.width, 4);
  bytes.writeUInt16LE(image.height, 6);
  bytes.set(image.data, 8);
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, bytes);
  renameSync(temporary, path);
}

/** The cached image, or null when the file is absent or not a cache file. */
export function readCachedImage(path: string): RgbaImage | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return null;
  }
  if (bytes.length < 8 || bytes.readUInt32LE(0) !== MAGIC) return null;
  const width = bytes.readUInt16LE(4);
  const height = bytes.readUInt16LE(6);
  if (bytes.length !== 8 + width * height * 4) return null;
  return { width, height, data: new Uint8Array(bytes.buffer, bytes.byteOffset + 8, width * height * 4) };
}
