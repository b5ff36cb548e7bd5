// What every scheduler shares: the diffusers `scheduler_config.json` keys, the beta schedules,
// ᾱ (alphas_cumprod) and the timestep spacings. Tables are computed in float64 and rounded to
// float32 where diffusers keeps float32 tensors, so trajectories track diffusers step by step.

/** Largest num_train_timesteps a scheduler config may give (SD uses 1,000). */
export const MAX_TRAIN_TIMESTEPS = 100_000;

export interface SchedulerConfig {
  _class_name?: string;
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
  trained_betas?: number[] | null;
  prediction_type?: 'epsilon' | 'v_prediction' | 'sample';
  set_alpha_to_one?: boolean;
  steps_offset?: number;
  timestep_spacing?: 'linspace' | 'leading' | 'trailing';
  clip_sample?: boolean;
  clip_sample_range?: number;
  skip_prk_steps?: boolean;
  // DPM-Solver multistep
  algorithm_type?: string;
  solver_order?: number;
  solver_type?: string;
  lower_order_final?: boolean;
  euler_at_final?: boolean;
  final_sigmas_type?: 'zero' | 'sigma_min';
  use_karras_sigmas?: boolean;
  thresholding?: boolean;
  // Euler
  interpolation_type?: string;
  [key: string]: unknown;
}

/** A scheduler's output for one denoising step. */
export interface StepOutput {
  prevSample: Float32Array;
  /** The model's estimate of the clean sample, where the scheduler computes one. */
  predOriginalSample?: Float32Array;
}

export interface Scheduler {
  readonly config: Required<Pick<SchedulerConfig, 'num_train_timesteps'>> & SchedulerConfig;
  /** Timesteps of the current schedule, in the order the model is called. */
  readonly timesteps: number[];
  /** Scale of the initial noise (σ_max for sigma-space schedulers, 1 otherwise). */
  readonly initNoiseSigma: number;
  setTimesteps(steps: number): void;
  /** The model input for `sample` at `timestep` (identity except for σ-space schedulers). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput;
}

export const fround = Math.fround;

const supportedPrediction = new Set(['epsilon', 'v_prediction', 'sample']);

/** Fills in diffusers' defaults and rejects values this implementation does not support. */
export function resolveConfig(config: SchedulerConfig, defaults: Partial<SchedulerConfig> = {}) {
  const resolved = {
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear' as const,
    prediction_type: 'epsilon' as const,
    set_alpha_to_one: true,
    steps_offset: 0,
    timestep_spacing: 'leading' as const,
    ...defaults,
    ...Object.fromEntries(Object.entries(config).filter(([, value]) => value !== null && value !== undefined)),
  } as Required<Pick<SchedulerConfig, 'num_train_timesteps' | 'beta_start' | 'beta_end' | 'beta_schedule' | 'prediction_type' | 'set_alpha_to_one' | 'steps_offset' | 'timestep_spacing'>> & SchedulerConfig;
  // The schedules are tables of num_train_timesteps entries: an upper bound keeps a hostile config from exhausting memory.
  if (!Number.isInteger(resolved.num_train_timesteps) || resolved.num_train_timesteps < 2 || resolved.num_train_timesteps > MAX_TRAIN_TIMESTEPS) {
    throw new Error(`scheduler config: num_train_timesteps must be an integer from 2 to ${MAX_TRAIN_TIMESTEPS}, got ${resolved.num_train_timesteps}`);
  }
  if (!['linear', 'scaled_linear', 'squaredcos_cap_v2'].includes(resolved.beta_schedule)) {
    throw new Error(`scheduler config: unknown beta_schedule ${resolved.beta_schedule}`);
  }
  if (!supportedPrediction.has(resolved.prediction_type)) throw new Error(`scheduler config: unknown prediction_type ${resolved.prediction_type}`);
  if (!['linspace', 'leading', 'trailing'].includes(resolved.timestep_spacing)) {
    throw new Error(`scheduler config: unknown timestep_spacing ${resolved.timestep_spacing}`);
  }
  return resolved;
}

/** β₁…β_T as float32 values, as diffusers builds them. */
export function betaSchedule(config: ReturnType<typeof resolveConfig>): number[] {
  const steps = config.num_train_timesteps;
  if (config.trained_betas) {
    if (config.trained_betas.length !== steps) throw new Error(`scheduler config: trained_betas has ${config.trained_betas.length} values, expected ${steps}`);
    return config.trained_betas.map(fround);
  }
  const linspace = (start: number, end: number) => Array.from({ length: steps }, (_, i) => start + ((end - start) * i) / (steps - 1));
  switch (config.beta_schedule) {
    case 'linear':
      return linspace(config.beta_start, config.beta_end).map(fround);
    case 'scaled_linear':
      // Stable Diffusion: linspace in √β, then squared.
      return linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end)).map((root) => fround(root * root));
    case 'squaredcos_cap_v2': {
      const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
      return Array.from({ length: steps }, (_, i) => fround(Math.min(1 - alphaBar((i + 1) / steps) / alphaBar(i / steps), 0.999)));
    }
  }
}

/** ᾱ_t = Π(1 − β), rounded to float32 like diffusers' tensor. */
export function alphasCumprod(betas: readonly number[]): number[] {
  let product = 1;
  return betas.map((beta) => (product = fround(product * fround(1 - beta))));
}

/** numpy.linspace(start, stop, count): start + i·step with step = (stop − start)/(count − 1). */
export function linspace(start: number, stop: number, count: number): number[] {
  const step = count > 1 ? (stop - start) / (count - 1) : 0;
  return Array.from({ length: count }, (_, i) => (i === count - 1 && count > 1 ? stop : start + i * step));
}

/** numpy.round: halves go to the even neighbour. */
export function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Inference timesteps for `steps` steps under the configured spacing (diffusers set_timesteps). */
export function spacedTimesteps(config: ReturnType<typeof resolveConfig>, steps: number): number[] {
  const total = config.num_train_timesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > total) throw new Error(`number of inference steps must be an integer in 1…${total}, got ${steps}`);
  switch (config.timestep_spacing) {
    case 'linspace':
      return linspace(0, total - 1, steps).map(roundHalfEven).reverse();
    case 'leading': {
      const ratio = Math.floor(total / steps);
      return Array.from({ length: steps }, (_, i) => i * ratio + config.steps_offset).reverse();
    }
    case 'trailing': {
      const ratio = total / steps;
      return Array.from({ length: steps }, (_, i) => roundHalfEven(total - i * ratio) - 1);
    }
  }
}

/** The clean-sample estimate x̂₀ from the model output under the configured parameterisation. */
export function predictOriginal(predictionType: string, modelOutput: number, sample: number, alphaProduct: number): number {
  const betaProduct = 1 - alphaProduct;
  if (predictionType === 'epsilon') return (sample - Math.sqrt(betaProduct) * modelOutput) / Math.sqrt(alphaProduct);
  if (predictionType === 'sample') return modelOutput;
  return Math.sqrt(alphaProduct) * sample - Math.sqrt(betaProduct) * modelOutput;
}

/** Index of `timestep` in `timesteps` (first match), as diffusers' index_for_timestep. */
export function indexOfTimestep(timesteps: readonly number[], timestep: number): number {
  const index = timesteps.indexOf(timestep);
  if (index < 0) throw new Error(`timestep ${timestep} is not in the current schedule`);
  return index;
}

export function assertSameLength(modelOutput: Float32Array, sample: Float32Array): void {
  if (modelOutput.length !== sample.length) throw new Error(`model output has ${modelOutput.length} values, sample has ${sample.length}`);
}
