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
import { loadFixture } from '../../src/parity/compare.js';
import { runCase } from '../../src/parity/cases/05_vae.js';
import { AutoencoderKL, type AutoencoderKLConfig, SD15_VAE_CONFIG, imageToBytes, parseAutoencoderKLConfig } from '../../src/models/autoencoder_kl.js';
import { gaussianNoise } from '../../src/models/gaussian_noise.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';

const fixtures = '../shared/fixtures';
const fixtureDirectory = join(fixtures, '05_vae');

test('fixture 05: every AutoencoderKL output matches diffusers', async () => {
  const rows = await runCase(await loadFixture(fixtures, '05_vae'));
  assert.equal(rows.length, 8);
  for (const row of rows) assert.ok(row.pass, `${row.output}: max abs error ${row.maxAbsError}`);
});

/** decode(latents) of the fixture through weights bound by byte offset from `directory`. */
async function decodeWith(model: AutoencoderKL, directory: string, latents: HostTensor): Promise<HostTensor> {
  const graph = new Graph('decode');
  const input = graph.input('latents', 'float32', latents.shape);
  const reader = await openSafetensors(directory);
  try {
    const { context, externalData } = model.externalWeights(graph, reader);
    const session = await GraphSession.create(encodeModel(graph.toModel({ decoded: model.decode(context, input) })), { externalData });
    const decoded = (await session.run({ latents }))['decoded']!;
    await session.release();
    return decoded;
  } finally {
    await reader.close();
  }
}

test('a graph with a symbolic batch decodes each latent like the fixture', async () => {
  const fixture = await loadFixture(fixtures, '05_vae');
  const model = await AutoencoderKL.fromPretrained(fixtureDirectory);
  const latents = fixture.inputs.get('latents')!;
  const graph = new Graph('decode');
  const input = graph.input('latents', 'float32', ['batch', 4, 4, 4]);
  const reader = await openSafetensors(fixtureDirectory);
  const { context, externalData } = model.externalWeights(graph, reader);
  const session = await GraphSession.create(encodeModel(graph.toModel({ decoded: model.decode(context, input) })), { externalData });
  try {
    const twice: HostTensor = { dtype: 'float32', shape: [2, 4, 4, 4], data: Float32Array.from([...(latents.data as Float32Array), ...(latents.data as Float32Array)]) };
    const decoded = (await session.run({ latents: twice }))['decoded']!;
    assert.deepEqual(decoded.shape, [2, 3, 32, 32]);
    const expected = fixture.outputs.get('decoded')!.data as Float32Array;
    decoded.data.forEach((value, i) => assert.ok(Math.abs(Number(value) - expected[i % expected.length]!) <= 5e-5, `decoded[${i}]`));
  } finally {
    await session.release();
    await reader.close();
  }
});

