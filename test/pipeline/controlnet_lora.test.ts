// ControlNet and LoRA options of the pipelines on the tiny random pipeline: a tiny ControlNet with
// non-zero residual convs and a PEFT LoRA with a non-zero B change the result; scale 0 leaves it
// unchanged, a narrower guidance window changes it; bad files and images give one-line errors.
import sharp from 'sharp';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { controlKeep, controlOutputSize } from '../../src/pipeline/controlnet.js';
import { ControlNetModel, parseControlNetConfig } from '../../src/models/controlnet.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { Random } from '../../src/util/random.js';
import { maxAbsDifference, sameBytes, scratch, tinyExtras, tinyPipeline } from './tiny.js';

let pipeline: TextToImagePipeline;
let controlDirectory: string;
let loraFile: string;
let controlImage: string;
const base = { prompt: 'a cat', steps: 5, seed: 11 } as const;

before(async () => {
  ({ controlnet: controlDirectory, lora: loraFile, controlImage } = await tinyExtras());
  pipeline = await TextToImagePipeline.fromPretrained(await tinyPipeline(), { threads: 2 });
});
after(() => pipeline.dispose());

test('controlKeep follows diffusers: step i of n acts unless i/n < start or (i + 1)/n > end', () => {
  assert.deepEqual([0, 1, 2, 3].map((step) => controlKeep(step, 4, 0, 1)), [1, 1, 1, 1]);
  assert.deepEqual([0, 1, 2, 3].map((step) => controlKeep(step, 4, 0.25, 0.75)), [0, 1, 1, 0]);
});

test('ControlNet residuals change the image; conditioning scale 0 reproduces the plain U-Net', async () => {
  const plain = await pipeline.generate(base);
  const controlled = await pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: controlImage } });
  assert.ok(maxAbsDifference(plain.images[0]!.data, controlled.images[0]!.data) > 0);
  assert.deepEqual(controlled.settings.controlnet, { model: controlDirectory, conditioningScale: 1, guidanceStart: 0, guidanceEnd: 1, preprocess: null });
  const off = await pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: controlImage, conditioningScale: 0 } });
  assert.ok(sameBytes(plain.images[0]!.data, off.images[0]!.data), 'residuals × 0 add nothing');
  const window = await pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: controlImage, guidanceStart: 0.4, guidanceEnd: 0.6 } });
  assert.ok(!sameBytes(window.images[0]!.data, controlled.images[0]!.data), 'a narrower guidance window acts on fewer steps');
});

test('the output size follows the control image as the official resize_image does; an asked size of another aspect is refused', async () => {
  // The demo's rule on SD 1.5 (default 512, multiples of 64): 640×480 → short side 512, 682.7 → 704.
  const photo = { name: 'control image', width: 640, height: 480 };
  assert.deepEqual(controlOutputSize(photo, {}, 512, 64), { width: 704, height: 512 });
  assert.deepEqual(controlOutputSize(photo, { width: 1024 }, 512, 64), { width: 1024, height: 768 });
  assert.deepEqual(controlOutputSize(photo, { height: 256 }, 512, 64), { width: 320, height: 256 });
  assert.deepEqual(controlOutputSize(photo, { width: 640, height: 512 }, 512, 64), { width: 640, height: 512 }, 'within the rounding');
  assert.throws(() => controlOutputSize(photo, { width: 512, height: 512 }, 512, 64), /control image is 640×480, another aspect ratio than the 512×512 asked; leave out/);

  const wide = join(scratch, 'wide-edges.png');
  const pixels = Buffer.alloc(96 * 48 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 53) % 256;
  await sharp(pixels, { raw: { width: 96, height: 48, channels: 3 } }).png().toFile(wide);
  const followed = await pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: wide } });
  const size = pipeline.diffusion.defaultSize;
  assert.deepEqual([followed.settings.width, followed.settings.height], [2 * size, size]);
  assert.deepEqual([followed.images[0]!.width, followed.images[0]!.height], [2 * size, size]);
  await assert.rejects(pipeline.generate({ ...base, width: size, height: size, controlnet: { model: controlDirectory, image: wide } }), /another aspect ratio than the/);
});

test('a Canny preprocessor makes the map from the control image, at the output size', async () => {
  const asMap = await pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: controlImage } });
  const edges = await pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: controlImage, preprocess: { kind: 'canny', low: 50 } } });
  assert.deepEqual(edges.settings.controlnet?.preprocess, { kind: 'canny', low: 50, high: 200 });
  assert.ok(!sameBytes(asMap.images[0]!.data, edges.images[0]!.data), 'the edges, not the image, steer the U-Net');
  await assert.rejects(pipeline.generate({ ...base, controlnet: { model: controlDirectory, image: controlImage, preprocess: { kind: 'canny', high: -1 } } }), /Canny threshold high must be a non-negative number, got -1$/);
});

test('LoRA changes the image with its scale; scale 0 reproduces the base U-Net', async () => {
  const plain = await pipeline.generate(base);
  const withLora = await pipeline.generate({ ...base, lora: { file: loraFile, scale: 1 } });
  assert.ok(maxAbsDifference(plain.images[0]!.data, withLora.images[0]!.data) > 0);
  const zero = await pipeline.generate({ ...base, lora: { file: loraFile, scale: 0 } });
  assert.ok(sameBytes(plain.images[0]!.data, zero.images[0]!.data));
});

test('bad ControlNet and LoRA inputs give one-line errors', async () => {
  const corrupt = join(scratch, 'corrupt.png');
  // The tiny ControlNet, rebuilt for conditions of another width than the U-Net's.
  const config = JSON.parse(await readFile(join(controlDirectory, 'config.json'), 'utf8')) as Record<string, unknown>;
  const otherWidth = join(scratch, 'controlnet-other-width');
  await new ControlNetModel(parseControlNetConfig({ ...config, cross_attention_dim: (config['cross_attention_dim'] as number) * 2 }), new Random(5)).save(otherWidth);
  await writeFile(corrupt, 'not an image at all');
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ controlnet: { model: controlDirectory, image: corrupt } }, /control image .*corrupt\.png: not a readable image/],
    [{ controlnet: { model: controlDirectory, image: join(scratch, 'absent.png') } }, /cannot read the file \(ENOENT\)/],
    [{ controlnet: { model: join(scratch, 'absent'), image: controlImage } }, /cannot read .*absent\/config\.json/],
    [{ controlnet: { model: otherWidth, image: controlImage } }, /^controlnet: it cross-attends to \d+-wide conditions, the U-Net to \d+$/],
    [{ lora: { file: join(scratch, 'absent.safetensors') } }, /^LoRA .*absent\.safetensors: /],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(pipeline.generate({ ...base, ...options }), (error: Error) => message.test(error.message) && !error.message.includes('\n'), JSON.stringify(options));
  }
});
