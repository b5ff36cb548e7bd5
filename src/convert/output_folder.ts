// The folder a conversion writes: `--out` is checked before any work (not an input, not existing
// unless --force), then everything is written into a temporary sibling that is renamed into place,
// so `--out` is either untouched or complete. Model cards and licence files travel with weights.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** One line of a conversion's report: a component of the written folder and where it came from. */
export interface ComponentReport {
  name: string;
  source: string;
}

/**
 * `out` resolved, after checking that it is none of `inputs` (flag and path) and that it does not
 * exist unless `force` is given (and then that it is a folder).
 */
export async function checkOutput(out: string, force: boolean, inputs: readonly (readonly [flag: string, path: string | undefined])[]): Promise<string> {
  const resolved = resolve(out);
  for (const [flag, path] of inputs) {
    if (path !== undefined && resolve(path) === resolved) throw new Error(`--out ${out} is the ${flag} path; write the pipeline somewhere else`);
  }
  const existing = await stat(resolved).catch(() => null);
  if (existing && !force) throw new Error(`${out} already exists (use --force to replace it)`);
  if (existing && !existing.isDirectory()) throw new Error(`${out} exists and is not a folder; --force only replaces a folder`);
  return resolved;
}

/** Writes into a temporary sibling of `out` and renames it into place (replacing an old folder only with `force`). */
export async function writeFolderAtomically<T>(out: string, force: boolean, write: (directory: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(out), { recursive: true });
  const temporary = join(dirname(out), `.${basename(out)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  await mkdir(temporary);
  let result: T;
  try {
    result = await write(temporary);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    // Errors name the folder the user asked for, not the temporary one.
    throw new Error((error as Error).message.split(temporary).join(out));
  }
  const old = `${temporary.slice(0, -'.tmp'.length)}.old`;
  const replacing = force && (await stat(out).then(() => true, () => false));
  if (replacing) await rename(out, old);
  try {
    await rename(temporary, out);
  } catch (error) {
    if (replacing) await rename(old, out);
    await rm(temporary, { recursive: true, force: true });
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === 'EEXIST' || code === 'ENOTEMPTY' ? `${out} already exists (use --force to replace it)` : `cannot create ${out}: ${code ?? (error as Error).message}`);
  }
  if (replacing) await rm(old, { recursive: true, force: true });
  return result;
}

/** Model cards, licences and attributions: a Stable Diffusion licence asks that it go along with the weights. */
const DOCUMENTATION = /^(README|LICEN[CS]E|NOTICE|ATTRIBUTION)([.-].*)?$|\.md$/i;

/** The plain files of `directory` (symbolic links followed, as in a Hugging Face cache snapshot) that `keep` accepts. */
export async function filesOf(directory: string, keep: (name: string) => boolean = () => true): Promise<string[]> {
  const names = (await readdir(directory)).filter(keep);
  const isFile = await Promise.all(names.map((name) => stat(join(directory, name)).then((entry) => entry.isFile(), () => false)));
  return names.filter((_, index) => isFile[index]);
}

/** Copies the documentation files of `from` into `to`, keeping those `to` already has. */
export async function copyDocumentation(from: string, to: string): Promise<void> {
  const present = new Set(await readdir(to).catch(() => []));
  for (const name of await filesOf(from, (file) => DOCUMENTATION.test(file) && !present.has(file))) {
    // Reflinks where the file system has them, a plain copy elsewhere.
    await copyFile(join(from, name), join(to, name), constants.COPYFILE_FICLONE);
  }
}
