// For the Redis queue's tests and bench: Debian's redis-server on a free loopback port (with a
// password, so every connection goes through a redis://:PASSWORD@ URL), and `kosmos-g worker`
// child processes whose output lines can be awaited.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { KEY_PREFIX, QUEUE_NAME } from '../../src/server/redis-jobs.js';

export const REDIS_SERVER = '/usr/bin/redis-server';
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function hasRedisServer(): boolean {
  return existsSync(REDIS_SERVER);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface RedisProcess {
  /** redis://:PASSWORD@127.0.0.1:PORT; append /N for database N. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A throwaway Redis (nothing saved to disk), answering PING before this resolves. */
export async function startRedis(password: string): Promise<RedisProcess> {
  const port = await freePort();
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', password], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `redis://:${password}@127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') break;
    } catch (error) {
      if (attempt >= 100 || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not answer on port ${port}: ${(error as Error).message} ${stderr}`);
      }
      await sleep(100);
    } finally {
      client.disconnect();
    }
  }
  return {
    url,
    port,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Jobs BullMQ still holds in any state (the server deletes each once its result is on disk). */
export async function jobsInRedis(url: string): Promise<number> {
  const queue = new Queue(QUEUE_NAME, { connection: { url }, prefix: KEY_PREFIX });
  try {
    const counts = await queue.getJobCounts();
    return Object.values(counts).reduce((sum, count) => sum + count, 0);
  } finally {
    await queue.close();
  }
}

export interface WorkerProcess {
  child: ChildProcess;
  /** Its standard output, line by line. */
  lines: string[];
  stderr(): string;
  /** Resolves with the first line (already printed or to come) that matches. */
  waitFor(pattern: RegExp): Promise<string>;
  exited: Promise<number | null>;
}

/** `kosmos-g worker` in a child process, resolved once it takes jobs. */
export async function startWorker(url: string, model: string, extra: readonly string[] = []): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [main, 'worker', '--redis', url, '--model', model, '--threads', '1', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  let stderr = '';
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    let end: number;
    while ((end = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, end);
      partial = partial.slice(end + 1);
      lines.push(line);
      for (const waiter of waiters.filter((candidate) => candidate.pattern.test(line))) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const worker: WorkerProcess = {
    child,
    lines,
    stderr: () => stderr,
    exited,
    waitFor: (pattern) =>
      new Promise((resolve, reject) => {
        const seen = lines.find((line) => pattern.test(line));
        if (seen !== undefined) return resolve(seen);
        waiters.push({ pattern, resolve });
        void exited.then((code) => reject(new Error(`the worker exited (${code}) before printing ${pattern}: ${stderr}`)));
      }),
  };
  await worker.waitFor(/^kosmos-g worker taking jobs from /);
  return worker;
}

/** Stops a worker that may already be gone. */
export async function stopWorker(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
  await worker.exited;
}
