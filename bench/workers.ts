// `npm run bench -- workers`: `serve --redis` in this process and `kosmos-g worker` child processes
// over Debian's redis-server (started here on a loopback port), on the tiny random pipeline
// (init-random --config tiny). Cases: jobs per second with 1 and with 2 workers (a burst of jobs
// submitted at once, timed from the first submission until every result is on disk); and failover:
// a worker killed (SIGKILL) in the middle of a job, timed until the other worker took the job and
// until it was done, with short locks (as the tests run) and with the workers' defaults. One JSON
// line per case; nothing is asserted about time.
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRandomPipeline } from '../src/pipeline/random_pipeline.js';
import { type RunningServer, startServer } from '../src/server/server.js';
import { REDIS_SERVER, type WorkerProcess, hasRedisServer, startRedis, startWorker, stopWorker } from '../test/server/redis-helpers.js';
import { median, round } from './measure.js';

const JOBS = 16;
const STEPS = 20;
const SIZE = 128;
/** The failover job: about 4 s of sampling on the tiny pipeline, long enough to kill its worker in the middle. */
const LONG_JOB = { prompt: 'a long one', steps: 150, width: 256, height: 256, seed: 1 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function submit(server: RunningServer, body: Record<string, unknown>): Promise<string> {
  const response = await fetch(`${server.url}/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = (await response.json()) as { id?: string };
  if (response.status !== 202 || !answer.id) throw new Error(`bench workers: submission answered ${response.status} ${JSON.stringify(answer)}`);
  return answer.id;
}

/** Polls every 20 ms until the job is done; returns its record. */
async function untilDone(server: RunningServer, id: string): Promise<{ step: number; timings: { generateMs?: number } }> {
  for (;;) {
    const status = (await (await fetch(`${server.url}/v1/generations/${id}`)).json()) as { state: string; step: number; timings: { generateMs?: number } };
    if (status.state === 'done') return status;
    if (status.state !== 'queued' && status.state !== 'running') throw new Error(`bench workers: job ${id} ended ${status.state}`);
    await sleep(20);
  }
}

async function untilStep(server: RunningServer, id: string, step: number): Promise<void> {
  while (((await (await fetch(`${server.url}/v1/generations/${id}`)).json()) as { step: number }).step < step) await sleep(20);
}

async function withServerAndWorkers(redisUrl: string, model: string, data: string, count: number, extra: string[], run: (server: RunningServer, workers: WorkerProcess[]) => Promise<void>): Promise<void> {
  const server = await startServer({ model, data, port: 0, redis: redisUrl, maxQueue: 1000, rateLimit: 10_000, warn: () => {} });
  const workers: WorkerProcess[] = [];
  try {
    workers.push(...(await Promise.all(Array.from({ length: count }, () => startWorker(redisUrl, model, extra)))));
    await run(server, workers);
  } finally {
    await server.close();
    await Promise.all(workers.map(stopWorker));
  }
}

async function throughput(redisUrl: string, model: string, data: string, count: number): Promise<void> {
  await withServerAndWorkers(redisUrl, model, data, count, [], async (server) => {
    const started = performance.now();
    const ids = await Promise.all(Array.from({ length: JOBS }, (_, i) => submit(server, { prompt: `job ${i}`, steps: STEPS, width: SIZE, height: SIZE, seed: i })));
    const records = await Promise.all(ids.map((id) => untilDone(server, id)));
    const wallSeconds = (performance.now() - started) / 1000;
    console.log(
      JSON.stringify({
        bench: 'workers',
        case: 'throughput',
        model: `init-random tiny, ${STEPS} steps, ${SIZE}×${SIZE}`,
        workers: count,
        threadsPerWorker: 1,
        jobs: JOBS,
        wallSeconds: round(wallSeconds),
        jobsPerSecond: round(JOBS / wallSeconds),
        generateMsP50: round(median(records.map((record) => record.timings.generateMs ?? 0))),
        cpu: `${cpus().length}× ${cpus()[0]?.model.trim() ?? 'unknown'}`,
      }),
    );
  });
}

async function failover(redisUrl: string, model: string, data: string, lockDurationMs: number, stalledIntervalMs: number): Promise<void> {
  const extra = ['--lock-duration', String(lockDurationMs), '--stalled-interval', String(stalledIntervalMs)];
  await withServerAndWorkers(redisUrl, model, data, 2, extra, async (server, workers) => {
    const id = await submit(server, LONG_JOB);
    const started = new RegExp(`^job ${id}: started`);
    const holder = await Promise.race(workers.map(async (worker) => (await worker.waitFor(started), worker)));
    await untilStep(server, id, 3);
    holder.child.kill('SIGKILL');
    const killedAt = performance.now();
    const other = workers.find((worker) => worker !== holder)!;
    await other.waitFor(started);
    const takenOverAt = performance.now();
    const record = await untilDone(server, id);
    const doneAt = performance.now();
    console.log(
      JSON.stringify({
        bench: 'workers',
        case: 'failover',
        model: `init-random tiny, ${LONG_JOB.steps} steps, ${LONG_JOB.width}×${LONG_JOB.height}`,
        lockDurationMs,
        stalledIntervalMs,
        killToTakenOverSeconds: round((takenOverAt - killedAt) / 1000),
        killToDoneSeconds: round((doneAt - killedAt) / 1000),
        rerunGenerateSeconds: round((record.timings.generateMs ?? 0) / 1000),
        cpu: `${cpus().length}× ${cpus()[0]?.model.trim() ?? 'unknown'}`,
      }),
    );
  });
}

export async function runWorkersBench(): Promise<void> {
  if (!hasRedisServer()) {
    console.error(`bench workers: ${REDIS_SERVER} is not installed (Debian: apt-get install redis-server); skipping`);
    return;
  }
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-workers-'));
  const redis = await startRedis('bench-password');
  try {
    const model = join(directory, 'tiny');
    await createRandomPipeline(model, { config: 'tiny' });
    // Each case gets its own Redis database and results folder.
    let database = 0;
    const next = () => ({ url: `${redis.url}/${++database}`, data: join(directory, `data-${database}`) });
    for (const count of [1, 2]) {
      const { url, data } = next();
      await throughput(url, model, data, count);
    }
    for (const [lock, interval] of [[2000, 1000], [30_000, 30_000]] as const) {
      const { url, data } = next();
      await failover(url, model, data, lock, interval);
    }
  } finally {
    await redis.stop();
    await rm(directory, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runWorkersBench();
