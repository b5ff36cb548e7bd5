// DDIM (diffusers DDIMScheduler), deterministic (η = 0):
// x_{t−Δ} = √ᾱ_{t−Δ}·x̂₀ + √(1 − ᾱ_{t−Δ})·ε̂, with Δ = T / steps.
import {
  type Scheduler, type SchedulerConfig, type StepOutput, alphasCumprod, assertSameLength, betaSchedule, predictOriginal, resolveConfig, spacedTimesteps,
} from './common.js';

export class DDIMScheduler implements Scheduler {
  readonly config: ReturnType<typeof resolveConfig>;
  readonly alphasCumprod: number[];
  readonly initNoiseSigma = 1;
  timesteps: number[] = [];
  private readonly finalAlphaCumprod: number;
  private inferenceSteps = 0;

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(config);
    this.alphasCumprod = alphasCumprod(betaSchedule(this.config));
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  setTimesteps(steps: number): void {
    this.timesteps = spacedTimesteps(this.config, steps);
    this.inferenceSteps = steps;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput {
    if (this.inferenceSteps === 0) throw new Error('call setTimesteps before step');
    assertSameLength(modelOutput, sample);
    const previous = timestep - Math.floor(this.config.num_train_timesteps / this.inferenceSteps);
    const alphaProduct = this.alphasCumprod[timestep]!;
    const alphaProductPrevious = previous >= 0 ? this.alphasCumprod[previous]! : this.finalAlphaCumprod;
    const betaProduct = 1 - alphaProduct;
    const range = this.config.clip_sample ? this.config.clip_sample_range ?? 1 : Infinity;
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const original = Math.min(range, Math.max(-range, predictOriginal(this.config.prediction_type, modelOutput[i]!, sample[i]!, alphaProduct)));
      // ε̂ re-derived from the (possibly clipped) x̂₀, as diffusers does.
      const epsilon = this.config.prediction_type === 'epsilon' && range === Infinity
        ? modelOutput[i]!
        : (sample[i]! - Math.sqrt(alphaProduct) * original) / Math.sqrt(betaProduct);
      predOriginalSample[i] = original;
      prevSample[i] = Math.sqrt(alphaProductPrevious) * original + Math.sqrt(1 - alphaProductPrevious) * epsilon;
    }
    return { prevSample, predOriginalSample };
  }
}
