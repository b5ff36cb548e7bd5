// Fixture 06: every scheduler's full trajectory under the fixture's fake model
// ε = 0.1·model_input + (0.5 + t/1000)·fake_noise, compared step by step, plus DDPM add_noise
// and the β/ᾱ tables.
import { join } from 'node:path';
import type { HostTensor } from '../../onnx/dtype.js';
import { readConfigJson } from '../../io/config-json.js';
import { type Scheduler, type SchedulerConfig, DDPMScheduler, schedulerFromConfig } from '../../schedulers/index.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

/** Fixture trajectory name → scheduler config overrides that select the behaviour it records. */
const trajectories: Record<string, Partial<SchedulerConfig>> = {
  dpmsolver_multistep: {},
  // diffusers 0.21.4 (what Kosmos-G ran) lands the last step on timestep 0: our sigma_min mode.
  dpmsolver_multistep_v0_21_4: { final_sigmas_type: 'sigma_min' },
  dpmsolver_multistep_sigma_min: {},
  ddim: {},
  euler_discrete: {},
  pndm: {},
};

const tensor = (shape: number[], data: Float32Array | Float64Array | BigInt64Array): HostTensor =>
  data instanceof Float64Array ? { dtype: 'float64', shape, data } : data instanceof BigInt64Array ? { dtype: 'int64', shape, data } : { dtype: 'float32', shape, data };

function stack(samples: Float32Array[], sampleShape: number[]): HostTensor {
  const data = new Float32Array(samples.length * samples[0]!.length);
  samples.forEach((sample, i) => data.set(sample, i * sample.length));
  return tensor([samples.length, ...sampleShape], data);
}

function runTrajectory(scheduler: Scheduler, steps: number, initialNoise: Float32Array, fakeNoise: Float32Array, sampleShape: number[]) {
  scheduler.setTimesteps(steps);
  let sample: Float32Array = initialNoise.map((value) => value * scheduler.initNoiseSigma);
  const modelInputs: Float32Array[] = [];
  const modelOutputs: Float32Array[] = [];
  const prevSamples: Float32Array[] = [];
  const predOriginal: Float32Array[] = [];
  for (const timestep of scheduler.timesteps) {
    const modelInput = scheduler.scaleModelInput(sample, timestep);
    const modelOutput = modelInput.map((value, i) => 0.1 * value + (0.5 + timestep / 1000) * fakeNoise[i]!);
    const result = scheduler.step(modelOutput, timestep, sample);
    modelInputs.push(modelInput);
    modelOutputs.push(modelOutput);
    prevSamples.push(result.prevSample);
    if (result.predOriginalSample) predOriginal.push(result.predOriginalSample);
    sample = result.prevSample;
  }
  return {
    timesteps: scheduler.timesteps,
    model_inputs: stack(modelInputs, sampleShape),
    model_outputs: stack(modelOutputs, sampleShape),
    prev_samples: stack(prevSamples, sampleShape),
    pred_original_samples: predOriginal.length ? stack(predOriginal, sampleShape) : null,
  };
}

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const config = (await readConfigJson(join(fixture.directory, 'config.json'))) as { instantiated: Record<string, SchedulerConfig> };
  const initialNoise = fixture.inputs.get('initial_noise')!;
  const fakeNoise = fixture.inputs.get('fake_noise')!.data as Float32Array;
  const sampleShape = initialNoise.shape;
  const actual: Record<string, HostTensor> = {};
  for (const [name, overrides] of Object.entries(trajectories)) {
    for (const steps of [10, 50]) {
      const prefix = `${name}.n${steps}`;
      if (!fixture.outputs.has(`${prefix}.prev_samples`)) continue;
      const scheduler = schedulerFromConfig({ ...config.instantiated[name]!, ...overrides });
      const run = runTrajectory(scheduler, steps, initialNoise.data as Float32Array, fakeNoise, sampleShape);
      const expectedTimesteps = fixture.outputs.get(`${prefix}.timesteps`)!;
      actual[`${prefix}.timesteps`] = expectedTimesteps.dtype === 'int64'
        ? tensor([run.timesteps.length], BigInt64Array.from(run.timesteps, (t) => BigInt(t)))
        : tensor([run.timesteps.length], Float32Array.from(run.timesteps));
      actual[`${prefix}.model_inputs`] = run.model_inputs;
      actual[`${prefix}.model_outputs`] = run.model_outputs;
      actual[`${prefix}.prev_samples`] = run.prev_samples;
      actual[`${prefix}.init_noise_sigma`] = tensor([1], Float64Array.of(scheduler.initNoiseSigma));
      if (fixture.outputs.has(`${prefix}.pred_original_samples`) && run.pred_original_samples) {
        actual[`${prefix}.pred_original_samples`] = run.pred_original_samples;
      }
      const sigmas = (scheduler as { sigmas?: number[] }).sigmas;
      if (fixture.outputs.has(`${prefix}.sigmas`) && sigmas) actual[`${prefix}.sigmas`] = tensor([sigmas.length], Float64Array.from(sigmas));
    }
  }
  const ddpm = new DDPMScheduler(config.instantiated['ddpm']!);
  const timesteps = Array.from(fixture.inputs.get('add_noise.timesteps')!.data as BigInt64Array, Number);
  const original = fixture.inputs.get('add_noise.original_samples')!;
  actual['add_noise.noisy_samples'] = tensor(original.shape, ddpm.addNoise(original.data as Float32Array, fixture.inputs.get('add_noise.noise')!.data as Float32Array, timesteps));
  actual['alphas_cumprod'] = tensor([ddpm.alphasCumprod.length], Float32Array.from(ddpm.alphasCumprod));
  actual['betas'] = tensor([ddpm.betas.length], Float32Array.from(ddpm.betas));
  const uncovered = [...fixture.outputs.keys()].filter((name) => !(name in actual));
  if (uncovered.length) throw new Error(`outputs not reproduced: ${uncovered.join(', ')}`);
  return compareOutputs(fixture, actual);
}
