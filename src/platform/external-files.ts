// Weight files on disk reach onnxruntime without passing through JavaScript memory: each file is
// hard-linked, under the location name the model's initializers use, into one folder per process,
// and ORT reads that folder itself (it refuses absolute locations and symlinks that lead outside
// the folder). Hard links cost nothing, work for files beyond a Node buffer's 4 GiB, and keep the
// bytes alive even if the original is replaced mid-run. Where a link cannot be made (another
// filesystem, no permission), the caller falls back to reading the file into memory. Bytes made in
// memory (quantized weights) are written into the same folder, as ORT takes external data either
// all from files or all from memory.
import { mkdtempSync, rmSync } from 'node:fs';
import { link, lstat, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let folder: string | null = null;

function linkFolder(): string {
  if (!folder) {
    const created = mkdtempSync(join(tmpdir(), 'kosmos-g-weights-'));
    process.once('exit', () => rmSync(created, { recursive: true, force: true }));
    folder = created;
  }
  return folder;
}

function checkLocation(location: string): void {
  if (location.includes('/') || location.includes('\\') || location.startsWith('.')) {
    throw new Error(`external data location ${location} must be a plain file name`);
  }
}

/**
 * Makes `location` in the link folder name the current contents of `file`. Returns the folder, or
 * null when no hard link can be made there.
 */
export async function linkExternalFile(location: string, file: string): Promise<string | null> {
  checkLocation(location);
  const directory = linkFolder();
  const target = join(directory, location);
  const source = await stat(file);
  const existing = await lstat(target).catch(() => null);
  if (existing) {
    // The same location may name a file that has since been rewritten (atomic saves make a new inode).
    if (existing.ino === source.ino && existing.dev === source.dev) return directory;
    await unlink(target);
  }
  try {
    await link(file, target);
    return directory;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EACCES' || code === 'EMLINK' || code === 'ENOTSUP') return null;
    if (code === 'EEXIST') return directory; // another session linked it concurrently
    throw error;
  }
}

/** The bytes last written under each location: every session of a model reuses its one file. */
const written = new Map<string, Uint8Array>();

/**
 * Writes `bytes` into the link folder as `location` (replacing an earlier file of that name
 * atomically, as a session may be reading it) and returns the folder; the same bytes again are
 * not rewritten.
 */
export async function writeExternalFile(location: string, bytes: Uint8Array): Promise<string> {
  checkLocation(location);
  const directory = linkFolder();
  if (written.get(location) === bytes) return directory;
  const temporary = join(directory, `.${location}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  await writeFile(temporary, bytes);
  await rename(temporary, join(directory, location));
  written.set(location, bytes);
  return directory;
}
