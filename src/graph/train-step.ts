// A training step as one ONNX graph: forward, loss, gradients, global-norm clipping and the
// optimizer update. Parameters and optimizer state stay where the step runs between steps: host
// memory on the CPU provider, GPU buffers on WebGPU (each step's updated tensors feed the next
// step without leaving the device). `state()` reads them back for checkpoints; `loadState`
// restores them exactly. An optional weight EMA is updated in the same graph, after the optimizer:
// on the host it would cost a download of every parameter per step on WebGPU, in the graph it is
// three elementwise passes per parameter wherever the parameters live; its averages are optimizer
// state (`ema.<key>`), so checkpoints and resume carry them with no code of their own.
import { type DType, type HostTensor, allocate, elementCount, isFloat } from '../onnx/dtype.js';
import { encodeModel } from '../onnx/proto.js';
import { grad } from './autodiff.js';
import { Graph, type Shape, type Value, formatShape } from './graph.js';
import {
  type EmaConfig, type OptimizerConfig, type ScheduleConfig, applyEma, applyOptimizer, clipByGlobalNorm, emaDecayAt, emaInputs, globalNorm, learningRateAt,
  optimizerStateNames, scalarInputs, stepScalars,
} from './optim.js';
import { DeviceDownloader, DeviceTensor, GraphSession, type SessionOptions, type Tensor } from './session.js';

export interface TensorSpec {
  dtype: DType;
  shape: Shape;
}

export interface LossContext {
  graph: Graph;
  /** Every parameter (trainable or frozen) by checkpoint key. */
  parameters: Readonly<Record<string, Value>>;
  batch: Readonly<Record<string, Value>>;
  /** int64 scalar, new each step: pass it to `dropout`. */
  dropoutSeed: Value;
}

export interface TrainingStepOptions {
  /** Initial parameter values by checkpoint key. */
  parameters: Readonly<Record<string, HostTensor>>;
  /** Keys of the parameters to train; the others are frozen (fed, never differentiated). Default: all. */
  trainable?: readonly string[];
  /**
   * Build the frozen parameters into the graph as constants instead of feeding them every step. ORT
   * then prepares them once (packed GEMM weights, blocked convolution filters, the flipped kernels
   * of the convolutions' input gradients folded away), which speeds up a step through a large
   * frozen network. The graph holds their bytes, so keep it to networks well under ORT's 2 GiB
   * model limit; a state loaded later must hold the same frozen values.
   */
  frozenAsConstants?: boolean;
  batch: Readonly<Record<string, TensorSpec>>;
  loss: (context: LossContext) => Value;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  /** Clip gradients to this global L2 norm (none when omitted). */
  maxGradNorm?: number;
  /** Parameters exempt from weight decay (e.g. biases and norm scales). Default: none exempt. */
  noWeightDecay?: (key: string) => boolean;
  /** Keep an exponential moving average of the trainable parameters (none when omitted). */
  ema?: EmaConfig;
  /** Seed of the per-step dropout seeds. */
  seed?: number;
  session?: SessionOptions;
}

export interface StepResult {
  step: number;
  loss: number;
  gradNorm: number;
  learningRate: number;
}

/** Everything needed to continue training exactly: step count, parameters, optimizer state. */
export interface TrainingState {
  step: number;
  parameters: Record<string, HostTensor>;
  /**
   * `${stateName}.${parameterKey}`, e.g. `exp_avg.layers.0.weight`; with `ema`, also
   * `ema.${parameterKey}`, the average of each trainable parameter.
   */
  optimizer: Record<string, HostTensor>;
}

const updatedName = (key: string) => `updated/${key}`;
const stateInputName = (stateName: string, key: string) => `${stateName}.${key}`;
const EMA_STATE = 'ema';

/**
 * The weights a run shows and exports: each trainable parameter's EMA where the run keeps one,
 * the live value otherwise (frozen parameters, which never change, and runs without `ema`).
 */
export function averagedParameters(state: TrainingState): Record<string, HostTensor> {
  return Object.fromEntries(Object.entries(state.parameters).map(([key, tensor]) => [key, state.optimizer[stateInputName(EMA_STATE, key)] ?? tensor]));
}

export class TrainingStep {
  private stepCount = 0;
  /**
   * Host buffers the next step writes its updated parameters and optimizer state into: the ones
   * the step before last produced, which nothing reads any more. Reusing them spares ORT a fresh
   * allocation of every updated tensor per step.
   */
  private spareOutputs: Record<string, HostTensor> = {};

