// Engine benchmarks: one AdamW training step of each reference block against PyTorch CPU on the
// same weights, batch and optimizer, and the cost of compiling a large graph. The two sides take
// turns for a few rounds and the ratio is the median of the rounds' ratios: this machine's speed
// drifts by a quarter from one minute to the next, and a side timed only once, a minute apart from
// the other, carries all of that drift into its ratio. BENCH_PROFILE=1 adds
// where our step's time goes (bench/profile.ts): time inside ORT's run, each operator type's kernel
// time, the rest of the step outside the run, and what copying the step's outputs costs alone (the
// profiled step is a little slower than an unprofiled one).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { grad } from '../src/graph/autodiff.js';
import { Graph } from '../src/graph/graph.js';
import { sum } from '../src/graph/ops/elementwise.js';
import { GraphSession } from '../src/graph/session.js';
import type { LossContext } from '../src/graph/train-step.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { normalTensor } from '../src/nn/layers.js';
import { Module, contextFromValues, inputBindings } from '../src/nn/module.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { encodeModel } from '../src/onnx/proto.js';
import { Random } from '../src/util/random.js';
import { type ModelConfig, TransformerBlock, buildModel } from './engine-models.js';
import { adamOutputBytes, timeProfiled } from './profile.js';
import { BENCH_ADAMW as optimizer, BENCH_THREADS as threads, type TrainingTiming, median, round, timeTrainingSteps } from './measure.js';
import { runTorchScript } from './torch-process.js';

// Ten steps after three warm-ups were still inside the first steps' heap growth; fifty after ten
// are steady.
const warmup = 10;
const timedSteps = 50;
const rounds = 3;

interface TrainCase {
  name: string;
  model: ModelConfig;
  batch: (random: Random) => Record<string, HostTensor>;
}

function randomLabels(random: Random, shape: number[], classes: number): HostTensor {
  const count = shape.reduce((p, q) => p * q, 1);
  return { dtype: 'int64', shape, data: BigInt64Array.from({ length: count }, () => BigInt(random.int(classes))) };
}

const trainCases: TrainCase[] = [
  {
    name: 'mlp_train',
    model: { kind: 'mlp', inFeatures: 512, hiddenFeatures: 2048, outFeatures: 512 },
    batch: (random) => ({ x: normalTensor(random, [256, 512]), target: normalTensor(random, [256, 512]) }),
  },
  {
    name: 'conv_train',
    model: { kind: 'conv', channels: 64, groups: 32 },
    batch: (random) => ({ x: normalTensor(random, [16, 64, 32, 32]), target: normalTensor(random, [16, 64, 32, 32]) }),
  },
  {
    name: 'transformer_train',
    model: { kind: 'transformer', width: 256, heads: 4, mlpWidth: 1024 },
    batch: (random) => ({ x: normalTensor(random, [8, 128, 256]), labels: randomLabels(random, [8, 128], 256) }),
  },
];

async function timeOurs(trainCase: TrainCase, parameters: Record<string, HostTensor>, batch: Record<string, HostTensor>): Promise<TrainingTiming & { profile?: Record<string, unknown> }> {
  const model = buildModel(trainCase.model, new Random(0));
  const loss = ({ graph, parameters: values, batch: traced }: LossContext) => model.loss(contextFromValues(graph, model, values), traced);
  return timeProfiled((session) => timeTrainingSteps({ parameters, loss }, batch, warmup, timedSteps, session), adamOutputBytes(parameters), timedSteps);
}

async function timeTorch(trainCase: TrainCase, parameters: Record<string, HostTensor>, batch: Record<string, HostTensor>): Promise<TrainingTiming & { blas: string }> {
  const directory = await mkdtemp(join(tmpdir(), 'engine-bench-'));
  try {
    const inputs = join(directory, 'inputs.safetensors');
    await writeSafetensors(inputs, { ...parameters, ...batch });
    const config = { model: trainCase.model, optimizer, warmup, steps: timedSteps, threads };
    const output = await runTorchScript('engine.py', [JSON.stringify(config), inputs], { benchmark: true });
    const result = JSON.parse(output) as { torch_ms: number; first_loss: number; blas: string };
    return { ms: result.torch_ms, firstLoss: result.first_loss, blas: result.blas };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

async function benchTrainCase(trainCase: TrainCase): Promise<void> {
  const random = new Random(1);
  const parameters = buildModel(trainCase.model, random).stateDict();
  const batch = trainCase.batch(random);
  const oursMs: number[] = [];
  const torchMs: number[] = [];
  let first: { ours: number; torch: number; blas: string; profile?: Record<string, unknown> } | undefined;
  for (let round = 0; round < rounds; round++) {
    const ours = await timeOurs(trainCase, parameters, batch);
    const torch = await timeTorch(trainCase, parameters, batch);
    oursMs.push(ours.ms);
    torchMs.push(torch.ms);
    first ??= { ours: ours.firstLoss, torch: torch.firstLoss, blas: torch.blas, ...(ours.profile ? { profile: ours.profile } : {}) };
  }
  // Equal first losses show both sides ran the same model on the same data.
  console.log(JSON.stringify({
    case: trainCase.name,
    ours_ms: round(median(oursMs)),
    torch_ms: round(median(torchMs)),
    ratio: round(median(oursMs.map((ms, index) => torchMs[index]! / ms))),
    round_ratios: oursMs.map((ms, index) => round(torchMs[index]! / ms)),
    first_loss: { ours: round(first!.ours, 6), torch: round(first!.torch, 6) },
    torch_blas: first!.blas,
    ...(first!.profile ? { profile: first!.profile } : {}),
  }));
}

/** A stack of transformer blocks: parameters keyed `blocks.<i>.…`. */
class BlockStack extends Module {
  constructor(readonly blocks: TransformerBlock[]) {
    super();
  }
}

/** Trace, encode and session creation of forward and backward through a stack of transformer blocks. */
async function benchCompile(): Promise<void> {
  const random = new Random(2);
  const stack = new BlockStack(Array.from({ length: 36 }, () => new TransformerBlock(64, 4, 256, random)));
  const tracing = performance.now();
  const graph = new Graph('compile_bench');
  const context = inputBindings(graph, stack);
  const x = graph.input('x', 'float32', [2, 16, 64]);
  const hidden = stack.blocks.reduce((value, block, index) => graph.scope(`blocks.${index}`, () => block.forward(context, value)), x);
  const parameters = stack.namedParameters().map(([, parameter]) => context.value(parameter));
  const loss = sum(hidden);
  const gradients = grad(loss, parameters);
  const outputs = Object.fromEntries(gradients.map((gradient, index) => [`grad_${index}`, gradient]));
  const traced = performance.now();
  const model = encodeModel(graph.toModel({ loss, ...outputs }));
  const encoded = performance.now();
  const session = await GraphSession.create(model, { threads });
  const created = performance.now();
  await session.release();
  console.log(JSON.stringify({
    case: 'compile_5k',
    nodes: graph.nodes.length,
    trace_ms: round(traced - tracing),
    encode_ms: round(encoded - traced),
    session_ms: round(created - encoded),
    total_ms: round(created - tracing),
  }));
}

export async function runEngineBench(): Promise<void> {
  for (const trainCase of trainCases) await benchTrainCase(trainCase);
  await benchCompile();
}
