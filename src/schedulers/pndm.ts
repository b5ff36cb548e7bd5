// PNDM (diffusers PNDMScheduler) with skip_prk_steps, i.e. the pseudo linear multistep (PLMS)
// method: Adams–Bashforth combinations of up to four past ε̂ plugged into the transfer
// x_{t−Δ} = √(ᾱ_{t−Δ}/ᾱ_t)·x_t − (ᾱ_{t−Δ} − ᾱ_t)·ε̂ / (ᾱ_t·√(1−ᾱ_{t−Δ}) + √(ᾱ_t(1−ᾱ_t)ᾱ_{t−Δ})).
import {
  type Scheduler, type SchedulerConfig, type StepOutput, alphasCumprod, assertSameLength, betaSchedule, resolveConfig, spacedTimesteps,
} from './common.js';

export class PNDMScheduler implements Scheduler {
  readonly config: ReturnType<typeof resolveConfig>;
  readonly alphasCumprod: number[];
  readonly initNoiseSigma = 1;
  timesteps: number[] = [];
  private readonly finalAlphaCumprod: number;
  private inferenceSteps = 0;
  private counter = 0;
  private pastOutputs: Float32Array[] = [];
  private firstSample: Float32Array | null = null;

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(config, { skip_prk_steps: false });
    if (!this.config.skip_prk_steps) throw new Error('PNDM: only skip_prk_steps = true (PLMS, as Stable Diffusion configures it) is supported');
    if (this.config.prediction_type !== 'epsilon') throw new Error(`PNDM: prediction_type ${this.config.prediction_type} is not supported`);
    this.alphasCumprod = alphasCumprod(betaSchedule(this.config));
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  /** steps + 1 timesteps: the second is repeated so that PLMS can warm up with a second-order step. */
  setTimesteps(steps: number): void {
    if (steps < 2) throw new Error(`PNDM needs at least 2 steps, got ${steps}`);
    const ascending = spacedTimesteps(this.config, steps).reverse();
    this.timesteps = [...ascending.slice(0, -1), ascending.at(-2)!, ascending.at(-1)!].reverse();
    this.inferenceSteps = steps;
    this.counter = 0;
    this.pastOutputs = [];
    this.firstSample = null;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput {
    if (this.inferenceSteps === 0) throw new Error('call setTimesteps before step');
    assertSameLength(modelOutput, sample);
    const stride = Math.floor(this.config.num_train_timesteps / this.inferenceSteps);
    let current = timestep;
    let previous = timestep - stride;
    if (this.counter !== 1) {
      this.pastOutputs = [...this.pastOutputs.slice(-3), modelOutput];
    } else {
      // The repeated timestep: redo the first step from its starting sample with the averaged ε̂.
      previous = timestep;
      current = timestep + stride;
    }
    const past = this.pastOutputs;
    let epsilon: Float32Array;
    let base = sample;
    const combine = (weights: number[], scale: number) => {
      const combined = new Float32Array(modelOutput.length);
      for (let i = 0; i < combined.length; i++) {
        let total = 0;
        weights.forEach((weight, k) => (total += weight * past[past.length - 1 - k]![i]!));
        combined[i] = total * scale;
      }
      return combined;
    };
    if (past.length === 1 && this.counter === 0) {
      epsilon = modelOutput;
      this.firstSample = sample;
    } else if (past.length === 1 && this.counter === 1) {
      epsilon = new Float32Array(modelOutput.length);
      for (let i = 0; i < epsilon.length; i++) epsilon[i] = (modelOutput[i]! + past[0]![i]!) / 2;
      base = this.firstSample!;
      this.firstSample = null;
    } else if (past.length === 2) {
      epsilon = combine([3, -1], 1 / 2);
    } else if (past.length === 3) {
      epsilon = combine([23, -16, 5], 1 / 12);
    } else {
      epsilon = combine([55, -59, 37, -9], 1 / 24);
    }
    const prevSample = this.transfer(base, current, previous, epsilon);
    this.counter++;
    return { prevSample };
  }

  private transfer(sample: Float32Array, timestep: number, previous: number, epsilon: Float32Array): Float32Array {
    const alphaProduct = this.alphasCumprod[timestep]!;
    const alphaProductPrevious = previous >= 0 ? this.alphasCumprod[previous]! : this.finalAlphaCumprod;
    const betaProduct = 1 - alphaProduct;
    const betaProductPrevious = 1 - alphaProductPrevious;
    const sampleCoefficient = Math.sqrt(alphaProductPrevious / alphaProduct);
    const denominator = alphaProduct * Math.sqrt(betaProductPrevious) + Math.sqrt(alphaProduct * betaProduct * alphaProductPrevious);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) out[i] = sampleCoefficient * sample[i]! - ((alphaProductPrevious - alphaProduct) * epsilon[i]!) / denominator;
    return out;
  }
}
