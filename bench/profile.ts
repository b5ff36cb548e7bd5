// Where a benchmarked training step's time goes (BENCH_PROFILE=1): ORT's own trace of each run
// (SessionOptions.profilePrefix) gives the time inside `run()` and each kernel's share; the rest of
// the step's wall time is spent outside ORT's kernels — onnxruntime-node wrapping the feeds and
// copying every output into a fresh ArrayBuffer, V8's collection of the previous outputs, and our
// JavaScript. The copy's own cost is measured apart: allocating and filling buffers of the step's
// output bytes, as the binding does after every run.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionOptions } from '../src/graph/session.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { median, round } from './measure.js';

const BENCH_PROFILE = process.env['BENCH_PROFILE'] === '1';

interface TraceEvent {
  cat?: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string };
}

export interface StepProfile {
  /** Mean time inside ORT's run per timed step (its `model_run` events), ms. */
  run_ms: number;
  /** The kernels' summed time per step, ms. */
  kernel_ms: number;
  /** Kernel time per step by operator type, largest first, with the number of such nodes. */
  ops: { op: string; ms: number; nodes: number }[];
}

/** A scratch folder for one session's trace; `read` parses the trace once the session is released. */
async function profileFolder(): Promise<{ prefix: string; read: (timedRuns: number) => Promise<StepProfile>; remove: () => Promise<void> }> {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-profile-'));
  return {
    prefix: join(directory, 'step'),
    read: async (timedRuns) => {
      const [file] = (await readdir(directory)).filter((name) => name.endsWith('.json'));
      if (!file) throw new Error('ORT wrote no profile (was the session released?)');
      return summarizeTrace(JSON.parse(await readFile(join(directory, file), 'utf8')) as TraceEvent[], timedRuns);
    },
    remove: () => rm(directory, { recursive: true, force: true }),
  };
}

/** The last `timedRuns` runs of a trace: time inside run() and per operator type. */
function summarizeTrace(events: readonly TraceEvent[], timedRuns: number): StepProfile {
  const runs = events.filter((event) => event.cat === 'Session' && event.name === 'model_run').slice(-timedRuns);
  if (runs.length === 0) throw new Error('the profile holds no runs');
  const from = runs[0]!.ts;
  const byOp = new Map<string, { us: number; events: number }>();
  for (const event of events) {
    if (event.cat !== 'Node' || event.ts < from || !event.name.endsWith('_kernel_time')) continue;
    const op = event.args?.op_name ?? 'unknown';
    const entry = byOp.get(op) ?? { us: 0, events: 0 };
    entry.us += event.dur;
    entry.events += 1;
    byOp.set(op, entry);
  }
  const perRun = (us: number) => round(us / runs.length / 1000);
  const ops = [...byOp].sort((p, q) => q[1].us - p[1].us).map(([op, { us, events: count }]) => ({ op, ms: perRun(us), nodes: Math.round(count / runs.length) }));
  return { run_ms: perRun(runs.reduce((total, run) => total + run.dur, 0)), kernel_ms: perRun([...byOp.values()].reduce((total, entry) => total + entry.us, 0)), ops };
}

/**
 * Times with `time`; with BENCH_PROFILE=1 the session records its trace and the result gains
 * `profile`: the trace's summary over the `timedRuns` timed runs, the step time outside ORT's run,
 * and what copying outputs of `outputBytes` into fresh buffers costs alone.
 */
export async function timeProfiled<T extends { ms: number }>(time: (session: SessionOptions) => Promise<T>, outputBytes: readonly number[], timedRuns: number): Promise<T & { profile?: Record<string, unknown> }> {
  if (!BENCH_PROFILE) return time({});
  const trace = await profileFolder();
  try {
    const timing = await time({ profilePrefix: trace.prefix });
    const profile = await trace.read(timedRuns);
    return { ...timing, profile: { ...profile, outside_run_ms: round(timing.ms - profile.run_ms), output_mib: round(outputBytes.reduce((total, bytes) => total + bytes, 0) / 2 ** 20), output_copy_ms: outputCopyMs(outputBytes) } };
  } finally {
    await trace.remove();
  }
}

/** The outputs of an AdamW step: each trainable parameter and its two moments, in bytes. */
export const adamOutputBytes = (parameters: Readonly<Record<string, HostTensor>>): number[] => Object.values(parameters).flatMap((tensor) => Array<number>(3).fill(tensor.data.byteLength));

/** Median ms of allocating a fresh buffer for each output and copying it in, as the binding does after each run. */
function outputCopyMs(outputBytes: readonly number[], repeats = 10): number {
  const sources = outputBytes.map((bytes) => new Float32Array(bytes >> 2).fill(1));
  const times: number[] = [];
  for (let run = 0; run < repeats; run++) {
    const started = performance.now();
    for (const source of sources) new Float32Array(source.length).set(source);
    times.push(performance.now() - started);
  }
  return round(median(times));
}
