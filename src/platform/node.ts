// The platform on Node: the file system, sharp (libvips) for decoding, onnxruntime-node. External
// weight files are hard-linked into one folder per process that ORT reads itself, so weights do
// not pass through JavaScript memory (external-files.ts); only files that cannot be linked are read.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { DecodedImage, FileSink, PathKind, Platform, RandomAccessFile, WebGpuAnswer } from './contract.js';
import { linkExternalFile, writeExternalFile } from './external-files.js';

const gunzipAsync = promisify(gunzip);

async function openRandomAccess(file: string): Promise<RandomAccessFile> {
  const handle = await open(file, 'r');
  const { size } = await handle.stat().catch(async (error: unknown) => {
    await handle.close();
    throw error;
  });
  return {
    size,
    async read(position, length) {
      const bytes = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(bytes, filled, length - filled, position + filled);
        if (bytesRead === 0) {
          throw new Error(`${file}: file ended at byte ${position + filled} while reading bytes ${position}..${position + length} (was it truncated after opening?)`);
        }
        filled += bytesRead;
      }
      return bytes;
    },
    close: () => handle.close(),
  };
}

/** The whole file in one buffer, read in chunks: a single read stops at 2 GiB. */
async function readWholeFile(file: string): Promise<Uint8Array> {
  const source = await openRandomAccess(file);
  try {
    const bytes = new Uint8Array(source.size);
    for (let position = 0; position < source.size; position += 1 << 30) {
      bytes.set(await source.read(position, Math.min(source.size - position, 1 << 30)), position);
    }
    return bytes;
  } finally {
    await source.close();
  }
}

async function decodeImage(bytes: Uint8Array, maxPixels: number): Promise<DecodedImage> {
  // Only the header is read first, so an oversized image is refused before its pixels exist.
  const { width, height } = await sharp(bytes, { limitInputPixels: false })
    .metadata()
    .catch((error: unknown) => {
      throw Object.assign(error instanceof Error ? error : new Error(String(error)), { code: 'EFORMAT' });
    });
  if (!width || !height) throw Object.assign(new Error('the image has no size'), { code: 'EFORMAT' });
  if (width * height > maxPixels) throw Object.assign(new Error(`${width}×${height} is over the ${maxPixels}-pixel limit`), { code: 'EPIXELS' });
  const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'warning' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return { width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

async function replaceFile(file: string, write: (sink: FileSink) => Promise<void>): Promise<void> {
  // Same folder as the target, so the rename is atomic.
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx');
    try {
      await write({
        async write(bytes, position) {
          // A single write may be partial (disk full, signals); keep going until every byte is out.
          for (let written = 0; written < bytes.byteLength; ) {
            written += (await handle.write(bytes, written, bytes.byteLength - written, position + written)).bytesWritten;
          }
        },
      });
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    // The write error is the one worth reporting; a failed cleanup of the temporary file is not.
    await unlink(temporary).catch(() => {});
    throw error;
  }
  await syncDirectory(path.dirname(file));
}

/** Windows cannot open folders and needs no folder sync. */
async function syncDirectory(folder: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A probe that hangs (a wedged driver) counts as no adapter after this long. */
const PROBE_TIMEOUT_MS = 20000;

/** Runs the WebGPU probe in a child process: Dawn's native warnings and any driver crash stay there. */
function probeWebGpu(probeScript: URL): Promise<WebGpuAnswer> {
  return new Promise((resolve) => {
    execFile(process.execPath, [fileURLToPath(probeScript)], { timeout: PROBE_TIMEOUT_MS, windowsHide: true }, (error, stdout) => {
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as WebGpuAnswer);
      } catch {
        const how = error?.signal ? `ended by ${error.signal}` : `exited with code ${String(error?.code ?? 0)}`;
        resolve({ available: false, reason: `the WebGPU probe ${how} without an answer` });
      }
    });
  });
}

async function pathKind(file: string): Promise<PathKind | null> {
  try {
    const entry = await stat(file);
    return entry.isDirectory() ? 'directory' : entry.isFile() ? 'file' : null;
  } catch {
    return null;
  }
}

export const platform: Platform = {
  name: 'node',
  ort,
  path,
  readBytes: (file) => readFile(file),
  readText: (file) => readFile(file, 'utf8'),
  pathKind,
  fileSize: async (file) => (await stat(file)).size,
  listDirectory: (folder) => readdir(folder),
  openRandomAccess,
  async writeFile(file, contents) {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, contents);
  },
  makeDirectory: async (folder) => {
    await mkdir(folder, { recursive: true });
  },
  replaceFile,
  syncDirectory,
  async externalData(location, file) {
    const folder = await linkExternalFile(location, file);
    return folder ? { folder } : { bytes: await readWholeFile(file) };
  },
  externalBytes: async (location, bytes) => ({ folder: await writeExternalFile(location, bytes) }),
  gunzip: (bytes) => gunzipAsync(bytes),
  decodeImage,
  cores: () => availableParallelism(),
  totalMemory: () => totalmem(),
  residentMemory: () => process.memoryUsage().rss,
  probeWebGpu,
  warn: (line) => void process.stderr.write(`${line}\n`),
};

/** Path functions of the platform, for modules that only join and split paths. */
export const { join, dirname, basename, isAbsolute, relative, resolve } = platform.path;
