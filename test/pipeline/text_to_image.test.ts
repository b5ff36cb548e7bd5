// The CLIP-text (Stable Diffusion baseline) pipeline end to end on the tiny random pipeline:
// reproducibility, seeds, guidance semantics, every scheduler, given latents and option errors.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gaussianNoise } from '../../src/models/gaussian_noise.js';
import { SCHEDULER_CHOICES, applyGuidance, seededNoise } from '../../src/pipeline/diffusion.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { maxAbsDifference, sameBytes, tinyPipeline } from './tiny.js';

let pipeline: TextToImagePipeline;
const base = { prompt: 'a red apple on the beach', steps: 6, seed: 7 } as const;

before(async () => {
  pipeline = await TextToImagePipeline.fromPretrained(await tinyPipeline(), { threads: 2 });
});
after(() => pipeline.dispose());

test('the tiny pipeline generates 64×64 RGB images by default', async () => {
  const { images, settings } = await pipeline.generate(base);
  assert.equal(images.length, 1);
  assert.deepEqual([images[0]!.width, images[0]!.height, images[0]!.data.length], [64, 64, 64 * 64 * 3]);
  assert.deepEqual({ ...settings }, {
    prompt: base.prompt, negativePrompt: '', steps: 6, guidanceScale: 6, scheduler: 'dpm++', seed: 7, numImages: 1, width: 64, height: 64,
    latents: 'seeded', controlnet: null, lora: null,
  });
});

test('the same seed gives bit-identical latents and images; other seeds, prompts and negatives differ', async () => {
  const condition = await pipeline.encodePrompt(base.prompt);
  const unconditional = await pipeline.encodePrompt('');
  const settings = pipeline.diffusion.resolve(base, { scheduler: 'dpm++' });
  const first = await pipeline.diffusion.denoise(condition, unconditional, settings, {});
  const second = await pipeline.diffusion.denoise(condition, unconditional, settings, {});
  assert.ok(sameBytes(first.data as Float32Array, second.data as Float32Array));
  const otherSeed = await pipeline.diffusion.denoise(condition, unconditional, { ...settings, seed: 8 }, {});
  assert.ok(maxAbsDifference(first.data as Float32Array, otherSeed.data as Float32Array) > 0.1);

  const a = await pipeline.generate(base);
  const b = await pipeline.generate(base);
  assert.ok(sameBytes(a.images[0]!.data, b.images[0]!.data));
  const negative = await pipeline.generate({ ...base, negativePrompt: 'blurry' });
  assert.ok(!sameBytes(a.images[0]!.data, negative.images[0]!.data));
});

test('guidance 1 is exactly the conditional branch, guidance > 1 mixes in the unconditional one', async () => {
  const condition = await pipeline.encodePrompt(base.prompt);
  const unconditional = await pipeline.encodePrompt('');
  const resolve = (guidanceScale: number) => pipeline.diffusion.resolve({ ...base, guidanceScale }, { scheduler: 'dpm++' });
  const atOne = await pipeline.diffusion.denoise(condition, unconditional, resolve(1), {});
  // With both halves equal to the condition, ε_u + g·(ε_c − ε_u) = ε_c for any g: the conditional branch alone.
  const conditionalOnly = await pipeline.diffusion.denoise(condition, condition, resolve(7.5), {});
  assert.ok(sameBytes(atOne.data as Float32Array, conditionalOnly.data as Float32Array));
  const belowOne = await pipeline.diffusion.denoise(condition, unconditional, resolve(0.5), {});
  assert.ok(sameBytes(atOne.data as Float32Array, belowOne.data as Float32Array), 'g ≤ 1 runs the conditional branch only');
  const guided = await pipeline.diffusion.denoise(condition, unconditional, resolve(7.5), {});
  assert.ok(maxAbsDifference(atOne.data as Float32Array, guided.data as Float32Array) > 1e-3);
});

