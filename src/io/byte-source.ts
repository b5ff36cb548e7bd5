// Random access to the bytes of a file or an in-memory buffer, for readers that parse a small
// header and then fetch ranges on demand (safetensors, torch checkpoints, zip archives).
import { platform } from '#platform';

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

/** Opens `path` for reading; the file is closed again if `use` fails while setting up. */
export async function openFileSource<T>(path: string, use: (source: ByteSource) => Promise<T>): Promise<T> {
  const file = await platform.openRandomAccess(path);
  try {
    return await use({ label: path, size: file.size, read: (position, length) => file.read(position, length), close: () => file.close() });
  } catch (error) {
    await file.close();
    throw error;
  }
}
