import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Value } from '../../src/graph/graph.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { normalTensor } from '../../src/nn/layers.js';
import { Module } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { ControlNetModel, parseControlNetConfig } from '../../src/models/controlnet.js';
import { UNet2DConditionModel, parseUNetConfig } from '../../src/models/unet_2d_condition.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';
import { runModel, tinyUNetConfig } from './unet-fixtures.js';

const { up_block_types: _upBlocks, out_channels: _outChannels, ...sharedConfig } = tinyUNetConfig;
/** One stride-2 step in the conditioning embedding: control images are twice the latent size. */
const tinyControlNetConfig = { ...sharedConfig, conditioning_embedding_out_channels: [4, 8] };

const random = new Random(11);
const feeds: Record<string, HostTensor> = {
  sample: normalTensor(random, [2, 4, 4, 4]),
  timestep: { dtype: 'int64', shape: [], data: BigInt64Array.of(500n) },
  states: normalTensor(random, [2, 3, 8]),
  image: { dtype: 'float32', shape: [2, 3, 8, 8], data: Float32Array.from({ length: 384 }, () => random.next()) },
};

const numbers = (tensor: HostTensor) => Array.from(tensor.data as Float32Array);
function assertClose(actual: HostTensor, expected: HostTensor, tolerance: number, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, what);
  const want = numbers(expected);
  numbers(actual).forEach((value, i) => assert.ok(Math.abs(value - want[i]!) <= tolerance * (1 + Math.abs(want[i]!)), `${what}[${i}]: ${value} vs ${want[i]}`));
}

test('a new ControlNet (zero convs) adds nothing; trained residuals scale, pool, reorder channels and guess as diffusers does', async () => {
  const unet = new UNet2DConditionModel(parseUNetConfig(tinyUNetConfig), new Random(12));
  const fresh = new ControlNetModel(parseControlNetConfig(tinyControlNetConfig), new Random(13));
  const both = new (class extends Module {
    readonly unet = unet;
    readonly controlnet = fresh;
  })();
  const untouched = await runModel(both, feeds, (context, { sample, timestep, states, image }) => {
    const residuals = fresh.forward(context, sample!, timestep!, states!, image!);
    return {
      plain: unet.forward(context, sample!, timestep!, states!),
      controlled: unet.forward(context, sample!, timestep!, states!, { downBlockAdditionalResiduals: residuals.downBlockResiduals, midBlockAdditionalResidual: residuals.midBlockResidual }),
    };
  });
  assert.deepEqual(untouched['controlled']!.data, untouched['plain']!.data);

  // Every parameter redrawn, as in the fixture, so the zero convs are live.
  for (const [, parameter] of fresh.namedParameters()) parameter.data = normalTensor(random, parameter.shape, 0.3);
  const bgr = new ControlNetModel(parseControlNetConfig({ ...tinyControlNetConfig, controlnet_conditioning_channel_order: 'bgr' }), new Random(1));
  const pooled = new ControlNetModel(parseControlNetConfig({ ...tinyControlNetConfig, global_pool_conditions: true }), new Random(1));
  bgr.loadStateDict(fresh.stateDict());
  pooled.loadStateDict(fresh.stateDict());
  const flipped: HostTensor = { ...feeds['image']!, data: new Float32Array(384) };
  for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) (flipped.data as Float32Array).set((feeds['image']!.data as Float32Array).subarray((b * 3 + c) * 64, (b * 3 + c + 1) * 64), (b * 3 + 2 - c) * 64);
  const variants = new (class extends Module {
    readonly plain = fresh;
    readonly bgr = bgr;
    readonly pooled = pooled;
  })();
  const outputs = await runModel(variants, { ...feeds, flipped }, (context, { sample, timestep, states, image, flipped: reversed }) => {
    const run = (model: ControlNetModel, control: typeof image, options = {}) => model.forward(context, sample!, timestep!, states!, control!, options);
    const plain = run(fresh, image);
    const named: Record<string, Value> = { plain: plain.midBlockResidual, plainFirst: plain.downBlockResiduals[0]!, plainLast: plain.downBlockResiduals[3]! };
    named['halved'] = run(fresh, image, { conditioningScale: 0.5 }).midBlockResidual;
    const guessed = run(fresh, image, { guessMode: true, conditioningScale: 0.5 });
    named['guessFirst'] = guessed.downBlockResiduals[0]!;
    named['guessLast'] = guessed.downBlockResiduals[3]!;
    named['guessMid'] = guessed.midBlockResidual;
    named['bgr'] = run(bgr, reversed).midBlockResidual;
    named['pooled'] = run(pooled, image).midBlockResidual;
    return named;
  });
  const scaled = (tensor: HostTensor, factor: number): HostTensor => ({ ...tensor, data: Float32Array.from(numbers(tensor), (value) => value * factor) });
  assertClose(outputs['halved']!, scaled(outputs['plain']!, 0.5), 1e-6, 'conditioning scale 0.5');
  // torch.logspace(-1, 0, 5): 0.1, 0.178, 0.316, 0.562, 1 over four skips and the mid block.
  assertClose(outputs['guessFirst']!, scaled(outputs['plainFirst']!, 0.5 * 0.1), 1e-6, 'guess mode, first skip');
  assertClose(outputs['guessLast']!, scaled(outputs['plainLast']!, 0.5 * 10 ** -0.25), 1e-6, 'guess mode, last skip');
  assertClose(outputs['guessMid']!, scaled(outputs['plain']!, 0.5), 1e-6, 'guess mode, mid block');
  assertClose(outputs['bgr']!, outputs['plain']!, 1e-5, 'bgr order on a channel-reversed image');
  const plain = numbers(outputs['plain']!);
  const means = Array.from({ length: 32 }, (_, channel) => plain.slice(channel * 4, channel * 4 + 4).reduce((p, q) => p + q, 0) / 4);
  assertClose(outputs['pooled']!, { dtype: 'float32', shape: [2, 16, 1, 1], data: Float32Array.from(means) }, 1e-5, 'global pooling');
});

