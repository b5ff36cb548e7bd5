// CLIP-mini: the graph's symmetric InfoNCE equals the loss computed on the host from the
// embeddings; a caption's embedding does not depend on the padded length (the causal encoder pools
// at the first end token), so training at `trainTokens` matches the pipeline's 77; the fp16 export
// loads back with the same embeddings; trainTextEncoder false leaves the text transformer as it was;
// a fine-tune may add the position head to a run that had none.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { inputBindings } from '../../src/nn/module.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { latestCheckpoint, readCheckpointState, readInitialParameters } from '../../src/train/checkpoint.js';
import { parseConfig } from '../../src/train/config.js';
import { runStage } from '../../src/train/runner.js';
import { clipStage, createEmbedder, encodeCaptions, scenePositionLabels } from '../../src/train/clip.js';
import { CaptionedSceneStream } from '../../src/train/captioned-scenes.js';
import { POSITIONS } from '../../src/world/vocabulary.js';
import { testWorld } from '../world/fixture.js';
import { ClipMini, imagesToClipPixels } from '../../src/train/clip-model.js';
import { Random } from '../../src/util/random.js';
import type { RgbaImage } from '../../src/world/image.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const config = parseConfig(clipStage.schema, JSON.parse(await readFile(join(root, 'configs/train/clip-tiny.json'), 'utf8')), 'clip-tiny.json');
const tokenizer = await ClipTokenizer.fromPretrained(join(root, config.tokenizer));
let scratch = '';

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-clip-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

function randomModel(seed: number): ClipMini {
  const random = new Random(seed);
  return new ClipMini(config.text, config.vision, config.embedDim, { random: { next: () => random.next() } });
}

function noiseImages(count: number, seed: number): RgbaImage[] {
  const random = new Random(seed);
  const side = config.vision.vision_cfg.image_size;
  return Array.from({ length: count }, () => ({ width: side, height: side, data: Uint8Array.from({ length: side * side * 4 }, () => Math.floor(random.next() * 256)) }));
}

const captions = ['a noto cat on the left', 'a red apple at the top, on a blue background', 'a rocket', 'an emoji scene with a small twemoji dog in the centre'];

interface ExtraTerms {
  twinPairWeights?: number[];
  /** Position labels (−100: none) for images and captions, and the weight of the position loss. */
  positions?: { image: number[]; caption: number[]; weight: number };
}

/**
 * The graph's contrastive loss on the captions and noise images, the (B, B) logits computed on the
 * host from the embeddings, and the embeddings themselves.
 */
async function graphLossAndHostLogits(model: ClipMini, extra: ExtraTerms = {}): Promise<{ graphLoss: number; logits: number[][]; image: Float32Array; text: Float32Array }> {
  const pixels = imagesToClipPixels(noiseImages(captions.length, 2));
  const ids = encodeCaptions(tokenizer, captions, config.trainTokens);
  const labels = { dtype: 'int64' as const, shape: [captions.length], data: BigInt64Array.from(captions.map((_, i) => BigInt(i))) };
  const weights = extra.twinPairWeights && { dtype: 'float32' as const, shape: [extra.twinPairWeights.length], data: Float32Array.from(extra.twinPairWeights) };
  const labelTensor = (values: number[]) => ({ dtype: 'int64' as const, shape: [values.length], data: BigInt64Array.from(values.map(BigInt)) });
  const positions = extra.positions && { image_positions: labelTensor(extra.positions.image), caption_positions: labelTensor(extra.positions.caption) };
  const graph = new Graph('loss');
  const context = inputBindings(graph, model);
  const inputs = {
    pixel_values: graph.input('pixel_values', 'float32', pixels.shape),
    input_ids: graph.input('input_ids', 'int64', ids.shape),
    labels: graph.input('labels', 'int64', labels.shape),
  };
  const weightsInput = weights && graph.input('twin_pair_weights', 'float32', weights.shape);
  const positionInputs = positions && { imagePositions: graph.input('image_positions', 'int64', [captions.length]), captionPositions: graph.input('caption_positions', 'int64', [captions.length]) };
  const loss = model.contrastiveLoss(
    context,
    { pixelValues: inputs.pixel_values, inputIds: inputs.input_ids, labels: inputs.labels, ...(weightsInput ? { twinPairWeights: weightsInput } : {}), ...positionInputs },
    extra.positions?.weight,
  );
  const session = await GraphSession.create(encodeModel(graph.toModel({ loss }, { keepInputs: graph.inputs })));
  const graphLoss = Number((await session.run({ ...model.stateDict(), pixel_values: pixels, input_ids: ids, labels, ...(weights ? { twin_pair_weights: weights } : {}), ...positions }))['loss']!.data[0]);
  await session.release();

  const embedder = await createEmbedder(model, captions.length, config.trainTokens);
  const out = await embedder.run(model.stateDict(), { pixel_values: pixels, input_ids: ids });
  await embedder.release();
  const n = captions.length;
  const image = out['image_embeds']!.data as Float32Array;
  const text = out['text_embeds']!.data as Float32Array;
  const dim = image.length / n;
  const scale = Math.exp(model.logit_scale.data.data[0] as number);
  const logits = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, t) => scale * image.slice(i * dim, (i + 1) * dim).reduce((s, v, k) => s + v * text[t * dim + k]!, 0)));
  return { graphLoss, logits, image, text };
}

