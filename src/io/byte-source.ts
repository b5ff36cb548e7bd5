// Random access to the bytes of a file or an in-memory buffer, for readers that parse a small
// header and then fetch ranges on demand (safetensors, torch checkpoints, zip archives).
import { open, type FileHandle } from 'node:fs/promises';

export interface ByteSource {
  /** A file path or an in-memory label, for messages. */
  readonly label: string;
  readonly size: number;
  /** Returns a fresh, exclusively owned array starting at offset 0 of its own ArrayBuffer. */
  read(position: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export function bufferSource(buffer: Uint8Array, label = 'in-memory buffer'): ByteSource {
  return {
    label,
    size: buffer.byteLength,
    // A copy rather than Buffer#slice, which would share (and misalign) the caller's memory.
    async read(position, length) {
      const bytes = new Uint8Array(length);
      bytes.set(buffer.subarray(position, position + length));
      return bytes;
    },
    close: async () => {},
  };
}

export function fileSource(handle: FileHandle, size: number, path: string): ByteSource {
  return {
    label: path,
    size,
    async read(position, length) {
      const bytes = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(bytes, filled, length - filled, position + filled);
        if (bytesRead === 0) {
          throw new Error(`${path}: file ended at byte ${position + filled} while reading bytes ${position}..${position + length} (was it truncated after opening?)`);
        }
        filled += bytesRead;
      }
      return bytes;
    },
    close: () => handle.close(),
  };
}

/** Opens `path` for reading; the handle is closed again if `use` fails while setting up. */
export async function openFileSource<T>(path: string, use: (source: ByteSource) => Promise<T>): Promise<T> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    return await use(fileSource(handle, size, path));
  } catch (error) {
    await handle.close();
    throw error;
  }
}
