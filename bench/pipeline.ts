// `npm run bench -- pipeline`: the tiny random pipeline (init-random --config tiny) end to end, as
// the CLI runs it: Kosmos-G with "<i> wearing <i> on the beach" + two images, and the CLIP-text
// path, 25 DPM-Solver++ steps with classifier-free guidance, one 64×64 image. One JSON line per
// path: the first call (with graph compiles), the median of warm calls, and of those the condition
// encoding (prompt and unconditional, timed alone), the U-Net step and the VAE decode. Then the
// embedded kosmos-g-mini the same way ("<i> on a beach" + examples/openmoji-cat.png, guidance 3),
// and the whole CLI command on it (start-up, loading, generation, PNG), median of 3 runs. The
// paper-size components have their own benches (models-unet, models-kosmos-g, models-autoencoder_kl).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { DEFAULT_MODEL } from '../src/pipeline/default_model.js';
import { KosmosGPipeline } from '../src/pipeline/kosmos_g_pipeline.js';
import { createRandomPipeline } from '../src/pipeline/random_pipeline.js';
import { TextToImagePipeline } from '../src/pipeline/text_to_image.js';
import { repositoryPath } from './measure.js';

const STEPS = 25;
const RUNS = 5;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

interface Timed {
  totalMs: number;
  firstStepAtMs: number;
  lastStepAtMs: number;
}

/** One generation, timed from the call to each onStep. */
async function timed(generate: (onStep: () => void) => Promise<unknown>): Promise<Timed> {
  const start = performance.now();
  const stepTimes: number[] = [];
  await generate(() => stepTimes.push(performance.now() - start));
  return { totalMs: performance.now() - start, firstStepAtMs: stepTimes[0]!, lastStepAtMs: stepTimes.at(-1)! };
}

/** Median milliseconds of `work` over RUNS calls. */
async function medianMs(work: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    await work();
    times.push(performance.now() - start);
  }
  return median(times);
}

function report(path: string, first: Timed, runs: Timed[], conditionMs: number, extra: Record<string, unknown>, model = 'init-random tiny, 64×64, 25 DPM-Solver++ steps, guidance 6 (CFG batch 2)'): void {
  const msPerStep = median(runs.map((run) => (run.lastStepAtMs - run.firstStepAtMs) / (STEPS - 1)));
  console.log(
    JSON.stringify({
      bench: 'pipeline',
      path,
      model,
      firstCallMs: Math.round(first.totalMs),
      totalMs: Math.round(median(runs.map((run) => run.totalMs))),
      conditionMs: +conditionMs.toFixed(2),
      unetMsPerStep: +msPerStep.toFixed(3),
      decodeMs: +median(runs.map((run) => run.totalMs - run.lastStepAtMs)).toFixed(2),
      runs: RUNS,
      ...extra,
    }),
  );
}

export async function runPipelineBench(): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-pipeline-'));
  try {
    const model = join(directory, 'tiny');
    await createRandomPipeline(model, { config: 'tiny' });
    const images = await Promise.all(
      [1, 2].map(async (phase) => {
        const pixels = Buffer.alloc(48 * 48 * 3);
        for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + phase * 91) % 256;
        return sharp(pixels, { raw: { width: 48, height: 48, channels: 3 } }).png().toBuffer();
      }),
    );
    const settings = { steps: STEPS, guidanceScale: 6, scheduler: 'dpm++' as const, seed: 0 };

    const kosmos = await KosmosGPipeline.fromPretrained(model);
    const kosmosRun = (onStep: () => void) => kosmos.generate({ prompt: '<i> wearing <i> on the beach', images, ...settings, onStep });
    const kosmosFirst = await timed(kosmosRun);
    const kosmosRuns: Timed[] = [];
    for (let run = 0; run < RUNS; run++) kosmosRuns.push(await timed(kosmosRun));
    const kosmosCondition = await medianMs(() => kosmos.encode('<i> wearing <i> on the beach', images));
    report('kosmos-g', kosmosFirst, kosmosRuns, kosmosCondition, { threads: kosmos.runtime.threads, compiledGraphs: kosmos.runtime.stats.misses });
    await kosmos.dispose();

    const text = await TextToImagePipeline.fromPretrained(model);
    const textRun = (onStep: () => void) => text.generate({ prompt: 'a dog wearing a hat on the beach', ...settings, onStep });
    const textFirst = await timed(textRun);
    const textRuns: Timed[] = [];
    for (let run = 0; run < RUNS; run++) textRuns.push(await timed(textRun));
    const textCondition = await medianMs(async () => [await text.encodePrompt('a dog wearing a hat on the beach'), await text.encodePrompt('')]);
    report('clip-text', textFirst, textRuns, textCondition, { threads: text.runtime.threads, compiledGraphs: text.runtime.stats.misses });
    await text.dispose();
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
  await runDefaultModelBench();
}

/** kosmos-g-mini in the library (first and warm calls) and as the whole CLI command. */
async function runDefaultModelBench(): Promise<void> {
  const present = await stat(join(DEFAULT_MODEL, 'model_index.json')).then(() => true, () => false);
  if (!present) {
    console.error(`bench: ${DEFAULT_MODEL} is missing; skipping the kosmos-g-mini cases`);
    return;
  }
  const image = repositoryPath('examples/openmoji-cat.png');
  const settings = { steps: STEPS, guidanceScale: 3, scheduler: 'dpm++' as const, seed: 1 };
  const pipeline = await KosmosGPipeline.fromPretrained(DEFAULT_MODEL);
  const run = (onStep: () => void) => pipeline.generate({ prompt: '<i> on a beach', images: [image], ...settings, onStep });
  const first = await timed(run);
  const runs: Timed[] = [];
  for (let index = 0; index < RUNS; index++) runs.push(await timed(run));
  const condition = await medianMs(() => pipeline.encode('<i> on a beach', [image]));
  report('kosmos-g-mini', first, runs, condition, { threads: pipeline.runtime.threads, compiledGraphs: pipeline.runtime.stats.misses }, 'models/kosmos-g-mini, 64×64, 25 DPM-Solver++ steps, guidance 3 (CFG batch 2)');
  await pipeline.dispose();

  const scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-cli-'));
  try {
    const cli = repositoryPath('dist/src/cli/main.js');
    const times: number[] = [];
    for (let index = 0; index < 3; index++) {
      const start = performance.now();
      const args = ['--no-concurrent-marking', cli, 'generate', '--prompt', '<i> on a beach', '--image', image, '--steps', String(STEPS), '--guidance', '3', '--seed', '1', '--out', join(scratch, `cat-${index}.png`)];
      await new Promise<void>((resolve, reject) => {
        execFile(process.execPath, args, (error) => (error ? reject(error) : resolve()));
      });
      times.push(performance.now() - start);
    }
    console.log(JSON.stringify({ bench: 'pipeline', path: 'kosmos-g-mini CLI', command: 'kosmos-g generate --prompt "<i> on a beach" --image examples/openmoji-cat.png --steps 25 --guidance 3', wholeCommandMs: Math.round(median(times)), runs: times.length }));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runPipelineBench();
