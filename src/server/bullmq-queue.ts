// The server's side of a Redis queue (`serve --redis`, docs/deploy.md): jobs go to a BullMQ queue
// that `kosmos-g worker` processes on any number of machines take (queue-worker.ts); their progress
// and results come back through BullMQ's event stream as the same job events the in-process queue
// emits, so records, PNGs, server-sent events and metrics work unchanged (service.ts).
//
// A result stays in Redis until the service has written it to --data, then is deleted; a server
// that was down meanwhile collects it at its next start (`open` settles every unfinished record
// from the job's state in Redis). A job is retried once on another worker if its worker dies
// (BullMQ's stalled-job check) or its generation thread fails; a failure of the generation itself
// is final. The service ignores any event of a job already finished, so a result delivered twice
// is written once.
import { type Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { ApiFailure } from './errors.js';
import type { JobEvent, JobRequest } from './generation-worker.js';
import type { JobStore } from './jobs.js';
import { type JobQueue, QueueFullError } from './queue.js';
import {
  CANCEL_TTL_SECONDS,
  KEY_PREFIX,
  QUEUE_NAME,
  type WireJob,
  type WireProgress,
  type WireResult,
  cancelKey,
  checkRedisReachable,
  commandClient,
  connectionOptions,
  fromWireImage,
  redactedUrl,
  toWireJob,
} from './redis-jobs.js';

export interface BullMQQueueOptions {
  url: string;
  /** Jobs of this server waiting at once; one more is refused (429). */
  capacity: number;
  /** The service's listener: resolves true once the event is applied (a result is on disk). */
  onEvent: (event: JobEvent) => Promise<boolean>;
  warn: (message: string) => void;
}

/** Tries for a job: a second one on another worker when the first worker died or its thread failed. */
const ATTEMPTS = 2;

function progressEvent(id: string, progress: WireProgress): JobEvent {
  if (progress.type === 'started') return { type: 'started', id, totalSteps: progress.totalSteps };
  return { type: 'step', id, step: progress.step, totalSteps: progress.totalSteps, ...(progress.preview ? { preview: fromWireImage(progress.preview) } : {}) };
}

function resultEvent(id: string, result: WireResult): JobEvent {
  if (result.type === 'cancelled') return { type: 'cancelled', id };
  return { type: 'done', id, images: result.images.map(fromWireImage), seed: result.seed, warnings: result.warnings, generateMs: result.generateMs };
}

export class BullMQQueue implements JobQueue {
  /** This server's waiting jobs in queue order (BullMQ takes them first in, first out). */
  private readonly waiting: string[] = [];
  /** Results being written, then deleted from Redis: shutdown waits for them. */
  private readonly settling = new Set<Promise<void>>();
  private closing = false;

  private constructor(
    private readonly queue: Queue<WireJob, WireResult>,
    private readonly events: QueueEvents,
    private readonly redis: Redis,
    private readonly options: BullMQQueueOptions,
  ) {}

  /**
   * Connects (refusing an unreachable Redis with one line), settles the store's unfinished jobs
   * from their state in Redis, then follows the event stream from where it stood before that
   * check, so no event is missed in between (one seen twice is harmless).
   */
  static async open(options: BullMQQueueOptions, store: JobStore): Promise<BullMQQueue> {
    await checkRedisReachable(options.url);
    const queue = new Queue<WireJob, WireResult>(QUEUE_NAME, { connection: connectionOptions(options.url, 'fail-fast'), prefix: KEY_PREFIX });
    queue.on('error', (error) => options.warn(`kosmos-g serve: Redis queue: ${error.message}`));
    const redis = commandClient(options.url);
    let events: QueueEvents | undefined;
    try {
      await queue.waitUntilReady();
      const [last] = await redis.xrevrange(queue.keys.events!, '+', '-', 'COUNT', 1);
      events = new QueueEvents(QUEUE_NAME, { connection: connectionOptions(options.url, 'blocking'), prefix: KEY_PREFIX, autorun: false, lastEventId: last?.[0] ?? '0' });
      const self = new BullMQQueue(queue, events, redis, options);
      await self.recover(store);
      self.follow();
      return self;
    } catch (error) {
      await Promise.all([queue.close(), events?.close()]);
      redis.disconnect();
      throw new Error(`Redis at ${redactedUrl(options.url)}: ${(error as Error).message}`);
    }
  }

  private async recover(store: JobStore): Promise<void> {
    for (const record of store.unfinished()) {
      try {
        const job: Job<WireJob, WireResult> | undefined = await this.queue.getJob(record.id);
        const state = job ? await job.getState() : 'unknown';
        if (job && state === 'completed') this.settle(resultEvent(record.id, job.returnvalue));
        else if (job && state === 'failed') this.settle({ type: 'failed', id: record.id, message: job.failedReason });
        else if (state === 'unknown') void this.options.onEvent({ type: 'failed', id: record.id, message: 'the job is no longer in Redis (was it flushed?)' });
        // An active job's worker reports on; a waiting one keeps its place.
        else if (state !== 'active' && record.state === 'queued') this.waiting.push(record.id);
      } catch (error) {
        // Left unfinished: the next start looks again.
        this.options.warn(`kosmos-g serve: job ${record.id}: cannot settle it from Redis: ${(error as Error).message}`);
      }
    }
  }

  private follow(): void {
    const { events, options } = this;
    events.on('active', ({ jobId }) => this.leave(jobId));
    events.on('progress', ({ jobId, data }) => {
      this.leave(jobId);
      void options.onEvent(progressEvent(jobId, data as WireProgress));
    });
    events.on('completed', ({ jobId, returnvalue }) => this.settle(resultEvent(jobId, returnvalue as WireResult)));
    // Only a last failure: a job that will be retried goes back to waiting instead.
    events.on('failed', ({ jobId, failedReason }) => this.settle({ type: 'failed', id: jobId, message: failedReason }));
    events.on('error', (error) => options.warn(`kosmos-g serve: Redis events: ${error.message}`));
    events.run().catch((error: unknown) => options.warn(`kosmos-g serve: Redis events stopped: ${(error as Error).message}`));
  }

  private leave(id: string): void {
    const index = this.waiting.indexOf(id);
    if (index >= 0) this.waiting.splice(index, 1);
  }

  /** Applies a job's last event, then deletes the job and its cancel key from Redis once that is on disk. */
  private settle(event: JobEvent): void {
    this.leave(event.id);
    const settled = this.options.onEvent(event).then(async (applied) => {
      if (applied) await Promise.all([this.queue.remove(event.id), this.redis.del(cancelKey(event.id))]);
    }).catch((error: unknown) => this.options.warn(`kosmos-g serve: job ${event.id}: cannot delete it from Redis: ${(error as Error).message}`));
    this.settling.add(settled);
    void settled.then(() => this.settling.delete(settled));
  }

  async add(job: JobRequest): Promise<number> {
    if (this.closing) throw new Error('the server is shutting down');
    if (this.waiting.length >= this.options.capacity) throw new QueueFullError(this.options.capacity);
    // Counted before the round trip, so a burst of submissions cannot overfill the queue.
    this.waiting.push(job.id);
    try {
      await this.queue.add('generate', toWireJob(job), { jobId: job.id, attempts: ATTEMPTS, removeOnComplete: false, removeOnFail: false });
    } catch (error) {
      this.leave(job.id);
      throw new ApiFailure(503, 'queue_unavailable', `cannot queue the job in Redis: ${(error as Error).message}`);
    }
    return Math.max(0, this.waiting.indexOf(job.id));
  }

  position(id: string): number | null {
    const index = this.waiting.indexOf(id);
    return index < 0 ? null : index;
  }

  async cancel(id: string): Promise<boolean> {
    let removed: boolean;
    try {
      // The key first: a worker that takes the job meanwhile still sees it before its first step.
      await this.redis.set(cancelKey(id), '1', 'EX', CANCEL_TTL_SECONDS);
      // A waiting job is removed at once; a worker's job is locked (0), and its worker stops at the key.
      removed = (await this.queue.remove(id)) === 1;
    } catch (error) {
      throw new ApiFailure(503, 'queue_unavailable', `cannot reach Redis to cancel the job: ${(error as Error).message}`);
    }
    if (removed) {
      this.leave(id);
      await this.options.onEvent({ type: 'cancelled', id });
      await this.redis.del(cancelKey(id)).catch(() => {});
    }
    return true;
  }

  /** Stops following the queue. Waiting and running jobs stay in Redis for the workers; the next start collects their results. */
  async shutdown(): Promise<JobRequest[]> {
    this.closing = true;
    await this.events.close();
    await Promise.all(this.settling);
    await this.queue.close();
    this.redis.disconnect();
    return [];
  }
}
