// Durable file replacement: write a temporary file beside the target, fsync it, rename it into
// place and fsync the folder, so a reader (or a run resumed after kill -9) sees either the old
// file or the complete new one, never a torn write.
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces `path` with what `write` puts into a fresh temporary file beside it (same folder, so the
 * rename is atomic). On failure the temporary file is removed and any previous file is untouched.
 */
export async function replaceFileAtomically(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx');
    try {
      await write(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    // The write error is the one worth reporting; a failed cleanup of the temporary file is not.
    await unlink(temporary).catch(() => {});
    throw error;
  }
  await syncDirectory(dirname(path));
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await replaceFileAtomically(path, (handle) => handle.writeFile(data));
}

/** Makes renames and creations inside `directory` durable; Windows cannot open folders and needs none. */
export async function syncDirectory(directory: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
