// Optimizers emitted into the training graph: one ONNX run computes the loss, the gradients, the
// global-norm clipping and the parameter/state update. Semantics follow torch.optim (SGD with
// L2 weight decay and momentum; AdamW with decoupled weight decay and bias correction) and
// torch.nn.utils.clip_grad_norm_; the optional weight EMA follows diffusers' EMAModel. Learning
// rate, bias corrections and EMA decay are scalar graph inputs computed on the host each step, so
// schedules never force a recompile.
import type { DType } from '../onnx/dtype.js';
import type { Graph, Value } from './graph.js';
import { add, clip, div, mul, sqrt, sub, sumSquares } from './ops/elementwise.js';

export interface SgdConfig {
  kind: 'sgd';
  momentum?: number;
  /** L2 penalty added to the gradient (torch.optim.SGD weight_decay). */
  weightDecay?: number;
}

export interface AdamWConfig {
  kind: 'adamw';
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (torch.optim.AdamW default 0.01). */
  weightDecay?: number;
}

export type OptimizerConfig = SgdConfig | AdamWConfig;

/** Names of the per-parameter state tensors each optimizer keeps (same shape as the parameter). */
export function optimizerStateNames(config: OptimizerConfig): string[] {
  if (config.kind === 'adamw') return ['exp_avg', 'exp_avg_sq'];
  return config.momentum ? ['momentum_buffer'] : [];
}

/** Host-computed scalars fed to the graph every step. */
export interface StepScalars {
  learningRate: number;
  /** AdamW: lr / (1 − β1ᵗ). */
  stepSize: number;
  /** AdamW: √(1 − β2ᵗ). */
  biasCorrection2Sqrt: number;
}

export function stepScalars(config: OptimizerConfig, learningRate: number, step: number): StepScalars {
  if (config.kind === 'sgd') return { learningRate, stepSize: learningRate, biasCorrection2Sqrt: 1 };
  const beta1 = config.beta1 ?? 0.9;
  const beta2 = config.beta2 ?? 0.999;
  return {
    learningRate,
    stepSize: learningRate / (1 - beta1 ** step),
    biasCorrection2Sqrt: Math.sqrt(1 - beta2 ** step),
  };
}

export interface ScalarInputs {
  learningRate: Value;
  stepSize: Value;
  biasCorrection2Sqrt: Value;
}

export function scalarInputs(graph: Graph, dtype: DType = 'float32'): ScalarInputs {
  return {
    learningRate: graph.input('learning_rate', dtype, []),
    stepSize: graph.input('step_size', dtype, []),
    biasCorrection2Sqrt: graph.input('bias_correction2_sqrt', dtype, []),
  };
}

/** √(Σ‖g‖²) over all gradients, accumulated in the gradients' type. */
export function globalNorm(gradients: readonly Value[]): Value {
  const squares = gradients.map((gradient) => sumSquares(gradient));
  return sqrt(squares.reduce((total, square) => add(total, square)));
}

/** torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, maxNorm / (norm + 1e-6)). */
export function clipByGlobalNorm(gradients: readonly Value[], norm: Value, maxNorm: number): Value[] {
  const coefficient = clip(div(maxNorm, add(norm, 1e-6)), undefined, 1);
  return gradients.map((gradient) => mul(gradient, coefficient));
}

export interface ParameterUpdate {
  parameter: Value;
  /** State tensors in `optimizerStateNames(config)` order. */
  state: Value[];
}

