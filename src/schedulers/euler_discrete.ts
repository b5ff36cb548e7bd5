// Euler (diffusers EulerDiscreteScheduler, s_churn = 0): works in σ-space, σ_t = √((1 − ᾱ_t)/ᾱ_t),
// with the model fed x/√(σ² + 1) and x_{next} = x + ε̂·(σ_next − σ).
import {
  type Scheduler, type SchedulerConfig, type StepOutput, alphasCumprod, assertSameLength, betaSchedule, fround, linspace, resolveConfig, roundHalfEven,
} from './common.js';

/** numpy.interp over the integer grid 0…n−1. */
function interpolate(table: readonly number[], position: number): number {
  const low = Math.max(0, Math.min(table.length - 1, Math.floor(position)));
  const high = Math.min(table.length - 1, low + 1);
  const fraction = position - low;
  return table[low]! + (table[high]! - table[low]!) * fraction;
}

export class EulerDiscreteScheduler implements Scheduler {
  readonly config: ReturnType<typeof resolveConfig>;
  readonly alphasCumprod: number[];
  timesteps: number[] = [];
  sigmas: number[] = [];
  private readonly trainingSigmas: number[];

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(config);
    if (this.config.interpolation_type && this.config.interpolation_type !== 'linear') {
      throw new Error(`Euler: interpolation_type ${this.config.interpolation_type} is not supported`);
    }
    if (this.config.use_karras_sigmas) throw new Error('Euler: Karras sigmas are not supported');
    this.alphasCumprod = alphasCumprod(betaSchedule(this.config));
    this.trainingSigmas = this.alphasCumprod.map((alpha) => fround(Math.sqrt(fround((1 - alpha) / alpha))));
  }

  get initNoiseSigma(): number {
    const sigmaMax = Math.max(...(this.sigmas.length ? this.sigmas : this.trainingSigmas));
    return this.config.timestep_spacing === 'leading' ? Math.sqrt(sigmaMax * sigmaMax + 1) : sigmaMax;
  }

  setTimesteps(steps: number): void {
    const total = this.config.num_train_timesteps;
    if (!Number.isInteger(steps) || steps < 1 || steps > total) throw new Error(`number of inference steps must be an integer in 1…${total}, got ${steps}`);
    if (this.config.timestep_spacing === 'linspace') {
      this.timesteps = linspace(0, total - 1, steps).reverse().map(fround);
    } else if (this.config.timestep_spacing === 'leading') {
      const ratio = Math.floor(total / steps);
      this.timesteps = Array.from({ length: steps }, (_, i) => i * ratio + this.config.steps_offset).reverse();
    } else {
      const ratio = total / steps;
      this.timesteps = Array.from({ length: steps }, (_, i) => roundHalfEven(total - i * ratio) - 1);
    }
    this.sigmas = [...this.timesteps.map((t) => fround(interpolate(this.trainingSigmas, t))), 0];
  }

  private sigmaIndex(timestep: number): number {
    const index = this.timesteps.indexOf(timestep);
    if (index < 0) throw new Error(`timestep ${timestep} is not in the current schedule`);
    return index;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.sigmaIndex(timestep)]!;
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    return sample.map((value) => value * scale);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput {
    assertSameLength(modelOutput, sample);
    const index = this.sigmaIndex(timestep);
    const sigma = this.sigmas[index]!;
    const sigmaNext = this.sigmas[index + 1]!;
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      let original: number;
      if (this.config.prediction_type === 'epsilon') original = sample[i]! - sigma * modelOutput[i]!;
      else if (this.config.prediction_type === 'v_prediction') original = modelOutput[i]! * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample[i]! / (sigma * sigma + 1);
      else original = modelOutput[i]!;
      const derivative = (sample[i]! - original) / sigma;
      predOriginalSample[i] = original;
      prevSample[i] = sample[i]! + derivative * (sigmaNext - sigma);
    }
    return { prevSample, predOriginalSample };
  }
}
