import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { add, mul, sum } from '../../src/graph/ops/elementwise.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { KOSMOS_MLLM_PREFIX, KosmosGMllm, type KosmosMllmConfig, parseKosmosMllmConfig } from '../../src/models/kosmos_mllm.js';
import { inputBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/07_kosmosg_mllm.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = resolve('../shared/fixtures');

const tinyConfig: KosmosMllmConfig = parseKosmosMllmConfig({
  decoder_embed_dim: 16,
  decoder_attention_heads: 2,
  decoder_ffn_embed_dim: 32,
  decoder_layers: 2,
  vocab_size: 12,
  dropout: 0,
  attention_dropout: 0,
  activation_dropout: 0,
  no_scale_embedding: false,
  activation_fn: 'gelu',
  subln: true,
  decoder_normalize_before: true,
  share_decoder_input_output_embed: true,
  layernorm_embedding: false,
  deepnorm: false,
  multiway: false,
  rel_pos_buckets: 0,
  moe_freq: 0,
});

const int64 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'int64', shape, data: BigInt64Array.from(values, BigInt) });
const bool = (shape: number[], values: number[]): HostTensor => ({ dtype: 'bool', shape, data: Uint8Array.from(values) });
const normal = (random: Random, shape: number[], std = 1): HostTensor => {
  const data = new Float32Array(shape.reduce((p, q) => p * q, 1));
  for (let i = 0; i < data.length; i++) data[i] = std * Math.sqrt(-2 * Math.log(1 - random.next())) * Math.cos(2 * Math.PI * random.next());
  return { dtype: 'float32', shape, data };
};

