// transformers ViTModel (the DINO judge's layout) against a plain-PyTorch forward on tiny random
// weights: the test saves the model with its own `save`, the Python script below reads the
// safetensors file with json + struct + torch.frombuffer (transformers is not installed) and runs
// ViTModel's forward in float64; ours runs in float32 from `fromPretrained`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { ViTModel, type ViTConfig, parseViTConfig } from '../../src/models/vit.js';
import { normalTensor } from '../../src/nn/layers.js';
import { constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { Random } from '../../src/util/random.js';
import { requireTorch } from '../../bench/torch-process.js';

const run = promisify(execFile);

const tinyConfig = (overrides: Record<string, unknown> = {}): ViTConfig =>
  parseViTConfig({ hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 32, image_size: 16, patch_size: 4, layer_norm_eps: 1e-6, qkv_bias: true, ...overrides });

// ViTModel.forward in plain torch, float64. argv: weights.safetensors, inputs.safetensors, config JSON.
const REFERENCE = String.raw`
import json, math, struct, sys
import torch
import torch.nn.functional as F

def load(path):
    data = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32', info
        begin, end = info['data_offsets']
        out[name] = torch.frombuffer(bytearray(data[8 + n + begin:8 + n + end]), dtype=torch.float32).reshape(info['shape']).double()
    return out

w = load(sys.argv[1])
x = load(sys.argv[2])['pixel_values']
cfg = json.loads(sys.argv[3])
D, H, eps = cfg['hidden_size'], cfg['num_attention_heads'], cfg['layer_norm_eps']
B = x.shape[0]
patches = F.conv2d(x, w['embeddings.patch_embeddings.projection.weight'], w['embeddings.patch_embeddings.projection.bias'], stride=cfg['patch_size'])
h = torch.cat([w['embeddings.cls_token'].expand(B, -1, -1), patches.flatten(2).transpose(1, 2)], 1) + w['embeddings.position_embeddings']
heads = lambda t: t.view(B, -1, H, D // H).transpose(1, 2)
for i in range(cfg['num_hidden_layers']):
    p = 'encoder.layer.%d.' % i
    ln = lambda t, name: F.layer_norm(t, (D,), w[p + name + '.weight'], w[p + name + '.bias'], eps)
    lin = lambda t, name: F.linear(t, w[p + name + '.weight'], w.get(p + name + '.bias'))
    y = ln(h, 'layernorm_before')
    q, k, v = (heads(lin(y, 'attention.attention.' + n)) for n in ('query', 'key', 'value'))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H), -1) @ v
    h = h + lin(a.transpose(1, 2).reshape(B, -1, D), 'attention.output.dense')
    h = h + lin(F.gelu(lin(ln(h, 'layernorm_after'), 'intermediate.dense')), 'output.dense')
h = F.layer_norm(h, (D,), w['layernorm.weight'], w['layernorm.bias'], eps)
print(json.dumps({'last_hidden_state': h.flatten().tolist(), 'cls': h[:, 0].flatten().tolist()}))
`;

/** Perturbs every LayerNorm away from 1/0, so the test sees their weights act. */
function perturbNorms(model: ViTModel, random: Random): void {
  for (const [key, parameter] of model.namedParameters()) {
    if (!/layernorm(_before|_after)?\.(weight|bias)$/.test(key)) continue;
    const data = parameter.data.data as Float32Array;
    data.forEach((value, i) => (data[i] = value + (random.next() - 0.5) * 0.4));
  }
}

async function runViT(model: ViTModel, pixels: HostTensor): Promise<Record<string, HostTensor>> {
  const graph = new Graph();
  const output = model.forward(constantBindings(graph, model), graph.input('pixel_values', 'float32', pixels.shape));
  const session = await GraphSession.create(encodeModel(graph.toModel({ last_hidden_state: output.lastHiddenState, cls: output.clsFeature })));
  try {
    return await session.run({ pixel_values: pixels });
  } finally {
    await session.release();
  }
}

function maxAbsError(actual: ArrayLike<number>, expected: readonly number[]): number {
  assert.equal(actual.length, expected.length);
  let error = 0;
  for (let i = 0; i < expected.length; i++) error = Math.max(error, Math.abs(actual[i]! - expected[i]!));
  return error;
}

for (const qkvBias of [true, false]) {
  test(`ViTModel matches a plain-PyTorch ViTModel forward (qkv_bias ${qkvBias}) within 1e-4`, async (t) => {
    await requireTorch();
    const directory = await mkdtemp(join(tmpdir(), 'vit-'));
    try {
      const random = new Random(qkvBias ? 5 : 6);
      const model = new ViTModel(tinyConfig({ qkv_bias: qkvBias }), { random });
      perturbNorms(model, random);
      await model.save(join(directory, 'model'));
      const pixels = normalTensor(random, [2, 3, 16, 16]);
      await writeSafetensors(join(directory, 'inputs.safetensors'), { pixel_values: pixels });
      await writeFile(join(directory, 'reference.py'), REFERENCE);
      const { stdout } = await run('/usr/bin/python3', [join(directory, 'reference.py'), join(directory, 'model', 'model.safetensors'), join(directory, 'inputs.safetensors'), JSON.stringify(model.config)]);
      const expected = JSON.parse(stdout) as { last_hidden_state: number[]; cls: number[] };

      const loaded = await ViTModel.fromPretrained(join(directory, 'model'));
      const outputs = await runViT(loaded, pixels);
      assert.deepEqual(outputs['last_hidden_state']!.shape, [2, 17, 16]);
      assert.deepEqual(outputs['cls']!.shape, [2, 16]);
      const errors = { last: maxAbsError(outputs['last_hidden_state']!.data as Float32Array, expected.last_hidden_state), cls: maxAbsError(outputs['cls']!.data as Float32Array, expected.cls) };
      t.diagnostic(`max abs error: last_hidden_state ${errors.last.toExponential(2)}, CLS ${errors.cls.toExponential(2)}`);
      assert.ok(errors.last <= 1e-4 && errors.cls <= 1e-4, `max abs errors ${JSON.stringify(errors)}`);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
}

test('a ViTFor… checkpoint (vit. prefix, classifier head) loads; strict loading names extra keys; bad configs are refused', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'vit-layout-'));
  try {
    const model = new ViTModel(tinyConfig(), { random: new Random(2) });
    await model.save(directory);
    const file = join(directory, 'model.safetensors');
    const tensors = await readSafetensors(file);
    const pixels = normalTensor(new Random(3), [1, 3, 16, 16]);
    const reference = (await runViT(model, pixels))['cls']!.data;

    const prefixed = new Map([...tensors].map(([name, tensor]) => [`vit.${name}`, tensor]));
    prefixed.set('classifier.weight', { dtype: 'float32', shape: [10, 16], data: new Float32Array(160) });
    prefixed.set('classifier.bias', { dtype: 'float32', shape: [10], data: new Float32Array(10) });
    await writeSafetensors(file, prefixed);
    assert.deepEqual((await runViT(await ViTModel.fromPretrained(directory), pixels))['cls']!.data, reference);

    const extra = new Map(tensors);
    extra.set('embeddings.mask_token', { dtype: 'float32', shape: [1, 1, 16], data: new Float32Array(16) });
    await writeSafetensors(file, extra);
    await assert.rejects(ViTModel.fromPretrained(directory), /unexpected keys: embeddings\.mask_token/);

    assert.throws(() => tinyConfig({ model_type: 'clip' }), /model_type must be 'vit'/);
    assert.throws(() => tinyConfig({ hidden_size: 18 }), /multiple of num_attention_heads/);
    assert.throws(() => parseViTConfig({ hidden_size: 16 }), /invalid ViT config: num_hidden_layers/);
    const graph = new Graph();
    assert.throws(() => model.forward(constantBindings(graph, model), graph.input('x', 'float32', [1, 3, 32, 32])), /pixel_values must be \(batch, 3, 16, 16\)/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
