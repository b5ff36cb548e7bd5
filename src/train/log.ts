// The JSONL training log: one line per step. A resumed run first cuts the log back to its
// checkpoint (steps after it were lost with the process and will be recomputed, and a kill may
// have left half a line), so the log of a resumed run reads exactly like an uninterrupted one.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from '../io/atomic-file.js';

export interface StepRecord {
  step: number;
  loss: number;
  gradNorm: number;
  /** Learning rate used by this step's update. */
  lr: number;
  /** Milliseconds spent building this step's batch. */
  dataMs: number;
  /** Milliseconds of the training graph run (forward, backward, update). */
  computeMs: number;
  /** Training wall time of the run after this step, in seconds, summed over sessions. */
  wallSeconds: number;
}

function isStepRecord(value: unknown): value is StepRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return ['step', 'loss', 'gradNorm', 'lr', 'dataMs', 'computeMs', 'wallSeconds'].every((key) => typeof record[key] === 'number' || record[key] === null);
}

/** Records of a log file; a torn or malformed line ends the readable part. */
export async function readStepLog(path: string): Promise<StepRecord[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const records: StepRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      break;
    }
    if (!isStepRecord(parsed)) break;
    records.push(parsed);
  }
  return records;
}

/** JSON drops non-finite numbers to null; a diverged loss stays visible as null in the log. */
function recordLine(record: StepRecord): string {
  return `${JSON.stringify(record)}\n`;
}

export class StepLog {
  private constructor(
    private readonly handle: FileHandle,
    readonly records: StepRecord[],
  ) {}

  /** Opens `path` for appending after keeping only the records of steps 1…`lastStep`. */
  static async open(path: string, lastStep: number): Promise<StepLog> {
    const kept = (await readStepLog(path)).filter((record) => record.step <= lastStep);
    await writeFileAtomic(path, kept.map(recordLine).join(''));
    return new StepLog(await open(path, 'a'), kept);
  }

  async append(record: StepRecord): Promise<void> {
    this.records.push(record);
    await this.handle.write(recordLine(record));
  }

  /** Flushes to disk; called before each checkpoint so the log never lags behind one. */
  async sync(): Promise<void> {
    await this.handle.sync();
  }

  async close(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
  }
}
