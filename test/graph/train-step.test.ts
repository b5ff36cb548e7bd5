import test from 'node:test';
import assert from 'node:assert/strict';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { averagedParameters, TrainingStep, type TrainingStepOptions } from '../../src/graph/train-step.js';
import { learningRateAt, type OptimizerConfig, type ScheduleConfig } from '../../src/graph/optim.js';
import { add, matmul } from '../../src/graph/ops/elementwise.js';
import { mseLoss } from '../../src/graph/ops/nn.js';
import type { GraphSession } from '../../src/graph/session.js';

// Linear regression pred = x·W + b, loss = mean((pred − y)²): its gradients have a closed form,
// so the in-graph optimizers can be checked against a plain JavaScript implementation of torch.optim.
const rows = 6;
const inputs = 4;
const outputs = 3;
const sequence = (n: number, f: (i: number) => number) => Float64Array.from({ length: n }, (_, i) => f(i));
const x = sequence(rows * inputs, (i) => Math.sin(1.3 * i));
const y = sequence(rows * outputs, (i) => Math.cos(0.7 * i));
const initialW = sequence(inputs * outputs, (i) => 0.3 * Math.sin(2.1 * i + 1));
const initialB = sequence(outputs, (i) => 0.1 * i);

function regressionGradients(w: Float64Array, b: Float64Array): { gw: Float64Array; gb: Float64Array } {
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(b.length);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outputs; o++) {
      let prediction = b[o]!;
      for (let i = 0; i < inputs; i++) prediction += x[r * inputs + i]! * w[i * outputs + o]!;
      const dPrediction = (2 * (prediction - y[r * outputs + o]!)) / (rows * outputs);
      gb[o]! += dPrediction;
      for (let i = 0; i < inputs; i++) gw[i * outputs + o]! += x[r * inputs + i]! * dPrediction;
    }
  }
  return { gw, gb };
}

function regressionOptions(optimizer: OptimizerConfig, schedule: ScheduleConfig, maxGradNorm?: number): TrainingStepOptions {
  return {
    parameters: {
      w: { dtype: 'float64', shape: [inputs, outputs], data: initialW.slice() },
      b: { dtype: 'float64', shape: [outputs], data: initialB.slice() },
    },
    batch: { x: { dtype: 'float64', shape: [rows, inputs] }, y: { dtype: 'float64', shape: [rows, outputs] } },
    loss: ({ parameters, batch }) => mseLoss(add(matmul(batch['x']!, parameters['w']!), parameters['b']!), batch['y']!),
    optimizer,
    schedule,
    maxGradNorm,
    noWeightDecay: (key) => key === 'b',
  };
}

const regressionBatch: Record<string, HostTensor> = {
  x: { dtype: 'float64', shape: [rows, inputs], data: x },
  y: { dtype: 'float64', shape: [rows, outputs], data: y },
};

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance * (1 + Math.abs(expected[i]!)), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

test('AdamW with clipping, decoupled weight decay and a warm-up cosine schedule matches torch.optim semantics', async () => {
  const optimizer = { kind: 'adamw', beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 } as const;
  const schedule: ScheduleConfig = { kind: 'cosine', learningRate: 0.05, warmupSteps: 2, totalSteps: 6, finalLearningRate: 0.005 };
  const maxGradNorm = 0.3;
  const step = await TrainingStep.create(regressionOptions(optimizer, schedule, maxGradNorm));
  const w = initialW.slice();
  const b = initialB.slice();
  const state = { mw: new Float64Array(w.length), vw: new Float64Array(w.length), mb: new Float64Array(b.length), vb: new Float64Array(b.length) };
  for (let t = 1; t <= 6; t++) {
    const { gw, gb } = regressionGradients(w, b);
    const norm = Math.sqrt([...gw, ...gb].reduce((s, g) => s + g * g, 0));
    const coefficient = Math.min(1, maxGradNorm / (norm + 1e-6));
    const lr = learningRateAt(schedule, t);
    const update = (p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array, decay: number) => {
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]! * coefficient;
        p[i]! *= 1 - lr * decay;
        m[i] = 0.8 * m[i]! + 0.2 * gi;
        v[i] = 0.95 * v[i]! + 0.05 * gi * gi;
        const denominator = Math.sqrt(v[i]!) / Math.sqrt(1 - 0.95 ** t) + 1e-6;
        p[i]! -= (lr / (1 - 0.8 ** t)) * (m[i]! / denominator);
      }
    };
    update(w, gw, state.mw, state.vw, 0.1);
    update(b, gb, state.mb, state.vb, 0);
    const result = await step.run(regressionBatch);
    assert.ok(Math.abs(result.gradNorm - norm) < 1e-12 * (1 + norm), `grad norm at step ${t}`);
    assert.equal(result.learningRate, lr);
  }
  const trained = (await step.state());
  assertClose(trained.parameters['w']!.data as Float64Array, w, 1e-12, 'w');
  assertClose(trained.parameters['b']!.data as Float64Array, b, 1e-12, 'b');
  assertClose(trained.optimizer['exp_avg_sq.w']!.data as Float64Array, state.vw, 1e-12, 'exp_avg_sq.w');
  await step.release();
});

