// The DreamBench judges: preprocessing geometry and values, loading the CLIPModel and ViTModel
// layouts (checked against the same towers run directly), the score, and clear errors.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Graph, type Value } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { CLIP_MEAN, CLIP_STD } from '../../src/pipeline/images.js';
import {
  IMAGENET_MEAN, IMAGENET_STD, clipPreprocessing, cosine, dinoPreprocessing, dreamBenchScore, loadJudges, preprocessImages, resizeCropBox,
} from '../../src/eval/judges.js';
import { solidPng } from '../pipeline/tiny-condition-folder.js';
import { writeTinyJudges } from './tiny-judges.js';

test('preprocessing geometry: CLIP resizes the short side to S and floors the crop offset; DINO resizes to S·256/224 and rounds it', () => {
  assert.deepEqual(dinoPreprocessing(224), { resize: 256, crop: 224, offset: 'round', mean: IMAGENET_MEAN, std: IMAGENET_STD });
  assert.equal(dinoPreprocessing(32).resize, 37); // 36.57 → 37
  assert.deepEqual(resizeCropBox(256, 256, dinoPreprocessing(224)), { width: 256, height: 256, left: 16, top: 16 });
  assert.deepEqual(resizeCropBox(300, 200, dinoPreprocessing(224)), { width: 384, height: 256, left: 80, top: 16 });
  assert.deepEqual(resizeCropBox(300, 200, clipPreprocessing(224)), { width: 336, height: 224, left: 56, top: 0 });
  // (37 − 32)/2 = 2.5: torchvision rounds half to even (2), CLIPImageProcessor floors (2); (39 − 32)/2 = 3.5 → 4 and 3.
  assert.deepEqual(resizeCropBox(39, 37, dinoPreprocessing(32)), { width: 39, height: 37, left: 4, top: 2 });
  assert.deepEqual(resizeCropBox(39, 32, clipPreprocessing(32)), { width: 39, height: 32, left: 3, top: 0 });
});

test('preprocessed values: a solid colour normalises with each judge\'s mean/std; a wide image keeps its centre', async () => {
  const colour: [number, number, number] = [200, 100, 30];
  const png = await solidPng(50, 40, colour);
  for (const [p, mean, std] of [[clipPreprocessing(16), CLIP_MEAN, CLIP_STD], [dinoPreprocessing(16), IMAGENET_MEAN, IMAGENET_STD]] as const) {
    const pixels = await preprocessImages([png, png], p);
    assert.deepEqual(pixels.shape, [2, 3, 16, 16]);
    for (let c = 0; c < 3; c++) {
      const expected = (colour[c]! / 255 - mean[c]!) / std[c]!;
      for (let i = 0; i < 256; i++) assert.ok(Math.abs(pixels.data[3 * 256 + c * 256 + i]! - expected) < 1e-6);
    }
  }
  // 40×20, left half red: Resize 20 → 16 gives 32×16, the crop takes columns 8…23, red on its left half.
  const pixels = await preprocessImages([await solidPng(40, 20, [0, 0, 255], [255, 0, 0])], clipPreprocessing(16));
  const red = (x: number) => pixels.data[8 * 16 + x]!;
  assert.ok(red(2) > 1.5 && red(13) < -1.5, `left ${red(2)}, right ${red(13)}`);
});

test('the score is max(100 · mean cosine, 0); cosine is scale-free', () => {
  assert.equal(dreamBenchScore([0.5, 0.7]), 60);
  assert.equal(dreamBenchScore([-0.5, 0.1]), 0);
  assert.equal(dreamBenchScore([]), null);
  assert.ok(Math.abs(cosine(Float32Array.of(1, 2, 2), Float32Array.of(2, 4, 4)) - 1) < 1e-12);
  assert.ok(Math.abs(cosine(Float32Array.of(1, 0), Float32Array.of(0, 3))) < 1e-12);
});

async function run(outputs: (graph: Graph) => Record<string, Value>, feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
  const graph = new Graph();
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs(graph))));
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

const maxDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