  private constructor(
    private readonly options: TrainingStepOptions,
    private readonly session: GraphSession,
    /** Graph output name of each logical output (`loss`, `grad_norm`, `updated/<key>`). */
    private readonly outputNames: Readonly<Record<string, string>>,
    private readonly trainable: readonly string[],
    private readonly parameters: Record<string, Tensor>,
    /** Parameters fed every step: all but the frozen ones built in as constants (`frozenAsConstants`). */
    private readonly fedParameters: ReadonlySet<string>,
    private readonly optimizerState: Record<string, Tensor>,
    /** Reads device-resident state back to the host (WebGPU only). */
    private readonly downloader: DeviceDownloader | null,
  ) {}

  static async create(options: TrainingStepOptions): Promise<TrainingStep> {
    const keys = Object.keys(options.parameters);
    const trainable = options.trainable ? [...options.trainable] : keys;
    for (const key of trainable) if (!options.parameters[key]) throw new Error(`trainable parameter ${key} is not among the parameters`);
    const graph = new Graph('training_step');
    const trainableKeys = new Set(trainable);
    const asConstant = (key: string) => options.frozenAsConstants === true && !trainableKeys.has(key);
    const parameterValues: Record<string, Value> = {};
    for (const key of keys) {
      const tensor = options.parameters[key]!;
      parameterValues[key] = asConstant(key) ? graph.constant(cloneTensor(tensor), key) : graph.input(key, tensor.dtype, tensor.shape);
    }
    const batchValues: Record<string, Value> = {};
    for (const [name, spec] of Object.entries(options.batch)) batchValues[name] = graph.input(name, spec.dtype, spec.shape);
    const dropoutSeed = graph.input('dropout_seed', 'int64', []);
    const loss = graph.scope('forward', () => options.loss({ graph, parameters: parameterValues, batch: batchValues, dropoutSeed }));
    if (loss.rank !== 0 || !isFloat(loss.dtype)) throw new Error(`the loss must be a floating-point scalar, got ${loss}`);

    const trainableValues = trainable.map((key) => parameterValues[key]!);
    let gradients = grad(loss, trainableValues);
    const outputs: Record<string, Value> = { loss };
    const stateNames = optimizerStateNames(options.optimizer);
    const optimizerState: Record<string, HostTensor> = {};
    graph.scope('optimizer', () => {
      const norm = gradients.length ? globalNorm(gradients) : graph.scalar(0, loss.dtype);
      outputs['grad_norm'] = norm;
      if (options.maxGradNorm !== undefined) gradients = clipByGlobalNorm(gradients, norm, options.maxGradNorm);
      const scalarType = trainableValues[0]?.dtype ?? 'float32';
      const scalars = scalarInputs(graph, scalarType);
      const ema = options.ema ? emaInputs(graph, scalarType) : null;
      trainable.forEach((key, index) => {
        const parameter = parameterValues[key]!;
        const state = stateNames.map((stateName) => {
          optimizerState[stateInputName(stateName, key)] = zerosLike(options.parameters[key]!);
          return graph.input(stateInputName(stateName, key), parameter.dtype, parameter.shape);
        });
        const decay = !(options.noWeightDecay?.(key) ?? false);
        const update = applyOptimizer(options.optimizer, parameter, gradients[index]!, state, scalars, decay);
        outputs[updatedName(key)] = update.parameter;
        stateNames.forEach((stateName, i) => (outputs[updatedName(stateInputName(stateName, key))] = update.state[i]!));
        if (ema) {
          // The average starts at the initial parameters, as EMAModel copies them when created.
          const name = stateInputName(EMA_STATE, key);
          optimizerState[name] = cloneTensor(options.parameters[key]!);
          outputs[updatedName(name)] = applyEma(graph.input(name, parameter.dtype, parameter.shape), update.parameter, ema);
        }
      });
    });
    // A graph output named after its value needs no Identity node, which would copy every
    // updated parameter and state tensor once more per step; inputs and constants need one.
    const outputNames = Object.fromEntries(Object.entries(outputs).map(([name, value]) => [name, value.producer ? value.name : name]));
    const graphOutputs = Object.fromEntries(Object.entries(outputs).map(([name, value]) => [outputNames[name]!, value]));
    const model = encodeModel(graph.toModel(graphOutputs, { keepInputs: graph.inputs }));
    const onDevice = options.session?.executionProvider === 'webgpu';
    // On WebGPU the updated parameters and optimizer state stay in GPU memory between steps.
    const keepOnDevice = onDevice ? Object.keys(outputs).filter((name) => name.startsWith('updated/')).map((name) => outputNames[name]!) : [];
    // Idle ORT threads sleep rather than spin by default: on the engine bench's training steps this
    // was 0–25 % faster alone and more beside other work (the spin takes the garbage collector's core).
    const session = await GraphSession.create(model, { spinning: false, ...options.session, keepOnDevice });
    const parameters: Record<string, Tensor> = Object.fromEntries(keys.map((key) => [key, cloneTensor(options.parameters[key]!)]));
    const fed = new Set(keys.filter((key) => !asConstant(key)));
    return new TrainingStep(options, session, outputNames, trainable, parameters, fed, optimizerState, onDevice ? new DeviceDownloader() : null);
  }

