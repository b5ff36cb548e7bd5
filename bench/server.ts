// `npm run bench -- server`: `kosmos-g serve` in this process over the tiny random pipeline
// (init-random --config tiny), hit by a burst of 100 concurrent submissions (8 steps each, half of
// them Kosmos-G prompts with one uploaded PNG). Reports how many the bounded queue took (202) and
// refused (429 + Retry-After), how fast the accepted ones finished, how quickly the read endpoints
// answered while generation ran (sequential GETs, one every 20 ms: the API must stay responsive
// because generation runs in worker threads), and the peak resident memory. One JSON line per
// case; nothing is asserted about time. The client shares this process's event loop with the
// server, so a latency here is an upper bound on what a separate client would see.
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import sharp from 'sharp';
import { createRandomPipeline } from '../src/pipeline/random_pipeline.js';
import { startServer } from '../src/server/server.js';
import { peakRssMiB, resetPeakRss, round } from './measure.js';

const SUBMISSIONS = 100;
const MAX_QUEUE = 64;
const STEPS = 8;
const SAMPLE_EVERY_MS = 20;
const RSS_EVERY_MS = 50;
/** Not a timing assertion: only keeps a wedged server from hanging the bench forever. */
const HANG_GUARD_MS = 20 * 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Nearest-rank percentile: with ~hundreds of samples p99 is a real observed latency, not an interpolation. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function latencySummary(samples: readonly number[]): { p50Ms: number; p99Ms: number; maxMs: number; samples: number } {
  if (!samples.length) return { p50Ms: 0, p99Ms: 0, maxMs: 0, samples: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50Ms: round(percentile(sorted, 50)), p99Ms: round(percentile(sorted, 99)), maxMs: round(sorted.at(-1)!), samples: sorted.length };
}

/** One GET, timed until its whole body has arrived (a reply is not useful before that). */
async function timedGet(url: string): Promise<{ ms: number; status: number; body: unknown }> {
  const started = performance.now();
  const response = await fetch(url);
  const body: unknown = await response.json();
  return { ms: performance.now() - started, status: response.status, body };
}

interface Submitted {
  id: string;
  ms: number;
}

