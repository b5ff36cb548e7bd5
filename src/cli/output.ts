// Output files and report folders of the commands. They are checked before any work (a long
// generation must not be thrown away at the end because its folder cannot be written), an existing
// file or report is replaced only with --force. (Writes go through writeFileNamed, whose errors
// name the file, never the temporary name it was written under.)
import { open, stat, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';

export interface OutputCheck {
  /** The option that named the file, for the messages (default --out). */
  flag?: string;
  /** The extension the file must have, lower case with its dot (".png"). */
  extension?: string;
  /** Replace an existing file. */
  force: boolean;
}

/** Throws the one-line error when `path` could not be written, or exists without `force`. */
export async function checkOutputFile(path: string, check: OutputCheck): Promise<void> {
  const flag = check.flag ?? '--out';
  if (check.extension && extname(path).toLowerCase() !== check.extension) throw new Error(`${flag} must name a ${check.extension} file, got '${path}'`);
  const folder = dirname(resolve(path));
  const entry = await stat(folder).catch(() => null);
  if (!entry?.isDirectory()) throw new Error(`the folder of ${flag} does not exist: ${folder}`);
  const existing = await stat(path).catch(() => null);
  if (existing?.isDirectory()) throw new Error(`${path} is a folder; ${flag} must name a file`);
  if (existing && !check.force) throw new Error(`${path} already exists; pass --force to replace it`);
  // A file created and removed at once: permission bits alone do not tell (root, read-only mounts).
  const probe = join(folder, `.${basename(path)}.${process.pid}.probe`);
  await open(probe, 'wx')
    .then(async (handle) => {
      await handle.close();
      await unlink(probe);
    })
    .catch((error: NodeJS.ErrnoException) => {
      throw new Error(`the folder of ${flag} is not writable: ${folder} (${error.code ?? error.message})`);
    });
}

/** Refuses, before an evaluation runs, a report folder that already holds one of `files` (unless `force`). */
export async function checkReportFolder(out: string, files: readonly string[], force: boolean): Promise<void> {
  if (force) return;
  for (const file of files) {
    const path = join(out, file);
    if (await stat(path).catch(() => null)) throw new Error(`${path} already exists; pass --force to replace the report in ${out}`);
  }
}
