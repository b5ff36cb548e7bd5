// `kosmos-g doctor`: what this machine offers (versions, execution providers, threads) and a
// short training run through the whole engine — tracing, autodiff, AdamW in the graph, ONNX
// Runtime — on the chosen device: a two-layer MLP learns a fixed random teacher network. Runs of
// at least MIN_JUDGED_STEPS must cut the loss tenfold; a shorter run only shows that the engine runs.
import type { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { availableParallelism, cpus, platform, arch } from 'node:os';
import { type Device, probeWebGpu, resolveDevice } from '../graph/devices.js';
import { TrainingStep } from '../graph/train-step.js';
import { gelu } from '../graph/ops/elementwise.js';
import { mseLoss } from '../graph/ops/nn.js';
import { contextFromValues } from '../nn/module.js';
import { Linear, normalTensor, type UniformSource } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import type { Value } from '../graph/graph.js';
import type { HostTensor } from '../onnx/dtype.js';
import { Random } from '../util/random.js';
import { positiveInteger } from './arguments.js';

/** The MLP cuts its loss about 20× in 50 steps and 270× in 100; fewer steps are too few to judge. */
const MIN_JUDGED_STEPS = 50;
/** Warm-up of the learning rate; shorter for runs too short to hold it. */
const WARMUP_STEPS = 10;

class TwoLayerPerceptron extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(inputs: number, hidden: number, outputs: number, random: UniformSource) {
    super();
    this.fc1 = new Linear(inputs, hidden, { random });
    this.fc2 = new Linear(hidden, outputs, { random });
  }
  forward(context: TraceContext, x: Value): Value {
    const hidden = context.graph.scope('fc1', () => gelu(this.fc1.forward(context, x)));
    return context.graph.scope('fc2', () => this.fc2.forward(context, hidden));
  }
}

/** Host-side teacher outputs y = x·W (a fixed random linear map the student must learn). */
function teacherTargets(x: Float32Array, weights: Float32Array, rows: number, inputs: number, outputs: number): Float32Array {
  const y = new Float32Array(rows * outputs);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outputs; o++) {
      let total = 0;
      for (let i = 0; i < inputs; i++) total += x[r * inputs + i]! * weights[i * outputs + o]!;
      y[r * outputs + o] = total;
    }
  }
  return y;
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('report versions and execution providers, then train a small network through the engine')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'CPU threads', positiveInteger('--threads'))
    .option('--steps <n>', `training steps (at least ${MIN_JUDGED_STEPS} to judge whether the engine learns)`, positiveInteger('--steps'), 200)
    .action(async (options: { device: string; threads?: number; steps: number }) => {
      if (!['cpu', 'webgpu', 'auto'].includes(options.device)) throw new Error(`unknown device ${options.device} (cpu, webgpu or auto)`);
      const webgpu = await probeWebGpu();
      console.log(`node ${process.version} on ${platform()} ${arch()}, ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'})`);
      console.log(`onnxruntime-node ${ort.env.versions.node}; execution providers: cpu, webgpu ${webgpu.available ? 'available' : `unavailable (${webgpu.reason})`}`);
      const device = await resolveDevice(options.device as Device);

      const [rows, inputs, hidden, outputs] = [64, 32, 128, 8];
      const random = new Random(1);
      const student = new TwoLayerPerceptron(inputs, hidden, outputs, random);
      const teacher = normalTensor(random, [inputs, outputs], 1 / Math.sqrt(inputs)).data as Float32Array;
      const x = normalTensor(random, [rows, inputs], 1).data as Float32Array;
      const batch: Record<string, HostTensor> = {
        x: { dtype: 'float32', shape: [rows, inputs], data: x },
        y: { dtype: 'float32', shape: [rows, outputs], data: teacherTargets(x, teacher, rows, inputs, outputs) },
      };
      const compileStart = performance.now();
      const step = await TrainingStep.create({
        parameters: student.stateDict(),
        batch: { x: { dtype: 'float32', shape: [rows, inputs] }, y: { dtype: 'float32', shape: [rows, outputs] } },
        loss: ({ graph, parameters, batch: values }) => mseLoss(student.forward(contextFromValues(graph, student, parameters), values['x']!), values['y']!),
        optimizer: { kind: 'adamw', weightDecay: 0 },
        schedule: { kind: 'cosine', learningRate: 3e-3, warmupSteps: Math.min(WARMUP_STEPS, options.steps - 1), totalSteps: options.steps },
        maxGradNorm: 1,
        session: { executionProvider: device, threads: options.threads },
      });
      const compileMs = performance.now() - compileStart;
      const first = await step.run(batch);
      const runStart = performance.now();
      let last = first;
      for (let i = 1; i < options.steps; i++) last = await step.run(batch);
      const msPerStep = (performance.now() - runStart) / Math.max(1, options.steps - 1);
      await step.release();
      console.log(`engine on ${device}: MLP ${inputs}→${hidden}→${outputs}, AdamW, ${options.steps} steps; compile ${compileMs.toFixed(0)} ms, ${msPerStep.toFixed(2)} ms/step`);
      console.log(`loss ${first.loss.toExponential(3)} → ${last.loss.toExponential(3)} (gradient norm ${last.gradNorm.toExponential(2)})`);
      if (options.steps < MIN_JUDGED_STEPS) {
        console.log(`ok: the engine runs (${options.steps} steps are too few to judge learning; use --steps ${MIN_JUDGED_STEPS} or more)`);
        return;
      }
      if (!(last.loss < first.loss / 10)) throw new Error(`the engine did not learn the teacher in ${options.steps} steps (loss fell less than 10×)`);
      console.log('ok');
    });
}