  get step(): number {
    return this.stepCount;
  }

  /** One optimisation step on `batch`; returns the loss before the update and the gradient norm. */
  async run(batch: Readonly<Record<string, HostTensor>>): Promise<StepResult> {
    const step = this.stepCount + 1;
    const learningRate = learningRateAt(this.options.schedule, step);
    const scalars = stepScalars(this.options.optimizer, learningRate, step);
    const scalarType = this.trainableDtype();
    const feeds: Record<string, Tensor> = { ...this.optimizerState };
    for (const key of this.fedParameters) feeds[key] = this.parameters[key]!;
    for (const [name, spec] of Object.entries(this.options.batch)) {
      const tensor = batch[name];
      if (!tensor) throw new Error(`batch is missing ${name}`);
      if (tensor.dtype !== spec.dtype || !shapeMatches(tensor.shape, spec.shape)) {
        throw new Error(`batch ${name}: expected ${spec.dtype}${formatShape(spec.shape)}, got ${tensor.dtype}${formatShape(tensor.shape)}`);
      }
      feeds[name] = tensor;
    }
    feeds['learning_rate'] = scalar(scalars.learningRate, scalarType);
    feeds['step_size'] = scalar(scalars.stepSize, scalarType);
    feeds['bias_correction2_sqrt'] = scalar(scalars.biasCorrection2Sqrt, scalarType);
    if (this.options.ema) feeds['ema_decay'] = scalar(emaDecayAt(this.options.ema, step), scalarType);
    feeds['dropout_seed'] = { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(dropoutSeedFor(this.options.seed ?? 0, step))) };
    const updatedKeys = [...this.trainable, ...Object.keys(this.optimizerState)];
    const current = (key: string): Tensor => this.parameters[key] ?? this.optimizerState[key]!;
    const outputsInto: Record<string, HostTensor> = {};
    for (const key of updatedKeys) {
      const tensor = current(key);
      if (tensor instanceof DeviceTensor) continue;
      outputsInto[this.outputNames[updatedName(key)]!] = this.spareOutputs[key] ?? { dtype: tensor.dtype, shape: [...tensor.shape], data: allocate(tensor.dtype, elementCount(tensor.shape)) };
    }
    const results = await this.session.runOnDevice(feeds, outputsInto);
    for (const key of updatedKeys) {
      const previous = current(key);
      if (!(previous instanceof DeviceTensor)) this.spareOutputs[key] = previous;
    }
    const result = (name: string): Tensor => results[this.outputNames[name]!]!;
    const hostScalar = (name: string): number => {
      const tensor = result(name);
      if (tensor instanceof DeviceTensor) throw new Error(`${name} was left on the device`);
      return Number(tensor.data[0]);
    };
    const loss = hostScalar('loss');
    const gradNorm = hostScalar('grad_norm');
    const replace = (store: Record<string, Tensor>, key: string, next: Tensor) => {
      disposeIfOnDevice(store[key]!);
      store[key] = next;
    };
    for (const key of this.trainable) replace(this.parameters, key, result(updatedName(key)));
    for (const name of Object.keys(this.optimizerState)) replace(this.optimizerState, name, result(updatedName(name)));
    this.stepCount = step;
    return { step, loss, gradNorm, learningRate };
  }

  private trainableDtype(): DType {
    const first = this.trainable[0];
    return first ? this.parameters[first]!.dtype : 'float32';
  }

  /** A host snapshot (copies) of the step count, parameters and optimizer state. */
  async state(): Promise<TrainingState> {
    const toHost = async (store: Record<string, Tensor>) => {
      const entries = await Promise.all(
        Object.entries(store).map(async ([key, tensor]) => [key, tensor instanceof DeviceTensor ? await this.downloader!.download(tensor) : cloneTensor(tensor)] as const),
      );
      return Object.fromEntries(entries);
    };
    return { step: this.stepCount, parameters: await toHost(this.parameters), optimizer: await toHost(this.optimizerState) };
  }

  /** Restores a snapshot from `state()`; every tensor must match in name, type and shape. */
  loadState(state: TrainingState): void {
    const check = (kind: string, current: Record<string, Tensor>, incoming: Record<string, HostTensor>) => {
      const missing = Object.keys(current).filter((key) => !incoming[key]);
      const unexpected = Object.keys(incoming).filter((key) => !current[key]);
      if (missing.length || unexpected.length) {
        throw new Error(`${kind} state does not match: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
      }
      for (const [key, tensor] of Object.entries(incoming)) {
        const existing = current[key]!;
        if (existing.dtype !== tensor.dtype || existing.shape.join() !== tensor.shape.join()) {
          throw new Error(`${kind} ${key}: expected ${existing.dtype}${formatShape(existing.shape)}, got ${tensor.dtype}${formatShape(tensor.shape)}`);
        }
      }
    };
    check('parameter', this.parameters, state.parameters);
    check('optimizer', this.optimizerState, state.optimizer);
    for (const [key, tensor] of Object.entries(state.parameters)) {
      if (this.fedParameters.has(key)) continue;
      const built = this.parameters[key] as HostTensor;
      if (!sameBytes(built, tensor)) throw new Error(`the state's frozen parameter ${key} differs from the one this training step was built with (was a frozen network changed since the state was saved?)`);
    }
    for (const [key, tensor] of Object.entries(state.parameters)) {
      disposeIfOnDevice(this.parameters[key]!);
      this.parameters[key] = cloneTensor(tensor);
    }
    for (const [key, tensor] of Object.entries(state.optimizer)) {
      disposeIfOnDevice(this.optimizerState[key]!);
      this.optimizerState[key] = cloneTensor(tensor);
    }
    this.stepCount = state.step;
  }

  async release(): Promise<void> {
    for (const tensor of [...Object.values(this.parameters), ...Object.values(this.optimizerState)]) disposeIfOnDevice(tensor);
    await this.downloader?.release();
    await this.session.release();
  }
}

function shapeMatches(actual: readonly number[], expected: Shape): boolean {
  return actual.length === expected.length && expected.every((dim, i) => typeof dim === 'string' || dim === actual[i]);
}

function scalar(value: number, dtype: DType): HostTensor {
  return dtype === 'float64' ? { dtype, shape: [], data: Float64Array.of(value) } : { dtype: 'float32', shape: [], data: Float32Array.of(value) };
}

function zerosLike(tensor: HostTensor): HostTensor {
  return { dtype: tensor.dtype, shape: [...tensor.shape], data: allocate(tensor.dtype, elementCount(tensor.shape)) };
}

function disposeIfOnDevice(tensor: Tensor): void {
  if (tensor instanceof DeviceTensor) tensor.dispose();
}

/** Whether two tensors of one type and shape hold the same bytes. */
function sameBytes(a: HostTensor, b: HostTensor): boolean {
  const bytes = (tensor: HostTensor) => new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const [x, y] = [bytes(a), bytes(b)];
  return x.length === y.length && x.every((byte, index) => byte === y[index]);
}

function cloneTensor(tensor: HostTensor): HostTensor {
  return { dtype: tensor.dtype, shape: [...tensor.shape], data: tensor.data.slice() as HostTensor['data'] };
}

/** A per-step dropout seed below 2³¹ (the in-graph hash needs it), mixed from the run seed. */
function dropoutSeedFor(seed: number, step: number): number {
  let hash = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(step, 0xc2b2ae35)) >>> 0;
  hash = Math.imul(hash ^ (hash >>> 16), 0x7feb352d) >>> 0;
  return hash & 0x7fffffff;
}
