// The DreamBench judges' training: the DINO judge's batches pair two views of each subject with a
// same-concept subject of another style, leave out the subjects it will judge, and its first
// logged loss is the symmetric InfoNCE computed here from the class tokens; its export loads as a
// DINO judge. CLIP-mini written as a transformers CLIPModel gives the same embeddings through the
// CLIP judge's loader, and reads back as the same parameters.
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/graph/runtime.js';
import { ClipJudge, DinoJudge } from '../../src/eval/judges.js';
import { saveClipModel } from '../../src/models/clip_model.js';
import { ViTModel } from '../../src/models/vit.js';
import { checkpointInitialized } from '../../src/nn/layers.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { CaptionedSceneStream } from '../../src/train/captioned-scenes.js';
import { latestCheckpoint, readCheckpointState } from '../../src/train/checkpoint.js';
import { clipStage, encodeCaptions } from '../../src/train/clip.js';
import { ClipMini, clipMiniAsTransformers, imagesToClipPixels } from '../../src/train/clip-model.js';
import { parseConfig } from '../../src/train/config.js';
import { ForwardSession } from '../../src/train/forward.js';
import { batchViews, conceptsWithTwoStyles, judgeDinoStage } from '../../src/train/judge-dino.js';
import { readStepLog } from '../../src/train/log.js';
import { runStage } from '../../src/train/runner.js';
import { openWorld } from '../../src/train/world-data.js';
import { Random } from '../../src/util/random.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const quiet = { threads: 1, progress: 'none' as const, report: () => undefined };
const environment = { device: 'cpu' as const, threads: 1, report: () => undefined };
const dinoConfig = parseConfig(judgeDinoStage.schema, JSON.parse(await readFile(join(root, 'configs/train/judge-dino-tiny.json'), 'utf8')), 'judge-dino-tiny.json');
const clipConfig = parseConfig(clipStage.schema, JSON.parse(await readFile(join(root, 'configs/train/clip-tiny.json'), 'utf8')), 'clip-tiny.json');
let scratch = '';

