import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { normalTensor } from '../../src/nn/layers.js';
import { constantBindings, contextFromValues } from '../../src/nn/module.js';
import { TrainingStep } from '../../src/graph/train-step.js';
import { mseLoss } from '../../src/graph/ops/nn.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/03_kosmosg_vision.js';
import { OpenClipVisionModel, type OpenClipVisionConfig, parseOpenClipVisionConfig } from '../../src/models/openclip_vision.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = resolve('../shared/fixtures');

const tinyConfig = (vision: Record<string, unknown> = {}): OpenClipVisionConfig =>
  parseOpenClipVisionConfig({ embed_dim: 4, quick_gelu: true, vision_cfg: { image_size: 8, patch_size: 4, width: 8, layers: 2, head_width: 4, mlp_ratio: 2, ...vision } });

test('parity with the official Kosmos-G vision tower (fixture 03), from both the official and the open_clip layout', async () => {
  const rows = await runCase(await loadFixture(fixtures, '03_kosmosg_vision'));
  assert.equal(rows.length, 10);
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

// onnxruntime's CPU Conv kernel is float-only, so the patch convolution makes this a float32 check.
test('gradients of the Kosmos-G vision tower match finite differences (float32)', async (t) => {
  const random = new Random(21);
  const model = new OpenClipVisionModel(tinyConfig(), { random });
  const figures = await checkGradients({
    model,
    inputs: { pixel_values: normalTensor(random, [2, 3, 8, 8]) },
    outputs: (context, { pixel_values }) => [model.forward(context, pixel_values!).features],
    tensors: [
      'visual.conv1.weight',
      'visual.class_embedding',
      'visual.positional_embedding',
      'visual.ln_pre.bias',
      'visual.transformer.resblocks.0.ts_attn.k_proj.weight',
      'visual.transformer.resblocks.1.ts_attn.out_proj.bias',
      'visual.transformer.resblocks.1.mlp.c_fc.weight',
      'visual.ln_post.weight',
      'pixel_values',
    ],
    elementsPerTensor: 3,
    step: 3e-3,
    tolerance: 2e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});

async function runFeatures(model: OpenClipVisionModel, pixels: HostTensor): Promise<Float32Array> {
  const graph = new Graph();
  const output = model.forward(constantBindings(graph, model), graph.input('pixel_values', 'float32', pixels.shape));
  const session = await GraphSession.create(encodeModel(graph.toModel({ features: output.features })));
  try {
    return (await session.run({ pixel_values: pixels }))['features']!.data as Float32Array;
  } finally {
    await session.release();
  }
}

test('features are unit-length tokens; only the last block and ln_post train under Kosmos-G freezing', async () => {
  const model = new OpenClipVisionModel(tinyConfig(), { random: new Random(2) });
  const features = await runFeatures(model, normalTensor(new Random(3), [1, 3, 8, 8]));
  for (let token = 0; token < 5; token++) {
    const norm = Math.hypot(...features.subarray(token * 8, (token + 1) * 8));
    assert.ok(Math.abs(norm - 1) < 1e-5, `token ${token} has norm ${norm}`);
  }
  model.freezeAsKosmosG();
  const trainable = model.namedParameters().filter(([, parameter]) => parameter.trainable).map(([key]) => key);
  assert.ok(trainable.length > 0 && trainable.every((key) => key.startsWith('visual.transformer.resblocks.1.') || key.startsWith('visual.ln_post.')), trainable.join());
  assert.equal(trainable.length, 16 + 2); // ln_1, ts_attn q/k/v/out, ln_2, mlp c_fc/c_proj (weights and biases); ln_post
});

test('a training step with the Kosmos-G freezing updates only the last block and ln_post, and lowers the loss', async () => {
  const model = new OpenClipVisionModel(tinyConfig(), { random: new Random(31) });
  model.freezeAsKosmosG();
  const parameters = model.stateDict();
  const trainable = model.namedParameters().filter(([, parameter]) => parameter.trainable).map(([key]) => key);
  const step = await TrainingStep.create({
    parameters,
    trainable,
    batch: { pixel_values: { dtype: 'float32', shape: [2, 3, 8, 8] }, target: { dtype: 'float32', shape: [2, 5, 8] } },
    loss: ({ graph, parameters: values, batch }) => mseLoss(model.forward(contextFromValues(graph, model, values), batch['pixel_values']!).features, batch['target']!),
    optimizer: { kind: 'adamw' },
    schedule: { kind: 'constant', learningRate: 1e-2 },
    session: { threads: 1 },
  });
  try {
    const batch = { pixel_values: normalTensor(new Random(32), [2, 3, 8, 8]), target: normalTensor(new Random(33), [2, 5, 8], 0.3) };
    const losses = [];
    for (let index = 0; index < 5; index++) losses.push((await step.run(batch)).loss);
    assert.ok(losses.at(-1)! < losses[0]!, `losses ${losses.join(', ')}`);
    const after = (await step.state()).parameters;
    for (const [key, before] of Object.entries(parameters)) {
      const changed = (after[key]!.data as Float32Array).some((value, i) => value !== before.data[i]);
      assert.equal(changed, trainable.includes(key), key);
    }
  } finally {
    await step.release();
  }
});

test('loads Kosmos-G checkpoints (img_model. prefix) and stock open_clip checkpoints; strict within visual.', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'openclip-vision-'));
  try {
    const model = new OpenClipVisionModel(tinyConfig(), { random: new Random(4) });
    await model.save(directory);
    const pixels = normalTensor(new Random(5), [2, 3, 8, 8]);
    const expected = await runFeatures(model, pixels);
    const state = model.stateDict();

    // A full Kosmos-G checkpoint: the tower under img_model., other components beside it.
    const kosmos: Record<string, HostTensor> = { 'gpt_model.decoder.layer_norm.weight': normalTensor(new Random(6), [3]) };
    for (const [key, tensor] of Object.entries(state)) kosmos[`img_model.${key}`] = tensor;
    await writeSafetensors(join(directory, 'kosmos.safetensors'), kosmos);
    assert.deepEqual(await runFeatures(await OpenClipVisionModel.fromPretrained(directory, { checkpoint: 'kosmos.safetensors' }), pixels), expected);

    // Stock open_clip: packed in_proj, attn.out_proj, and a projection Kosmos-G drops.
    const openClip: Record<string, HostTensor> = { 'visual.proj': normalTensor(new Random(7), [8, 4]) };
    for (const [key, tensor] of Object.entries(state)) {
      const packed = /^(.*)\.ts_attn\.q_proj\.(weight|bias)$/.exec(key);
      if (packed) {
        const [, block, kind] = packed;
        const parts = ['q', 'k', 'v'].map((name) => state[`${block}.ts_attn.${name}_proj.${kind}`]!);
        const data = new Float32Array(parts.reduce((total, part) => total + part.data.length, 0));
        parts.reduce((offset, part) => (data.set(part.data as Float32Array, offset), offset + part.data.length), 0);
        openClip[`${block}.attn.in_proj_${kind}`] = { dtype: 'float32', shape: [24, ...parts[0]!.shape.slice(1)], data };
      } else if (key.includes('.ts_attn.out_proj.')) openClip[key.replace('.ts_attn.', '.attn.')] = tensor;
      else if (!key.includes('.ts_attn.')) openClip[key] = tensor;
    }
    await writeSafetensors(join(directory, 'open_clip.safetensors'), openClip);
    assert.deepEqual(await runFeatures(await OpenClipVisionModel.fromPretrained(directory, { checkpoint: 'open_clip.safetensors' }), pixels), expected);

    const broken = await readSafetensors(join(directory, 'model.safetensors'));
    broken.delete('visual.ln_pre.bias');
    broken.set('visual.transformer.resblocks.0.extra', normalTensor(new Random(8), [2]));
    await writeSafetensors(join(directory, 'model.safetensors'), broken);
    await assert.rejects(OpenClipVisionModel.fromPretrained(directory), /missing keys: visual\.ln_pre\.bias; unexpected keys: visual\.transformer\.resblocks\.0\.extra/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad configs and inputs are refused with clear errors', () => {
  assert.throws(() => parseOpenClipVisionConfig({ quick_gelu: true }), /invalid open_clip vision config[\s\S]*vision_cfg/);
  assert.throws(() => tinyConfig({ width: 10 }), /multiple of head_width/);
  assert.throws(() => tinyConfig({ attentional_pool: true }), /attentional_pool = true is not supported/);
  assert.throws(() => tinyConfig({ layers: 0 }), /layers/);
  const model = new OpenClipVisionModel(tinyConfig(), { random: new Random(1) });
  const graph = new Graph();
  assert.throws(() => model.forward(constantBindings(graph, model), graph.input('pixels', 'float32', [1, 3, 9, 9])), /pixel_values must be \(batch, 3, 8, 8\)/);
});
