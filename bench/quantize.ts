// `npm run bench -- quantize`: weight-only quantization (generate --dtype int8|int4: the linear
// layers as MatMulNBits blocks, nn/quantize.ts) against float32 on a Kosmos-G folder (default the
// embedded kosmos-g-mini; BENCH_QUANTIZE_MODEL=DIR for another, e.g. init-random --config
// kosmos-g): "<i> on a beach" + examples/cat-on-a-beach.png, 50 DPM-Solver++ steps, guidance 3,
// seed 1, BENCH_THREADS threads. Each dtype runs in its own child process, so its peak RSS is its
// own. One JSON line per dtype: load time (the quantization included), the median of 3 generations,
// the peak RSS, and the fidelity cost against float32: the cosine of the (77, d) condition (target
// ≥ 0.99) and the PSNR of the image from the same seed.
// For the paper-size model: BENCH_QUANTIZE_STEPS and BENCH_QUANTIZE_RUNS shorten the generations,
// and BENCH_QUANTIZE_LOW_MEMORY=1 loads the pipeline with `lowMemory` (children then run with
// glibc's mmap threshold fixed, as bench/kosmos-g.ts explains).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { cosine } from '../src/eval/judges.js';
import { psnrFromMse } from '../src/eval/world.js';
import { DEFAULT_MODEL } from '../src/pipeline/default_model.js';
import { KosmosGPipeline } from '../src/pipeline/kosmos_g_pipeline.js';
import type { WeightQuantization } from '../src/pipeline/weights.js';
import { BENCH_THREADS, median, peakRssMiB, round } from './measure.js';

const DTYPES: Record<string, WeightQuantization | undefined> = { float32: undefined, int8: { bits: 8 }, int4: { bits: 4 } };
const PROMPT = '<i> on a beach';
const IMAGE = fileURLToPath(new URL('../../models/kosmos-g-mini/examples/cat-on-a-beach.png', import.meta.url));
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

interface ChildResult {
  loadMs: number;
  generateMs: number;
  peakRssMiB: number;
}

/** In the child: one dtype's load, condition and generations; the condition and image go to `out`. */
async function runDtype(dtype: string, model: string, out: string): Promise<void> {
  const started = performance.now();
  const pipeline = await KosmosGPipeline.fromPretrained(model, { threads: BENCH_THREADS, lowMemory: LOW_MEMORY, ...(DTYPES[dtype] ? { quantize: DTYPES[dtype] } : {}) });
  const loadMs = performance.now() - started;
  try {
    const condition = await pipeline.encoder.encode(PROMPT, [IMAGE]);
    await writeFile(join(out, `${dtype}.condition`), condition.data as Float32Array);
    const times: number[] = [];
    let image: Uint8Array | null = null;
    for (let run = 0; run < RUNS; run++) {
      const start = performance.now();
      const { images } = await pipeline.generate({ prompt: PROMPT, images: [IMAGE], ...SAMPLING });
      times.push(performance.now() - start);
      image = images[0]!.data;
    }
    await writeFile(join(out, `${dtype}.rgb`), image!);
    const result: ChildResult = { loadMs: loadMs, generateMs: median(times), peakRssMiB: peakRssMiB() };
    console.log(JSON.stringify(result));
  } finally {
    await pipeline.dispose();
  }
}

/** PSNR of two RGB images of one size. */
function psnr(a: Uint8Array, b: Uint8Array): number {
  let squared = 0;
  for (let i = 0; i < a.length; i++) squared += (a[i]! - b[i]!) ** 2;
  return psnrFromMse(squared / a.length);
}

const floats = async (path: string) => {
  const bytes = await readFile(path);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
};

export async function runQuantizeBench(): Promise<void> {
  const model = process.env['BENCH_QUANTIZE_MODEL'] ?? DEFAULT_MODEL;
  const out = await mkdtemp(join(tmpdir(), 'kosmos-g-quantize-bench-'));
  try {
    for (const dtype of Object.keys(DTYPES)) {
      const env = LOW_MEMORY ? { MALLOC_MMAP_THRESHOLD_: '131072', ...process.env } : process.env;
      const { stdout } = await promisify(execFile)(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), dtype, model, out], { maxBuffer: 1 << 20, env });
      const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildResult;
      const fidelity = dtype === 'float32' ? {} : {
        condition_cosine: round(cosine(await floats(join(out, `${dtype}.condition`)), await floats(join(out, 'float32.condition'))), 6),
        image_psnr_db: round(psnr(await readFile(join(out, `${dtype}.rgb`)), await readFile(join(out, 'float32.rgb'))), 4),
      };
      console.log(JSON.stringify({
        case: 'quantize', model, dtype, threads: BENCH_THREADS, sampling: SAMPLING, runs: RUNS, low_memory: LOW_MEMORY,
        load_ms: Math.round(result.loadMs), generate_ms: Math.round(result.generateMs), peak_rss_mib: result.peakRssMiB,
        ...fidelity,
        ...('condition_cosine' in fidelity ? { condition_target_met: fidelity.condition_cosine! >= CONDITION_TARGET } : {}),
      }));
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dtype, model, out] = process.argv.slice(2);
  if (!dtype || !(dtype in DTYPES) || !model || !out) throw new Error('usage: quantize.js float32|int8|int4 MODEL OUT');
  await runDtype(dtype, model, out);
}