test('ControlNet: save/fromPretrained round-trip, strict keys, SD 1.5 config, config errors', async () => {
  const sd15 = parseControlNetConfig(JSON.parse(await readFile('src/models/configs/controlnet-sd15.json', 'utf8')));
  assert.deepEqual(sd15.conditioning_embedding_out_channels, [16, 32, 96, 256]);
  assert.throws(() => parseControlNetConfig({ ...tinyControlNetConfig, block_out_channels: undefined }), /block_out_channels/);
  assert.throws(() => parseControlNetConfig({ ...tinyControlNetConfig, controlnet_conditioning_channel_order: 'rbg' }), /controlnet_conditioning_channel_order/);
  assert.throws(() => parseControlNetConfig({ ...tinyControlNetConfig, num_attention_heads: 3 }), /does not split into 3 heads/);
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-controlnet-'));
  try {
    const model = new ControlNetModel(parseControlNetConfig(tinyControlNetConfig), new Random(14));
    assert.equal(model.controlnet_down_blocks.length, 4);
    await model.save(directory);
    const loaded = await ControlNetModel.fromPretrained(directory);
    for (const [key, tensor] of Object.entries(model.stateDict())) assert.deepEqual(loaded.stateDict()[key]!.data, tensor.data, key);
    const state = { ...model.stateDict() };
    delete state['controlnet_mid_block.weight'];
    await writeSafetensors(join(directory, 'diffusion_pytorch_model.safetensors'), { ...state, 'controlnet_down_blocks.4.weight': state['controlnet_down_blocks.3.weight']! });
    await assert.rejects(ControlNetModel.fromPretrained(directory), /missing keys: controlnet_mid_block\.weight; unexpected keys: controlnet_down_blocks\.4\.weight/);
    await writeFile(join(directory, 'config.json'), JSON.stringify({ ...tinyControlNetConfig, class_embed_type: 'timestep' }));
    await assert.rejects(ControlNetModel.fromPretrained(directory), /class_embed_type is not supported/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('finite-difference gradients of ControlNet residuals: control image, conditioning embedding, zero convs, attention', async (t) => {
  const model = new ControlNetModel(parseControlNetConfig(tinyControlNetConfig), new Random(15));
  for (const [, parameter] of model.namedParameters()) if ((parameter.data.data as Float32Array).every((value) => value === 0)) parameter.data = normalTensor(random, parameter.shape, 0.3);
  const figures = await checkGradients({
    model,
    inputs: { sample: feeds['sample']!, timestep: { dtype: 'float32', shape: [], data: Float32Array.of(500) }, states: feeds['states']!, image: feeds['image']! },
    outputs: (context, { sample, timestep, states, image }) => {
      const residuals = model.forward(context, sample!, timestep!, states!, image!, { conditioningScale: 0.8 });
      return [...residuals.downBlockResiduals, residuals.midBlockResidual];
    },
    tensors: [
      'controlnet_cond_embedding.conv_in.weight',
      'controlnet_cond_embedding.conv_out.weight',
      'controlnet_down_blocks.1.weight',
      'controlnet_mid_block.bias',
      'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight',
      'time_embedding.linear_2.weight',
      'image',
      'states',
    ],
    elementsPerTensor: 2,
    step: 2e-2,
    tolerance: 2e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});
