// The job queue behind the API. `JobQueue` is what the server needs of a queue; `InProcessQueue`
// runs jobs on this process's generation threads in arrival order (`BullMQQueue`, bullmq-queue.ts,
// stands in its place to spread jobs over `kosmos-g worker` processes on many machines).
import type { GenerationWorker, JobEvent, JobRequest } from './generation-worker.js';

export class QueueFullError extends Error {
  constructor(readonly capacity: number) {
    super(`the queue is full (${capacity} jobs waiting); try again later`);
  }
}

export interface JobQueue {
  /** Queues a job; its events go to the queue's listener. Resolves to its position (0: next). */
  add(job: JobRequest): Promise<number>;
  /** 0-based place among the waiting jobs, or null when the job is not waiting. */
  position(id: string): number | null;
  /**
   * Cancels a waiting job at once (its `cancelled` event is emitted before this resolves) or asks a
   * running one to stop after its current step. False when the queue does not hold the job.
   */
  cancel(id: string): Promise<boolean>;
  /**
   * Takes no more jobs and returns the jobs that were still waiting (removed). An in-process queue
   * waits for its running jobs; a Redis queue leaves running and waiting jobs to its workers.
   */
  shutdown(): Promise<JobRequest[]>;
}

export class InProcessQueue implements JobQueue {
  private readonly queue: JobRequest[] = [];
  private readonly active = new Map<string, { job: JobRequest; done: Promise<void> }>();
  private closing = false;

  constructor(
    private readonly workers: readonly GenerationWorker[],
    private readonly capacity: number,
    private readonly onEvent: (event: JobEvent) => void,
  ) {
    if (!workers.length) throw new Error('a queue needs at least one generation thread');
  }

  async add(job: JobRequest): Promise<number> {
    if (this.closing) throw new Error('the server is shutting down');
    if (this.queue.length >= this.capacity) throw new QueueFullError(this.capacity);
    this.queue.push(job);
    const position = this.queue.length - 1;
    // Dispatched once the caller has the position (the service holds the job's events until its record is written).
    queueMicrotask(() => this.dispatch());
    return position;
  }

  position(id: string): number | null {
    const index = this.queue.findIndex((job) => job.id === id);
    return index < 0 ? null : index;
  }

  async cancel(id: string): Promise<boolean> {
    const index = this.queue.findIndex((job) => job.id === id);
    if (index >= 0) {
      this.queue.splice(index, 1);
      this.onEvent({ type: 'cancelled', id });
      return true;
    }
    const running = this.active.get(id);
    if (!running) return false;
    Atomics.store(new Int32Array(running.job.cancel), 0, 1);
    return true;
  }

  private dispatch(): void {
    if (this.closing) return;
    for (const worker of this.workers) {
      if (worker.busy) continue;
      const job = this.queue.shift();
      if (!job) return;
      const done = worker.run(job, (event) => this.onEvent(event)).then(() => {
        this.active.delete(job.id);
        this.dispatch();
      });
      this.active.set(job.id, { job, done });
    }
  }

  async shutdown(): Promise<JobRequest[]> {
    this.closing = true;
    const left = this.queue.splice(0);
    await Promise.all([...this.active.values()].map((running) => running.done));
    return left;
  }
}
