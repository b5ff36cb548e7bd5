// The run folder's lock: one `train` process per run folder. Two runs on one folder would both
// rewrite log.jsonl, config.json and the checkpoints (one crashes on the other's temporary files,
// the other finishes with a log the first truncated), so the second is refused.
//
// The lock is `run.lock` in the run folder, created with an exclusive open (`wx`) and holding the
// owner's pid, host, start time and a random token. A lock whose pid is no longer alive on this host
// was left by a crash (kill -9, power loss) and is taken over with a warning; a lock from another
// host cannot be checked, nor one whose pid the system has meanwhile given to another program:
// both are reported with the lock's path, for a person to delete. The lock is
// removed when the run ends, when the process exits, and on SIGINT/SIGTERM (the runner stops
// cleanly and releases it; a process killed outright leaves a stale lock, taken over next time).
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const LOCK_FILE = 'run.lock';

interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
  token: string;
}

export interface RunLock {
  path: string;
  /** Removes the lock if it is still this process's; safe to call more than once. */
  release(): void;
}

function parseOwner(text: string): LockOwner | null {
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (Number.isSafeInteger(value.pid) && typeof value.host === 'string' && typeof value.startedAt === 'string' && typeof value.token === 'string') return value as LockOwner;
  } catch {
    // Not JSON: a lock whose writer died between creating and filling it; handled by the caller.
  }
  return null;
}

/** Whether `pid` is a live process on this machine (EPERM: alive, owned by another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function createLock(path: string, owner: LockOwner): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`cannot create the run lock ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    await handle.writeFile(`${JSON.stringify(owner)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

/**
 * Moves a stale lock out of the way. The lock is renamed first and checked afterwards: when two
 * processes find the same stale lock, only one rename takes it, and a process that renamed a lock
 * some other process had meanwhile created puts that one back.
 */
async function removeStaleLock(path: string, staleText: string): Promise<void> {
  const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    await rename(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if ((await readFile(aside, 'utf8')) !== staleText) await link(aside, path).catch(() => {});
  await unlink(aside);
}

function describe(owner: LockOwner): string {
  return `pid ${owner.pid} on ${owner.host}, started ${owner.startedAt}`;
}

/**
 * Takes the lock of run folder `folder` (created if needed), or throws the one-line error that
 * names the run holding it. `warn` hears about a stale lock taken over.
 */
export interface LockUsage {
  /** What holds such a folder: "run", "server". */
  holder: string;
  /** What to do instead of waiting. */
  advice: string;
}

const RUN_USAGE: LockUsage = { holder: 'run', advice: 'wait for it to finish or train into another --out' };

export async function acquireRunLock(folder: string, warn: (message: string) => void, usage: LockUsage = RUN_USAGE): Promise<RunLock> {
  await mkdir(folder, { recursive: true });
  const path = join(folder, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), token: randomBytes(8).toString('hex') };
  // Two rounds: the second follows the removal of a stale lock.
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await createLock(path, owner)) return holdLock(path, owner);
    const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : Promise.reject(error)));
    if (text === null) continue;
    const holder = parseOwner(text);
    if (!holder) throw new Error(`${folder} is in use by another ${usage.holder} (its lock ${path} is being written, or was damaged: if no ${usage.holder} is using the folder, delete it)`);
    if (holder.host !== owner.host) throw new Error(`${folder} is locked by a ${usage.holder} on another machine (${describe(holder)}); if it is not running, delete ${path}`);
    if (processAlive(holder.pid)) {
      throw new Error(`${folder} is in use by another ${usage.holder} (${describe(holder)}); ${usage.advice} (should that pid now be another program, delete ${path})`);
    }
    await removeStaleLock(path, text);
    warn(`warning: taking over the stale lock of ${folder} (${describe(holder)}, no longer running)`);
  }
  throw new Error(`${folder} is in use by another ${usage.holder} that took its lock at the same moment; try again`);
}

function holdLock(path: string, owner: LockOwner): RunLock {
  const ownText = `${JSON.stringify(owner)}\n`;
  // The exit handler must be synchronous: process.exit runs no pending promises.
  const releaseNow = () => {
    try {
      if (readFileSync(path, 'utf8') === ownText) unlinkSync(path);
    } catch {
      // Already gone.
    }
  };
  process.on('exit', releaseNow);
  return {
    path,
    release: () => {
      process.off('exit', releaseNow);
      releaseNow();
    },
  };
}
