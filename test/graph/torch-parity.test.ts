// Gradients of whole blocks against PyTorch in float64 on shared weights: the test writes the
// weights and inputs, bench/torch/parity.py rebuilds the same modules in torch, computes the
// reference and writes it back. Our graphs run in float32, so errors are measured relative to
// the largest reference entry of each tensor.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { grad } from '../../src/graph/autodiff.js';
import { Graph, type Value } from '../../src/graph/graph.js';
import { mul, sum } from '../../src/graph/ops/elementwise.js';
import { GraphSession } from '../../src/graph/session.js';
import { TrainingStep } from '../../src/graph/train-step.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { normalTensor } from '../../src/nn/layers.js';
import { contextFromValues, inputBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { Random } from '../../src/util/random.js';
import { type EngineModel, type ModelConfig, Mlp, buildModel } from '../../bench/engine-models.js';
import { requireTorch, runTorchScript } from '../../bench/torch-process.js';

const tolerance = 1e-4;

const maxAbs = (tensor: HostTensor): number => Array.from(tensor.data as ArrayLike<number>).reduce((largest, value) => Math.max(largest, Math.abs(value)), 0);

/** max |actual − expected| / scale, the scale being max |expected| unless given. */
function scaledError(actual: HostTensor, expected: HostTensor, scale = maxAbs(expected)): number {
  assert.deepEqual(actual.shape, expected.shape);
  assert.ok(scale > 0, 'the reference is all zeros, which would test nothing');
  let error = 0;
  for (let i = 0; i < expected.data.length; i++) error = Math.max(error, Math.abs(Number(actual.data[i]) - Number(expected.data[i])));
  return error / scale;
}

/**
 * The key bias adds q·b to every score of a query, which softmax ignores: its true gradient is
 * zero and the reference holds only rounding noise, so it is measured on the key weight's scale.
 */
const scaleKeys: Readonly<Record<string, string>> = { 'grad.attn.k_proj.bias': 'grad.attn.k_proj.weight' };

/** Runs parity.py on `inputs` and returns what it wrote. */
async function torchReference(config: object, inputs: Record<string, HostTensor>): Promise<Map<string, HostTensor>> {
  await requireTorch();
  const directory = await mkdtemp(join(tmpdir(), 'torch-parity-'));
  try {
    const inputPath = join(directory, 'inputs.safetensors');
    const outputPath = join(directory, 'outputs.safetensors');
    await writeSafetensors(inputPath, inputs);
    await runTorchScript('parity.py', [JSON.stringify(config), inputPath, outputPath]);
    return await readSafetensors(outputPath);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** Norm scales and shifts start at 1 and 0; perturbing them makes their role in the backward visible. */
function perturbNorms(model: EngineModel, random: Random): void {
  for (const [key, parameter] of model.namedParameters()) {
    if (!/norm\d\.(weight|bias)$/.test(key)) continue;
    const noise = normalTensor(random, parameter.shape, 0.2);
    const data = parameter.data.data as Float32Array;
    data.forEach((value, i) => (data[i] = value + Number(noise.data[i])));
  }
}

/** loss = Σ model(input)·R; our gradients with respect to the input and every parameter. */
async function ourGradients(model: EngineModel, input: HostTensor, r: HostTensor): Promise<Record<string, HostTensor>> {
  const graph = new Graph('parity');
  const context = inputBindings(graph, model);
  const x = graph.input('input', 'float32', input.shape);
  const output = model.forward(context, x);
  const loss = sum(mul(output, graph.input('R', 'float32', r.shape)));
  const keys = model.namedParameters().map(([key]) => key);
  const wrt = [x, ...model.namedParameters().map(([, parameter]) => context.value(parameter))];
  const gradients = grad(loss, wrt);
  const outputs: Record<string, Value> = { output };
  ['input', ...keys].forEach((key, i) => (outputs[`grad.${key}`] = gradients[i]!));
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs)));
  try {
    return await session.run({ ...model.stateDict(), input, R: r });
  } finally {
    await session.release();
  }
}

async function checkGradients(t: test.TestContext, config: ModelConfig, inputShape: number[]): Promise<void> {
  const random = new Random(7);
  const model = buildModel(config, random);
  perturbNorms(model, random);
  const input = normalTensor(random, inputShape);
  const r = normalTensor(random, inputShape);
  const ours = await ourGradients(model, input, r);
  const reference = await torchReference({ mode: 'gradients', model: config }, { ...model.stateDict(), input, R: r });
  const names = ['output', 'grad.input', ...model.namedParameters().map(([key]) => `grad.${key}`)];
  assert.deepEqual([...reference.keys()].sort(), [...names].sort());
  let worst = 0;
  for (const name of names) {
    const scaleKey = scaleKeys[name];
    const error = scaledError(ours[name]!, reference.get(name)!, scaleKey ? maxAbs(reference.get(scaleKey)!) : undefined);
    worst = Math.max(worst, error);
    assert.ok(error < tolerance, `${name}: scaled error ${error.toExponential(2)}`);
  }
  t.diagnostic(`largest scaled error over ${names.length} tensors: ${worst.toExponential(2)}`);
}

test('TransformerBlock: output and gradients of every parameter and the input match PyTorch', async (t) => {
  await checkGradients(t, { kind: 'transformer', width: 32, heads: 4, mlpWidth: 64 }, [2, 5, 32]);
});

test('ConvBlock: output and gradients of every parameter and the input match PyTorch', async (t) => {
  await checkGradients(t, { kind: 'conv', channels: 64, groups: 32 }, [2, 64, 6, 6]);
});

test('three AdamW steps of the Mlp match torch.optim.AdamW', async (t) => {
  const config = { kind: 'mlp', inFeatures: 12, hiddenFeatures: 32, outFeatures: 6 } as const;
  const optimizer = { learningRate: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const steps = 3;
  const random = new Random(11);
  const model = buildModel(config, random) as Mlp;
  const batch = { x: normalTensor(random, [8, 12]), target: normalTensor(random, [8, 6]) };
  const initial = model.stateDict();
  const training = await TrainingStep.create({
    parameters: initial,
    batch: { x: { dtype: 'float32', shape: [8, 12] }, target: { dtype: 'float32', shape: [8, 6] } },
    loss: ({ graph, parameters, batch: traced }) => model.loss(contextFromValues(graph, model, parameters), traced),
    optimizer: { kind: 'adamw', ...optimizer },
    schedule: { kind: 'constant', learningRate: optimizer.learningRate },
  });
  for (let step = 0; step < steps; step++) await training.run(batch);
  const trained = (await training.state()).parameters;
  await training.release();
  const reference = await torchReference({ mode: 'adamw', model: config, optimizer, steps }, { ...initial, ...batch });
  let worst = 0;
  for (const [key] of model.namedParameters()) {
    const error = scaledError(trained[key]!, reference.get(key)!);
    // The steps must have moved the parameter, or the comparison would only check the start.
    assert.ok(scaledError(initial[key]!, reference.get(key)!) > 10 * tolerance, `${key} did not move`);
    worst = Math.max(worst, error);
    assert.ok(error < tolerance, `${key}: scaled error ${error.toExponential(2)}`);
  }
  t.diagnostic(`largest scaled parameter error after ${steps} steps: ${worst.toExponential(2)}`);
});
