// One way of loading a Kosmos-G folder (a dtype, a device) measured in its own child process, so
// that its peak RSS is its own: the load, the (77, d) condition and the image of a fixed prompt and
// seed written to a scratch folder, timings of the generations, and per-phase times of the last
// one. The parent compares the conditions and images of two variants (cosine, PSNR). Used by the
// quantize group (float32 vs int8/int4) and the gpu group (CPU vs WebGPU).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cosine } from '../src/eval/judges.js';
import { psnrFromMse } from '../src/eval/world.js';
import { KosmosGPipeline } from '../src/pipeline/kosmos_g_pipeline.js';
import type { GenerationPhase } from '../src/pipeline/phases.js';
import type { PipelineLoadOptions } from '../src/pipeline/text_to_image.js';
import { median, peakRssMiB, round } from './measure.js';

export const FIDELITY_PROMPT = '<i> on a beach';
export const FIDELITY_IMAGE = fileURLToPath(new URL('../../models/kosmos-g-mini/examples/cat-on-a-beach.png', import.meta.url));

export interface Sampling {
  steps: number;
  guidanceScale: number;
  seed: number;
  scheduler: 'dpm++';
}

export interface VariantResult {
  /** Loading the folder (with its quantization, if any). */
  loadMs: number;
  /** The first generation: on a GPU it includes compiling the sessions. */
  firstGenerateMs: number;
  /** The median of the generations after the first one (the first one when there is only one). */
  generateMs: number;
  /** Each phase of the last generation, in milliseconds. */
  phaseMs: Partial<Record<GenerationPhase, number>>;
  peakRssMiB: number;
}

/** In the child: loads `model` with `options`, encodes the condition once and generates `runs` times; `name`.condition and `name`.rgb go to `out`. */
export async function measureVariant(name: string, model: string, out: string, options: PipelineLoadOptions & { lowMemory?: boolean }, sampling: Sampling, runs: number): Promise<void> {
  const started = performance.now();
  const pipeline = await KosmosGPipeline.fromPretrained(model, options);
  const loadMs = performance.now() - started;
  try {
    const condition = await pipeline.encoder.encode(FIDELITY_PROMPT, [FIDELITY_IMAGE]);
    await writeFile(join(out, `${name}.condition`), condition.data as Float32Array);
    const times: number[] = [];
    let phaseMs: Partial<Record<GenerationPhase, number>> = {};
    let image: Uint8Array | null = null;
    for (let run = 0; run < runs; run++) {
      const phases: Partial<Record<GenerationPhase, number>> = {};
      const start = performance.now();
      const { images } = await pipeline.generate({
        prompt: FIDELITY_PROMPT, images: [FIDELITY_IMAGE], ...sampling,
        onPhase: ({ phase, ms }) => (phases[phase] = round((phases[phase] ?? 0) + ms)),
      });
      times.push(performance.now() - start);
      phaseMs = phases;
      image = images[0]!.data;
    }
    await writeFile(join(out, `${name}.rgb`), image!);
    const result: VariantResult = { loadMs, firstGenerateMs: times[0]!, generateMs: median(times.length > 1 ? times.slice(1) : times), phaseMs, peakRssMiB: peakRssMiB() };
    console.log(JSON.stringify(result));
  } finally {
    await pipeline.dispose();
  }
}

/** In the parent: runs `script` (a bench module whose command line ends in measureVariant) with `args` in a child Node. */
export async function spawnVariant(script: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<VariantResult> {
  const { stdout } = await promisify(execFile)(process.execPath, [...process.execArgv, script, ...args], { maxBuffer: 1 << 20, env });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as VariantResult;
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

/** The fidelity of variant `name` against `reference`, both written to `out`: condition cosine and image PSNR. */
export async function variantFidelity(out: string, name: string, reference: string): Promise<{ condition_cosine: number; image_psnr_db: number }> {
  return {
    condition_cosine: round(cosine(await floats(join(out, `${name}.condition`)), await floats(join(out, `${reference}.condition`))), 6),
    image_psnr_db: round(psnr(await readFile(join(out, `${name}.rgb`)), await readFile(join(out, `${reference}.rgb`))), 4),
  };
}
