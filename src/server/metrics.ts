// Prometheus metrics (prom-client, on a registry of the server's own so two servers in one
// process do not share counters): the queue's length, jobs by state, and how long generations take.
import { Gauge, Histogram, Registry } from 'prom-client';
import { JOB_STATES, type JobState } from './schemas.js';

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly queueLength: Gauge;
  private readonly jobs: Gauge<'state'>;
  private readonly generationSeconds: Histogram;

  constructor(byState: () => Record<JobState, number>) {
    this.queueLength = new Gauge({
      name: 'kosmos_g_queue_length',
      help: 'Jobs waiting for a generation thread',
      registers: [this.registry],
      collect: () => this.queueLength.set(byState().queued),
    });
    this.jobs = new Gauge({
      name: 'kosmos_g_jobs',
      help: 'Jobs the server holds, by state',
      labelNames: ['state'],
      registers: [this.registry],
      collect: () => {
        const counts = byState();
        for (const state of JOB_STATES) this.jobs.set({ state }, counts[state]);
      },
    });
    this.generationSeconds = new Histogram({
      name: 'kosmos_g_generation_seconds',
      help: 'Time from a job starting to its images being written',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [this.registry],
    });
  }

  observeGeneration(seconds: number): void {
    this.generationSeconds.observe(seconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
