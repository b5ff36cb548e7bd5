// The platform in a web page or worker: no file system, so a model folder is mounted from a URL
// with its manifest (`files.json`: every file's path, size and sha256, written by the static build
// and served by `kosmos-g serve`). Files are fetched whole, with progress, checked against their
// size and hash, and kept in the Cache API so a reload does not download them again; ORT
// (onnxruntime-web: wasm, or WebGPU through its JSEP build) receives weights as bytes. Images are
// decoded by the browser (createImageBitmap) and read back unscaled, so resizing stays in shared code.
import * as ort from 'onnxruntime-web';
import path from 'path-browserify';
import type { DecodedImage, ManifestFile, PathKind, Platform, RandomAccessFile, WebGpuAnswer } from './contract.js';

export type { ManifestFile };

export interface DownloadProgress {
  path: string;
  loaded: number;
  total: number;
  /** Whether the bytes came from the Cache API rather than the network. */
  cached: boolean;
}

const CACHE_NAME = 'kosmos-g-files-v1';
const mounts = new Map<string, { baseUrl: URL; files: Map<string, ManifestFile> }>();
const reads = new Map<string, Promise<Uint8Array>>();
const progressListeners = new Set<(progress: DownloadProgress) => void>();

function fileError(file: string, code: string, problem: string): Error {
  return Object.assign(new Error(`${file}: ${problem}`), { code });
}

function parseManifest(value: unknown, source: string): ManifestFile[] {
  const files = (value as { files?: unknown } | null)?.files;
  if (!Array.isArray(files)) throw new Error(`${source}: expected {"files": [{path, size, sha256}, …]}`);
  return files.map((entry: unknown, index) => {
    const { path: name, size, sha256 } = (entry ?? {}) as Partial<ManifestFile>;
    const safe = typeof name === 'string' && name !== '' && !name.startsWith('/') && !name.split('/').some((part) => part === '..' || part === '.' || part === '');
    if (!safe || !Number.isSafeInteger(size) || size! < 0 || typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new Error(`${source}: files[${index}] is not a {path, size, sha256} entry inside the folder`);
    }
    return { path: name!, size: size!, sha256 };
  });
}

/**
 * Makes the folder at `baseUrl` readable under the path `root` (for example `/kosmos-g-mini`), from
 * its `files.json`. Returns the manifest's files.
 */
export async function mountFolder(root: string, baseUrl: string | URL): Promise<ManifestFile[]> {
  const base = new URL(baseUrl);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const manifestUrl = new URL('files.json', base);
  const response = await fetch(manifestUrl, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`${manifestUrl.href}: HTTP ${response.status} (a model folder needs its files.json)`);
  const files = parseManifest(await response.json(), manifestUrl.href);
  mounts.set(path.resolve('/', root), { baseUrl: base, files: new Map(files.map((file) => [file.path, file])) });
  return files;
}

/** Calls `listener` while files are fetched (or read from the cache). Returns the unsubscribe. */
export function onDownloadProgress(listener: (progress: DownloadProgress) => void): () => void {
  progressListeners.add(listener);
  return () => progressListeners.delete(listener);
}

/** The mount holding `file` and the file's path inside it. */
function locate(file: string): { mount: { baseUrl: URL; files: Map<string, ManifestFile> }; relative: string } | null {
  const absolute = path.resolve('/', file);
  for (const [root, mount] of mounts) {
    if (absolute === root) return { mount, relative: '' };
    if (absolute.startsWith(`${root}/`)) return { mount, relative: absolute.slice(root.length + 1) };
  }
  return null;
}

function manifestEntry(file: string): { url: URL; entry: ManifestFile } {
  const found = locate(file);
  const entry = found?.mount.files.get(found.relative);
  if (!found || !entry) throw fileError(file, 'ENOENT', 'no such file in a mounted model folder');
  return { url: new URL(entry.path, found.mount.baseUrl), entry };
}

function report(progress: DownloadProgress): void {
  for (const listener of progressListeners) listener(progress);
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** The Cache API where the page may use it (secure contexts), else null. */
async function openCache(): Promise<Cache | null> {
  try {
    return typeof caches === 'undefined' ? null : await caches.open(CACHE_NAME);
  } catch {
    return null;
  }
}

async function download(file: string): Promise<Uint8Array> {
  const { url, entry } = manifestEntry(file);
  // The hash is part of the key: a changed file is a different cache entry.
  const key = `${url.href}#sha256=${entry.sha256}`;
  const cache = await openCache();
  const cached = await cache?.match(key);
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    if (bytes.byteLength === entry.size) {
      report({ path: file, loaded: entry.size, total: entry.size, cached: true });
      return bytes;
    }
  }
  const response = await fetch(url);
  if (!response.ok || !response.body) throw fileError(file, response.status === 404 ? 'ENOENT' : 'EIO', `HTTP ${response.status} from ${url.href}`);
  const bytes = new Uint8Array(entry.size);
  const reader = response.body.getReader();
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength > entry.size) throw fileError(file, 'EIO', `the server sent more than the manifest's ${entry.size} bytes`);
    bytes.set(value, loaded);
    loaded += value.byteLength;
    report({ path: file, loaded, total: entry.size, cached: false });
  }
  if (loaded !== entry.size) throw fileError(file, 'EIO', `received ${loaded} of ${entry.size} bytes`);
  if ((await sha256Hex(bytes)) !== entry.sha256) throw fileError(file, 'EIO', 'the bytes received do not match the manifest\'s sha256');
  await cache?.put(key, new Response(bytes as Uint8Array<ArrayBuffer>)).catch(() => undefined); // a full quota only costs the next reload a download
  return bytes;
}

