// DPM-Solver++ multistep (diffusers DPMSolverMultistepScheduler): data-prediction solver in
// λ = log(α/σ) time, order 1 or 2 with the midpoint second-order update, a first-order last
// step in short schedules. With final_sigmas_type "sigma_min" it follows the diffusers 0.21.4
// code Kosmos-G pinned (the last step lands on timestep 0 and stays second order from 15 steps
// on); "zero" (current diffusers' default) makes the last step a first-order step to σ = 0.
import {
  type Scheduler, type SchedulerConfig, type StepOutput, alphasCumprod, assertSameLength, betaSchedule, fround, linspace, predictOriginal,
  resolveConfig, roundHalfEven,
} from './common.js';

/** α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = log α_t − log σ_t. */
function alphaSigmaLambda(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const scaledSigma = sigma * alpha;
  return { alpha, sigma: scaledSigma, lambda: Math.log(alpha) - Math.log(scaledSigma) };
}

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly config: ReturnType<typeof resolveConfig>;
  readonly alphasCumprod: number[];
  readonly initNoiseSigma = 1;
  timesteps: number[] = [];
  sigmas: number[] = [];
  private readonly order: number;
  private modelOutputs: Float32Array[] = [];
  private lowerOrderSteps = 0;
  private stepIndex = 0;

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(config, {
      algorithm_type: 'dpmsolver++',
      solver_order: 2,
      solver_type: 'midpoint',
      lower_order_final: true,
      euler_at_final: false,
      final_sigmas_type: 'zero',
      timestep_spacing: 'linspace',
    });
    const { algorithm_type, solver_type, solver_order, final_sigmas_type } = this.config;
    if (algorithm_type !== 'dpmsolver++') throw new Error(`DPM-Solver: algorithm_type ${algorithm_type} is not supported (dpmsolver++ only)`);
    if (solver_type !== 'midpoint') throw new Error(`DPM-Solver: solver_type ${solver_type} is not supported (midpoint only)`);
    if (solver_order !== 1 && solver_order !== 2) throw new Error(`DPM-Solver: solver_order ${solver_order} is not supported (1 or 2)`);
    if (final_sigmas_type !== 'zero' && final_sigmas_type !== 'sigma_min') throw new Error(`DPM-Solver: unknown final_sigmas_type ${final_sigmas_type}`);
    if (this.config.use_karras_sigmas || this.config.thresholding) throw new Error('DPM-Solver: Karras sigmas and thresholding are not supported');
    this.order = solver_order;
    this.alphasCumprod = alphasCumprod(betaSchedule(this.config));
  }

  setTimesteps(steps: number): void {
    const total = this.config.num_train_timesteps;
    if (!Number.isInteger(steps) || steps < 1 || steps > total) throw new Error(`number of inference steps must be an integer in 1…${total}, got ${steps}`);
    if (this.config.timestep_spacing === 'linspace') {
      // steps + 1 points from 0 to T − 1, dropping t = 0: 50 steps give 999, 979, …, 20.
      this.timesteps = linspace(0, total - 1, steps + 1).map(roundHalfEven).reverse().slice(0, -1);
    } else if (this.config.timestep_spacing === 'leading') {
      const ratio = Math.floor(total / (steps + 1));
      this.timesteps = Array.from({ length: steps }, (_, i) => (steps - i) * ratio + this.config.steps_offset);
    } else {
      const ratio = total / steps;
      this.timesteps = Array.from({ length: steps }, (_, i) => roundHalfEven(total - i * ratio) - 1);
    }
    const trainingSigmas = this.alphasCumprod.map((alpha) => fround(Math.sqrt(fround((1 - alpha) / alpha))));
    const last = this.config.final_sigmas_type === 'zero' ? 0 : Math.sqrt((1 - this.alphasCumprod[0]!) / this.alphasCumprod[0]!);
    this.sigmas = [...this.timesteps.map((t) => fround(trainingSigmas[t]!)), fround(last)];
    this.modelOutputs = [];
    this.lowerOrderSteps = 0;
    this.stepIndex = 0;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput {
    if (this.timesteps.length === 0) throw new Error('call setTimesteps before step');
    assertSameLength(modelOutput, sample);
    if (this.timesteps[this.stepIndex] !== timestep) {
      const index = this.timesteps.indexOf(timestep);
      if (index < 0) throw new Error(`timestep ${timestep} is not in the current schedule`);
      this.stepIndex = index;
    }
    const index = this.stepIndex;
    const count = this.timesteps.length;
    const isLast = index === count - 1;
    const shortSchedule = this.config.lower_order_final && count < 15;
    const lowerOrderFinal = isLast && (this.config.euler_at_final || shortSchedule || this.config.final_sigmas_type === 'zero');

    const current = alphaSigmaLambda(this.sigmas[index]!);
    const dataPrediction = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      dataPrediction[i] = predictOriginal(this.config.prediction_type, modelOutput[i]!, sample[i]!, current.alpha * current.alpha);
    }
    this.modelOutputs = [...this.modelOutputs, dataPrediction].slice(-this.order);

    const target = alphaSigmaLambda(this.sigmas[index + 1]!);
    const h = target.lambda - current.lambda;
    const decay = target.alpha * (Math.exp(-h) - 1);
    const sampleScale = target.sigma / current.sigma;
    const prevSample = new Float32Array(sample.length);
    if (this.order === 1 || this.lowerOrderSteps < 1 || lowerOrderFinal) {
      for (let i = 0; i < sample.length; i++) prevSample[i] = sampleScale * sample[i]! - decay * dataPrediction[i]!;
    } else {
      // Midpoint second-order update: D1 = (m0 − m1)/r0 with r0 = h₀/h.
      const previous = alphaSigmaLambda(this.sigmas[index - 1]!);
      const r0 = (current.lambda - previous.lambda) / h;
      const [m1, m0] = [this.modelOutputs[0]!, this.modelOutputs[1]!];
      for (let i = 0; i < sample.length; i++) {
        const d1 = (m0[i]! - m1[i]!) / r0;
        prevSample[i] = sampleScale * sample[i]! - decay * m0[i]! - 0.5 * decay * d1;
      }
    }
    if (this.lowerOrderSteps < this.order) this.lowerOrderSteps++;
    this.stepIndex++;
    return { prevSample, predOriginalSample: dataPrediction };
  }
}
