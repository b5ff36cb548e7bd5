import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { normalTensor, checkpointInitialized } from '../../src/nn/layers.js';
import { Module, constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { compareTensors, loadFixture } from '../../src/parity/compare.js';
import { LoraAdapter } from '../../src/models/lora.js';
import { UNet2DConditionModel, parseUNetConfig } from '../../src/models/unet_2d_condition.js';
import { Random } from '../../src/util/random.js';
import { checkGradients, describeFigures } from './gradcheck.js';
import { tinyUNetConfig } from './unet-fixtures.js';

const fixtures = '../shared/fixtures';
const fixtureDirectory = join(fixtures, '04_unet');
const fixtureUNet = async () => new UNet2DConditionModel(parseUNetConfig(JSON.parse(await readFile(join(fixtureDirectory, 'config.json'), 'utf8'))), checkpointInitialized);

async function loadFile(model: Module, path: string): Promise<LoraAdapter> {
  const reader = await openSafetensors(path);
  try {
    return await LoraAdapter.fromSafetensors(model, reader);
  } finally {
    await reader.close();
  }
}

function assertSameAdapter(actual: LoraAdapter, expected: LoraAdapter): void {
  assert.deepEqual(actual.targets.sort(), expected.targets.sort());
  for (const target of expected.targets) {
    assert.equal(actual.layer(target)!.alpha, expected.layer(target)!.alpha, target);
  }
  for (const [key, tensor] of Object.entries(expected.stateDict())) assert.deepEqual(actual.stateDict()[key]!.data, tensor.data, key);
}

test('a kohya file and the PEFT file load to the same adapter; the scale can be a graph input', async () => {
  const unet = await fixtureUNet();
  const peftPath = join(fixtureDirectory, 'lora.safetensors');
  const peft = await loadFile(unet, peftPath);
  assert.equal(peft.targets.length, 48);
  assert.equal(peft.layer('mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0')!.alpha, 8);
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-lora-'));
  try {
    const kohya: Record<string, HostTensor> = {};
    for (const [name, tensor] of await readSafetensors(peftPath)) {
      const [, path, which] = /^unet\.(.+)\.lora_([AB])\.weight$/.exec(name)!;
      const prefix = `lora_unet_${path!.replaceAll('.', '_')}`;
      kohya[`${prefix}.${which === 'A' ? 'lora_down' : 'lora_up'}.weight`] = tensor;
      kohya[`${prefix}.alpha`] = { dtype: 'float32', shape: [], data: Float32Array.of(8) };
    }
    kohya['lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight'] = normalTensor(new Random(1), [4, 8]);
    const kohyaPath = join(directory, 'kohya.safetensors');
    await writeSafetensors(kohyaPath, kohya);
    const fromKohya = await loadFile(unet, kohyaPath);
    assertSameAdapter(fromKohya, peft);
    assert.deepEqual(fromKohya.skippedKeys, ['lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight']);

    const savedPath = join(directory, 'saved.safetensors');
    await peft.save(savedPath);
    assertSameAdapter(await loadFile(unet, savedPath), peft);

    // One graph, the LoRA strength fed at run time: 0.7 gives the fixture's LoRA output, 0 the plain U-Net's.
    const fixture = await loadFixture(fixtures, '04_unet');
    const graph = new Graph('lora_scale');
    const feeds: Record<string, HostTensor> = {
      sample: fixture.inputs.get('sample')!,
      timestep: fixture.inputs.get('timestep')!,
      states: fixture.inputs.get('encoder_hidden_states')!,
    };
    const inputs = Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
    const scale = graph.input('scale', 'float32', []);
    const weights = await UNet2DConditionModel.fromPretrained(fixtureDirectory);
    const adapter = fromKohya.runtime(weights, constantBindings(graph, fromKohya), scale);
    const output = weights.forward(constantBindings(graph, weights), inputs['sample']!, inputs['timestep']!, inputs['states']!, { adapter });
    const session = await GraphSession.create(encodeModel(graph.toModel({ output })));
    for (const [strength, reference] of [[0.7, 'noise_pred_lora'], [0, 'noise_pred']] as const) {
      const { output: actual } = await session.run({ ...feeds, scale: { dtype: 'float32', shape: [], data: Float32Array.of(strength) } });
      const row = compareTensors('04_unet', reference, actual!, fixture.outputs.get(reference)!, fixture.tolerance(reference));
      assert.ok(row.pass, `scale ${strength}: max abs error ${row.maxAbsError}`);
    }
    await session.release();
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('PEFT alpha_pattern overrides lora_alpha per layer; bad LoRA files are rejected by key', async () => {
  const unet = await fixtureUNet();
  const tensors = await readSafetensors(join(fixtureDirectory, 'lora.safetensors'));
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-lora-'));
  const write = async (name: string, content: Map<string, HostTensor> | Record<string, HostTensor>, metadata: Record<string, unknown> = { 'unet.lora_alpha': 8 }) => {
    const path = join(directory, name);
    await writeSafetensors(path, content, { metadata: { lora_adapter_metadata: JSON.stringify(metadata) } });
    return path;
  };
  try {
    const patterned = await loadFile(unet, await write('pattern.safetensors', tensors, { 'unet.lora_alpha': 8, 'unet.alpha_pattern': { 'attn1.to_q': 2 } }));
    assert.equal(patterned.layer('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q')!.alpha, 2);
    assert.equal(patterned.layer('down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q')!.alpha, 8);
    const withoutMetadata = join(directory, 'plain.safetensors');
    await writeSafetensors(withoutMetadata, tensors);
    assert.equal((await loadFile(unet, withoutMetadata)).layer('mid_block.attentions.0.transformer_blocks.0.attn1.to_k')!.alpha, 4, 'alpha defaults to the rank');

    const key = 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight';
    const renamed = new Map([...tensors].map(([name, tensor]) => [name.replace('down_blocks.0.attentions.0.', 'down_blocks.0.attentions.7.'), tensor]));
    await assert.rejects(loadFile(unet, await write('missing.safetensors', renamed)), /the model has no Linear or Conv2d at down_blocks\.0\.attentions\.7\.transformer_blocks\.0\.attn1\.to_k/);
    const reshaped = new Map(tensors).set(key, normalTensor(new Random(1), [4, 16]));
    await assert.rejects(loadFile(unet, await write('shape.safetensors', reshaped)), /attn1\.to_q\.lora_A\.weight: down \[4, 16\] and up \[8, 4\] do not fit .*expected \[4, 8\] and \[8, 4\]/);
    const halved = new Map(tensors);
    halved.delete(key);
    await assert.rejects(loadFile(unet, await write('half.safetensors', halved)), /attn1\.to_q has only lora_B/);
    await assert.rejects(loadFile(unet, await write('other.safetensors', new Map(tensors).set('unet.conv_in.weight', normalTensor(new Random(1), [8, 4, 3, 3])))), /not LoRA keys of the diffusers\/PEFT layout: unet\.conv_in\.weight/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

/** The U-Net and its adapter as one module, so a training graph binds both (the base could be frozen). */
class AdaptedUNet extends Module {
  constructor(readonly unet: UNet2DConditionModel, readonly lora: LoraAdapter) {
    super();
  }
}

test('finite-difference gradients of LoRA A and B matrices through the U-Net', async (t) => {
  const unet = new UNet2DConditionModel(parseUNetConfig(tinyUNetConfig), new Random(7));
  const lora = LoraAdapter.create(unet, { rank: 2, alpha: 4, targetModules: ['to_q', 'to_k', 'to_v', 'to_out.0'], random: new Random(8) });
  assert.equal(lora.targets.length, 4 * 2 * 4, 'four transformers (down 1, mid 1, up 2), two attentions each, four projections each');
  // PEFT starts B at zero (so A would get no gradient); give it values for the check.
  for (const target of lora.targets) lora.layer(target)!.lora_B.weight.data = normalTensor(new Random(9), lora.layer(target)!.lora_B.weight.shape, 0.5);
  const model = new AdaptedUNet(unet, lora);
  const random = new Random(10);
  const figures = await checkGradients({
    model,
    inputs: { sample: normalTensor(random, [2, 4, 4, 4]), timestep: { dtype: 'float32', shape: [], data: Float32Array.of(300) }, states: normalTensor(random, [2, 3, 8]) },
    outputs: (context, { sample, timestep, states }) => [unet.forward(context, sample!, timestep!, states!, { adapter: lora.runtime(unet, context, 0.7) })],
    tensors: [
      'lora.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight',
      'lora.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.lora_B.weight',
      'lora.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight',
      'lora.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight',
    ],
    elementsPerTensor: 2,
    step: 2e-2,
    tolerance: 2e-3,
  });
  for (const line of describeFigures(figures)) t.diagnostic(line);
});