/** One download per file and page; readers share it. */
function readBytes(file: string): Promise<Uint8Array> {
  const key = path.resolve('/', file);
  let read = reads.get(key);
  if (!read) {
    read = download(file);
    read.catch(() => reads.delete(key));
    reads.set(key, read);
  }
  return read;
}

async function pathKind(file: string): Promise<PathKind | null> {
  const found = locate(file);
  if (!found) return null;
  if (found.relative === '' || found.mount.files.has(found.relative)) return found.relative === '' ? 'directory' : 'file';
  const prefix = `${found.relative}/`;
  return [...found.mount.files.keys()].some((name) => name.startsWith(prefix)) ? 'directory' : null;
}

async function listDirectory(folder: string): Promise<string[]> {
  if ((await pathKind(folder)) !== 'directory') throw fileError(folder, 'ENOENT', 'no such folder in a mounted model folder');
  const { mount, relative } = locate(folder)!;
  const prefix = relative === '' ? '' : `${relative}/`;
  const names = new Set<string>();
  for (const name of mount.files.keys()) if (name.startsWith(prefix)) names.add(name.slice(prefix.length).split('/')[0]!);
  return [...names];
}

async function openRandomAccess(file: string): Promise<RandomAccessFile> {
  const bytes = await readBytes(file);
  return {
    size: bytes.byteLength,
    async read(position, length) {
      if (position + length > bytes.byteLength) throw fileError(file, 'EIO', `bytes ${position}..${position + length} are past the end (${bytes.byteLength})`);
      return bytes.slice(position, position + length);
    },
    close: async () => {},
  };
}

/** Width and height from a PNG's IHDR or a JPEG's SOF marker, read before anything is decoded. */
export function encodedImageSize(bytes: Uint8Array): { width: number; height: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength >= 24 && view.getUint32(0) === 0x89504e47 && view.getUint32(12) === 0x49484452) {
    return { width: view.getUint32(16), height: view.getUint32(20) };
  }
  if (bytes.byteLength >= 4 && view.getUint16(0) === 0xffd8) {
    for (let offset = 2; offset + 9 <= bytes.byteLength; ) {
      if (bytes[offset] !== 0xff) return null;
      const marker = bytes[offset + 1]!;
      const length = view.getUint16(offset + 2);
      // SOF0…SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { width: view.getUint16(offset + 7), height: view.getUint16(offset + 5) };
      }
      offset += 2 + length;
    }
  }
  return null;
}

async function decodeImage(bytes: Uint8Array, maxPixels: number): Promise<DecodedImage> {
  const declared = encodedImageSize(bytes);
  const tooLarge = (width: number, height: number) => Object.assign(new Error(`${width}×${height} is over the ${maxPixels}-pixel limit`), { code: 'EPIXELS' });
  if (declared && declared.width * declared.height > maxPixels) throw tooLarge(declared.width, declared.height);
  // No colour management and straight alpha, so the pixels are the file's own, as PIL reads them.
  const bitmap = await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' }).catch((error: unknown) => {
    throw Object.assign(new Error(error instanceof Error ? error.message : String(error)), { code: 'EFORMAT' });
  });
  try {
    const { width, height } = bitmap;
    if (!width || !height) throw new Error('the image has no size');
    if (width * height > maxPixels) throw tooLarge(width, height);
    const context = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
    if (!context) throw new Error('no 2D canvas context to read the pixels with');
    context.drawImage(bitmap, 0, 0);
    const rgba = context.getImageData(0, 0, width, height).data;
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      rgb[j] = rgba[i]!;
      rgb[j + 1] = rgba[i + 1]!;
      rgb[j + 2] = rgba[i + 2]!;
    }
    return { width, height, rgb };
  } finally {
    bitmap.close();
  }
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function probeWebGpu(): Promise<WebGpuAnswer> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) return { available: false, reason: 'this browser has no WebGPU (navigator.gpu is missing)' };
  try {
    return (await gpu.requestAdapter()) ? { available: true } : { available: false, reason: 'the browser found no WebGPU adapter' };
  } catch (error) {
    return { available: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

const writing = () => Promise.reject(new Error('writing files is not available in the browser'));
const GIB = 1024 ** 3;

export const platform: Platform = {
  name: 'browser',
  ort,
  path,
  readBytes,
  readText: async (file) => new TextDecoder().decode(await readBytes(file)),
  pathKind,
  fileSize: async (file) => manifestEntry(file).entry.size,
  listDirectory,
  openRandomAccess,
  writeFile: writing,
  makeDirectory: writing,
  replaceFile: writing,
  syncDirectory: writing,
  externalData: async (_location, file) => ({ bytes: await readBytes(file) }),
  externalBytes: async (_location, bytes) => ({ bytes }),
  gunzip,
  decodeImage,
  cores: () => navigator.hardwareConcurrency || 1,
  // wasm32 addresses 4 GiB; navigator.deviceMemory (Chromium) is a rounded lower bound in GiB.
  totalMemory: () => Math.min(4, (navigator as Navigator & { deviceMemory?: number }).deviceMemory ?? 4) * GIB,
  residentMemory: () => 0,
  probeWebGpu,
  warn: (line) => console.warn(line),
};

/** Path functions of the platform, for modules that only join and split paths. */
export const { join, dirname, basename, isAbsolute, relative, resolve } = platform.path;
