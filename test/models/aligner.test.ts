import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { ALIGNER_PREFIX, type AlignerConfig, AlignerNet, parseAlignerConfig } from '../../src/models/aligner.js';
import { inputBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/09_kosmosg_aligner.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = resolve('../shared/fixtures');

const tinyConfig: AlignerConfig = parseAlignerConfig({
  encoder_embed_dim: 8,
  encoder_attention_heads: 2,
  encoder_ffn_embed_dim: 16,
  encoder_layers: 1,
  decoder_embed_dim: 8,
  decoder_attention_heads: 2,
  decoder_ffn_embed_dim: 16,
  decoder_layers: 1,
  input_dim: 12,
  num_queries: 5,
  position_table_size: 16,
  dropout: 0,
  attention_dropout: 0,
  activation_dropout: 0,
  no_scale_embedding: true,
  activation_fn: 'gelu',
  subln: true,
  encoder_normalize_before: true,
  decoder_normalize_before: true,
  layernorm_embedding: false,
  deepnorm: false,
  multiway: false,
  rel_pos_buckets: 0,
  moe_freq: 0,
});

const normal = (random: Random, shape: number[], std = 1): HostTensor => {
  const data = new Float32Array(shape.reduce((p, q) => p * q, 1));
  for (let i = 0; i < data.length; i++) data[i] = std * Math.sqrt(-2 * Math.log(1 - random.next())) * Math.cos(2 * Math.PI * random.next());
  return { dtype: 'float32', shape, data };
};

test('parity with the official AlignerNet (fixture 09): M, encoder_proj, N and both stage-2 losses within tolerance', async () => {
  const fixture = await loadFixture(fixtures, '09_kosmosg_aligner');
  const rows = await runCase(fixture);
  assert.deepEqual(rows.map((row) => row.output).sort(), [...fixture.outputs.keys()].sort());
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

test('gradients of the stage-2 loss match central differences: projections, queries, positions, both stacks, the MLLM states', async (t) => {
  const random = new Random(17);
  const model = new AlignerNet(tinyConfig, { init: random, reconstruction: true });
  // Row 1 ends in two pads: they are zeroed, key-masked, and still part of the reconstruction loss.
  const padding: HostTensor = { dtype: 'bool', shape: [2, 4], data: Uint8Array.from([0, 0, 0, 0, 0, 0, 1, 1]) };
  const figures = await checkGradients({
    model,
    inputs: { condition: normal(random, [2, 4, 12]), padding, clip_target: normal(random, [2, 5, 8]) },
    loss: (context, inputs) => model.stage2Losses(context, inputs['condition']!, inputs['padding']!, inputs['clip_target']!).loss,
    tensors: [
      'encoder_proj.embed_tokens.weight',
      'encoder_proj.embed_positions.weight',
      'encoder_proj.layers.0.self_attn.inner_attn_ln.weight',
      'encoder_query',
      'encoder.layers.0.encoder_attn.k_proj.weight',
      'encoder.layers.0.ffn.fc2.bias',
      'decoder_query',
      'decoder.layers.0.self_attn.v_proj.weight',
      'decoder_proj.output_projection.weight',
      'condition',
    ],
    elementsPerTensor: 3,
    // Exact GELU has float-only kernels in onnxruntime: float32 with a wide step.
    step: 1e-2,
    tolerance: 1e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});

test('config validation names the offending key', () => {
  const raw = { ...tinyConfig } as Record<string, unknown>;
  delete raw['num_queries'];
  assert.throws(() => parseAlignerConfig(raw), /num_queries/);
  assert.throws(() => parseAlignerConfig({ ...tinyConfig, activation_fn: 'relu' }), /activation_fn/);
  assert.throws(() => parseAlignerConfig({ ...tinyConfig, decoder_embed_dim: 16 }), /encoder_embed_dim 8 and decoder_embed_dim 16 must be equal/);
  assert.throws(() => parseAlignerConfig({ ...tinyConfig, encoder_attention_heads: 3 }), /encoder_embed_dim 8 does not split into 3 heads/);
});

test('fromPretrained is strict about aligner.* keys and shapes and builds N only when the checkpoint has it', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-aligner-'));
  try {
    const model = new AlignerNet(tinyConfig, { init: new Random(3), reconstruction: true });
    await model.save(directory);
    const reloaded = await AlignerNet.fromPretrained(directory);
    assert.ok(reloaded.decoder_proj, 'a stage-2 checkpoint brings N');
    for (const [key, tensor] of Object.entries(model.stateDict())) assert.deepEqual(reloaded.stateDict()[key]!.data, tensor.data, key);
    assert.equal((await AlignerNet.fromPretrained(directory, { reconstruction: false })).decoder, null);

    const state = Object.fromEntries(Object.entries(model.stateDict()).map(([key, tensor]) => [ALIGNER_PREFIX + key, tensor]));
    const rewrite = (tensors: Record<string, HostTensor>) => writeSafetensors(join(directory, 'model.safetensors'), tensors);
    // Inference checkpoints hold M only; the frozen CLIP text model and other components are skipped.
    const mOnly = Object.fromEntries(Object.entries(state).filter(([key]) => !/^aligner\.(decoder_query|decoder\.|decoder_proj\.)/.test(key)));
    await rewrite({ ...mOnly, 'aligner.clip_encoder.text_model.final_layer_norm.weight': state['aligner.encoder.layer_norm.weight']!, 'gpt_model.decoder.layer_norm.weight': state['aligner.encoder.layer_norm.weight']! });
    assert.equal((await AlignerNet.fromPretrained(directory)).decoder_query, null);
    await assert.rejects(AlignerNet.fromPretrained(directory, { reconstruction: true }), /missing keys: aligner\.decoder_query, aligner\.decoder\.layers\.0/);

    const { ['aligner.encoder_query']: removed, ...withoutQuery } = state;
    await rewrite({ ...withoutQuery, 'aligner.encoder_queries': removed! });
    await assert.rejects(AlignerNet.fromPretrained(directory), /missing keys: aligner\.encoder_query; unexpected keys: aligner\.encoder_queries/);

    await rewrite({ ...state, 'aligner.encoder_proj.embed_tokens.weight': { dtype: 'float32', shape: [8, 13], data: new Float32Array(8 * 13) } });
    await assert.rejects(AlignerNet.fromPretrained(directory), /aligner\.encoder_proj\.embed_tokens\.weight: checkpoint shape \[8, 13\] does not match model shape \[8, 12\]/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('forward rejects malformed inputs and sequences longer than the position tables', () => {
  const model = new AlignerNet(tinyConfig, { init: new Random(4), reconstruction: true });
  const graph = new Graph();
  const context = inputBindings(graph, model);
  const condition = graph.input('condition', 'float32', [1, 3, 12]);
  assert.throws(() => model.forward(context, graph.input('narrow', 'float32', [1, 3, 11]), graph.input('padding', 'bool', [1, 3])), /condition must be \(B, L, 12\)/);
  assert.throws(() => model.forward(context, condition, graph.input('float_padding', 'float32', [1, 3])), /padding mask must be bool \[1, 3\]/);
  const long = graph.input('long', 'float32', [1, 15, 12]);
  assert.throws(() => model.forward(context, long, graph.input('long_padding', 'bool', [1, 15])), /15 positions need 17 rows of the position table, it has 16/);
  const mOnly = new AlignerNet(tinyConfig, { init: new Random(4), reconstruction: false });
  const mContext = inputBindings(new Graph(), mOnly);
  assert.throws(() => mOnly.reconstruct(mContext, mContext.graph.input('aligned', 'float32', [1, 5, 8]), 3), /built without the reconstruction decoder N/);
});
