// init-random's `kosmos-g` config without writing its 11.3 GB: the paper configs parse, match the
// constants the converters use, and give the paper's parameter counts from their shapes alone (the
// models built for their shapes take no resident memory); its tokenizer gives the paper's 134-token
// layout; float16 storage (shown on a tiny folder).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { readConfigJson } from '../../src/io/config-json.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { AlignerNet, parseAlignerConfig } from '../../src/models/aligner.js';
import { AutoencoderKL, SD15_VAE_CONFIG, parseAutoencoderKLConfig } from '../../src/models/autoencoder_kl.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../../src/models/kosmos_mllm.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../../src/models/openclip_vision.js';
import { UNet2DConditionModel, parseUNetConfig } from '../../src/models/unet_2d_condition.js';
import { KOSMOS_G_XCONNECTOR_CONFIG, XConnector, parseXConnectorConfig } from '../../src/models/xconnector.js';
import { checkpointInitialized } from '../../src/nn/layers.js';
import type { Module } from '../../src/nn/module.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { buildInterleavedPrompt } from '../../src/pipeline/prompt.js';
import { PAPER_CONFIG_DIRECTORY, PAPER_CONFIG_FILES, type NetworkName, createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { loadKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';
import { assertOneLineError, runCli } from '../cli/run-cli.js';
import { scratch, tinyPipeline } from './tiny.js';

const paperConfig = (network: NetworkName) => readConfigJson(join(PAPER_CONFIG_DIRECTORY, PAPER_CONFIG_FILES[network]));

/** Each network built for its shapes only (checkpointInitialized leaves its buffers unwritten). */
const shapesOnly: Record<NetworkName, (config: unknown) => Module> = {
  vision: (config) => new OpenClipVisionModel(parseOpenClipVisionConfig(config), { random: checkpointInitialized }),
  connector: (config) => new XConnector(parseXConnectorConfig(config), { random: checkpointInitialized }),
  mllm: (config) => new KosmosGMllm(parseKosmosMllmConfig(config), { init: null }),
  aligner: (config) => new AlignerNet(parseAlignerConfig(config), { init: null, reconstruction: false }),
  unet: (config) => new UNet2DConditionModel(parseUNetConfig(config), checkpointInitialized),
  vae: (config) => new AutoencoderKL(parseAutoencoderKLConfig(config), { random: checkpointInitialized }),
};

// The published counts where there are some (SD 1.5 U-Net and VAE; open_clip ViT-L/14's visual
// tower, 303,966,208 with its 1024×768 projection, which Kosmos-G does not use); the others are the
// sums of the official tensors' sizes (reference: MLLM ≈ 1.340 B, connector ≈ 19 M, Aligner M ≈ 225 M).
const PAPER_PARAMETERS: Record<NetworkName, number> = {
  vision: 303_179_776,
  connector: 19_015_680,
  mllm: 1_340_180_480,
  aligner: 225_461_760,
  unet: 859_520_964,
  vae: 83_653_863,
};

const HUGE_PAGE = 2 * 1024 ** 2;

test('the paper configs parse, the connector and VAE ones equal the converters\' constants, and give the paper\'s parameter counts without resident memory', async () => {
  assert.deepEqual(parseXConnectorConfig(await paperConfig('connector')), KOSMOS_G_XCONNECTOR_CONFIG);
  assert.deepEqual(parseAutoencoderKLConfig(await paperConfig('vae')), SD15_VAE_CONFIG);
  const counts: Partial<Record<NetworkName, number>> = {};
  let hugePageBuffers = 0;
  const before = process.memoryUsage().rss;
  for (const network of Object.keys(shapesOnly) as NetworkName[]) {
    const model = shapesOnly[network](await paperConfig(network));
    counts[network] = model.parameterCount();
    hugePageBuffers += model.namedParameters().filter(([, parameter]) => parameter.data.data.byteLength >= HUGE_PAGE).length;
  }
  // 2.83 B float32 parameters are 11.3 GB of buffers, none of them written. Where transparent huge
  // pages are always on, the allocator's header write makes one 2 MiB page of each large buffer
  // resident (about 1.8 GiB in all), which is still far from the 11.3 GB of written buffers.
  const resident = process.memoryUsage().rss - before;
  assert.ok(resident < 1024 ** 3 + hugePageBuffers * HUGE_PAGE, `${Math.round(resident / 2 ** 20)} MiB became resident`);
  assert.deepEqual(counts, PAPER_PARAMETERS);
});

test('the kosmos-g folder\'s tokenizer (the tiny BPE) gives "<i> wearing <i>" the paper\'s 134 tokens and fits the 64,007-row embedding', async () => {
  // The kosmos-g config writes the tiny config's MLLM tokenizer (random_pipeline.ts).
  const tokenizer = await loadKosmosTokenizer(join(await tinyPipeline(), 'tokenizer'));
  const layout = buildInterleavedPrompt('<i> wearing <i>', 2, tokenizer, 64);
  assert.equal(layout.tokens.length, 134);
  assert.equal(layout.imageMask.filter(Boolean).length, 128);
  const mllm = (await paperConfig('mllm')) as { vocab_size: number };
  assert.ok(tokenizer.vocabularySize <= mllm.vocab_size);
});

test('init-random --dtype: float32 or float16; a float16 folder stores F16 tensors and generates', async () => {
  assertOneLineError(await runCli(['init-random', '--dtype', 'int8', '--out', join(scratch, 'x')]), /^unknown dtype 'int8' \(choose float32, float16\)$/);
  await assert.rejects(createRandomPipeline(join(scratch, 'y'), { config: 'tiny', dtype: 'bfloat16' as 'float16' }), /unknown dtype "bfloat16"/);
  const half = join(scratch, 'tiny-f16');
  const made = await runCli(['init-random', '--config', 'tiny', '--dtype', 'float16', '--out', half]);
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /wrote a tiny random-weight pipeline \(float16\)/);
  assert.match(made.stderr, /^vision: 0\.0 M parameters written$/m);
  const index = JSON.parse(await readFile(join(half, 'model_index.json'), 'utf8')) as { _init_random: unknown };
  assert.deepEqual(index._init_random, { config: 'tiny', seed: 0, dtype: 'float16' });
  const reader = await openSafetensors(join(half, 'unet'));
  try {
    assert.deepEqual(new Set(reader.names().map((name) => reader.info(name).dtype)), new Set(['F16']));
  } finally {
    await reader.close();
  }
  const pipeline = await KosmosGPipeline.fromPretrained(half, { threads: 1 });
  try {
    const { images } = await pipeline.generate({ prompt: 'a dog', steps: 2, seed: 1 });
    assert.deepEqual([images[0]!.width, images[0]!.height], [64, 64]);
  } finally {
    await pipeline.dispose();
  }
});
