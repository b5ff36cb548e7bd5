// What a hostile user tries on generation, in the library and through `kosmos-g generate`: sizes and
// counts that would exhaust memory are refused before any graph is compiled, guidance outside its
// range and latents that stop being finite are errors, long CLIP prompts warn, existing outputs are
// replaced only with --force, an unwritable folder is refused before the work, thread counts are
// capped, and a missing WebGPU adapter is one line.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MAX_THREADS_PER_CORE, probeWebGpu } from '../../src/graph/devices.js';
import { MAX_GUIDANCE } from '../../src/pipeline/diffusion.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { scratch, tinyPipeline } from './tiny.js';
import { assertOneLineError, runCli } from '../cli/run-cli.js';

const cli = (...args: string[]) => runCli(args);

const longPrompt = Array.from({ length: 90 }, (_, i) => (i % 2 ? 'red' : 'cat')).join(' ');

let pipeline: TextToImagePipeline;
let model = '';

before(async () => {
  model = await tinyPipeline();
  pipeline = await TextToImagePipeline.fromPretrained(model, { threads: 1 });
});
after(() => pipeline.dispose());

const generate = (out: string, ...args: string[]) => ['generate', '--model', model, '--pipeline', 'clip-text', '--prompt', 'a cat', '--steps', '2', '--seed', '1', '--threads', '1', ...args, '--out', out];

test('a generation over the memory limit is refused before any graph is compiled', async () => {
  const side = { width: 256, height: 256 };
  // A limit one image fits with room to spare, and 64 do not.
  const one = pipeline.diffusion.memoryEstimate({ ...side, numImages: 1, guided: true, controlnet: false }).total;
  const maxMemory = Math.round(process.memoryUsage().rss + 2 * one);
  assert.equal(pipeline.diffusion.resolve({ ...side, maxMemory }, { scheduler: 'dpm++' }).numImages, 1);
  const refusal = { message: /would need about .* of memory .* over the .* limit; lower the size or the number of images, or raise --max-memory$/ };
  await assert.rejects(pipeline.generate({ prompt: 'a cat', ...side, numImages: 64, maxMemory }), refusal);
  await assert.rejects(pipeline.generate({ prompt: 'a cat', width: 4096, height: 4096, maxMemory: 8 * 2 ** 30 }), refusal);
  assert.equal(pipeline.runtime.stats.misses, 0, 'no session was compiled');
  await assert.rejects(pipeline.generate({ prompt: 'a cat', maxMemory: 0 }), { message: 'maxMemory must be a positive number of bytes, got 0' });
});

test('guidance outside [0, MAX_GUIDANCE] is refused; latents that stop being finite stop the sampling', async () => {
  for (const guidanceScale of [-1, MAX_GUIDANCE + 1, 1e30, Number.POSITIVE_INFINITY]) {
    assert.throws(() => pipeline.diffusion.resolve({ guidanceScale }, { scheduler: 'dpm++' }), { message: `guidance scale must be a finite number from 0 to 50 (≤ 1: the conditional branch alone), got ${guidanceScale}` });
  }
  for (const guidanceScale of [0, 1, MAX_GUIDANCE]) assert.equal(pipeline.diffusion.resolve({ guidanceScale }, { scheduler: 'dpm++' }).guidanceScale, guidanceScale);
  const latents = new Float32Array(4 * 8 * 8).fill(0.5);
  latents[17] = Number.NaN;
  await assert.rejects(
    pipeline.generate({ prompt: 'a cat', steps: 3, latents: { dtype: 'float32', shape: [1, 4, 8, 8], data: latents } }),
    { message: 'sampling diverged at step 1 of 3: the latents are no longer finite (guidance scale 6)' },
  );
});

