// Measurement shared by the benchmark groups (../shared DESIGN §9): medians after warm-up, the
// thread count every bench runs with, peak resident memory, and the timing of training steps.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GraphSession, SessionOptions } from '../src/graph/session.js';
import { TrainingStep, type TrainingStepOptions } from '../src/graph/train-step.js';
import type { HostTensor } from '../src/onnx/dtype.js';

/** A path relative to the repository root, from the compiled dist/bench/ or the sources alike. */
export const repositoryPath = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** Intra-op threads of our sessions and of the PyTorch side alike. */
export const BENCH_THREADS = 2;

/**
 * Whether ORT's idle threads spin in the benchmarked training steps (SessionOptions.spinning):
 * BENCH_SPINNING=1 or 0 to compare the two on every training case; unset, the training default (off).
 */
const spinningFlag = process.env['BENCH_SPINNING'];
export const BENCH_SPINNING = spinningFlag === '1' ? true : spinningFlag === '0' ? false : undefined;

/** The AdamW settings of every benchmarked training step (ours and PyTorch's). */
export const BENCH_ADAMW = { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((p, q) => p - q);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** Three significant digits: enough for timings that vary by a few percent run to run. */
export const round = (value: number, digits = 3): number => Number(value.toPrecision(digits));

/** The process's peak resident set size since it started or since the last `resetPeakRss`, in MiB. */
export const peakRssMiB = (): number => Math.round(process.resourceUsage().maxRSS / 1024);

/**
 * Restarts the peak-RSS count from the current resident size (Linux: /proc/self/clear_refs), so
 * that a peak measured afterwards belongs to the work that follows, not to set-up such as drawing
 * random weights. Returns false where the platform has no such reset.
 */
export function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return /VmHWM/.test(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    return false;
  }
}

/** Milliseconds of each of `repeats` runs of `session` on `feeds` after `warmup` untimed runs, and the last outputs. */
export async function timeRuns(session: GraphSession, feeds: Record<string, HostTensor>, repeats: number, warmup = 1): Promise<{ times: number[]; outputs: Record<string, HostTensor> }> {
  let outputs = {};
  for (let run = 0; run < warmup; run++) outputs = await session.run(feeds);
  const times: number[] = [];
  for (let run = 0; run < repeats; run++) {
    const started = performance.now();
    outputs = await session.run(feeds);
    times.push(performance.now() - started);
  }
  return { times, outputs };
}

export interface TrainingTiming {
  /** Median milliseconds per step after warm-up. */
  ms: number;
  /** Loss of the first step, before any update. */
  firstLoss: number;
}

export interface TrainingRun extends TrainingTiming {
  /** Loss of the last step, after every earlier update: equal on two sides when their optimizers agree. */
  lastLoss: number;
}

/** The step's settings; left out: AdamW with BENCH_ADAMW at a constant rate, no clipping, decay on all. */
export type BenchStepOptions = Pick<TrainingStepOptions, 'parameters' | 'trainable' | 'loss'> &
  Partial<Pick<TrainingStepOptions, 'optimizer' | 'schedule' | 'maxGradNorm' | 'noWeightDecay'>>;

/**
 * Compiles a TrainingStep (BENCH_THREADS threads, a batch shaped like `batch`, `session` options
 * added) and times `steps` steps on `batch` after `warmup` steps (the first included).
 */
export async function timeTrainingSteps(options: BenchStepOptions, batch: Record<string, HostTensor>, warmup = 3, steps = 10, session: SessionOptions = {}): Promise<TrainingRun> {
  const step = await TrainingStep.create({
    optimizer: { kind: 'adamw', ...BENCH_ADAMW },
    schedule: { kind: 'constant', learningRate: BENCH_ADAMW.learningRate },
    ...options,
    batch: Object.fromEntries(Object.entries(batch).map(([name, tensor]) => [name, { dtype: tensor.dtype, shape: tensor.shape }])),
    session: { threads: BENCH_THREADS, ...(BENCH_SPINNING === undefined ? {} : { spinning: BENCH_SPINNING }), ...session },
  });
  try {
    const firstLoss = (await step.run(batch)).loss;
    for (let i = 1; i < warmup; i++) await step.run(batch);
    const times: number[] = [];
    let lastLoss = firstLoss;
    for (let i = 0; i < steps; i++) {
      const started = performance.now();
      lastLoss = (await step.run(batch)).loss;
      times.push(performance.now() - started);
    }
    return { ms: median(times), firstLoss, lastLoss };
  } finally {
    await step.release();
  }
}
