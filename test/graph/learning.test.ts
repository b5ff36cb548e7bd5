// The engine learns: each reference block trains on a small synthetic task with AdamW from fixed
// seeds to a fixed loss, and a second identical run ends at the same loss.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { TrainingStep, type TensorSpec } from '../../src/graph/train-step.js';
import { normalTensor } from '../../src/nn/layers.js';
import { constantBindings, contextFromValues } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { Random } from '../../src/util/random.js';
import { ConvBlock, type EngineModel, Mlp, TransformerBlock } from '../../bench/engine-models.js';

/** The model's output on `x`, with its weights baked into the graph. */
async function evaluate(model: EngineModel, x: HostTensor): Promise<HostTensor> {
  const graph = new Graph('teacher');
  const output = model.forward(constantBindings(graph, model), graph.input('x', x.dtype, x.shape));
  const session = await GraphSession.create(encodeModel(graph.toModel({ y: output })));
  try {
    return (await session.run({ x }))['y']!;
  } finally {
    await session.release();
  }
}

const specOf = (tensor: HostTensor): TensorSpec => ({ dtype: tensor.dtype, shape: tensor.shape });

interface Task {
  model: () => EngineModel;
  batch: () => Promise<Record<string, HostTensor>>;
  steps: number;
  learningRate: number;
}

interface Run {
  first: number;
  last: number;
}

/** Trains a fresh model on one fixed batch and returns the first and last loss. */
async function train(task: Task): Promise<Run> {
  const model = task.model();
  const batch = await task.batch();
  const step = await TrainingStep.create({
    parameters: model.stateDict(),
    batch: Object.fromEntries(Object.entries(batch).map(([name, tensor]) => [name, specOf(tensor)])),
    loss: ({ graph, parameters, batch: traced }) => model.loss(contextFromValues(graph, model, parameters), traced),
    optimizer: { kind: 'adamw', weightDecay: 0 },
    schedule: { kind: 'constant', learningRate: task.learningRate },
  });
  try {
    const first = (await step.run(batch)).loss;
    let last = first;
    for (let i = 1; i < task.steps; i++) last = (await step.run(batch)).loss;
    return { first, last };
  } finally {
    await step.release();
  }
}

async function checkLearns(t: test.TestContext, task: Task, threshold: number): Promise<void> {
  const started = performance.now();
  const run = await train(task);
  const rerun = await train(task);
  t.diagnostic(`loss ${run.first.toPrecision(4)} → ${run.last.toPrecision(4)} in ${task.steps} steps; two runs took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  assert.ok(run.first > 2 * threshold, `the task starts solved (first loss ${run.first})`);
  assert.ok(run.last < threshold, `final loss ${run.last} is not below ${threshold}`);
  assert.ok(Math.abs(rerun.last - run.last) <= 1e-6, `a second run ends at ${rerun.last}, the first at ${run.last}`);
}

test('an Mlp regresses onto a random teacher Mlp', async (t) => {
  const task: Task = {
    model: () => new Mlp(8, 32, 4, new Random(1)),
    batch: async () => {
      const x = normalTensor(new Random(3), [64, 8]);
      return { x, target: await evaluate(new Mlp(8, 32, 4, new Random(2)), x) };
    },
    steps: 150,
    learningRate: 0.01,
  };
  await checkLearns(t, task, 0.001);
});

test('a ConvBlock regresses onto a random teacher ConvBlock', async (t) => {
  const task: Task = {
    model: () => new ConvBlock(32, new Random(1)),
    batch: async () => {
      const x = normalTensor(new Random(3), [4, 32, 8, 8]);
      return { x, target: await evaluate(new ConvBlock(32, new Random(2)), x) };
    },
    steps: 100,
    learningRate: 0.01,
  };
  await checkLearns(t, task, 0.001);
});

test('a TransformerBlock classifies each token by the strongest feature of its sequence mean', async (t) => {
  const [sequences, tokens, width] = [32, 6, 16];
  const task: Task = {
    model: () => new TransformerBlock(width, 2, 32, new Random(1)),
    batch: async () => {
      const x = normalTensor(new Random(3), [sequences, tokens, width]);
      const values = x.data as Float32Array;
      const labels = new BigInt64Array(sequences * tokens);
      for (let s = 0; s < sequences; s++) {
        // The class needs every token of the sequence: only attention can gather it.
        const featureSums = Array.from({ length: width }, (_, f) => {
          let total = 0;
          for (let token = 0; token < tokens; token++) total += values[(s * tokens + token) * width + f]!;
          return total;
        });
        labels.fill(BigInt(featureSums.indexOf(Math.max(...featureSums))), s * tokens, (s + 1) * tokens);
      }
      return { x, labels: { dtype: 'int64', shape: [sequences, tokens], data: labels } };
    },
    steps: 150,
    learningRate: 0.01,
  };
  await checkLearns(t, task, 0.01);
});