test('a prompt past the CLIP encoder\'s tokens is truncated with a warning', async () => {
  const short = await pipeline.generate({ prompt: 'a cat', steps: 1, seed: 1 });
  assert.deepEqual(short.warnings, []);
  const long = await pipeline.generate({ prompt: longPrompt, negativePrompt: longPrompt, steps: 1, seed: 1 });
  assert.deepEqual(long.warnings, [
    'the prompt has 90 tokens; the CLIP text encoder reads the first 75 and ignores the rest',
    'the negative prompt has 90 tokens; the CLIP text encoder reads the first 75 and ignores the rest',
  ]);
  // Without guidance the negative prompt is not encoded, so it is not warned about.
  assert.equal((await pipeline.generate({ prompt: 'a cat', negativePrompt: longPrompt, guidanceScale: 1, steps: 1, seed: 1 })).warnings.length, 0);
});

test('generate replaces an existing image or sidecar only with --force', async () => {
  const out = join(scratch, 'photo.png');
  const unrelated = join(scratch, 'photo.json');
  await writeFile(unrelated, '{"mine": true}\n');
  assertOneLineError(await cli(...generate(out)), /photo\.json already exists; pass --force to replace it$/);
  assert.equal(await readFile(unrelated, 'utf8'), '{"mine": true}\n');
  const forced = await cli(...generate(out, '--force'));
  assert.equal(forced.code, 0, forced.stderr);
  const image = await readFile(out);
  assertOneLineError(await cli(...generate(out, '--seed', '2')), /photo\.png already exists; pass --force to replace it$/);
  assert.ok(image.equals(await readFile(out)), 'the image is untouched');
});

test('generate refuses an unwritable folder, bad guidance and memory bombs before loading the model', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
  const absent = join(scratch, 'no-such-model');
  const before = (out: string, ...args: string[]) => ['generate', '--model', absent, '--prompt', 'a cat', ...args, '--out', out];
  // /proc takes no new files, not even from root.
  assertOneLineError(await cli(...before('/proc/out.png')), /^the folder of --out is not writable: \/proc \(E[A-Z]+\)$/);
  const out = join(scratch, 'bomb.png');
  assertOneLineError(await cli(...before(out, '--guidance', '1e30')), /^--guidance must be from 0 to 50 \(≤ 1: conditional branch only\), got '1e30'$/);
  assertOneLineError(await cli(...before(out, '--guidance', '-3')), /got '-3'$/);
  assertOneLineError(await cli(...before(out, '--max-memory', 'lots')), /^--max-memory must be a size in bytes/);
  // With the model: refused by the estimate, before any image is sampled.
  assertOneLineError(await cli(...generate(out, '--size', '4096', '--max-memory', '8G')), /^1 image of 4096×4096 would need about [\d.]+ GiB of memory .* over the 8\.0 GiB limit/);
  assertOneLineError(await cli(...generate(out, '--size', '256', '--num', '64', '--max-memory', '300M')), /^64 images of 256×256 would need about/);
});

test('generate caps --threads at a multiple of the cores with a warning and records long-prompt warnings in the sidecar', async () => {
  const out = join(scratch, 'capped.png');
  const result = await cli(...generate(out, '--threads', '999', '--prompt', longPrompt));
  assert.equal(result.code, 0, result.stderr);
  const limit = MAX_THREADS_PER_CORE * availableParallelism();
  assert.match(result.stderr, new RegExp(`^warning: 999 threads is more than ${MAX_THREADS_PER_CORE} per core on ${availableParallelism()} cores; using ${limit}$`, 'm'));
  assert.match(result.stderr, /^warning: the prompt has 90 tokens; the CLIP text encoder reads the first 75 and ignores the rest$/m);
  const sidecar = JSON.parse(await readFile(join(scratch, 'capped.json'), 'utf8')) as { threads: number; warnings: string[] };
  assert.equal(sidecar.threads, limit);
  assert.deepEqual(sidecar.warnings, ['the prompt has 90 tokens; the CLIP text encoder reads the first 75 and ignores the rest']);
});

test('--device webgpu without an adapter is one line, with nothing of the driver on stderr', async (context) => {
  if ((await probeWebGpu()).available) {
    context.skip('this machine has a WebGPU adapter');
    return;
  }
  assertOneLineError(await cli(...generate(join(scratch, 'gpu.png'), '--device', 'webgpu')), /^device 'webgpu' was requested but no WebGPU adapter was found \([^)]*\); use --device cpu or auto$/);
});
