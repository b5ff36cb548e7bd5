// Weight-only quantization of the pipelines (`quantize` load option, `generate --dtype`): the linear
// layers of every network but the VAE read MatMulNBits blocks quantized at load time; the result
// stays close to float32's (the (77, d) condition's cosine, the image's PSNR) and differs from it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { cosine } from '../../src/eval/judges.js';
import { psnrFromMse } from '../../src/eval/world.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { assertOneLineError, runCli } from '../cli/run-cli.js';
import { scratch, tinyPipeline } from './tiny.js';

const psnr = (a: Uint8Array, b: Uint8Array) => {
  let squared = 0;
  for (let i = 0; i < a.length; i++) squared += (a[i]! - b[i]!) ** 2;
  return psnrFromMse(squared / a.length);
};

const sampling = { steps: 4, guidanceScale: 3, seed: 2 };

test('Kosmos-G at int8 and int4: the condition and the image stay close to float32, and differ from it', async () => {
  const tiny = await tinyPipeline();
  const image = join(tiny, '..', 'quantize-input.png');
  await sharp({ create: { width: 40, height: 30, channels: 3, background: '#c84' } }).png().toFile(image);
  const run = async (bits?: 4 | 8) => {
    const pipeline = await KosmosGPipeline.fromPretrained(tiny, { threads: 1, ...(bits ? { quantize: { bits } } : {}) });
    try {
      const condition = (await pipeline.encoder.encode('<i> on a beach', [image])).data as Float32Array;
      const { images } = await pipeline.generate({ prompt: '<i> on a beach', images: [image], ...sampling });
      return { condition, pixels: images[0]!.data };
    } finally {
      await pipeline.dispose();
    }
  };
  const float = await run();
  // The tiny model's rows are 24 to 192 wide, one to six blocks of 32: 4 bits cost it more than a real model.
  for (const [bits, minimumCosine, minimumPsnr] of [[8, 0.99, 30], [4, 0.95, 15]] as const) {
    const quantized = await run(bits);
    assert.ok(cosine(quantized.condition, float.condition) >= minimumCosine, `${bits} bits: condition cosine ${cosine(quantized.condition, float.condition)}`);
    assert.ok(quantized.condition.some((value, i) => value !== float.condition[i]), `${bits} bits: the condition is quantized`);
    const quality = psnr(quantized.pixels, float.pixels);
    assert.ok(quality >= minimumPsnr && Number.isFinite(quality), `${bits} bits: image PSNR ${quality}`);
  }
});

test('the CLIP-text pipeline at int8, and generate --dtype recorded in the sidecar or refused in one line', async () => {
  const tiny = await tinyPipeline();
  const float = await TextToImagePipeline.fromPretrained(tiny, { threads: 1 });
  const quantized = await TextToImagePipeline.fromPretrained(tiny, { threads: 1, quantize: { bits: 8 } });
  try {
    const [a, b] = [await float.generate({ prompt: 'a cat', ...sampling }), await quantized.generate({ prompt: 'a cat', ...sampling })];
    assert.ok(psnr(a.images[0]!.data, b.images[0]!.data) >= 30);
  } finally {
    await float.dispose();
    await quantized.dispose();
  }
  const out = join(scratch, 'quantized.png');
  const result = await runCli(['generate', '--model', tiny, '--pipeline', 'clip-text', '--prompt', 'a cat', '--steps', '2', '--dtype', 'int4', '--threads', '1', '--out', out]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal((JSON.parse(await readFile(join(scratch, 'quantized.json'), 'utf8')) as { dtype: string }).dtype, 'int4');
  assertOneLineError(await runCli(['generate', '--model', tiny, '--prompt', 'a cat', '--dtype', 'int3', '--out', join(scratch, 'never.png')]), /unknown --dtype 'int3' \(float32, int8 or int4\)/);
});