test('SGD with momentum and L2 weight decay matches torch.optim.SGD', async () => {
  const schedule: ScheduleConfig = { kind: 'linear', learningRate: 0.1, totalSteps: 10 };
  const step = await TrainingStep.create(regressionOptions({ kind: 'sgd', momentum: 0.9, weightDecay: 0.01 }, schedule));
  const w = initialW.slice();
  const b = initialB.slice();
  const bufferW = new Float64Array(w.length);
  const bufferB = new Float64Array(b.length);
  for (let t = 1; t <= 4; t++) {
    const { gw, gb } = regressionGradients(w, b);
    const lr = learningRateAt(schedule, t);
    const update = (p: Float64Array, g: Float64Array, buffer: Float64Array, decay: number) => {
      for (let i = 0; i < p.length; i++) {
        buffer[i] = 0.9 * buffer[i]! + g[i]! + decay * p[i]!;
        p[i]! -= lr * buffer[i]!;
      }
    };
    update(w, gw, bufferW, 0.01);
    update(b, gb, bufferB, 0);
    await step.run(regressionBatch);
  }
  assertClose((await step.state()).parameters['w']!.data as Float64Array, w, 1e-12, 'w');
  assertClose((await step.state()).parameters['b']!.data as Float64Array, b, 1e-12, 'b');
  await step.release();
});

test('learning-rate schedules: warm-up, then linear, polynomial and cosine decay', () => {
  const base = { learningRate: 1, warmupSteps: 4, totalSteps: 14, finalLearningRate: 0.1 };
  assert.equal(learningRateAt({ ...base, kind: 'constant' }, 2), 0.5);
  assert.equal(learningRateAt({ ...base, kind: 'constant' }, 100), 1);
  assert.equal(learningRateAt({ ...base, kind: 'linear' }, 4), 1);
  assert.ok(Math.abs(learningRateAt({ ...base, kind: 'linear' }, 9) - 0.55) < 1e-15);
  assert.ok(Math.abs(learningRateAt({ ...base, kind: 'polynomial', power: 2 }, 9) - (0.1 + 0.9 * 0.25)) < 1e-15);
  assert.ok(Math.abs(learningRateAt({ ...base, kind: 'cosine' }, 9) - 0.55) < 1e-15);
  assert.equal(learningRateAt({ ...base, kind: 'cosine' }, 14), 0.1);
  assert.equal(learningRateAt({ ...base, kind: 'cosine' }, 20), 0.1);
  assert.throws(() => learningRateAt({ kind: 'cosine', learningRate: 1 }, 1), /totalSteps/);
});

test('state() and loadState() resume a run exactly; mismatched state is rejected by name', async () => {
  const options = regressionOptions({ kind: 'adamw' }, { kind: 'constant', learningRate: 0.01 });
  const uninterrupted = await TrainingStep.create(options);
  const losses: number[] = [];
  for (let t = 0; t < 6; t++) losses.push((await uninterrupted.run(regressionBatch)).loss);

  const first = await TrainingStep.create(options);
  for (let t = 0; t < 3; t++) await first.run(regressionBatch);
  const snapshot = (await first.state());
  const resumed = await TrainingStep.create(options);
  resumed.loadState(snapshot);
  assert.equal(resumed.step, 3);
  const resumedLosses: number[] = [];
  for (let t = 0; t < 3; t++) resumedLosses.push((await resumed.run(regressionBatch)).loss);
  assert.deepEqual(resumedLosses, losses.slice(3));
  assert.deepEqual((await resumed.state()).parameters['w']!.data, (await uninterrupted.state()).parameters['w']!.data);

  const broken = { ...snapshot, optimizer: { ...snapshot.optimizer } };
  delete broken.optimizer['exp_avg.w'];
  assert.throws(() => resumed.loadState(broken), /missing \[exp_avg\.w\]/);
  const reshaped = { ...snapshot, parameters: { ...snapshot.parameters, b: { dtype: 'float64', shape: [4], data: new Float64Array(4) } as HostTensor } };
  assert.throws(() => resumed.loadState(reshaped), /parameter b: expected float64\[3\], got float64\[4\]/);
  await Promise.all([uninterrupted.release(), first.release(), resumed.release()]);
});

