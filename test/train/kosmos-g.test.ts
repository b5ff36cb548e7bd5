// The three Kosmos-G stages on the tiny chain: each stage's first logged loss equals the loss
// computed here from independent forward passes on the same batch (stage 3 through the inference
// pipeline's condition model); only the trainable parameters move, the frozen ones stay
// bit-identical; the mixture, the null-condition rate and the data splits are what the paper says.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/graph/runtime.js';
import { AlignerNet } from '../../src/models/aligner.js';
import { UNet2DConditionModel } from '../../src/models/unet_2d_condition.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { KosmosGConditionModel } from '../../src/pipeline/condition_model.js';
import { latestCheckpoint, readCheckpointState } from '../../src/train/checkpoint.js';
import { parseConfig } from '../../src/train/config.js';
import { ForwardSession } from '../../src/train/forward.js';
import { kosmosAlignStage } from '../../src/train/kosmos-align.js';
import { KosmosGNetworks } from '../../src/train/kosmos-g-networks.js';
import { kosmosInstructStage, stepDraws, stepSource } from '../../src/train/kosmos-instruct.js';
import { kosmosLmStage, lmSequenceKind } from '../../src/train/kosmos-lm.js';
import { readStepLog } from '../../src/train/log.js';
import { runStage } from '../../src/train/runner.js';
import type { StageDefinition } from '../../src/train/stage.js';
import type { BaseConfig } from '../../src/train/config.js';
import { checkpointInitialized } from '../../src/nn/layers.js';
import { createTinyChain, type TinyChain } from './kosmos-g-tiny.js';

let scratch = '';
let chain: TinyChain;
const quiet = { threads: 1, progress: 'none' as const, report: () => undefined };
const environment = { device: 'cpu' as const, threads: 1, report: () => undefined };

before(async () => {
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-stages-'));
  chain = await createTinyChain(scratch, { dropout: 0 });
});
after(async () => rm(scratch, { recursive: true, force: true }));

async function configOf<C extends BaseConfig>(stage: StageDefinition<C>): Promise<C> {
  const path = chain.configs[stage.name as keyof TinyChain['configs']];
  return parseConfig(stage.schema, JSON.parse(await readFile(path, 'utf8')), path);
}

function floats(tensor: HostTensor): Float32Array {
  return tensor.data as Float32Array;
}

function meanSquaredDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let total = 0;
  for (let i = 0; i < a.length; i++) total += (a[i]! - b[i]!) ** 2;
  return total / a.length;
}

/** Trains the stage's tiny config for its 4 steps; checks what moved; returns the first logged loss. */
async function trainAndCheckParameters<C extends BaseConfig>(stage: StageDefinition<C>, initial: Readonly<Record<string, HostTensor>>, trainable: readonly string[] | undefined): Promise<number> {
  const out = join(scratch, stage.name);
  const summary = await runStage(stage, { out, configPath: chain.configs[stage.name as keyof TinyChain['configs']], ...quiet });
  assert.equal(summary.endStep, 4);
  assert.ok((await stat(join(out, 'samples', 'step-00000004.png'))).size > 0, 'sample grid written');
  const final = (await readCheckpointState((await latestCheckpoint(join(out, 'checkpoints')))!)).parameters;
  const trained = new Set(trainable ?? Object.keys(initial));
  for (const [key, tensor] of Object.entries(initial)) {
    const same = Buffer.compare(Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength), Buffer.from(final[key]!.data.buffer, final[key]!.data.byteOffset, final[key]!.data.byteLength)) === 0;
    assert.equal(same, !trained.has(key), `${key} is ${trained.has(key) ? 'trainable and must change' : 'frozen and must stay bit-identical'}`);
  }
  return (await readStepLog(join(out, 'log.jsonl')))[0]!.loss;
}

test('stage 1: the LM loss is the cross-entropy of the text targets; only the MLLM, connector, last vision block and ln_post train', { timeout: 180000 }, async () => {
  const config = await configOf(kosmosLmStage);
  const instance = await kosmosLmStage.build(config, environment);
  let expected: number;
  try {
    const batch = await instance.batch(1);
    const networks = new KosmosGNetworks({ vision: JSON.parse(await readFile(join(chain.pipeline, 'vision', 'config.json'), 'utf8')), connector: config.connector, mllm: config.mllm }, checkpointInitialized);
    networks.loadStateDict(instance.parameters);
    const specs = Object.fromEntries(Object.entries(batch).map(([name, tensor]) => [name, { dtype: tensor.dtype, shape: tensor.shape }]));
    const forward = await ForwardSession.create(networks, specs, (context, inputs) => ({
      logits: networks.mllm.logits(context, networks.hiddenStates(context, { tokens: inputs['tokens']!, imageMask: inputs['image_mask']!, pixels: inputs['pixel_values']! })),
    }));
    const logits = floats((await forward.run(instance.parameters, batch))['logits']!);
    await forward.release();
    const targets = batch['targets']!.data as BigInt64Array;
    const vocabulary = config.mllm.vocab_size;
    let [total, count] = [0, 0];
    targets.forEach((target, position) => {
      if (target === 1n) return;
      const row = logits.subarray(position * vocabulary, (position + 1) * vocabulary);
      const top = Math.max(...row);
      const logSum = top + Math.log(row.reduce((sum, value) => sum + Math.exp(value - top), 0));
      total += logSum - row[Number(target)]!;
      count++;
    });
    expected = total / count;
    // Targets skip image positions: no target is an image token, and the mask slots are never targets' sources of text.
    assert.ok(count > 0 && count < targets.length);
  } finally {
    await instance.release();
  }
  const first = await trainAndCheckParameters(kosmosLmStage, instance.parameters, instance.trainable);
  assert.ok(Math.abs(first - expected) <= 1e-4 * Math.max(1, expected), `logged ${first}, host ${expected}`);
  assert.ok(instance.trainable!.some((key) => key.startsWith('img_model.visual.ln_post.')) && !instance.trainable!.includes('img_model.visual.conv1.weight'));
});

