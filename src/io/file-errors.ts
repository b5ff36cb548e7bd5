// Errors about files that name the file a person knows: a file that is not JSON gives a one-line
// error naming it (and the line, for JSONL), never JSON.parse's bare message, which names no file
// and may quote the broken text across several lines; a failed atomic write names its target,
// never the temporary file it was written under.
import { writeFileAtomic } from './atomic-file.js';

/** `text` parsed as JSON; `source` names where it came from ("state.json", "x.jsonl line 3"). */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const reason = (error as Error).message.replace(/\s+/g, ' ').trim();
    throw new Error(`${source} is not valid JSON (${reason})`);
  }
}

/** writeFileAtomic, with an error that names `path` and the system's code ("cannot write x.png: ENOSPC"). */
export async function writeFileNamed(path: string, data: string | Uint8Array): Promise<void> {
  await writeFileAtomic(path, data).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot write ${path}: ${error.code ?? error.message}`);
  });
}
