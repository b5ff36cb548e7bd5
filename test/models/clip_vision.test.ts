import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { normalTensor } from '../../src/nn/layers.js';
import { constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/02_clip_vision.js';
import { CLIPVisionModel, type CLIPVisionConfig, parseClipVisionConfig } from '../../src/models/clip_vision.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = resolve('../shared/fixtures');

const tinyConfig = (overrides: Record<string, unknown> = {}): CLIPVisionConfig =>
  parseClipVisionConfig({
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_channels: 3,
    image_size: 8,
    patch_size: 4,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    projection_dim: 4,
    ...overrides,
  });

test('parity with transformers CLIPVisionModelWithProjection (fixture 02): every output within tolerance', async () => {
  const rows = await runCase(await loadFixture(fixtures, '02_clip_vision'));
  assert.equal(rows.length, 8);
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

// onnxruntime's CPU Conv kernel is float-only, so the patch embedding makes this a float32 check.
test('gradients of the vision tower match finite differences (float32)', async (t) => {
  const random = new Random(12);
  const model = new CLIPVisionModel(tinyConfig(), { random, withProjection: true });
  const figures = await checkGradients({
    model,
    inputs: { pixel_values: normalTensor(random, [2, 3, 8, 8]) },
    outputs: (context, { pixel_values }) => {
      const output = model.forward(context, pixel_values!);
      return [output.imageEmbeds!, output.postLayernormTokens];
    },
    tensors: [
      'vision_model.embeddings.class_embedding',
      'vision_model.embeddings.patch_embedding.weight',
      'vision_model.embeddings.position_embedding.weight',
      'vision_model.pre_layrnorm.weight',
      'vision_model.encoder.layers.0.self_attn.q_proj.weight',
      'vision_model.encoder.layers.1.mlp.fc2.weight',
      'vision_model.post_layernorm.bias',
      'visual_projection.weight',
      'pixel_values',
    ],
    elementsPerTensor: 3,
    step: 3e-3,
    tolerance: 2e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});

async function runVision(model: CLIPVisionModel, pixels: HostTensor) {
  const graph = new Graph();
  const output = model.forward(constantBindings(graph, model), graph.input('pixel_values', 'float32', pixels.shape));
  const session = await GraphSession.create(encodeModel(graph.toModel({ pooled: output.poolerOutput, embeds: output.imageEmbeds! })));
  try {
    return await session.run({ pixel_values: pixels });
  } finally {
    await session.release();
  }
}

test('save and fromPretrained round-trip; strict loading names unexpected keys and mismatched shapes', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'clip-vision-'));
  try {
    const model = new CLIPVisionModel(tinyConfig(), { random: new Random(3), withProjection: true });
    await model.save(directory);
    const loaded = await CLIPVisionModel.fromPretrained(directory);
    const pixels = normalTensor(new Random(4), [1, 3, 8, 8]);
    assert.deepEqual((await runVision(loaded, pixels))['embeds']!.data, (await runVision(model, pixels))['embeds']!.data);

    const tensors = await readSafetensors(join(directory, 'model.safetensors'));
    tensors.set('vision_model.embeddings.position_ids', { dtype: 'int64', shape: [5], data: new BigInt64Array(5) });
    await writeSafetensors(join(directory, 'model.safetensors'), tensors);
    await assert.rejects(CLIPVisionModel.fromPretrained(directory), /unexpected keys: vision_model\.embeddings\.position_ids/);
    tensors.delete('vision_model.embeddings.position_ids');
    tensors.set('vision_model.embeddings.position_embedding.weight', { dtype: 'float32', shape: [4, 8], data: new Float32Array(32) });
    await writeSafetensors(join(directory, 'model.safetensors'), tensors);
    await assert.rejects(CLIPVisionModel.fromPretrained(directory), /position_embedding\.weight: checkpoint shape \[4, 8\] does not match model shape \[5, 8\]/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad configs and inputs are refused with clear errors', () => {
  assert.throws(() => parseClipVisionConfig({ ...tinyConfig(), patch_size: undefined }), /invalid CLIP vision config[\s\S]*patch_size/);
  assert.throws(() => tinyConfig({ hidden_size: 9 }), /multiple of num_attention_heads/);
  assert.throws(() => tinyConfig({ patch_size: 16 }), /patch_size must not exceed image_size/);
  const model = new CLIPVisionModel(tinyConfig(), { random: new Random(1) });
  const graph = new Graph();
  const context = constantBindings(graph, model);
  assert.throws(() => model.forward(context, graph.input('big', 'float32', [1, 3, 16, 16])), /pixel_values must be \(batch, 3, 8, 8\)/);
  assert.throws(() => model.forward(context, graph.input('gray', 'float32', [1, 1, 8, 8])), /pixel_values must be/);
});
