// The manifest of a model folder (`files.json`): every regular file's path relative to the folder,
// size and sha256. A page cannot list a folder over HTTP, so it reads this instead; the hashes let
// it check each download and key its cache, so a changed file is fetched again.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManifestFile } from '../platform/contract.js';

export const MANIFEST_FILE = 'files.json';

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every regular file under `folder` (dotfiles and the manifest itself left out), sorted by path. */
export async function folderManifest(folder: string): Promise<{ files: ManifestFile[] }> {
  const files: ManifestFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(join(folder, relative), { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && path !== MANIFEST_FILE) {
        const absolute = join(folder, path);
        const { size } = await stat(absolute);
        files.push({ path, size, sha256: await sha256File(absolute) });
      }
    }
  };
  await walk('');
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files };
}