/** The burst: every submission in flight at once. Anything but 202 or 429 + Retry-After is a failure. */
async function submitBurst(url: string, imageDataUrl: string): Promise<{ accepted: Submitted[]; refused: number[] }> {
  const answers = await Promise.all(
    Array.from({ length: SUBMISSIONS }, async (_, i): Promise<Submitted | { refusedMs: number }> => {
      // Odd submissions go through the upload path (decode + Kosmos-G image encoding), even ones are text only.
      const body = i % 2 ? { prompt: '<i> on the beach', images: [imageDataUrl], steps: STEPS, seed: i } : { prompt: 'a cat', steps: STEPS, seed: i };
      const started = performance.now();
      const response = await fetch(`${url}/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const answer = (await response.json()) as { id?: string; error?: { code: string; message: string } };
      const ms = performance.now() - started;
      if (response.status === 202 && typeof answer.id === 'string') return { id: answer.id, ms };
      if (response.status === 429 && response.headers.get('retry-after')) return { refusedMs: ms };
      throw new Error(`bench server: submission ${i} answered ${response.status} ${JSON.stringify(answer)}`);
    }),
  );
  const accepted: Submitted[] = [];
  const refused: number[] = [];
  for (const answer of answers) 'id' in answer ? accepted.push(answer) : refused.push(answer.refusedMs);
  return { accepted, refused };
}

async function runCase(model: string, data: string, concurrency: number, imageDataUrl: string): Promise<void> {
  const server = await startServer({ model, data, port: 0, maxQueue: MAX_QUEUE, rateLimit: 1000, concurrency, warn: () => {} });
  // The peak of this case, not of drawing the random weights or of an earlier case.
  const peakResettable = resetPeakRss();
  let peakSampled = process.memoryUsage().rss;
  const rssTimer = setInterval(() => (peakSampled = Math.max(peakSampled, process.memoryUsage().rss)), RSS_EVERY_MS);
  // Tells a slow reply caused by a blocked main thread (delay here too) from one lost elsewhere;
  // its window includes the submission burst.
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  loopDelay.enable();
  try {
    const started = performance.now();
    const { accepted, refused } = await submitBurst(server.url, imageDataUrl);
    const submittedAt = performance.now();

    // Sequential sampling while jobs run: a burst of parallel GETs would measure our own load instead.
    const health: number[] = [];
    const status: number[] = [];
    let sawRunning = 0;
    let unfinished = accepted.map(({ id }) => id);
    /** Jobs whose record was not yet final when /healthz first reported an idle queue. */
    let lagAtIdle: number | null = null;
    for (;;) {
      if (performance.now() - started > HANG_GUARD_MS) throw new Error(`bench server: jobs still unfinished after ${HANG_GUARD_MS / 60_000} min`);
      const healthz = await timedGet(`${server.url}/healthz`);
      if (healthz.status !== 200) throw new Error(`bench server: /healthz answered ${healthz.status}`);
      health.push(healthz.ms);
      const { queued, running } = healthz.body as { queued: number; running: number };
      sawRunning = Math.max(sawRunning, running);
      if (accepted.length) {
        const id = accepted[Math.floor(Math.random() * accepted.length)]!.id;
        const one = await timedGet(`${server.url}/v1/generations/${id}`);
        if (one.status !== 200) throw new Error(`bench server: GET /v1/generations/${id} answered ${one.status}`);
        status.push(one.ms);
        if ((one.body as { state: string }).state === 'failed') throw new Error(`bench server: job ${id} failed: ${JSON.stringify((one.body as { error?: unknown }).error)}`);
      }
      // /healthz counts a job as running only while its thread works; the record turns `done` after
      // the PNG is written, so an idle queue is the cue to check the records, not proof they are final.
      if (queued === 0 && running === 0) {
        const left = await Promise.all(unfinished.map(async (id) => ({ id, state: ((await timedGet(`${server.url}/v1/generations/${id}`)).body as { state: string }).state })));
        if (lagAtIdle === null) lagAtIdle = left.filter(({ state }) => state === 'queued' || state === 'running').length;
        const bad = left.find(({ state }) => state !== 'done' && state !== 'queued' && state !== 'running');
        if (bad) throw new Error(`bench server: accepted job ${bad.id} ended ${bad.state}`);
        unfinished = left.filter(({ state }) => state !== 'done').map(({ id }) => id);
        if (!unfinished.length) break;
      }
      await sleep(SAMPLE_EVERY_MS);
    }
    const wallSeconds = (performance.now() - started) / 1000;

    // Each accepted job must have ended `done`; one failed or cancelled job fails the bench.
    const states = await Promise.all(accepted.map(async ({ id }) => (await timedGet(`${server.url}/v1/generations/${id}`)).body as { state: string; timings?: { generateMs?: number } }));
    const failed = states.filter((state) => state.state !== 'done');
    if (failed.length) throw new Error(`bench server: ${failed.length} accepted jobs did not finish done: ${JSON.stringify(failed.slice(0, 3))}`);
    const generateMs = states.map((state) => state.timings?.generateMs ?? 0).sort((a, b) => a - b);

    clearInterval(rssTimer);
    loopDelay.disable();
    const cpu = cpus();
    console.log(
      JSON.stringify({
        bench: 'server',
        case: `${SUBMISSIONS}-concurrent-submissions`,
        model: `init-random tiny, ${STEPS} steps, half "<i>" + one 32×32 PNG upload`,
        concurrency,
        // The server's default (src/server/server.ts): the cores but one, shared between the workers.
        threadsPerWorker: Math.max(1, Math.floor((availableParallelism() - 1) / concurrency)),
        maxQueue: MAX_QUEUE,
        accepted: accepted.length,
        refused429: refused.length,
        done: states.length,
        failed: 0,
        burstMs: Math.round(submittedAt - started),
        submit: latencySummary([...accepted.map((a) => a.ms), ...refused]),
        wallSeconds: round(wallSeconds),
        jobsPerSecond: round(states.length / wallSeconds),
        generateMsP50: generateMs.length ? round(percentile(generateMs, 50)) : 0,
        maxRunning: sawRunning,
        unfinishedAtHealthIdle: lagAtIdle ?? 0,
        health: latencySummary(health),
        status: latencySummary(status),
        eventLoopDelay: { p50Ms: round(loopDelay.percentile(50) / 1e6), p99Ms: round(loopDelay.percentile(99) / 1e6), maxMs: round(loopDelay.max / 1e6) },
        peakRssMiB: Math.round(peakSampled / 1024 ** 2),
        // Kernel high-water mark, reset at the case's start where Linux allows; otherwise the process's lifetime peak.
        maxRssMiB: peakRssMiB(),
        maxRssSince: peakResettable ? 'case start' : 'process start',
        cpu: `${cpu.length}× ${cpu[0]?.model.trim() ?? 'unknown'}`,
      }),
    );
  } finally {
    clearInterval(rssTimer);
    loopDelay.disable();
    await server.close();
  }
}

export async function runServerBench(): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-server-'));
  try {
    const model = join(directory, 'tiny');
    await createRandomPipeline(model, { config: 'tiny' });
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#c04020' } }).png().toBuffer();
    const imageDataUrl = `data:image/png;base64,${png.toString('base64')}`;
    // Each case gets its own results folder, so the second does not start with the first's 64+ jobs on disk.
    await runCase(model, join(directory, 'data-1'), 1, imageDataUrl);
    // Cheap (about 20 s on 2 cores): shows whether a second generation thread helps on this machine.
    await runCase(model, join(directory, 'data-2'), 2, imageDataUrl);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runServerBench();