test('weight EMA: the average after each step equals the host computation; training and frozen parameters are unchanged; resume is exact', async () => {
  // Decay 0.25 with 2 warm-up steps: 0 for steps 1–3, 2/11 at step 4, then capped at 0.25.
  const ema = { decay: 0.25, warmupSteps: 2 };
  const hostDecay = (t: number) => (t - 3 <= 0 ? 0 : Math.min(0.25, (1 + (t - 3)) / (10 + (t - 3))));
  const options: TrainingStepOptions = { ...regressionOptions({ kind: 'adamw' }, { kind: 'constant', learningRate: 0.05 }), trainable: ['w'] };
  const plain = await TrainingStep.create(options);
  const averaged = await TrainingStep.create({ ...options, ema });
  const average = initialW.slice();
  let snapshot = await averaged.state();
  for (let t = 1; t <= 7; t++) {
    const [plainResult, averagedResult] = [await plain.run(regressionBatch), await averaged.run(regressionBatch)];
    assert.deepEqual(averagedResult, plainResult, `step ${t} trains as without EMA`);
    const w = (await plain.state()).parameters['w']!.data as Float64Array;
    const decay = hostDecay(t);
    for (let i = 0; i < average.length; i++) average[i] = decay * average[i]! + (1 - decay) * w[i]!;
    const state = await averaged.state();
    assertClose(state.optimizer['ema.w']!.data as Float64Array, average, 1e-12, `ema.w at step ${t}`);
    if (t === 4) snapshot = state;
  }
  const final = await averaged.state();
  assert.deepEqual(final.parameters, (await plain.state()).parameters);
  assert.deepEqual(Object.keys(final.optimizer).sort(), ['ema.w', 'exp_avg.w', 'exp_avg_sq.w']);
  assert.deepEqual(averagedParameters(final), { w: final.optimizer['ema.w'], b: final.parameters['b'] }, 'frozen b keeps its live value');
  const plainState = await plain.state();
  assert.deepEqual(averagedParameters(plainState), plainState.parameters, 'without EMA the live parameters');

  const resumed = await TrainingStep.create({ ...options, ema });
  resumed.loadState(snapshot);
  for (let t = 5; t <= 7; t++) await resumed.run(regressionBatch);
  assert.deepEqual(await resumed.state(), final);
  await Promise.all([plain.release(), averaged.release(), resumed.release()]);
});

test('frozen parameters built in as constants: the same steps as fed ones, not among the inputs, and a state with other frozen values is refused', async () => {
  const options: TrainingStepOptions = { ...regressionOptions({ kind: 'adamw' }, { kind: 'constant', learningRate: 0.05 }), trainable: ['w'] };
  const fed = await TrainingStep.create(options);
  const built = await TrainingStep.create({ ...options, frozenAsConstants: true });
  for (let t = 1; t <= 4; t++) assert.deepEqual(await built.run(regressionBatch), await fed.run(regressionBatch), `step ${t}`);
  const state = await built.state();
  assert.deepEqual(state, await fed.state(), 'the state still holds the frozen b');
  assert.ok(!(built as unknown as { session: GraphSession }).session.inputNames.includes('b'), 'b is no input of the graph');

  const resumed = await TrainingStep.create({ ...options, frozenAsConstants: true });
  resumed.loadState(state);
  assert.deepEqual(await resumed.run(regressionBatch), await built.run(regressionBatch));
  const otherB = { ...state, parameters: { ...state.parameters, b: { dtype: 'float64', shape: [outputs], data: Float64Array.of(0, 0.1, 0.25) } as HostTensor } };
  assert.throws(() => resumed.loadState(otherB), /the state's frozen parameter b differs from the one this training step was built with/);
  await Promise.all([fed.release(), built.release(), resumed.release()]);
});

test('a batch of the wrong shape or type is rejected before running', async () => {
  const step = await TrainingStep.create(regressionOptions({ kind: 'sgd' }, { kind: 'constant', learningRate: 0.1 }));
  await assert.rejects(step.run({ ...regressionBatch, x: { dtype: 'float64', shape: [rows, 5], data: new Float64Array(rows * 5) } }), /batch x: expected float64\[6, 4\], got float64\[6, 5\]/);
  await assert.rejects(step.run({ x: regressionBatch['x']! }), /batch is missing y/);
  assert.equal(step.step, 0);
  await step.release();
});