/** Mean over rows of −log softmax(row)[i] for row i. */
const hostCrossEntropy = (rows: number[][]) => rows.reduce((total, row, i) => total - (row[i]! - Math.log(row.reduce((s, v) => s + Math.exp(v), 0))), 0) / rows.length;
const transposed = (matrix: number[][]) => matrix.map((_, t) => matrix.map((row) => row[t]!));
const symmetricInfoNce = (logits: number[][]) => (hostCrossEntropy(logits) + hostCrossEntropy(transposed(logits))) / 2;

test('the graph loss is the symmetric InfoNCE of the embeddings', async () => {
  const { graphLoss, logits } = await graphLossAndHostLogits(randomModel(1));
  const expected = symmetricInfoNce(logits);
  assert.ok(Math.abs(graphLoss - expected) < 1e-4, `graph ${graphLoss} vs host ${expected}`);
});

test("the twin-pair term adds each weighted pair's own 2×2 InfoNCE", async () => {
  const weights = [3, 0];
  const { graphLoss, logits } = await graphLossAndHostLogits(randomModel(1), { twinPairWeights: weights });
  // Pair k's block: rows and columns 2k, 2k + 1; symmetricInfoNce averages its 2 + 2 terms.
  const pairTerms = weights.map((weight, k) => weight * symmetricInfoNce([0, 1].map((i) => [0, 1].map((t) => logits[2 * k + i]![2 * k + t]!))));
  const expected = symmetricInfoNce(logits) + pairTerms.reduce((p, q) => p + q, 0) / weights.length;
  assert.ok(Math.abs(graphLoss - expected) < 1e-4, `graph ${graphLoss} vs host ${expected}`);
  assert.ok(pairTerms[0]! > 0.1, 'the weighted pair contributes');
});

test('the position term is the weighted cross-entropy of the shared prototypes on both embeddings, labels −100 left out', async () => {
  const random = new Random(5);
  const model = new ClipMini(config.text, config.vision, config.embedDim, { random: { next: () => random.next() }, positionHead: true });
  const positions = { image: [5, -100, 0, 8], caption: [5, -100, -100, 8], weight: 0.7 };
  const { graphLoss, logits, image, text } = await graphLossAndHostLogits(model, { positions });
  const raw = model.position_prototypes!.data;
  const [classes, dim] = raw.shape as [number, number];
  const prototypes = Array.from({ length: classes }, (_, c) => {
    const row = Array.from(raw.data as Float32Array).slice(c * dim, (c + 1) * dim);
    const norm = Math.hypot(...row);
    return row.map((v) => v / norm);
  });
  const scale = Math.exp(model.logit_scale.data.data[0] as number);
  // Mean over labelled rows of −log softmax(scale · prototypes · e)[label].
  const prototypeCrossEntropy = (embeds: Float32Array, labels: number[]) => {
    const kept = labels.map((label, b) => [label, b] as const).filter(([label]) => label >= 0);
    const terms = kept.map(([label, b]) => {
      const scores = prototypes.map((prototype) => scale * prototype.reduce((total, v, k) => total + v * embeds[b * dim + k]!, 0));
      return -(scores[label]! - Math.log(scores.reduce((total, score) => total + Math.exp(score), 0)));
    });
    return terms.reduce((p, q) => p + q, 0) / kept.length;
  };
  const expected = symmetricInfoNce(logits) + (positions.weight / 2) * (prototypeCrossEntropy(image, positions.image) + prototypeCrossEntropy(text, positions.caption));
  assert.ok(Math.abs(graphLoss - expected) < 1e-4, `graph ${graphLoss} vs host ${expected}`);
});