test('stage 1 scales the initial connector dense weight by connectorDenseInitGain, and nothing else', { timeout: 60000 }, async () => {
  const config = await configOf(kosmosLmStage);
  const plain = await kosmosLmStage.build(config, environment);
  const scaled = await kosmosLmStage.build({ ...config, connectorDenseInitGain: 4 }, environment);
  try {
    for (const [key, tensor] of Object.entries(plain.parameters)) {
      const expected = key === 'img_connector.dense.weight' ? floats(tensor).map((value) => Math.fround(value * 4)) : floats(tensor);
      assert.deepEqual(floats(scaled.parameters[key]!), expected, key);
    }
  } finally {
    await Promise.all([plain.release(), scaled.release()]);
  }
});

test('stage 1 mixes captions, image → caption and interleaved sequences 1 : 2 : 2', async () => {
  const config = await configOf(kosmosLmStage);
  const counts = { caption: 0, imageCaption: 0, interleaved: 0 };
  const draws = 10000;
  for (let index = 0; index < draws; index++) counts[lmSequenceKind(config, index)]++;
  assert.ok(Math.abs(counts.caption / draws - 0.2) < 0.02 && Math.abs(counts.imageCaption / draws - 0.4) < 0.02 && Math.abs(counts.interleaved / draws - 0.4) < 0.02, JSON.stringify(counts));
});

test('stage 2: the loss is MSE to the CLIP text states plus the reconstruction of the MLLM states · 77 / L; only the aligner trains', { timeout: 180000 }, async () => {
  const config = await configOf(kosmosAlignStage);
  const instance = await kosmosAlignStage.build(config, environment);
  let expected: number;
  try {
    const batch = await instance.batch(1);
    const aligner = new AlignerNet(config.aligner, { init: null, reconstruction: true });
    aligner.loadStateDict(Object.fromEntries(Object.entries(instance.parameters).map(([key, tensor]) => [key.slice('aligner.'.length), tensor])));
    const length = config.sequenceLength;
    const forward = await ForwardSession.create(
      aligner,
      { states: { dtype: 'float32', shape: batch['states']!.shape }, padding: { dtype: 'bool', shape: batch['padding']!.shape } },
      (context, { states, padding }) => {
        const aligned = aligner.forward(context, states!, padding!);
        return { aligned, reconstruction: aligner.reconstruct(context, aligned, length) };
      },
    );
    const outputs = await forward.run(aligner.stateDict(), { states: batch['states']!, padding: batch['padding']! });
    await forward.release();
    expected = meanSquaredDifference(floats(outputs['aligned']!), floats(batch['clip_states']!)) + (meanSquaredDifference(floats(outputs['reconstruction']!), floats(batch['states']!)) * 77) / length;
    // The states are the MLLM's of `<s> caption` rows: every row starts with <s> and pads to the right.
    const tokens = batch['padding']!.data as Uint8Array;
    for (let row = 0; row < config.batchSize; row++) assert.equal(tokens[row * length], 0, 'position 0 (<s>) is not padding');
  } finally {
    await instance.release();
  }
  const first = await trainAndCheckParameters(kosmosAlignStage, instance.parameters, instance.trainable);
  assert.ok(Math.abs(first - expected) <= 1e-4 * Math.max(1, expected), `logged ${first}, host ${expected}`);
});

test('stage 2 refuses data from the held-out split', async () => {
  const json = JSON.parse(await readFile(chain.configs['kosmos-align'], 'utf8')) as { data: Record<string, unknown> };
  assert.throws(() => parseConfig(kosmosAlignStage.schema, { ...json, data: { ...json.data, splits: ['train', 'heldout'] } }, 'config'), /train split only/);
  const instruct = JSON.parse(await readFile(chain.configs['kosmos-instruct'], 'utf8')) as { data: Record<string, unknown> };
  assert.throws(() => parseConfig(kosmosInstructStage.schema, { ...instruct, data: { ...instruct.data, splits: ['heldout'] } }, 'config'), /train split only/);
});

