// `kosmos-g worker` as a library call: takes jobs from the Redis queue that `serve --redis` fills
// (bullmq-queue.ts) and runs each on a generation thread of its own (generation-worker.ts, the
// pipeline the server would otherwise run), reporting the steps as BullMQ progress (with small
// previews) and returning the images as the job's result. The worker keeps nothing: any number of
// them, on any machines with the model folder, share one queue.
//
// A job whose worker dies (killed, machine lost) is taken again by another worker once its lock
// runs out (BullMQ's stalled-job check, which every worker runs). A job is cancelled through its
// Redis key, read before it starts and after every step.
import { hostname, availableParallelism } from 'node:os';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Device } from '../graph/devices.js';
import { DEFAULT_MODEL } from '../pipeline/default_model.js';
import { readPipelineFolder } from '../pipeline/folder.js';
import type { WeightQuantization } from '../pipeline/weights.js';
import { GenerationWorker, type JobEvent } from './generation-worker.js';
import { pipelineKindOf } from './model-info.js';
import {
  KEY_PREFIX,
  QUEUE_NAME,
  type WireJob,
  type WireProgress,
  type WireResult,
  cancelKey,
  checkRedisReachable,
  commandClient,
  connectionOptions,
  fromWireJob,
  redactedUrl,
  shrinkPreview,
  toWireImage,
} from './redis-jobs.js';
import { PREVIEW_SIDE } from './service.js';

export interface QueueWorkerOptions {
  redis: string;
  /** Pipeline folder; default the embedded kosmos-g-mini. Must be the server's model. */
  model?: string;
  /** Jobs at once, one generation thread each. */
  concurrency?: number;
  /** CPU threads of each generation thread; default the cores shared between them. */
  threads?: number;
  /** Weight-only quantization of the model's linear layers. */
  quantize?: WeightQuantization | undefined;
  device?: Device;
  /** How long a job stays with a worker that stopped renewing its lock (BullMQ's lockDuration). */
  lockDurationMs?: number;
  /** How often every worker looks for jobs whose lock ran out (BullMQ's stalledInterval). */
  stalledIntervalMs?: number;
  /** Where a line per job goes (default stdout). */
  log?: (line: string) => void;
}

export interface RunningQueueWorker {
  /** Takes no more jobs, finishes the ones in hand, then stops the generation threads. */
  close(): Promise<void>;
  /** Resolves if a generation thread dies: its job is handed to another worker, and this one should stop. */
  broken: Promise<Error>;
}

const DEFAULT_LOCK_MS = 30_000;

export async function startQueueWorker(options: QueueWorkerOptions): Promise<RunningQueueWorker> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  await checkRedisReachable(options.redis);
  const concurrency = options.concurrency ?? 1;
  const model = options.model ?? DEFAULT_MODEL;
  const pipeline = pipelineKindOf(await readPipelineFolder(model));
  const threads = options.threads ?? Math.max(1, Math.floor(availableParallelism() / concurrency));
  const generators: GenerationWorker[] = [];
  try {
    for (let index = 0; index < concurrency; index++) generators.push(await GenerationWorker.start({ model, pipeline, device: options.device ?? 'cpu', threads, quantize: options.quantize }));
  } catch (error) {
    await Promise.all(generators.map((generator) => generator.close()));
    throw error;
  }
  const redis = commandClient(options.redis);
  let reportBroken!: (error: Error) => void;
  const broken = new Promise<Error>((resolve) => (reportBroken = resolve));

  /** Whether the server asked to stop the job; an unreachable Redis counts as no. */
  const cancelled = (id: string) => redis.exists(cancelKey(id)).then((count) => count > 0, () => false);

  async function run(job: Job<WireJob, WireResult>): Promise<WireResult> {
    const id = job.id!;
    if (await cancelled(id)) return { type: 'cancelled' };
    // BullMQ runs at most `concurrency` jobs at once: one thread is free for each.
    const generator = generators.find((candidate) => !candidate.busy)!;
    const cancel = new SharedArrayBuffer(4);
    let reports = Promise.resolve();
    const report = (progress: () => WireProgress | Promise<WireProgress>) => {
      reports = reports.then(async () => job.updateProgress(await progress())).catch((error: unknown) => log(`job ${id}: progress not reported: ${(error as Error).message}`));
    };
    log(`job ${id}: started${job.attemptsStarted > 1 ? ` (try ${job.attemptsStarted})` : ''}`);
    const outcome: { last?: Exclude<JobEvent, { type: 'started' | 'step' }> } = {};
    await generator.run(fromWireJob(job.data, cancel), (event) => {
      if (event.type === 'started') report(() => ({ type: 'started', totalSteps: event.totalSteps }));
      else if (event.type === 'step') {
        const { step, totalSteps, preview } = event;
        report(async () => ({ type: 'step', step, totalSteps, ...(preview ? { preview: await shrinkPreview(preview, PREVIEW_SIDE) } : {}) }));
        // The thread reads the flag after its next step.
        void cancelled(id).then((yes) => yes && Atomics.store(new Int32Array(cancel), 0, 1));
      } else outcome.last = event;
    });
    // Every step is reported before the result, so the server never sees a step after `done`.
    await reports;
    const last = outcome.last!;
    switch (last.type) {
      case 'done':
        return { type: 'done', images: last.images.map(toWireImage), seed: last.seed, warnings: last.warnings, generateMs: last.generateMs };
      case 'cancelled':
        return { type: 'cancelled' };
      case 'failed':
        if (generator.broken) {
          reportBroken(generator.broken);
          // Retried elsewhere: the request did nothing wrong.
          throw new Error(last.message);
        }
        // The same request would fail on any worker.
        throw new UnrecoverableError(last.message);
    }
  }

  const lockDuration = options.lockDurationMs ?? DEFAULT_LOCK_MS;
  const worker = new Worker<WireJob, WireResult>(QUEUE_NAME, run, {
    connection: connectionOptions(options.redis, 'blocking'),
    prefix: KEY_PREFIX,
    name: `${hostname()}:${process.pid}`,
    concurrency,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? lockDuration,
    maxStalledCount: 1,
    autorun: false,
  });
  worker.on('completed', (job, result) => log(`job ${job.id}: ${result.type === 'done' ? `done in ${(result.generateMs / 1000).toFixed(1)} s` : 'cancelled'}`));
  worker.on('failed', (job, error) => log(`job ${job?.id ?? '?'}: failed: ${error.message}`));
  worker.on('stalled', (jobId) => log(`job ${jobId}: its worker stopped answering; queued again`));
  worker.on('error', (error) => log(`Redis: ${error.message}`));
  try {
    await worker.waitUntilReady();
  } catch (error) {
    await Promise.all([worker.close(), ...generators.map((generator) => generator.close())]);
    redis.disconnect();
    throw new Error(`Redis at ${redactedUrl(options.redis)}: ${(error as Error).message}`);
  }
  void worker.run().catch((error: unknown) => log(`Redis: ${(error as Error).message}`));

  let closing: Promise<void> | null = null;
  return {
    broken,
    close: () =>
      (closing ??= (async () => {
        await worker.close();
        await Promise.all(generators.map((generator) => generator.close()));
        redis.disconnect();
      })()),
  };
}
