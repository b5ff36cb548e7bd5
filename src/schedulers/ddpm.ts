// DDPM (diffusers DDPMScheduler): the forward noising process used by training,
// x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, with per-sample timesteps.
import { type SchedulerConfig, alphasCumprod, betaSchedule, resolveConfig } from './common.js';

export class DDPMScheduler {
  readonly config: ReturnType<typeof resolveConfig>;
  readonly betas: number[];
  readonly alphasCumprod: number[];

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(config);
    this.betas = betaSchedule(this.config);
    this.alphasCumprod = alphasCumprod(this.betas);
  }

  /**
   * Noises a batch: `original` and `noise` are (B, …) row-major with equal sizes, `timesteps`
   * holds one integer timestep per batch item.
   */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    if (original.length !== noise.length) throw new Error(`addNoise: ${original.length} samples vs ${noise.length} noise values`);
    if (timesteps.length === 0 || original.length % timesteps.length !== 0) {
      throw new Error(`addNoise: ${timesteps.length} timesteps do not divide a batch of ${original.length} values`);
    }
    const perItem = original.length / timesteps.length;
    const noisy = new Float32Array(original.length);
    timesteps.forEach((timestep, item) => {
      if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.config.num_train_timesteps) {
        throw new Error(`addNoise: timestep ${timestep} is outside 0…${this.config.num_train_timesteps - 1}`);
      }
      const signal = Math.fround(Math.sqrt(this.alphasCumprod[timestep]!));
      const noiseScale = Math.fround(Math.sqrt(Math.fround(1 - this.alphasCumprod[timestep]!)));
      for (let i = item * perItem; i < (item + 1) * perItem; i++) noisy[i] = signal * original[i]! + noiseScale * noise[i]!;
    });
    return noisy;
  }
}
