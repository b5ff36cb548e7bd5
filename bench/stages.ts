// `npm run bench -- stages`: training steps of each Kosmos-G stage, and of the world stages that
// train through a frozen U-Net (ControlNet, LoRA), at the sizes of their shipped configs, built by
// the stages' own code as `train <stage>` builds them (src/train/runner.ts createTrainingStep).
// Per stage: the median time to draw a batch (data), the median training step (compute) with the
// frozen parameters fed every step and with them built in as constants (the default up to
// FROZEN_CONSTANTS_MAX_BYTES), taking turns so both see the same machine, and the steps and
// samples per second that follow for the default. Stages whose step trains every parameter it
// holds (stage 2 reads its frozen MLLM in a separate graph) have one variant. The inputs the
// configs name as earlier runs' exports are the shipped folders: models/kosmos-g-mini for the
// Kosmos-G networks, models/world-sd-mini for the decoder. Nothing is asserted about time.
//   BENCH_STAGES=kosmos-lm,kosmos-instruct  BENCH_STAGE_STEPS=6 (timed steps per variant)
import { readFile } from 'node:fs/promises';
import type { TrainingStep } from '../src/graph/train-step.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { DEFAULT_MODEL } from '../src/pipeline/default_model.js';
import { type BaseConfig, parseConfig } from '../src/train/config.js';
import { createTrainingStep } from '../src/train/runner.js';
import type { StageInstance } from '../src/train/stage.js';
import { findStage } from '../src/train/stages.js';
import { BENCH_THREADS, median, repositoryPath, round } from './measure.js';

/** Each stage's shipped config, with the earlier runs' exports it names replaced by shipped folders. */
const STAGE_CONFIGS: Record<string, { config: string; inputs: Record<string, string> }> = {
  'kosmos-lm': { config: 'configs/train/kosmos-lm-mini.json', inputs: {} },
  'kosmos-align': { config: 'configs/train/kosmos-align-mini.json', inputs: { kosmosG: DEFAULT_MODEL } },
  'kosmos-instruct': { config: 'configs/train/kosmos-instruct-mini.json', inputs: { kosmosG: DEFAULT_MODEL } },
  controlnet: { config: 'configs/train/controlnet-world-canny.json', inputs: {} },
  lora: { config: 'configs/train/lora-world-style.json', inputs: {} },
};

const WARMUP_STEPS = 2;

function settings(): { stages: string[]; steps: number } {
  const stages = process.env['BENCH_STAGES']?.split(',').filter(Boolean) ?? Object.keys(STAGE_CONFIGS);
  const unknown = stages.filter((stage) => !(stage in STAGE_CONFIGS));
  if (unknown.length) throw new Error(`BENCH_STAGES names ${unknown.join(', ')}; stages: ${Object.keys(STAGE_CONFIGS).join(', ')}`);
  const steps = Number(process.env['BENCH_STAGE_STEPS'] ?? 6);
  if (!Number.isInteger(steps) || steps < 1 || steps > 100) throw new Error(`BENCH_STAGE_STEPS must be an integer from 1 to 100, got ${process.env['BENCH_STAGE_STEPS']}`);
  return { stages, steps };
}

/** The config as `train <stage> --config` reads it, paths made absolute from the repository root. */
async function stageConfig(name: string): Promise<BaseConfig> {
  const { config, inputs } = STAGE_CONFIGS[name]!;
  const json = JSON.parse(await readFile(repositoryPath(config), 'utf8')) as Record<string, unknown>;
  const paths = Object.fromEntries(['vision', 'tokenizer', 'decoder', 'base', 'kosmosG'].filter((key) => typeof json[key] === 'string').map((key) => [key, repositoryPath(json[key] as string)]));
  return parseConfig(findStage(name).schema, { ...json, ...paths, ...inputs }, config);
}

/** Compute ms of each timed step of `step` on `batches` (one per step, drawn beforehand), and the first step's loss. */
async function timeSteps(step: TrainingStep, batches: readonly Record<string, HostTensor>[]): Promise<{ ms: number[]; firstLoss: number }> {
  const ms: number[] = [];
  let firstLoss = Number.NaN;
  for (const [index, batch] of batches.entries()) {
    const started = performance.now();
    const { loss } = await step.run(batch);
    if (index >= WARMUP_STEPS) ms.push(performance.now() - started);
    if (index === 0) firstLoss = loss;
  }
  return { ms, firstLoss };
}

async function benchStage(name: string, steps: number): Promise<void> {
  const config = await stageConfig(name);
  const instance: StageInstance = await findStage(name).build(config, { device: 'cpu', threads: BENCH_THREADS, report: () => {} });
  try {
    const dataMs: number[] = [];
    const batches: Record<string, HostTensor>[] = [];
    for (let index = 1; index <= WARMUP_STEPS + steps; index++) {
      const started = performance.now();
      batches.push(await instance.batch(index));
      dataMs.push(performance.now() - started);
    }
    const trainable = new Set(instance.trainable ?? Object.keys(instance.parameters));
    const count = (keys: string[]) => keys.reduce((total, key) => total + instance.parameters[key]!.data.length, 0);
    const frozen = Object.keys(instance.parameters).filter((key) => !trainable.has(key));
    const variants: Record<string, boolean | undefined> = frozen.length ? { fed: false, constants: true } : { all_trained: undefined };
    const session = { executionProvider: 'cpu' as const, threads: BENCH_THREADS };
    // Two passes over the variants, taking turns; each pass starts from the initial parameters.
    const computeMs: Record<string, number[]> = {};
    const firstLoss: Record<string, number> = {};
    for (let pass = 0; pass < 2; pass++) {
      for (const [variant, asConstants] of Object.entries(variants)) {
        const step = await createTrainingStep(instance, config, instance.parameters, session, asConstants);
        try {
          const timing = await timeSteps(step, batches);
          (computeMs[variant] ??= []).push(...timing.ms);
          firstLoss[variant] ??= timing.firstLoss;
        } finally {
          await step.release();
        }
      }
    }
    const medians = Object.fromEntries(Object.entries(computeMs).map(([variant, ms]) => [variant, round(median(ms))]));
    const chosen = medians['constants'] ?? medians['all_trained']!;
    const stepMs = median(dataMs) + chosen;
    console.log(JSON.stringify({
      case: 'stage_step',
      stage: name,
      config: STAGE_CONFIGS[name]!.config,
      batch: config.batchSize,
      parameters_m: { trainable: round(count([...trainable]) / 1e6), frozen: round(count(frozen) / 1e6) },
      data_ms: round(median(dataMs)),
      compute_ms: medians,
      ...(medians['fed'] && medians['constants'] ? { constants_speedup: round(medians['fed'] / medians['constants']) } : {}),
      first_loss: Object.fromEntries(Object.entries(firstLoss).map(([variant, loss]) => [variant, round(loss, 6)])),
      steps_per_s: round(1000 / stepMs),
      samples_per_s: round((config.batchSize * 1000) / stepMs),
      data_share: round(median(dataMs) / stepMs),
      timed_steps: 2 * steps,
      threads: BENCH_THREADS,
    }));
  } finally {
    await instance.release();
  }
}

export async function runStagesBench(): Promise<void> {
  const { stages, steps } = settings();
  for (const name of stages) await benchStage(name, steps);
}
