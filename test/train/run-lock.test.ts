// One run per run folder: a second `train` on the same --out (fresh or --resume) is refused with one
// line while the first works; a lock left by a dead process is taken over with a warning; the lock
// is gone after a run ends, also when SIGTERM stopped it. The CLI runs are real processes on the
// tiny VAE config; the first one is held with SIGSTOP while the second tries, so the second always
// meets a live lock however fast the machine is.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readStepLog } from '../../src/train/log.js';
import { acquireRunLock, LOCK_FILE, processAlive } from '../../src/train/run-lock.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const config = join(root, 'configs/train/vae-tiny.json');
const environment = { ...process.env, KOSMOS_G_CACHE: join(tmpdir(), 'kosmos-g-world-test-cache') };

let scratch = '';
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-lock-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

interface Run {
  child: ChildProcess;
  finished: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

function train(out: string, extra: string[] = []): Run {
  const child = spawn(process.execPath, [cli, 'train', 'vae', '--config', config, '--out', out, '--threads', '1', '--progress', 'none', ...extra], { env: environment });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const finished = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  return { child, finished };
}

/** Resolves once `path` holds a lock of `pid` (polled: the run writes it after loading its config). */
async function lockedBy(path: string, pid: number, run: Run): Promise<void> {
  let exited = false;
  void run.finished.then(() => (exited = true));
  for (;;) {
    if (existsSync(path)) {
      try {
        if ((JSON.parse(readFileSync(path, 'utf8')) as { pid: number }).pid === pid) return;
      } catch {
        // Being written: look again.
      }
    }
    if (exited) throw new Error(`the run ended before it locked ${path}:\n${(await run.finished).stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts a second run while `first` holds the lock of `out` (stopped meanwhile); returns its result. */
async function secondRunWhileLocked(out: string, first: Run, extra: string[]) {
  await lockedBy(join(out, LOCK_FILE), first.child.pid!, first);
  first.child.kill('SIGSTOP');
  try {
    return await train(out, extra).finished;
  } finally {
    first.child.kill('SIGCONT');
  }
}

function assertRefused(result: { code: number | null; stderr: string }, out: string, pid: number): void {
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /^kosmos-g: [^\n]+\n$/);
  assert.ok(result.stderr.includes(`${out} is in use by another run (pid ${pid} on ${hostname()}`), result.stderr);
}

test('a second train on the same --out is refused while the first runs, which completes its whole log', async () => {
  const out = join(scratch, 'fresh');
  const first = train(out);
  const second = await secondRunWhileLocked(out, first, []);
  assertRefused(second, out, first.child.pid!);
  const done = await first.finished;
  assert.equal(done.code, 0, done.stderr);
  assert.deepEqual((await readStepLog(join(out, 'log.jsonl'))).map((record) => record.step), Array.from({ length: 12 }, (_, i) => i + 1));
  assert.ok(!existsSync(join(out, LOCK_FILE)), 'the lock is released at the end');
});

test('after a kill -9 the stale lock is taken over by --resume, and a second --resume is refused meanwhile', async () => {
  const out = join(scratch, 'killed');
  const killed = train(out);
  await lockedBy(join(out, LOCK_FILE), killed.child.pid!, killed);
  // Killed once the first checkpoint exists, mid-way through the run.
  while (!existsSync(join(out, 'checkpoints', 'step-00000002'))) await new Promise((resolve) => setTimeout(resolve, 2));
  killed.child.kill('SIGKILL');
  assert.equal((await killed.finished).signal, 'SIGKILL');
  assert.ok(existsSync(join(out, LOCK_FILE)), 'a killed run leaves its lock');

  const resumed = train(out, ['--resume']);
  const second = await secondRunWhileLocked(out, resumed, ['--resume']);
  assertRefused(second, out, resumed.child.pid!);
  const done = await resumed.finished;
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stderr, new RegExp(`warning: taking over the stale lock of .*killed \\(pid ${killed.child.pid} .*no longer running\\)`));
  assert.deepEqual((await readStepLog(join(out, 'log.jsonl'))).map((record) => record.step), Array.from({ length: 12 }, (_, i) => i + 1));
  assert.ok(!existsSync(join(out, LOCK_FILE)));
});

test('a run stopped by SIGTERM ends cleanly and releases the lock', async () => {
  const out = join(scratch, 'terminated');
  const run = train(out);
  await lockedBy(join(out, LOCK_FILE), run.child.pid!, run);
  run.child.kill('SIGTERM');
  const done = await run.finished;
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stderr, /SIGTERM: stopping after this step/);
  assert.ok(!existsSync(join(out, LOCK_FILE)), 'the lock is released');
});

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('close', resolve));
  assert.ok(!processAlive(child.pid!));
  return child.pid!;
}

test('acquireRunLock: a dead owner is taken over with a warning; live, foreign and damaged locks are refused; release removes only its own', async () => {
  const folder = join(scratch, 'unit');
  await mkdir(folder);
  const path = join(folder, LOCK_FILE);
  const owner = (pid: number, host = hostname()) => JSON.stringify({ pid, host, startedAt: '2020-01-01T00:00:00.000Z', token: 'other' });

  const pid = await deadPid();
  await writeFile(path, owner(pid));
  const warnings: string[] = [];
  const lock = await acquireRunLock(folder, (message) => warnings.push(message));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, new RegExp(`^warning: taking over the stale lock of .*unit \\(pid ${pid} on .*, started 2020-01-01T00:00:00.000Z, no longer running\\)$`));
  assert.equal((JSON.parse(await readFile(path, 'utf8')) as { pid: number }).pid, process.pid);
  await assert.rejects(acquireRunLock(folder, () => undefined), /unit is in use by another run \(pid \d+ on /);
  lock.release();
  assert.ok(!existsSync(path));

  await writeFile(path, owner(process.pid));
  await assert.rejects(acquireRunLock(folder, () => undefined), /in use by another run/);
  await writeFile(path, owner(pid, 'elsewhere.example'));
  await assert.rejects(acquireRunLock(folder, () => undefined), /locked by a run on another machine \(pid \d+ on elsewhere\.example.*\); if it is not running, delete .*run\.lock$/);
  await writeFile(path, '');
  await assert.rejects(acquireRunLock(folder, () => undefined), /in use by another run \(its lock .*run\.lock is being written, or was damaged/);

  // A lock that is no longer this process's (taken over meanwhile) is left in place.
  await rm(path);
  const replaced = await acquireRunLock(folder, () => undefined);
  await writeFile(path, owner(process.pid));
  replaced.release();
  assert.ok(existsSync(path));
});