test('parity with the official MLLM (fixture 07): every reference output within tolerance', async () => {
  const fixture = await loadFixture(fixtures, '07_kosmosg_mllm');
  const rows = await runCase(fixture);
  assert.deepEqual(rows.map((row) => row.output).sort(), [...fixture.outputs.keys()].sort());
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

test('gradients of the LM loss match central differences: tied embedding, attention, Sub-LN norms, image features', async (t) => {
  const random = new Random(11);
  const model = new KosmosGMllm(tinyConfig, { init: random });
  // fairseq zeroes the <pad> row, which puts the first LayerNorm of a pad position at its singular
  // point 0 (curvature ~1/√eps): central differences with float32-sized steps cannot resolve it there.
  (model.embed_tokens.weight.data.data as Float32Array).set(normal(random, [16]).data as Float32Array, 16);
  // Row 0: <s> 7 [img img] 4 3; row 1: <s> 5 [img] 6 <pad> <pad>.
  const tokens = int64([2, 6], [0, 7, 9, 9, 4, 3, 0, 5, 9, 6, 1, 1]);
  const targets = int64([2, 6], [7, 9, 9, 4, 3, 1, 5, 9, 6, 1, 1, 1]);
  const mask = bool([2, 6], [0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
  const features = normal(random, [3, 16]);
  const cotangent = normal(random, [2, 6, 16], 0.1);
  const figures = await checkGradients({
    model,
    inputs: { tokens, targets, mask, features },
    loss: (context, inputs) => {
      const image = { mask: inputs['mask']!, features: inputs['features']! };
      const lmLoss = model.languageModelingLoss(context, inputs['tokens']!, inputs['targets']!, image);
      const hidden = model.trace(context, inputs['tokens']!, image).hidden;
      return add(lmLoss, sum(mul(hidden, context.graph.constant(cotangent, 'cotangent'))));
    },
    tensors: [
      'embed_tokens.weight',
      'layers.0.self_attn.q_proj.weight',
      'layers.0.self_attn.v_proj.bias',
      'layers.1.self_attn.inner_attn_ln.weight',
      'layers.1.ffn.fc1.weight',
      'layers.0.ffn.ffn_layernorm.bias',
      'layer_norm.weight',
      'features',
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
  delete raw['decoder_layers'];
  assert.throws(() => parseKosmosMllmConfig(raw), /decoder_layers/);
  assert.throws(() => parseKosmosMllmConfig({ ...tinyConfig, subln: false }), /subln/);
  assert.throws(() => parseKosmosMllmConfig({ ...tinyConfig, decoder_embed_dim: 18, decoder_attention_heads: 4 }), /does not split into 4 heads/);
  assert.throws(() => new KosmosGMllm({ ...tinyConfig, vocab_size: -1 }, { init: null }), /vocab_size -1 must be positive/);
});

test('fromPretrained is strict about gpt_model.decoder.* keys and shapes, ignores the known buffers, checks the tied head', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-mllm-'));
  try {
    const model = new KosmosGMllm(tinyConfig, { init: new Random(5) });
    await model.save(directory);
    // torchscale writes -1 when the vocabulary comes from the dictionary: the embedding decides.
    const configPath = join(directory, 'config.json');
    await writeFile(configPath, JSON.stringify({ ...JSON.parse(await readFile(configPath, 'utf8')), vocab_size: -1 }));
    const reloaded = await KosmosGMllm.fromPretrained(directory);
    assert.equal(reloaded.config.vocab_size, 12);
    for (const [key, tensor] of Object.entries(model.stateDict())) assert.deepEqual(reloaded.stateDict()[key]!.data, tensor.data, key);

    const state = Object.fromEntries(Object.entries(model.stateDict()).map(([key, tensor]) => [KOSMOS_MLLM_PREFIX + key, tensor]));
    const rewrite = (tensors: Record<string, HostTensor>) => writeSafetensors(join(directory, 'model.safetensors'), tensors);
    const buffers = {
      [`${KOSMOS_MLLM_PREFIX}embed_positions._float_tensor`]: { dtype: 'float32', shape: [1], data: new Float32Array(1) } as HostTensor,
      [`${KOSMOS_MLLM_PREFIX}self_attn_sope.scale`]: { dtype: 'float32', shape: [4], data: new Float32Array(4) } as HostTensor,
      [`${KOSMOS_MLLM_PREFIX}output_projection.weight`]: state[`${KOSMOS_MLLM_PREFIX}embed_tokens.weight`]!,
      'img_connector.latent_query': { dtype: 'float32', shape: [2], data: new Float32Array(2) } as HostTensor,
    };
    await rewrite({ ...state, ...buffers });
    await KosmosGMllm.fromPretrained(directory);

    const { [`${KOSMOS_MLLM_PREFIX}layers.1.ffn.fc2.bias`]: removed, ...withoutBias } = state;
    await rewrite({ ...withoutBias, [`${KOSMOS_MLLM_PREFIX}layers.0.self_attn.rotary`]: removed! });
    await assert.rejects(KosmosGMllm.fromPretrained(directory), /missing keys: gpt_model\.decoder\.layers\.1\.ffn\.fc2\.bias; unexpected keys: gpt_model\.decoder\.layers\.0\.self_attn\.rotary/);

    await rewrite({ ...state, [`${KOSMOS_MLLM_PREFIX}layers.0.ffn.fc1.weight`]: { dtype: 'float32', shape: [33, 16], data: new Float32Array(33 * 16) } });
    await assert.rejects(KosmosGMllm.fromPretrained(directory), /layers\.0\.ffn\.fc1\.weight: checkpoint shape \[33, 16\] does not match model shape \[32, 16\]/);

    const untied = { dtype: 'float32', shape: [12, 16], data: new Float32Array(12 * 16).fill(0.5) } as HostTensor;
    await rewrite({ ...state, [`${KOSMOS_MLLM_PREFIX}output_projection.weight`]: untied });
    await assert.rejects(KosmosGMllm.fromPretrained(directory), /output_projection\.weight differs from .*embed_tokens\.weight/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('forward rejects malformed inputs', () => {
  const model = new KosmosGMllm(tinyConfig, { init: new Random(2) });
  const graph = new Graph();
  const context = inputBindings(graph, model);
  const tokens = graph.input('tokens', 'int64', [1, 4]);
  assert.throws(() => model.forward(context, graph.input('float_tokens', 'float32', [1, 4])), /tokens must be static int64/);
  assert.throws(() => model.forward(context, tokens, graph.input('mask', 'bool', [1, 4])), /both the image mask and the image features/);
  assert.throws(() => model.forward(context, tokens, graph.input('short_mask', 'bool', [1, 3]), graph.input('features', 'float32', [1, 16])), /image mask must be bool \(1, 4\)/);
  assert.throws(() => model.forward(context, tokens, graph.input('mask_ok', 'bool', [1, 4]), graph.input('narrow', 'float32', [1, 15])), /image features must be float32 \(N, 16\)/);
});
