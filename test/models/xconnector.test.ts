import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { encodeModel } from '../../src/onnx/proto.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { inputBindings } from '../../src/nn/module.js';
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/08_kosmosg_xconnector.js';
import { XConnector, type XConnectorConfig, parseXConnectorConfig } from '../../src/models/xconnector.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = '../shared/fixtures';
const fixtureDirectory = join(fixtures, '08_kosmosg_xconnector');

test('fixture 08: the dense projection and the latents match the official XConnector', async () => {
  const rows = await runCase(await loadFixture(fixtures, '08_kosmosg_xconnector'));
  assert.deepEqual(rows.map((row) => row.output).sort(), ['dense', 'latents']);
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

test('a graph with a symbolic number of images gives the same latents for any count', async () => {
  const fixture = await loadFixture(fixtures, '08_kosmosg_xconnector');
  const model = await XConnector.fromPretrained(fixtureDirectory);
  const features = fixture.inputs.get('image_features')!;
  const graph = new Graph('xconnector');
  const tokens = graph.input('image_features', 'float32', ['images', 17, 24]);
  const reader = await openSafetensors(fixtureDirectory);
  const { context, externalData } = model.externalWeights(graph, reader);
  const session = await GraphSession.create(encodeModel(graph.toModel({ latents: model.forward(context, tokens) })), { externalData });
  try {
    const both = (await session.run({ image_features: features }))['latents']!;
    const expected = fixture.outputs.get('latents')!;
    assert.deepEqual(both.shape, [2, 8, 48]);
    (expected.data as Float32Array).forEach((value, i) => assert.ok(Math.abs(Number(both.data[i]) - value) <= 2e-5, `latents[${i}]`));
    const secondImage: HostTensor = { dtype: 'float32', shape: [1, 17, 24], data: (features.data as Float32Array).slice(17 * 24) };
    const alone = (await session.run({ image_features: secondImage }))['latents']!;
    (alone.data as Float32Array).forEach((value, i) => assert.ok(Math.abs(Number(both.data[8 * 48 + i]) - value) <= 1e-6, `second image latents[${i}]`));
  } finally {
    await session.release();
    await reader.close();
  }
});

test('save keeps the official img_connector. names and loads back', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-xconnector-'));
  try {
    const original = await XConnector.fromPretrained(fixtureDirectory);
    await original.save(directory);
    const names = [...(await readSafetensors(join(directory, 'model.safetensors'))).keys()].sort();
    assert.deepEqual(names, [...(await readSafetensors(join(fixtureDirectory, 'model.safetensors'))).keys()].sort());
    const reloaded = await XConnector.fromPretrained(directory);
    assert.deepEqual(reloaded.config, original.config);
    for (const [key, tensor] of Object.entries(original.stateDict())) assert.deepEqual(reloaded.stateDict()[key]!.data, tensor.data, key);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad configs, checkpoints and inputs are refused with the offending key named', async () => {
  const config = JSON.parse(await readFile(join(fixtureDirectory, 'config.json'), 'utf8')) as Record<string, unknown>;
  const { latent_query_num: _, ...withoutQueries } = config;
  assert.throws(() => parseXConnectorConfig(withoutQueries), /latent_query_num/);
  assert.throws(() => parseXConnectorConfig({ ...config, decoder_attention_heads: 5 }), /output_dim 48 does not split into 5 heads[\s\S]*decoder_attention_heads/);
  assert.throws(() => parseXConnectorConfig({ ...config, attention_dropout: 1 }), /attention_dropout/);

  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-xconnector-'));
  try {
    const tensors = Object.fromEntries(await readSafetensors(join(fixtureDirectory, 'model.safetensors')));
    await copyFile(join(fixtureDirectory, 'config.json'), join(directory, 'config.json'));
    const { 'img_connector.latent_query': latentQuery, ...withoutQuery } = tensors;
    await writeSafetensors(join(directory, 'model.safetensors'), { ...withoutQuery, latent_query: latentQuery! });
    await assert.rejects(XConnector.fromPretrained(directory), /unexpected keys outside img_connector\.\*: latent_query/);
    await writeSafetensors(join(directory, 'model.safetensors'), { ...withoutQuery, 'img_connector.extra.weight': latentQuery! });
    await assert.rejects(XConnector.fromPretrained(directory), /missing keys: latent_query; unexpected keys: extra\.weight/);
    await writeFile(join(directory, 'config.json'), JSON.stringify({ ...config, latent_query_num: 9 }));
    await writeSafetensors(join(directory, 'model.safetensors'), tensors);
    await assert.rejects(XConnector.fromPretrained(directory), /latent_query: checkpoint shape \[8, 48\] does not match model shape \[9, 48\]/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }

  const model = new XConnector(parseXConnectorConfig(config), { random: new Random(2) });
  const graph = new Graph();
  assert.throws(() => model.forward(inputBindings(graph, model), graph.input('tokens', 'float32', [2, 17, 32])), /expects image tokens \(N, T, 24\)/);
});

const tinyConfig: XConnectorConfig = { input_dim: 6, output_dim: 8, latent_query_num: 3, decoder_attention_heads: 2, attention_dropout: 0.1 };

test('gradients match central differences (float64)', async (t) => {
  const random = new Random(9);
  const model = new XConnector(tinyConfig, { random, dtype: 'float64' });
  const tokens: HostTensor = { dtype: 'float64', shape: [2, 5, 6], data: Float64Array.from({ length: 60 }, () => 2 * random.next() - 1) };
  const figures = await checkGradients({
    model,
    inputs: { image_tokens: tokens },
    outputs: (context, { image_tokens }) => [model.forward(context, image_tokens!)],
    // x_attn.k_proj.bias is left out: it shifts every score of a query by the same amount, which the
    // softmax cancels, so its gradient is zero.
    tensors: ['dense.weight', 'dense.bias', 'latent_query', 'x_attn.q_proj.weight', 'x_attn.q_proj.bias', 'x_attn.k_proj.weight', 'x_attn.v_proj.weight', 'x_attn.v_proj.bias', 'x_attn.out_proj.weight', 'image_tokens'],
    elementsPerTensor: 4,
    step: 1e-6,
    tolerance: 1e-7,
  });
  for (const line of describeFigures(figures, 10)) t.diagnostic(line);
});

test('attention dropout acts only in training graphs, reproducibly from the seed', async () => {
  const model = new XConnector(tinyConfig, { random: new Random(4) });
  const random = new Random(6);
  const tokens: HostTensor = { dtype: 'float32', shape: [2, 5, 6], data: Float32Array.from({ length: 60 }, () => 2 * random.next() - 1) };
  const graph = new Graph();
  const seed = graph.input('seed', 'int64', []);
  const input = graph.input('tokens', 'float32', tokens.shape);
  const context = inputBindings(graph, model, seed);
  const training = model.forward(context, input);
  const inference = model.forward({ ...context, dropoutSeed: undefined }, input);
  const session = await GraphSession.create(encodeModel(graph.toModel({ training, inference })));
  try {
    const feeds = { ...model.stateDict(), tokens };
    const run = async (value: number) => session.run({ ...feeds, seed: { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(value)) } });
    const first = await run(1);
    assert.deepEqual((await run(1))['training']!.data, first['training']!.data);
    assert.notDeepEqual((await run(2))['training']!.data, first['training']!.data);
    assert.notDeepEqual(first['training']!.data, first['inference']!.data);
    assert.deepEqual((await run(2))['inference']!.data, first['inference']!.data);
  } finally {
    await session.release();
  }
});