before(async () => {
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-judges-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

function floats(tensor: HostTensor): Float32Array {
  return tensor.data as Float32Array;
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  return a.reduce((worst, value, i) => Math.max(worst, Math.abs(value - b[i]!)), 0);
}

test('excluded subjects are never drawn; an unknown subject id is refused', async () => {
  const world = await openWorld(dinoConfig.data, dinoConfig.sceneSize, () => undefined);
  const stream = new CaptionedSceneStream(world, 1, ['train', 'heldout'], 0, { singleSubjectFraction: 1, shortCaptionFraction: 0, excludeSubjects: ['openmoji:cat'] });
  assert.ok(!stream.subjects.includes('openmoji:cat') && stream.subjects.includes('noto:cat'));
  assert.throws(() => stream.subjectScene('openmoji:cat', new Random(1)), /not among this stream's subjects/);
  for (let i = 0; i < 200; i++) assert.ok(stream.sample(i).spec.subjects.every((subject) => `${subject.style}:${subject.concept}` !== 'openmoji:cat'));
  assert.throws(() => new CaptionedSceneStream(world, 1, ['train'], 0, { singleSubjectFraction: 1, shortCaptionFraction: 0, excludeSubjects: ['openmoji:unicorn-cake'] }), /excludeSubjects names subjects this world does not have: openmoji:unicorn-cake/);
});

test('a DINO judge batch: B/4 concepts × 2 styles, every subject seen twice, a pure function of the step', async () => {
  const world = await openWorld(dinoConfig.data, dinoConfig.sceneSize, () => undefined);
  const stream = new CaptionedSceneStream(world, dinoConfig.data.seed, dinoConfig.data.splits, dinoConfig.data.splitSeed, dinoConfig.scenes);
  const groups = conceptsWithTwoStyles(stream);
  for (let step = 1; step <= 20; step++) {
    const { subjects, views } = batchViews(stream, groups, dinoConfig.data.seed, step, 16);
    assert.equal(views.length, 16);
    assert.equal(new Set(subjects).size, 8);
    const concepts = subjects.map((id) => id.split(':')[1]!);
    for (let k = 0; k < 8; k += 2) assert.equal(concepts[k], concepts[k + 1], 'subjects come in same-concept pairs');
    assert.equal(new Set(concepts).size, 4);
    assert.ok(!subjects.includes('openmoji:cat'));
  }
  const again = batchViews(stream, groups, dinoConfig.data.seed, 3, 16);
  assert.deepEqual(again, batchViews(stream, groups, dinoConfig.data.seed, 3, 16));
});

test('the DINO judge: first loss is the symmetric InfoNCE of the class tokens; the export loads as a DINO judge', { timeout: 120000 }, async () => {
  const instance = await judgeDinoStage.build(dinoConfig, environment);
  let expected: number;
  const model = new ViTModel(dinoConfig.model, { random: checkpointInitialized });
  try {
    const batch = await instance.batch(1);
    model.loadStateDict(instance.parameters);
    const forward = await ForwardSession.create(model, { pixel_values: { dtype: 'float32', shape: batch['pixel_values']!.shape } }, (context, inputs) => ({ cls: model.forward(context, inputs['pixel_values']!).clsFeature }));
    const cls = floats((await forward.run(instance.parameters, { pixel_values: batch['pixel_values']! }))['cls']!);
    await forward.release();
    const count = dinoConfig.batchSize;
    const dim = cls.length / count;
    const unit = Array.from({ length: count }, (_, b) => {
      const row = cls.slice(b * dim, (b + 1) * dim);
      const norm = Math.hypot(...row);
      return row.map((value) => value / norm);
    });
    const subjects = count / 2;
    const logit = (i: number, j: number) => unit[i]!.reduce((sum, value, k) => sum + value * unit[subjects + j]![k]!, 0) / dinoConfig.temperature;
    const crossEntropy = (rows: number[][]) => rows.reduce((sum, row, i) => sum + Math.log(row.reduce((total, value) => total + Math.exp(value), 0)) - row[i]!, 0) / rows.length;
    const logits = Array.from({ length: subjects }, (_, i) => Array.from({ length: subjects }, (_, j) => logit(i, j)));
    const transposed = logits.map((_, j) => logits.map((row) => row[j]!));
    expected = (crossEntropy(logits) + crossEntropy(transposed)) / 2;
  } finally {
    await instance.release();
  }
  const out = join(scratch, 'judge-dino');
  const summary = await runStage(judgeDinoStage, { out, configPath: join(root, 'configs/train/judge-dino-tiny.json'), ...quiet });
  assert.equal(summary.endStep, 4);
  const first = (await readStepLog(join(out, 'log.jsonl')))[0]!.loss;
  assert.ok(Math.abs(first - expected) <= 1e-4 * Math.max(1, expected), `logged ${first}, host ${expected}`);

  // The fp16 export is a ViTModel folder the DINO judge loads: its features are the trained parameters' to fp16 precision.
  const trained = (await readCheckpointState((await latestCheckpoint(join(out, 'checkpoints')))!)).parameters;
  const exported = join(scratch, 'dino');
  await judgeDinoStage.exportModel(dinoConfig, trained, exported);
  const runtime = await Runtime.create({ threads: 1 });
  const judge = await DinoJudge.load(exported, runtime);
  try {
    const pixels = (await judgeDinoStage.build(dinoConfig, environment).then(async (again) => {
      const batch = await again.batch(2);
      await again.release();
      return batch;
    }))['pixel_values']!;
    model.loadStateDict(trained);
    const forward = await ForwardSession.create(model, { pixel_values: { dtype: 'float32', shape: pixels.shape } }, (context, inputs) => ({ cls: model.forward(context, inputs['pixel_values']!).clsFeature }));
    const reference = floats((await forward.run(trained, { pixel_values: pixels }))['cls']!);
    await forward.release();
    const loaded = floats(await judge.featuresOfPixels(pixels as HostTensor<'float32'>));
    assert.ok(maxAbsDifference(loaded, reference) < 2e-2, `fp16 export differs by ${maxAbsDifference(loaded, reference)}`);
  } finally {
    await judge.close();
    await runtime.dispose();
  }
});

test('CLIP-mini as a transformers CLIPModel: the CLIP judge loader gives the same embeddings; the export reads back', { timeout: 120000 }, async () => {
  const random = new Random(3);
  const clipMini = new ClipMini(clipConfig.text, clipConfig.vision, clipConfig.embedDim, { random: { next: () => random.next() } });
  const side = clipConfig.vision.vision_cfg.image_size;
  const images = Array.from({ length: 3 }, () => ({ width: side, height: side, data: Uint8Array.from({ length: side * side * 4 }, () => Math.floor(random.next() * 256)) }));
  const captions = ['a noto cat on the left', 'a rocket', 'an emoji scene with a small twemoji dog in the centre'];
  const tokenizer = await ClipTokenizer.fromPretrained(join(root, clipConfig.tokenizer));
  const pixels = imagesToClipPixels(images);
  const forward = await ForwardSession.create(
    clipMini,
    { pixel_values: { dtype: 'float32', shape: pixels.shape }, input_ids: { dtype: 'int64', shape: [3, clipConfig.trainTokens] } },
    (context, inputs) => {
      const { imageEmbeds, textEmbeds } = clipMini.embed(context, inputs['pixel_values']!, inputs['input_ids']!);
      return { image: imageEmbeds, text: textEmbeds };
    },
  );
  const reference = await forward.run(clipMini.stateDict(), { pixel_values: pixels, input_ids: encodeCaptions(tokenizer, captions, clipConfig.trainTokens) });
  await forward.release();

  // float32: the same function under transformers' names.
  const { text, vision } = clipMiniAsTransformers(clipMini);
  const folder = join(scratch, 'clip-model');
  await saveClipModel(folder, text, vision);
  for (const file of ['vocab.json', 'merges.txt']) await cp(join(root, clipConfig.tokenizer, file), join(folder, file));
  const runtime = await Runtime.create({ threads: 1 });
  const judge = await ClipJudge.load(folder, runtime);
  try {
    const imageEmbeds = floats(await judge.embedPixels(pixels));
    const norms = [0, 1, 2].map((b) => Math.hypot(...imageEmbeds.slice(b * clipConfig.embedDim, (b + 1) * clipConfig.embedDim)));
    const normalised = imageEmbeds.map((value, k) => value / norms[Math.floor(k / clipConfig.embedDim)]!);
    assert.ok(maxAbsDifference(normalised, floats(reference['image']!)) < 1e-5);
    const textEmbeds = Float32Array.from((await judge.embedTexts(captions)).flatMap((row) => [...row]));
    assert.ok(maxAbsDifference(textEmbeds, floats(reference['text']!)) < 1e-5);
  } finally {
    await judge.close();
    await runtime.dispose();
  }

  // The stage's clip-model export (fp16) and its import: the same parameters to fp16 precision, the temperature left out.
  const config = { ...clipConfig, exportAs: 'clip-model' as const };
  const exported = join(scratch, 'clip-judge');
  await clipStage.exportModel(config, clipMini.stateDict(), exported);
  const imported = await clipStage.importModel(config, exported);
  const original = clipMini.stateDict();
  assert.deepEqual(Object.keys(imported).sort(), Object.keys(original).filter((key) => key !== 'logit_scale').sort());
  for (const [key, tensor] of Object.entries(imported)) {
    assert.deepEqual(tensor.shape, original[key]!.shape, key);
    assert.ok(maxAbsDifference(floats(tensor), floats(original[key]!)) < 1e-2, key);
  }
  const world = JSON.parse(await readFile(join(exported, 'world.json'), 'utf8')) as { concepts: string[] };
  assert.deepEqual(world.concepts, [...clipConfig.data.concepts!].sort());
});