test('tiny judges in the CLIPModel and ViTModel layouts load and give the towers\' own outputs', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'judges-'));
  const judgesDir = join(directory, 'judges');
  try {
    const models = await writeTinyJudges(judgesDir);
    const images = [await solidPng(48, 40, [10, 200, 60], [250, 20, 20]), await solidPng(64, 64, [0, 0, 0], [255, 255, 255]), await solidPng(30, 30, [90, 90, 200])];
    const judges = await loadJudges(judgesDir, { threads: 1, batchSize: 2 });
    try {
      const embeds = await judges.clip.embedImages(images);
      const texts = ['a red backpack', 'a dog on the beach', 'a cat'];
      const textEmbeds = await judges.clip.embedTexts(texts);
      const features = await judges.dino.features(images);
      assert.equal(embeds.length, 3);
      for (const e of [...embeds, ...textEmbeds]) assert.ok(Math.abs(norm(e) - 1) < 1e-5 && e.length === 8);

      // The same towers run directly on the same inputs.
      const clipPixels = await preprocessImages(images, clipPreprocessing(32));
      const direct = await run((graph) => {
        const output = models.vision.forward(constantBindings(graph, models.vision), graph.input('pixel_values', 'float32', clipPixels.shape));
        return { embeds: output.imageEmbeds! };
      }, { pixel_values: clipPixels });
      const directEmbeds = direct['embeds']!.data as Float32Array;
      for (let k = 0; k < 3; k++) {
        const row = directEmbeds.slice(k * 8, (k + 1) * 8);
        assert.ok(maxDifference(embeds[k]!, row.map((v) => v / norm(row))) < 1e-5, `image ${k}`);
      }
      const ids = BigInt64Array.from(texts.flatMap((text) => judges.clip.tokenizer.encode(text, { contextLength: 77, cleaning: 'basic' }).ids.map(BigInt)));
      const directText = (await run((graph) => ({ embeds: models.text.forward(constantBindings(graph, models.text), graph.input('input_ids', 'int64', [3, 77])).textEmbeds! }), { input_ids: { dtype: 'int64', shape: [3, 77], data: ids } }))['embeds']!.data as Float32Array;
      for (let k = 0; k < 3; k++) {
        const row = directText.slice(k * 8, (k + 1) * 8);
        assert.ok(maxDifference(textEmbeds[k]!, row.map((v) => v / norm(row))) < 1e-5, `text ${k}`);
      }
      const dinoPixels = await preprocessImages(images, dinoPreprocessing(32));
      assert.equal(dinoPreprocessing(32).resize, 37);
      const directCls = (await run((graph) => ({ cls: models.vit.forward(constantBindings(graph, models.vit), graph.input('pixel_values', 'float32', dinoPixels.shape)).clsFeature }), { pixel_values: dinoPixels }))['cls']!.data as Float32Array;
      for (let k = 0; k < 3; k++) assert.ok(maxDifference(features[k]!, directCls.slice(k * 16, (k + 1) * 16)) < 1e-5, `DINO ${k}`);
    } finally {
      await judges.close();
    }
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad judges folders are refused with one-line errors naming the problem', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'judges-bad-'));
  try {
    const good = join(directory, 'good');
    await writeTinyJudges(good);
    const variant = async (name: string, change: (dir: string) => Promise<void>) => {
      const dir = join(directory, name);
      await cp(good, dir, { recursive: true });
      await change(dir);
      return dir;
    };
    const noDino = await variant('no-dino', (dir) => rm(join(dir, 'dino'), { recursive: true }));
    await assert.rejects(loadJudges(noDino), /judges folder .*no-dino: dino\/ \(a transformers ViTModel folder\) is missing$/);
    await assert.rejects(loadJudges(join(directory, 'absent')), /judges folder .*absent does not exist/);

    const extraTensor = await variant('extra', async (dir) => {
      const file = join(dir, 'clip', 'model.safetensors');
      const tensors = await readSafetensors(file);
      tensors.set('text_model.embeddings.position_ids', { dtype: 'int64', shape: [1, 77], data: new BigInt64Array(77) }); // tolerated, as transformers does
      tensors.set('vision_model.head.weight', { dtype: 'float32', shape: [2], data: new Float32Array(2) });
      await writeSafetensors(file, tensors);
    });
    await assert.rejects(loadJudges(extraTensor), /CLIP judge .*: unexpected tensors in the checkpoint: vision_model\.head\.weight$/);

    const visionOnly = await variant('vision-only', async (dir) => {
      const file = join(dir, 'clip', 'model.safetensors');
      const tensors = await readSafetensors(file);
      for (const name of [...tensors.keys()]) if (name.startsWith('text')) tensors.delete(name);
      await writeSafetensors(file, tensors);
    });
    await assert.rejects(loadJudges(visionOnly), /CLIP judge text_model: .*missing tensors: text_model\./);

    const noTextConfig = await variant('no-text-config', async (dir) => {
      const path = join(dir, 'clip', 'config.json');
      const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
      delete config['text_config'];
      await writeFile(path, JSON.stringify(config));
    });
    await assert.rejects(loadJudges(noTextConfig), /is not a transformers CLIPModel config: it has no text_config/);

    const clipAsDino = await variant('clip-as-dino', async (dir) => {
      await rm(join(dir, 'dino'), { recursive: true });
      await cp(join(dir, 'clip'), join(dir, 'dino'), { recursive: true });
    });
    await assert.rejects(loadJudges(clipAsDino), /DINO judge: .*invalid ViT config: model_type: model_type must be 'vit'/);

    const tiny = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#fff' } }).png().toBuffer();
    const judges = await loadJudges(good, { threads: 1 });
    try {
      await assert.rejects(judges.clip.embedImages([Buffer.from('not an image')]), /cannot read the image/);
      assert.equal((await judges.dino.features([tiny])).length, 1); // upscaled, as torchvision would
    } finally {
      await judges.close();
    }
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