test('caption embeddings do not depend on the padded length, and the fp16 export loads back', async () => {
  const model = randomModel(3);
  const images = noiseImages(captions.length, 4);
  const pixels = imagesToClipPixels(images);
  const embed = async (clip: ClipMini, tokens: number) => {
    const embedder = await createEmbedder(clip, captions.length, tokens);
    try {
      return await embedder.run(clip.stateDict(), { pixel_values: pixels, input_ids: encodeCaptions(tokenizer, captions, tokens) });
    } finally {
      await embedder.release();
    }
  };
  const short = await embed(model, config.trainTokens);
  const full = await embed(model, config.text.max_position_embeddings);
  const maxDifference = (a: Float32Array, b: Float32Array) => a.reduce((worst, value, k) => Math.max(worst, Math.abs(value - b[k]!)), 0);
  assert.ok(maxDifference(short['text_embeds']!.data as Float32Array, full['text_embeds']!.data as Float32Array) < 1e-5);

  await model.export(join(scratch, 'text_encoder'), join(scratch, 'vision'));
  const loaded = await ClipMini.load(join(scratch, 'text_encoder'), join(scratch, 'vision'));
  const reloaded = await embed(loaded, config.text.max_position_embeddings);
  for (const name of ['image_embeds', 'text_embeds']) {
    const difference = maxDifference(reloaded[name]!.data as Float32Array, full[name]!.data as Float32Array);
    assert.ok(difference > 0 && difference < 2e-2, `${name}: fp16 round trip differs by ${difference}`);
  }
});

test('trainTextEncoder false trains the vision side and projections, not the text transformer', async () => {
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
  const json = JSON.parse(await readFile(join(root, 'configs/train/clip-tiny.json'), 'utf8')) as Record<string, unknown>;
  const visionOnly = { ...json, tokenizer: join(root, config.tokenizer), trainTextEncoder: false, steps: 2, checkpointEvery: 2, sampleEvery: 0 };
  const configPath = join(scratch, 'vision-only.json');
  await writeFile(configPath, JSON.stringify(visionOnly));
  // The initial parameters are a pure function of the config.
  const instance = await clipStage.build(parseConfig(clipStage.schema, visionOnly, 'vision-only'), { device: 'cpu', threads: 1, report: () => undefined });
  await instance.release();
  const out = join(scratch, 'vision-only');
  await runStage(clipStage, { out, configPath, threads: 1, progress: 'none', report: () => undefined });
  const { parameters } = await readCheckpointState((await latestCheckpoint(join(out, 'checkpoints')))!);
  const changed = (key: string) => Buffer.compare(Buffer.from((parameters[key]!.data as Float32Array).buffer), Buffer.from((instance.parameters[key]!.data as Float32Array).buffer)) !== 0;
  const keys = Object.keys(parameters);
  assert.deepEqual(keys.filter((key) => key.startsWith('text.') && changed(key)), []);
  for (const prefix of ['vision.', 'visual_projection', 'text_projection']) assert.ok(keys.some((key) => key.startsWith(prefix) && changed(key)), `no ${prefix} tensor changed`);
});