test('checkpoints with the old attention names (query/key/value/proj_attn) load, in memory and by byte offset', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-vae-'));
  try {
    const tensors = await readSafetensors(join(fixtureDirectory, 'model.safetensors'));
    const legacy: Record<string, HostTensor> = {};
    const renames = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' } as const;
    for (const [name, tensor] of tensors) {
      legacy[name.replace(/attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./, (_, modern: keyof typeof renames) => `attentions.0.${renames[modern]}.`)] = tensor;
    }
    assert.ok('encoder.mid_block.attentions.0.proj_attn.weight' in legacy && !('encoder.mid_block.attentions.0.to_q.weight' in legacy));
    await writeSafetensors(join(directory, 'diffusion_pytorch_model.safetensors'), legacy);
    await copyFile(join(fixtureDirectory, 'config.json'), join(directory, 'config.json'));
    const modern = await AutoencoderKL.fromPretrained(fixtureDirectory);
    const loaded = await AutoencoderKL.fromPretrained(directory);
    for (const [key, tensor] of Object.entries(modern.stateDict())) assert.deepEqual(loaded.stateDict()[key]!.data, tensor.data, key);
    const fixture = await loadFixture(fixtures, '05_vae');
    const decoded = await decodeWith(loaded, directory, fixture.inputs.get('latents')!);
    assert.deepEqual(decoded.data, (await decodeWith(modern, fixtureDirectory, fixture.inputs.get('latents')!)).data);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('save writes config.json and model.safetensors that load back to the same weights', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-vae-'));
  try {
    const original = await AutoencoderKL.fromPretrained(fixtureDirectory);
    await original.save(directory);
    const reloaded = await AutoencoderKL.fromPretrained(directory);
    assert.deepEqual(reloaded.config, original.config);
    for (const [key, tensor] of Object.entries(original.stateDict())) assert.deepEqual(reloaded.stateDict()[key]!.data, tensor.data, key);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad configs and checkpoints are refused with the offending key named', async () => {
  const config = JSON.parse(await readFile(join(fixtureDirectory, 'config.json'), 'utf8')) as Record<string, unknown>;
  const { latent_channels: _, ...withoutLatentChannels } = config;
  assert.throws(() => parseAutoencoderKLConfig(withoutLatentChannels), /latent_channels/);
  assert.throws(() => parseAutoencoderKLConfig({ ...config, block_out_channels: [8, 8, 16, 18] }), /18 channels do not split into norm_num_groups = 4[\s\S]*block_out_channels/);
  assert.throws(() => parseAutoencoderKLConfig({ ...config, up_block_types: ['UpDecoderBlock2D'] }), /up_block_types/);
  assert.throws(() => parseAutoencoderKLConfig({ ...config, act_fn: 'gelu' }), /act_fn/);

  const model = await AutoencoderKL.fromPretrained(fixtureDirectory);
  const state = { ...model.stateDict() };
  const { 'decoder.conv_out.bias': removed, ...missingOne } = state;
  assert.throws(() => model.loadStateDict(missingOne), /missing keys: decoder\.conv_out\.bias/);
  assert.throws(() => model.loadStateDict({ ...state, 'decoder.conv_out.bias': { ...removed!, shape: [1, 3] } }), /decoder\.conv_out\.bias: checkpoint shape \[1, 3\] does not match model shape \[3\]/);

  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-vae-'));
  try {
    await writeFile(join(directory, 'config.json'), JSON.stringify({ ...config, latent_channels: 3 }));
    await copyFile(join(fixtureDirectory, 'model.safetensors'), join(directory, 'model.safetensors'));
    await assert.rejects(AutoencoderKL.fromPretrained(directory), /decoder\.conv_in\.weight: checkpoint shape \[16, 4, 3, 3\] does not match model shape \[16, 3, 3, 3\]/);
    const reader = await openSafetensors(directory);
    const narrower = new AutoencoderKL(parseAutoencoderKLConfig({ ...config, latent_channels: 3 }), { random: new Random(1) });
    assert.throws(() => narrower.externalWeights(new Graph(), reader), /encoder\.conv_out\.weight: checkpoint shape \[8, 16, 3, 3\] does not match model shape \[6, 16, 3, 3\]/);
    await reader.close();
    await writeSafetensors(join(directory, 'model.safetensors'), missingOne);
    const incomplete = await openSafetensors(directory);
    assert.throws(() => model.externalWeights(new Graph(), incomplete), /missing tensors: decoder\.conv_out\.bias/);
    await incomplete.close();
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

const tinyConfig: AutoencoderKLConfig = {
  ...SD15_VAE_CONFIG,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
  block_out_channels: [4, 8],
  layers_per_block: 1,
  latent_channels: 2,
  norm_num_groups: 2,
  sample_size: 8,
};

test('gradients of encode → sample → decode match central differences (float32)', async (t) => {
  const random = new Random(5);
  const model = new AutoencoderKL(tinyConfig, { random });
  const uniform = (shape: number[]) => ({ dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => 2 * random.next() - 1) }) as HostTensor;
  const figures = await checkGradients({
    model,
    inputs: { image: uniform([1, 3, 8, 8]), noise: gaussianNoise(3, [1, 2, 4, 4]) },
    outputs: (context, { image, noise }) => {
      const distribution = model.encode(context, image!);
      return [model.decode(context, model.sample(distribution, noise!)), distribution.mean, distribution.logvar];
    },
    tensors: [
      'encoder.conv_in.weight',
      'encoder.down_blocks.0.downsamplers.0.conv.weight',
      'encoder.mid_block.attentions.0.to_q.weight',
      'encoder.mid_block.attentions.0.group_norm.weight',
      'quant_conv.bias',
      'decoder.mid_block.attentions.0.to_out.0.weight',
      'decoder.up_blocks.0.upsamplers.0.conv.weight',
      'decoder.up_blocks.1.resnets.0.conv_shortcut.weight',
      'decoder.conv_out.bias',
      'image',
      'noise',
    ],
    elementsPerTensor: 2,
    // Float32 losses are quantised at about 1e-6 of their size: a wide step keeps that noise below
    // the tolerance while the O(step²) truncation stays smaller still.
    step: 2e-2,
    tolerance: 2e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});

test('seeded noise is standard normal and reproducible from the seed alone', () => {
  const noise = gaussianNoise(1234, [4, 64, 64]);
  const values = noise.data as Float32Array;
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.03, `mean ${mean}, variance ${variance}`);
  const beyondTwo = values.filter((v) => Math.abs(v) > 2).length / values.length;
  assert.ok(Math.abs(beyondTwo - 0.0455) < 0.006, `P(|x| > 2) = ${beyondTwo}`);
  assert.deepEqual(gaussianNoise(1234, [4, 64, 64]).data, values);
  assert.notDeepEqual(gaussianNoise(1235, [5]).data, gaussianNoise(1234, [5]).data);
  assert.notDeepEqual(gaussianNoise(2 ** 40 + 1234, [5]).data, gaussianNoise(1234, [5]).data);
  // The stream itself is part of the contract: these bits must come out on every platform.
  assert.deepEqual(Array.from(new Uint32Array(gaussianNoise(0, [3]).data.buffer)), PINNED_SEED_0);
  assert.throws(() => gaussianNoise(-1, [2]), /non-negative safe integer/);
});

const PINNED_SEED_0 = [3169079375, 3190280676, 1044980968];

test('Kosmos-G bytes: ·255 and round half to even, clamped', () => {
  const ties: number[] = [];
  for (let k = 0; k < 255; k++) {
    const x = Math.fround((2 * k + 1) / 510);
    if (Math.fround(x * 255) === k + 0.5) ties.push(x);
  }
  assert.ok(ties.length > 10);
  const image: HostTensor = { dtype: 'float32', shape: [ties.length + 3], data: Float32Array.from([...ties, 0, 1, 0.75]) };
  const bytes = imageToBytes(image);
  ties.forEach((x, i) => {
    const floor = Math.floor(Math.fround(x * 255));
    assert.equal(bytes[i], floor % 2 === 0 ? floor : floor + 1, `tie at ${x}`);
  });
  assert.deepEqual([...bytes.slice(ties.length)], [0, 255, 191]);
});
