// Jobs on disk under the server's --data folder, so a restarted server lists earlier results:
//   jobs/ID.json          the job's status (written atomically at every change of state)
//   images/ID-N.png       image N, with its settings in a tEXt "parameters" chunk
//   images/ID-N.json      its sidecar, as the CLI writes beside its images
// The folder is bounded by the number of finished jobs, their bytes and their age; the oldest
// finished jobs go first. Nothing from a request is ever used as a path: ids are random hex made
// here and image names are built from them.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../io/atomic-file.js';
import { type JobStatus, jobStatusSchema } from './schemas.js';

/** A job as stored: its status without the queue position (which only the live queue knows). */
export type JobRecord = Omit<JobStatus, 'queuePosition'> & { finishedAt?: string; bytes?: number };
const jobRecordSchema = jobStatusSchema.omit({ queuePosition: true }).extend({ finishedAt: z.string().optional(), bytes: z.number().optional() });

export interface StoreBounds {
  maxResults: number;
  maxBytes: number;
  maxAgeMs: number;
}

export const FINISHED_STATES: ReadonlySet<JobRecord['state']> = new Set(['done', 'failed', 'cancelled']);

export function newJobId(): string {
  return randomBytes(16).toString('hex');
}

export class JobStore {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly writes = new Map<string, Promise<void>>();

  private constructor(
    readonly directory: string,
    private readonly bounds: StoreBounds,
  ) {}

  /**
   * Opens (or creates) the folder and loads its jobs. A job still queued or running was left by a
   * server that stopped without shutting down: it is recorded as failed, never silently dropped;
   * unless `keepUnfinished` (jobs queued in Redis outlive the server: the queue settles them).
   */
  static async open(directory: string, bounds: StoreBounds, warn: (message: string) => void, options: { keepUnfinished?: boolean } = {}): Promise<JobStore> {
    const store = new JobStore(directory, bounds);
    await mkdir(store.jobsDirectory, { recursive: true });
    await mkdir(store.imagesDirectory, { recursive: true });
    for (const name of await readdir(store.jobsDirectory)) {
      if (!/^[0-9a-f]{32}\.json$/.test(name)) continue;
      const path = join(store.jobsDirectory, name);
      const parsed = jobRecordSchema.safeParse(await readFile(path, 'utf8').then((text) => JSON.parse(text) as unknown, () => undefined));
      if (!parsed.success) {
        warn(`warning: skipping ${path}: not a job record`);
        continue;
      }
      const record: JobRecord = parsed.data;
      store.jobs.set(record.id, record);
      if (!FINISHED_STATES.has(record.state) && !options.keepUnfinished) {
        await store.update(record.id, {
          state: 'failed',
          error: { code: 'interrupted', message: 'the server stopped before this job finished' },
          finishedAt: new Date().toISOString(),
        });
      }
    }
    await store.prune();
    return store;
  }

  get jobsDirectory(): string {
    return join(this.directory, 'jobs');
  }

  get imagesDirectory(): string {
    return join(this.directory, 'images');
  }

  get(id: string): JobRecord | undefined {
    return this.jobs.get(id);
  }

  /** The newest jobs first. */
  list(limit: number): JobRecord[] {
    return [...this.jobs.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, limit);
  }

  /** Jobs still queued or running, the oldest first. */
  unfinished(): JobRecord[] {
    return [...this.jobs.values()].filter((job) => !FINISHED_STATES.has(job.state)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  countByState(): Record<JobRecord['state'], number> {
    const counts = { queued: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
    for (const job of this.jobs.values()) counts[job.state]++;
    return counts;
  }

  async create(record: JobRecord): Promise<void> {
    this.jobs.set(record.id, record);
    await this.write(record);
  }

  /** Applies a change and writes the record; returns the new record. */
  async update(id: string, change: Partial<JobRecord>): Promise<JobRecord> {
    const record = this.jobs.get(id);
    if (!record) throw new Error(`no job ${id}`);
    const next = { ...record, ...change };
    this.jobs.set(id, next);
    // A job that finishes may push the oldest out of the bounds: pruned in the same turn.
    const pruned = FINISHED_STATES.has(next.state) && !FINISHED_STATES.has(record.state) ? this.prune() : Promise.resolve();
    await this.write(next);
    await pruned;
    return next;
  }

  /** Changes the in-memory record only (the step counter: written with the next change of state). */
  touch(id: string, change: Partial<JobRecord>): void {
    const record = this.jobs.get(id);
    if (record) this.jobs.set(id, { ...record, ...change });
  }

  /** Writes image N of a job and its sidecar; returns the image's file name. */
  async writeImage(id: string, index: number, png: Uint8Array, sidecar: unknown): Promise<string> {
    const name = `${id}-${index}`;
    await writeFileAtomic(join(this.imagesDirectory, `${name}.json`), `${JSON.stringify(sidecar, null, 2)}\n`);
    await writeFileAtomic(join(this.imagesDirectory, `${name}.png`), png);
    return `${name}.png`;
  }

  /** The path of an image or sidecar of a stored job, from a name already checked against imageNameSchema. */
  imagePath(name: string): string | undefined {
    const id = name.slice(0, 32);
    const record = this.jobs.get(id);
    if (!record || record.state !== 'done') return undefined;
    return join(this.imagesDirectory, name);
  }

  /**
   * Deletes the oldest finished jobs until the folder is within its bounds. They leave the listing
   * at once (before their files are removed), so no reader sees more than the bounds allow.
   */
  async prune(): Promise<void> {
    const finished = [...this.jobs.values()].filter((job) => FINISHED_STATES.has(job.state)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    let bytes = finished.reduce((sum, job) => sum + (job.bytes ?? 0), 0);
    const oldestKept = Date.now() - this.bounds.maxAgeMs;
    let count = finished.length;
    const removed: JobRecord[] = [];
    for (const job of finished) {
      const tooOld = Date.parse(job.finishedAt ?? job.createdAt) < oldestKept;
      if (!tooOld && count <= this.bounds.maxResults && bytes <= this.bounds.maxBytes) break;
      this.jobs.delete(job.id);
      removed.push(job);
      count--;
      bytes -= job.bytes ?? 0;
    }
    for (const job of removed) await this.removeFiles(job);
  }

  private async removeFiles(job: JobRecord): Promise<void> {
    await (this.writes.get(job.id) ?? Promise.resolve()).catch(() => {});
    for (let index = 0; index < job.settings.numImages; index++) {
      for (const extension of ['png', 'json']) await rm(join(this.imagesDirectory, `${job.id}-${index}.${extension}`), { force: true });
    }
    await rm(join(this.jobsDirectory, `${job.id}.json`), { force: true });
  }

  /** Bytes of a finished job's files. */
  async measure(id: string, images: number): Promise<number> {
    let bytes = 0;
    for (let index = 0; index < images; index++) {
      for (const extension of ['png', 'json']) bytes += await stat(join(this.imagesDirectory, `${id}-${index}.${extension}`)).then((s) => s.size, () => 0);
    }
    return bytes;
  }

  /** Writes of one job run in order, so an older state never lands after a newer one. */
  private write(record: JobRecord): Promise<void> {
    const previous = this.writes.get(record.id) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => writeFileAtomic(join(this.jobsDirectory, `${record.id}.json`), `${JSON.stringify(record, null, 2)}\n`));
    this.writes.set(record.id, next);
    void next.finally(() => {
      if (this.writes.get(record.id) === next) this.writes.delete(record.id);
    }).catch(() => {});
    return next;
  }
}
