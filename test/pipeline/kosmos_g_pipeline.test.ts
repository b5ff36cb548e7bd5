// KosmosGPipeline end to end on the tiny random pipeline: interleaved prompts with images,
// reproducibility, seeds, guidance semantics, the condition's shape and bad prompts and images.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { maxAbsDifference, sameBytes, scratch, tinyPipeline } from './tiny.js';

let pipeline: KosmosGPipeline;
const dog = join(scratch, 'dog.png');
const hat = join(scratch, 'hat.png');
const base = { prompt: '<i> wearing <i> on the beach', images: [dog, hat], steps: 5, seed: 3 };

async function gradientPng(path: string, width: number, height: number, phase: number): Promise<void> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + phase * 91) % 256;
  await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toFile(path);
}

/** An SVG declaring width × height: decoders read its size without rasterising it. */
function hugeSvg(width: number, height: number): Buffer {
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="1" height="1"/></svg>`);
}

before(async () => {
  await gradientPng(dog, 40, 30, 1);
  await gradientPng(hat, 24, 48, 2);
  pipeline = await KosmosGPipeline.fromPretrained(await tinyPipeline(), { threads: 2 });
});
after(() => pipeline.dispose());

test('an interleaved prompt with two images gives 64×64 images and records its settings', async () => {
  assert.equal(pipeline.encoder.queries, 8);
  assert.deepEqual(pipeline.encoder.conditionShape, [77, 32]);
  const layout = pipeline.encoder.layout(base.prompt, 2);
  // [<s>] + (<image>×9 + </image>) + " wearing " + (<image>×9 + </image>) + " on the beach"
  assert.equal(layout.images.length, 2);
  assert.equal(layout.imageMask.filter(Boolean).length, 16);
  const { images, settings } = await pipeline.generate(base);
  assert.deepEqual([images.length, images[0]!.width, images[0]!.height], [1, 64, 64]);
  assert.deepEqual({ ...settings, prompt: undefined }, {
    prompt: undefined, negativePrompt: '', images: 2, steps: 5, guidanceScale: 6, scheduler: 'dpm++', seed: 3, numImages: 1, width: 64, height: 64,
    latents: 'seeded', controlnet: null, lora: null,
  });
});

test('the same seed gives bit-identical images; seeds, images and negative prompts change them', async () => {
  const first = await pipeline.generate(base);
  const second = await pipeline.generate(base);
  assert.ok(sameBytes(first.images[0]!.data, second.images[0]!.data));
  const otherSeed = await pipeline.generate({ ...base, seed: 4 });
  assert.ok(maxAbsDifference(first.images[0]!.data, otherSeed.images[0]!.data) > 0);
  const swapped = await pipeline.generate({ ...base, images: [hat, dog] });
  assert.ok(!sameBytes(first.images[0]!.data, swapped.images[0]!.data));
  const negative = await pipeline.generate({ ...base, negativePrompt: 'blurry' });
  assert.ok(!sameBytes(first.images[0]!.data, negative.images[0]!.data));
});

test('guidance 1 is exactly the conditional branch', async () => {
  const { condition, unconditional } = await pipeline.encode(base.prompt, base.images);
  const settings = (guidanceScale: number) => pipeline.diffusion.resolve({ ...base, guidanceScale }, { scheduler: 'dpm++' });
  const atOne = await pipeline.diffusion.denoise(condition, unconditional, settings(1), {});
  const conditionalOnly = await pipeline.diffusion.denoise(condition, condition, settings(6), {});
  assert.ok(sameBytes(atOne.data as Float32Array, conditionalOnly.data as Float32Array));
  const guided = await pipeline.diffusion.denoise(condition, unconditional, settings(6), {});
  assert.ok(maxAbsDifference(atOne.data as Float32Array, guided.data as Float32Array) > 1e-3);
  const generated = await pipeline.generate({ ...base, guidanceScale: 1 });
  const decoded = await pipeline.diffusion.decode(atOne.data as Float32Array, atOne.shape);
  assert.ok(sameBytes(generated.images[0]!.data, decoded[0]!.data));
});

test('several images per prompt: image i is the single image of seed + i; a text-only prompt works', async () => {
  const two = await pipeline.generate({ ...base, numImages: 2 });
  const single = await pipeline.generate({ ...base, seed: base.seed + 1 });
  assert.equal(two.images.length, 2);
  assert.ok(sameBytes(two.images[1]!.data, single.images[0]!.data));
  const text = await pipeline.generate({ prompt: 'a cat on the beach', steps: 3, seed: 1, scheduler: 'ddim', width: 32, height: 48 });
  assert.deepEqual([text.images[0]!.width, text.images[0]!.height], [32, 48]);
});

test('bad prompts and images fail with one-line errors', async () => {
  const corrupt = join(scratch, 'corrupt.png');
  await writeFile(corrupt, Buffer.from('this is not a png'));
  const huge = join(scratch, 'huge.svg');
  await writeFile(huge, hugeSvg(20000, 20000));
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ prompt: '<i> wearing <i>', images: [dog] }, /^the prompt has 2 <i> placeholders but 1 image was given; they must match one to one$/],
    [{ prompt: 'a cat', images: [dog] }, /the prompt has 0 <i> placeholders but 1 image was given/],
    [{ images: [dog, join(scratch, 'absent.png')] }, /image 2 \(.*absent\.png\): cannot read the file \(ENOENT\)/],
    [{ images: [corrupt, hat] }, /image 1 \(.*corrupt\.png\): not a readable image/],
    [{ images: [dog, huge] }, /image 2 \(.*huge\.svg\): 20000×20000 is over the 67108864-pixel limit/],
    [{ negativePrompt: '<i>' }, /negative prompt cannot contain <i> placeholders/],
    [{ width: 40 }, /width 40 is not a positive multiple of 16/],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(pipeline.generate({ ...base, ...options }), (error: Error) => message.test(error.message) && !error.message.includes('\n'), JSON.stringify(options));
  }
});