/** The updated parameter and state of one parameter tensor. */
export function applyOptimizer(
  config: OptimizerConfig,
  parameter: Value,
  gradient: Value,
  state: readonly Value[],
  scalars: ScalarInputs,
  decay: boolean,
): ParameterUpdate {
  if (config.kind === 'sgd') {
    const weightDecay = decay ? config.weightDecay ?? 0 : 0;
    let direction = weightDecay ? add(gradient, mul(parameter, weightDecay)) : gradient;
    const newState: Value[] = [];
    if (config.momentum) {
      direction = add(mul(state[0]!, config.momentum), direction);
      newState.push(direction);
    }
    return { parameter: sub(parameter, mul(direction, scalars.learningRate)), state: newState };
  }
  const beta1 = config.beta1 ?? 0.9;
  const beta2 = config.beta2 ?? 0.999;
  const eps = config.eps ?? 1e-8;
  const weightDecay = decay ? config.weightDecay ?? 0.01 : 0;
  const [expAvg, expAvgSq] = [state[0]!, state[1]!];
  const decayed = weightDecay ? mul(parameter, sub(1, mul(scalars.learningRate, weightDecay))) : parameter;
  const newExpAvg = add(mul(expAvg, beta1), mul(gradient, 1 - beta1));
  const newExpAvgSq = add(mul(expAvgSq, beta2), mul(mul(gradient, gradient), 1 - beta2));
  // torch: p ← p − (lr / bc1) · m / (√v / √bc2 + eps), computed as
  // p − (lr / bc1 · √bc2) · m / (√v + eps · √bc2): the bias correction of v folds into scalars,
  // which saves a pass over every parameter-sized tensor.
  const denominator = add(sqrt(newExpAvgSq), mul(scalars.biasCorrection2Sqrt, eps));
  const updated = sub(decayed, mul(div(newExpAvg, denominator), mul(scalars.stepSize, scalars.biasCorrection2Sqrt)));
  return { parameter: updated, state: [newExpAvg, newExpAvgSq] };
}

// ---- learning-rate schedules (host side; the value is fed as the learning_rate input) ----------

export interface ScheduleConfig {
  kind: 'constant' | 'linear' | 'polynomial' | 'cosine';
  /** Peak learning rate, reached at the end of warm-up. */
  learningRate: number;
  warmupSteps?: number;
  /** Steps at which the decay reaches `finalLearningRate` (required except for constant). */
  totalSteps?: number;
  finalLearningRate?: number;
  /** Exponent of the polynomial decay (1 = linear). */
  power?: number;
}

/** Learning rate for 1-based `step`: linear warm-up from 0, then the chosen decay. */
export function learningRateAt(schedule: ScheduleConfig, step: number): number {
  const warmup = schedule.warmupSteps ?? 0;
  if (warmup > 0 && step <= warmup) return (schedule.learningRate * step) / warmup;
  if (schedule.kind === 'constant') return schedule.learningRate;
  const total = schedule.totalSteps;
  if (!total || total <= warmup) throw new Error(`schedule ${schedule.kind} needs totalSteps greater than warmupSteps`);
  const final = schedule.finalLearningRate ?? 0;
  const progress = Math.min(1, (step - warmup) / (total - warmup));
  if (schedule.kind === 'cosine') return final + (schedule.learningRate - final) * 0.5 * (1 + Math.cos(Math.PI * progress));
  const power = schedule.kind === 'linear' ? 1 : schedule.power ?? 1;
  return final + (schedule.learningRate - final) * (1 - progress) ** power;
}

// ---- weight EMA (diffusers' EMAModel; the decay is fed as the ema_decay input) ---------------

export interface EmaConfig {
  /** The decay the warm-up rises to, e.g. 0.999 (an average over about 1 / (1 − decay) steps). */
  decay: number;
  /** Steps during which the average only copies the parameters (diffusers' update_after_step). */
  warmupSteps?: number;
}

/**
 * Decay of 1-based `step`, as diffusers' EMAModel.get_decay without `use_ema_warmup`: with
 * k = step − warmupSteps − 1, 0 while k ≤ 0 (the average is the parameters), then
 * min(decay, (1 + k) / (10 + k)), so early averages do not hold on to the initial weights.
 */
export function emaDecayAt(config: EmaConfig, step: number): number {
  const k = step - (config.warmupSteps ?? 0) - 1;
  return k <= 0 ? 0 : Math.min(config.decay, (1 + k) / (10 + k));
}

export interface EmaInputs {
  decay: Value;
  oneMinusDecay: Value;
}

/** The `ema_decay` scalar input, and 1 − decay computed once for every parameter's update. */
export function emaInputs(graph: Graph, dtype: DType = 'float32'): EmaInputs {
  const decay = graph.input('ema_decay', dtype, []);
  return { decay, oneMinusDecay: sub(1, decay) };
}

/** The updated average of one parameter: decay · average + (1 − decay) · the updated parameter. */
export function applyEma(average: Value, updatedParameter: Value, inputs: EmaInputs): Value {
  return add(mul(average, inputs.decay), mul(updatedParameter, inputs.oneMinusDecay));
}
