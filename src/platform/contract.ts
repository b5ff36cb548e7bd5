// What the rest of the project asks of the machine it runs on: files, paths, image decoding, the
// ONNX Runtime binding and a few facts about the host. Node (node.ts: the file system, sharp,
// onnxruntime-node) and the browser (browser.ts: fetch with a cache, createImageBitmap,
// onnxruntime-web) each implement it; package.json's `imports` picks one for `#platform` by the
// `browser` condition, so graph, model and pipeline code has one path on both.
import type * as ort from 'onnxruntime-common';

export type PathKind = 'file' | 'directory';

/** One file of a model folder's manifest (`files.json`): path relative to the folder, '/'-separated. */
export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
}

/** A file read by byte range: a parsed header first, then tensors on demand. */
export interface RandomAccessFile {
  readonly size: number;
  /** A fresh, exclusively owned array of `length` bytes from `position`. */
  read(position: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Where `replaceFile` writes: every byte of `bytes` at `position` (a partial write is continued). */
export interface FileSink {
  write(bytes: Uint8Array, position: number): Promise<void>;
}

/** Decoded pixels: interleaved 8-bit RGB, row-major, alpha dropped (not composited), as PIL's convert("RGB"). */
export interface DecodedImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** How ORT gets an external data file: a folder it reads itself (Node), or the bytes. */
export type ExternalDataSource = { folder: string } | { bytes: Uint8Array };

export interface WebGpuAnswer {
  available: boolean;
  /** Why no adapter can be used, when none can. */
  reason?: string;
}

export interface PathFunctions {
  join(...parts: string[]): string;
  dirname(path: string): string;
  basename(path: string): string;
  isAbsolute(path: string): boolean;
  relative(from: string, to: string): string;
  resolve(...parts: string[]): string;
}

export interface Platform {
  readonly name: 'node' | 'browser';
  /** ONNX Runtime: onnxruntime-node or onnxruntime-web (both are onnxruntime-common's API). */
  readonly ort: typeof ort;
  readonly path: PathFunctions;

  /** Errors carry `code` ('ENOENT' for a file that is not there) and name the path. */
  readBytes(path: string): Promise<Uint8Array>;
  readText(path: string): Promise<string>;
  /** What is at `path`, or null when nothing (or nothing readable) is. */
  pathKind(path: string): Promise<PathKind | null>;
  fileSize(path: string): Promise<number>;
  /** The names in a folder (not paths), in no particular order. */
  listDirectory(path: string): Promise<string[]>;
  openRandomAccess(path: string): Promise<RandomAccessFile>;
  /** Writes a whole file; folders are made as needed. Only Node can write. */
  writeFile(path: string, contents: Uint8Array | string): Promise<void>;
  makeDirectory(path: string): Promise<void>;
  /**
   * Replaces `path` with what `write` puts into a fresh temporary file beside it, synced and renamed
   * into place, so a reader (or a run resumed after kill -9) sees the old file or the whole new one.
   */
  replaceFile(path: string, write: (sink: FileSink) => Promise<void>): Promise<void>;
  /** Makes renames and creations inside a folder durable. */
  syncDirectory(path: string): Promise<void>;

  /** How ORT reads the external data file at `path`, which the model's initializers call `location`. */
  externalData(location: string, path: string): Promise<ExternalDataSource>;
  /**
   * How ORT reads external data made in memory (weights quantized at load time): where the
   * platform keeps file-based external data in a folder, the bytes are written there too, because
   * ORT takes external data either all from memory or all from files.
   */
  externalBytes(location: string, bytes: Uint8Array): Promise<ExternalDataSource>;
  gunzip(bytes: Uint8Array): Promise<Uint8Array>;
  /** Decodes an encoded image, refusing more than `maxPixels` pixels before decoding them. */
  decodeImage(bytes: Uint8Array, maxPixels: number): Promise<DecodedImage>;

  /** Cores this process may use. */
  cores(): number;
  /** Memory the machine (or the page's runtime) can give, in bytes. */
  totalMemory(): number;
  /** Memory this process holds now, in bytes (0 where the host does not say). */
  residentMemory(): number;
  /** Whether a WebGPU adapter can run a session; `probeScript` is the Node child-process probe. */
  probeWebGpu(probeScript: URL): Promise<WebGpuAnswer>;
  /** A warning line for the user (stderr in Node, the console in a page). */
  warn(line: string): void;
}
