// `npm run bench -- quantize`: weight-only quantization (generate --dtype int8|int4: the linear
// layers as MatMulNBits blocks, nn/quantize.ts) against float32 on a Kosmos-G folder (default the
// embedded kosmos-g-mini; BENCH_QUANTIZE_MODEL=DIR for another, e.g. init-random --config
// kosmos-g): "<i> on a beach" + examples/cat-on-a-beach.png, 50 DPM-Solver++ steps, guidance 3,
// seed 1, BENCH_THREADS threads. Each dtype runs in its own child process, so its peak RSS is its
// own. One JSON line per dtype: load time (the quantization included), the median of the
// generations after the first, the peak RSS, and the fidelity cost against float32: the cosine of
// the (77, d) condition (target ≥ 0.99) and the PSNR of the image from the same seed.
// For the paper-size model: BENCH_QUANTIZE_STEPS and BENCH_QUANTIZE_RUNS shorten the generations,
// and BENCH_QUANTIZE_LOW_MEMORY=1 loads the pipeline with `lowMemory` (children then run with
// glibc's mmap threshold fixed, as bench/kosmos-g.ts explains).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULT_MODEL } from '../src/pipeline/default_model.js';
import type { WeightQuantization } from '../src/pipeline/weights.js';
import { measureVariant, spawnVariant, variantFidelity } from './generation-child.js';
import { RELEASING_MALLOC } from './kosmos-g.js';
import { BENCH_THREADS } from './measure.js';

const DTYPES: Record<string, WeightQuantization | undefined> = { float32: undefined, int8: { bits: 8 }, int4: { bits: 4 } };
function positiveFromEnvironment(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined) return fallback;
  if (!/^[1-9]\d*$/.test(text)) throw new Error(`${name} must be a positive integer, got '${text}'`);
  return Number(text);
}

const SAMPLING = { steps: positiveFromEnvironment('BENCH_QUANTIZE_STEPS', 50), guidanceScale: 3, seed: 1, scheduler: 'dpm++' as const };
const RUNS = positiveFromEnvironment('BENCH_QUANTIZE_RUNS', 3);
const LOW_MEMORY = process.env['BENCH_QUANTIZE_LOW_MEMORY'] === '1';
const CONDITION_TARGET = 0.99;

export async function runQuantizeBench(): Promise<void> {
  const model = process.env['BENCH_QUANTIZE_MODEL'] ?? DEFAULT_MODEL;
  const out = await mkdtemp(join(tmpdir(), 'kosmos-g-quantize-bench-'));
  try {
    for (const dtype of Object.keys(DTYPES)) {
      const env = LOW_MEMORY ? { ...RELEASING_MALLOC, ...process.env } : process.env;
      const result = await spawnVariant(fileURLToPath(import.meta.url), [dtype, model, out], env);
      const fidelity = dtype === 'float32' ? null : await variantFidelity(out, dtype, 'float32');
      console.log(JSON.stringify({
        case: 'quantize', model, dtype, threads: BENCH_THREADS, sampling: SAMPLING, runs: RUNS, low_memory: LOW_MEMORY,
        load_ms: Math.round(result.loadMs), generate_ms: Math.round(result.generateMs), peak_rss_mib: result.peakRssMiB,
        ...(fidelity ? { ...fidelity, condition_target_met: fidelity.condition_cosine >= CONDITION_TARGET } : {}),
      }));
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dtype, model, out] = process.argv.slice(2);
  if (!dtype || !(dtype in DTYPES) || !model || !out) throw new Error('usage: quantize.js float32|int8|int4 MODEL OUT');
  const quantize = DTYPES[dtype];
  await measureVariant(dtype, model, out, { threads: BENCH_THREADS, lowMemory: LOW_MEMORY, ...(quantize ? { quantize } : {}) }, SAMPLING, RUNS);
}