test('a fine-tune from a run or from an exported model without the position head starts its prototypes fresh and takes every other tensor from the source', async () => {
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
  const json = JSON.parse(await readFile(join(root, 'configs/train/clip-tiny.json'), 'utf8')) as Record<string, unknown>;
  const plain = { ...json, tokenizer: join(root, config.tokenizer), steps: 1, checkpointEvery: 1, sampleEvery: 0 };
  const configPath = join(scratch, 'plain.json');
  await writeFile(configPath, JSON.stringify(plain));
  const source = join(scratch, 'plain');
  await runStage(clipStage, { out: source, configPath, threads: 1, progress: 'none', report: () => undefined });
  const trained = (await readCheckpointState((await latestCheckpoint(join(source, 'checkpoints')))!)).parameters;

  const headConfig = parseConfig(clipStage.schema, { ...plain, initFrom: source, positionLossWeight: 1 }, 'with-head');
  const withHead = await clipStage.build(headConfig, { device: 'cpu', threads: 1, report: () => undefined });
  await withHead.release();
  assert.deepEqual(withHead.addedByFineTune, ['position_prototypes']);
  const sourceRules = { addedByFineTune: withHead.addedByFineTune!, importModel: (directory: string) => clipStage.importModel(headConfig, directory) };
  const { parameters, keptInitial } = await readInitialParameters(source, 'clip', withHead.parameters, sourceRules);
  assert.deepEqual(keptInitial, ['position_prototypes']);
  assert.equal(parameters['position_prototypes'], withHead.parameters['position_prototypes']);
  for (const key of Object.keys(trained)) assert.deepEqual(parameters[key], trained[key], key);
  // Without the stage's permission a missing tensor is still an error.
  await assert.rejects(readInitialParameters(source, 'clip', withHead.parameters, { importModel: sourceRules.importModel }), /missing position_prototypes/);

  // From the exported (float16) model: the temperature is training-only, so it starts fresh too.
  const exported = join(scratch, 'plain-export');
  await clipStage.exportModel(parseConfig(clipStage.schema, plain, 'plain'), trained, exported);
  const fromExport = await readInitialParameters(exported, 'clip', withHead.parameters, { ...sourceRules, trainingOnly: withHead.trainingOnly! });
  assert.deepEqual(fromExport.keptInitial.sort(), ['logit_scale', 'position_prototypes']);
  for (const key of Object.keys(trained).filter((name) => name !== 'logit_scale')) {
    const values = trained[key]!.data as Float32Array;
    const read = fromExport.parameters[key]!.data as Float32Array;
    const worst = values.reduce((most, value, i) => Math.max(most, Math.abs(value - read[i]!) / Math.max(Math.abs(value), 1e-3)), 0);
    assert.ok(worst < 1e-3, `${key}: float16 round trip off by ${worst}`);
  }
  await assert.rejects(readInitialParameters(exported, 'clip', withHead.parameters, sourceRules), /missing logit_scale/);
  await assert.rejects(readInitialParameters(join(scratch, 'nowhere'), 'clip', withHead.parameters, sourceRules), /nowhere is neither a checkpoint folder, a run folder with checkpoints nor a 'clip' model folder/);
});

test("position labels: the single subject's position for its image, and for its caption where the caption names it", async () => {
  const world = await testWorld();
  const singles = new CaptionedSceneStream(world, 3, ['train'], 0, { singleSubjectFraction: 1, shortCaptionFraction: 0.5 });
  const scenes = Array.from({ length: 16 }, (_, i) => singles.sample(i));
  const { image_positions: imageLabels, caption_positions: captionLabels } = scenePositionLabels(scenes);
  let bare = 0;
  scenes.forEach((scene, b) => {
    const position = BigInt(POSITIONS.indexOf(scene.spec.subjects[0]!.position));
    assert.equal(imageLabels.data[b], position);
    // Bare-subject captions ("a cat", "a noto cat") name no position.
    const isBare = scene.caption.split(' ').length <= 3;
    if (isBare) bare++;
    assert.equal(captionLabels.data[b], isBare ? -100n : position, scene.caption);
  });
  assert.ok(bare > 0 && bare < 16, `${bare} of 16 captions are bare`);
  const several = new CaptionedSceneStream(world, 3, ['train'], 0, { singleSubjectFraction: 0, shortCaptionFraction: 0 });
  const crowded = Array.from({ length: 16 }, (_, i) => several.sample(i)).filter((scene) => scene.spec.subjects.length > 1);
  assert.ok(crowded.length > 0);
  const labels = scenePositionLabels(crowded);
  assert.ok([...labels.image_positions.data, ...labels.caption_positions.data].every((label) => label === -100n));
});
