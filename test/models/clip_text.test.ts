import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/01_clip_text.js';
import { CLIPTextModel, type CLIPTextConfig, parseClipTextConfig } from '../../src/models/clip_text.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = resolve('../shared/fixtures');

const tinyConfig = (overrides: Record<string, unknown> = {}): CLIPTextConfig =>
  parseClipTextConfig({
    vocab_size: 20,
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: 7,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    eos_token_id: 2,
    projection_dim: 4,
    ...overrides,
  });

const ids = (rows: number[][]): HostTensor => ({ dtype: 'int64', shape: [rows.length, rows[0]!.length], data: BigInt64Array.from(rows.flat(), BigInt) });

test('parity with transformers CLIPTextModelWithProjection (fixture 01): every output within tolerance', async () => {
  const rows = await runCase(await loadFixture(fixtures, '01_clip_text'));
  assert.equal(rows.length, 8);
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

test('gradients of the text encoder match finite differences (float64, quick_gelu, legacy pooling)', async (t) => {
  const model = new CLIPTextModel(tinyConfig(), { random: new Random(5), dtype: 'float64', withProjection: true });
  const figures = await checkGradients({
    model,
    inputs: { input_ids: ids([[18, 3, 7, 19, 5, 5], [18, 11, 19, 4, 4, 4]]) },
    outputs: (context, { input_ids }) => {
      const output = model.forward(context, input_ids!);
      return [output.lastHiddenState, output.textEmbeds!, output.hiddenStates.at(-2)!];
    },
    tensors: [
      'text_model.embeddings.token_embedding.weight',
      'text_model.embeddings.position_embedding.weight',
      'text_model.encoder.layers.0.self_attn.q_proj.weight',
      'text_model.encoder.layers.0.self_attn.v_proj.bias',
      'text_model.encoder.layers.1.self_attn.k_proj.weight',
      'text_model.encoder.layers.1.mlp.fc1.weight',
      'text_model.encoder.layers.1.layer_norm2.weight',
      'text_model.final_layer_norm.bias',
      'text_projection.weight',
    ],
    elementsPerTensor: 4,
    step: 1e-6,
    tolerance: 1e-6,
  });
  for (const line of describeFigures(figures, 10)) t.diagnostic(line);
});

// onnxruntime's CPU Gelu kernel is float-only, so the exact-GELU variant is checked in float32.
test('gradients with exact GELU and first-eos pooling match finite differences (float32)', async (t) => {
  const model = new CLIPTextModel(tinyConfig({ hidden_act: 'gelu', eos_token_id: 19 }), { random: new Random(6), withProjection: true });
  const figures = await checkGradients({
    model,
    inputs: { input_ids: ids([[18, 3, 19, 7, 19, 5], [18, 11, 4, 19, 4, 4]]) },
    outputs: (context, { input_ids }) => [model.forward(context, input_ids!).textEmbeds!],
    tensors: ['text_model.encoder.layers.0.mlp.fc1.weight', 'text_model.encoder.layers.1.self_attn.v_proj.weight', 'text_projection.weight'],
    elementsPerTensor: 4,
    step: 1e-2,
    tolerance: 5e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});

async function runText(model: CLIPTextModel, inputIds: HostTensor) {
  const graph = new Graph();
  const idsValue = graph.input('input_ids', 'int64', inputIds.shape);
  const output = model.forward(constantBindings(graph, model), idsValue);
  const session = await GraphSession.create(encodeModel(graph.toModel({ last: output.lastHiddenState, pooled: output.poolerOutput })));
  try {
    return await session.run({ input_ids: inputIds });
  } finally {
    await session.release();
  }
}

test('pooling picks the largest id with eos_token_id 2 and the first eos token otherwise', async () => {
  const inputIds = ids([[18, 19, 3, 19, 17, 5], [18, 4, 17, 12, 19, 4]]);
  for (const [eos, expected] of [[2, [1, 4]], [17, [4, 2]]] as const) {
    const model = new CLIPTextModel(tinyConfig({ eos_token_id: eos }), { random: new Random(8) });
    const { last, pooled } = await runText(model, inputIds);
    const width = 8;
    expected.forEach((position, row) => {
      const want = (last!.data as Float32Array).subarray((row * 6 + position) * width, (row * 6 + position + 1) * width);
      assert.deepEqual([...(pooled!.data as Float32Array).subarray(row * width, (row + 1) * width)], [...want], `eos ${eos}, row ${row}`);
    });
  }
});

test('save and fromPretrained round-trip; strict loading names missing keys and mismatched shapes', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'clip-text-'));
  try {
    const model = new CLIPTextModel(tinyConfig(), { random: new Random(9), withProjection: true });
    await model.save(directory);
    const loaded = await CLIPTextModel.fromPretrained(directory);
    assert.ok(loaded.text_projection, 'projection detected from the checkpoint');
    assert.deepEqual(Object.keys(loaded.stateDict()).sort(), Object.keys(model.stateDict()).sort());
    const inputIds = ids([[18, 3, 19, 5, 5, 5]]);
    assert.deepEqual((await runText(loaded, inputIds))['last']!.data, (await runText(model, inputIds))['last']!.data);
    const textOnly = await CLIPTextModel.fromPretrained(directory, { withProjection: false });
    assert.equal(textOnly.text_projection, null);

    const tensors = await readSafetensors(join(directory, 'model.safetensors'));
    tensors.delete('text_model.final_layer_norm.weight');
    await writeSafetensors(join(directory, 'model.safetensors'), tensors);
    await assert.rejects(CLIPTextModel.fromPretrained(directory), /missing keys: text_model\.final_layer_norm\.weight/);
    tensors.set('text_model.final_layer_norm.weight', { dtype: 'float32', shape: [9], data: new Float32Array(9) });
    await writeSafetensors(join(directory, 'model.safetensors'), tensors);
    await assert.rejects(CLIPTextModel.fromPretrained(directory), /text_model\.final_layer_norm\.weight: checkpoint shape \[9\] does not match model shape \[8\]/);

    const config = JSON.parse(await readFile(join(directory, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete config['hidden_size'];
    await writeFile(join(directory, 'config.json'), JSON.stringify(config));
    await assert.rejects(CLIPTextModel.fromPretrained(directory), /invalid CLIP text config[\s\S]*hidden_size/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad configs and inputs are refused with clear errors', () => {
  assert.throws(() => tinyConfig({ num_attention_heads: 3 }), /multiple of num_attention_heads/);
  assert.throws(() => tinyConfig({ hidden_act: 'relu' }), /hidden_act/);
  assert.throws(() => new CLIPTextModel(tinyConfig({ projection_dim: undefined }), { random: new Random(1), withProjection: true }), /needs projection_dim/);
  const model = new CLIPTextModel(tinyConfig(), { random: new Random(1) });
  const graph = new Graph();
  const context = constantBindings(graph, model);
  assert.throws(() => model.forward(context, graph.input('long', 'int64', [1, 8])), /max_position_embeddings \(7\)/);
  assert.throws(() => model.forward(context, graph.input('floats', 'float32', [1, 4])), /must be int64/);
});