test('stage 3: the loss is the ε-MSE of the frozen U-Net on M(MLLM(prompt)) or the null condition; the U-Net and the early vision blocks stay frozen', { timeout: 240000 }, async () => {
  const config = await configOf(kosmosInstructStage);
  const instance = await kosmosInstructStage.build(config, environment);
  let expected: number;
  const runtime = await Runtime.create({ threads: 1 });
  try {
    const batch = await instance.batch(1);
    // The inference pipeline's own condition model on the same folder computes the conditions.
    const conditionModel = await KosmosGConditionModel.fromPipelineFolder(chain.pipeline, { runtime });
    const mask = batch['image_mask']!.data as Uint8Array;
    const used = mask.reduce((count, flag) => count + flag, 0);
    const allLatents = await conditionModel.imageLatents(batch['pixel_values']!);
    const latents: HostTensor = { dtype: 'float32', shape: [used, allLatents.shape[1]!], data: floats(allLatents).slice(0, used * allLatents.shape[1]!) };
    const { condition } = await conditionModel.encodeTokens(batch['tokens']!, used > 0 ? { mask: batch['image_mask']!, latents } : undefined);
    const { condition: unconditional } = await conditionModel.encodeTokens({ dtype: 'int64', shape: [1, 1], data: BigInt64Array.of(0n) });
    const perRow = condition.shape[1]! * condition.shape[2]!;
    const useNull = batch['use_null']!.data as Uint8Array;
    const mixed = floats(condition).slice();
    useNull.forEach((flag, row) => flag && mixed.set(floats(unconditional), row * perRow));
    const unet = await UNet2DConditionModel.fromPretrained(join(chain.pipeline, 'unet'));
    const forward = await ForwardSession.create(
      unet,
      { sample: { dtype: 'float32', shape: batch['noisy_latents']!.shape }, timesteps: { dtype: 'float32', shape: batch['timesteps']!.shape }, hidden: { dtype: 'float32', shape: condition.shape } },
      (context, { sample, timesteps, hidden }) => ({ prediction: unet.forward(context, sample!, timesteps!, hidden!) }),
    );
    const { prediction } = await forward.run(unet.stateDict(), { sample: batch['noisy_latents']!, timesteps: batch['timesteps']!, hidden: { dtype: 'float32', shape: condition.shape, data: mixed } });
    await forward.release();
    expected = meanSquaredDifference(floats(prediction!), floats(batch['noise']!));
  } finally {
    await runtime.dispose();
    await instance.release();
  }
  const first = await trainAndCheckParameters(kosmosInstructStage, instance.parameters, instance.trainable);
  assert.ok(Math.abs(first - expected) <= 1e-4 * Math.max(1, expected), `logged ${first}, host ${expected}`);
  assert.ok(instance.trainable!.some((key) => key.startsWith('aligner.')) && !instance.trainable!.some((key) => key.startsWith('diffusion_unet.')));

  // The export is a complete Kosmos-G pipeline folder.
  const exported = join(scratch, 'exported');
  const final = (await readCheckpointState((await latestCheckpoint(join(scratch, 'kosmos-instruct', 'checkpoints')))!)).parameters;
  await kosmosInstructStage.exportModel(config, final, exported);
  const index = JSON.parse(await readFile(join(exported, 'model_index.json'), 'utf8')) as Record<string, unknown>;
  for (const component of ['tokenizer', 'vision', 'connector', 'mllm', 'aligner', 'unet', 'vae', 'scheduler']) assert.ok(component in index && (await stat(join(exported, component))).isDirectory(), component);
});

test('stage 3 draws t2i : edit : compose = 1 : 2 : 2 per step and the null condition for 10 % of samples', async () => {
  const config = await configOf(kosmosInstructStage);
  const counts = { t2i: 0, edit: 0, compose: 0 };
  const steps = 10000;
  for (let step = 1; step <= steps; step++) counts[stepSource(config, step)]++;
  assert.ok(Math.abs(counts.t2i / steps - 0.2) < 0.02 && Math.abs(counts.edit / steps - 0.4) < 0.02 && Math.abs(counts.compose / steps - 0.4) < 0.02, JSON.stringify(counts));
  let nulls = 0;
  const draws = { ...config, batchSize: 16 };
  for (let step = 1; step <= 2000; step++) nulls += stepDraws(draws, step, 1000).useNull.reduce((count, flag) => count + flag, 0);
  assert.ok(Math.abs(nulls / 32000 - 0.1) < 0.006, `null rate ${nulls / 32000}`);
  const timesteps = stepDraws(draws, 1, 1000).timesteps;
  assert.ok(timesteps.every((t) => Number.isInteger(t) && t >= 0 && t < 1000));
});