test('applyGuidance: ε_u + g·(ε_c − ε_u) per element over [uncond, cond]', () => {
  const prediction = Float32Array.of(1, -2, 0.5, 3, -1, 0.5);
  assert.deepEqual([...applyGuidance(prediction, 2)], [5, 0, 0.5]);
  assert.deepEqual([...applyGuidance(prediction, 1)], [3, -1, 0.5]);
});

test('image i of a batch is the single image of seed + i; noise is gaussianNoise per image', async () => {
  const batch = await pipeline.generate({ ...base, numImages: 2 });
  const single = await pipeline.generate({ ...base, seed: base.seed + 1 });
  assert.ok(sameBytes(batch.images[1]!.data, single.images[0]!.data));
  const noise = seededNoise(3, [2, 4, 4, 4]);
  assert.ok(sameBytes(noise.subarray(64), gaussianNoise(4, [1, 4, 4, 4]).data as Float32Array));
});

test('every scheduler runs and gives its own trajectory; given latents replace the seeded noise', async () => {
  const outputs = new Map<string, Uint8Array>();
  for (const scheduler of SCHEDULER_CHOICES) {
    const steps: number[] = [];
    const { images } = await pipeline.generate({ ...base, scheduler, onStep: (info) => steps.push(info.step) });
    assert.ok(steps.length >= base.steps, `${scheduler}: ${steps.length} steps reported`);
    outputs.set(scheduler, images[0]!.data);
  }
  assert.ok(!sameBytes(outputs.get('dpm++')!, outputs.get('pndm')!));
  const latents = { dtype: 'float32' as const, shape: [1, 4, 8, 8], data: seededNoise(base.seed, [1, 4, 8, 8]) };
  const given = await pipeline.generate({ ...base, seed: 99, latents });
  assert.ok(sameBytes(given.images[0]!.data, outputs.get('dpm++')!));
  assert.equal(given.settings.latents, 'given');
});

test('previews are decoded on the requested steps', async () => {
  const previews: number[] = [];
  await pipeline.generate({ ...base, previewEvery: 4, onStep: (info) => info.preview && previews.push(info.step) });
  assert.deepEqual(previews, [3, 5]);
});

test('bad options fail with one-line errors before any work', async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ width: 60 }, /^width 60 is not a positive multiple of 16 \(VAE downsampling 8 × U-Net downsampling 2\)$/],
    [{ height: 0 }, /height 0 is not a positive multiple of 16/],
    [{ width: 8192 }, /^width 8192 is over the 4096-pixel limit$/],
    [{ scheduler: 'heun' }, /^unknown scheduler "heun" \(choose dpm\+\+, ddim, pndm, euler\)$/],
    [{ steps: 0 }, /steps must be an integer from 1 to 1000/],
    [{ guidanceScale: Number.NaN }, /guidance scale must be a finite number/],
    [{ seed: -1 }, /seed must be a non-negative integer/],
    [{ numImages: 0 }, /number of images must be an integer/],
    [{ latents: { dtype: 'float32', shape: [1, 4, 4, 4], data: new Float32Array(64) } }, /latents must be float32 \[1, 4, 8, 8\]/],
    [{ controlnet: { model: 'x', image: '' } }, /^ControlNet needs a control image$/],
    [{ controlnet: { model: 'x', image: 'y', guidanceStart: 0.8, guidanceEnd: 0.2 } }, /guidance window must satisfy 0 ≤ start < end ≤ 1/],
    [{ controlnet: { model: 'x', image: 'y', preprocess: { kind: 'depth' } } }, /^ControlNet preprocess must be \{kind: 'canny'\} or \{kind: 'layout', scene\}, got \{"kind":"depth"\}$/],
    [{ controlnet: { model: 'x', image: 'y', preprocess: { kind: 'layout' } } }, /^ControlNet layout preprocess needs the scene it was drawn from, got undefined$/],
    [{ lora: { file: 'x.safetensors', scale: Number.POSITIVE_INFINITY } }, /LoRA scale must be a finite number/],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(pipeline.generate({ ...base, ...options }), (error: Error) => message.test(error.message) && !error.message.includes('\n'), JSON.stringify(options));
  }
});
