// Durable file replacement (the platform's temporary file, sync, rename and folder sync), so a
// reader, or a run resumed after kill -9, sees either the old file or the complete new one.
import { platform } from '#platform';
import type { FileSink } from '../platform/contract.js';

export type { FileSink };

/** Replaces `path` with what `write` puts into a fresh temporary file; on failure any previous file is untouched. */
export function replaceFileAtomically(path: string, write: (sink: FileSink) => Promise<void>): Promise<void> {
  return platform.replaceFile(path, write);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await platform.replaceFile(path, (sink) => sink.write(typeof data === 'string' ? new TextEncoder().encode(data) : data, 0));
}

export function syncDirectory(directory: string): Promise<void> {
  return platform.syncDirectory(directory);
}
