// The stage runner behind every `train` command: reads and checks the config, resumes from the
// newest complete checkpoint, runs training steps with a progress bar, appends the JSONL log,
// rewrites the loss curve, writes sample grids and checkpoints, and stops cleanly at the end, at
// the wall-clock budget or on SIGINT/SIGTERM (a final checkpoint each time). Sample grids and
// `exportRun` show the run's EMA weights when its config keeps an `ema`.
//
// Run folder:
//   config.json          the parsed config (defaults filled in) the run started with
//   log.jsonl            one StepRecord per step
//   sessions.jsonl       one line per invocation: steps, reason it stopped, throughput
//   loss.png             loss curve
//   samples/step-*.png   sample grids
//   checkpoints/step-*/  parameters, optimizer state, state.json
//   run.lock             while a run works on the folder (run-lock.ts): a second run is refused
import { appendFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { checkThreads, defaultThreads, type Device, resolveDevice } from '../graph/devices.js';
import type { SessionOptions } from '../graph/session.js';
import { averagedParameters, TrainingStep } from '../graph/train-step.js';
import type { HostTensor } from '../onnx/dtype.js';
import { configHash, parseConfig, readConfig, type BaseConfig } from './config.js';
import { type Checkpoint, latestCheckpoint, listCheckpoints, pruneCheckpoints, readCheckpointState, readInitialParameters, writeCheckpoint } from './checkpoint.js';
import { parseJson, writeFileNamed } from '../io/file-errors.js';
import { StepLog } from './log.js';
import { acquireRunLock } from './run-lock.js';
import { renderLossCurve } from './plot.js';
import { findStage } from './stages.js';
import type { StageDefinition, StageInstance } from './stage.js';

export interface RunOptions {
  /** Run folder (created if needed). */
  out: string;
  /** Config file; may be left out when resuming, to use the run's own config.json. */
  configPath?: string;
  /** Continue from the newest checkpoint in `out` (a fresh start when there is none yet). */
  resume?: boolean;
  device?: Device;
  threads?: number;
  /** Stop (with a checkpoint) before this many minutes of this session have passed. */
  budgetMinutes?: number;
  /** Progress output: a bar on a terminal, a line every 30 s otherwise, or nothing. Default: automatic. */
  progress?: 'bar' | 'lines' | 'none';
  /** Messages (start, resume, stop); default: stderr. */
  report?: (message: string) => void;
}

export type StopReason = 'completed' | 'budget' | 'signal';

export interface SessionSummary {
  stage: string;
  startStep: number;
  endStep: number;
  reason: StopReason;
  device: string;
  threads: number;
  /** Seconds from the first to the last step of this session (setup excluded). */
  seconds: number;
  stepsPerSecond: number;
  samplesPerSecond: number;
  /** Fractions of the step time spent building batches and running the training graph. */
  dataShare: number;
  computeShare: number;
  /** Seconds spent on checkpoints, plots and sample grids. */
  overheadSeconds: number;
}

const RUN_CONFIG = 'config.json';

/**
 * Frozen networks up to this size are built into the training step as constants, which ORT
 * prepares once (a stage-3-like step through the frozen U-Net-mini: 410 against 580 ms); larger
 * ones (the paper's U-Net) are fed, keeping the graph far from ORT's 2 GiB model limit.
 */
const FROZEN_CONSTANTS_MAX_BYTES = 256 * 2 ** 20;

/** Bytes of the parameters outside `trainable`. */
function frozenBytes(parameters: Readonly<Record<string, HostTensor>>, trainable: readonly string[]): number {
  const trained = new Set(trainable);
  return Object.entries(parameters).reduce((total, [key, tensor]) => total + (trained.has(key) ? 0 : tensor.data.byteLength), 0);
}

/** The config to train with: the file given, checked against the run's own when resuming. */
async function resolveConfig<C extends BaseConfig>(stage: StageDefinition<C>, options: RunOptions): Promise<C> {
  const runConfigPath = join(options.out, RUN_CONFIG);
  const storedText = await readFile(runConfigPath, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : Promise.reject(error)));
  const stored = storedText === null ? null : parseConfig(stage.schema, parseJson(storedText, runConfigPath), runConfigPath);
  const given = options.configPath ? await readConfig(stage.schema, options.configPath) : null;
  const config = given ?? (options.resume ? stored : null);
  if (!config) throw new Error(options.resume ? `${options.out} has no ${RUN_CONFIG}; pass --config` : 'a config file is required (--config FILE)');
  if ((config as { stage?: unknown }).stage !== stage.name) throw new Error(`the config is for stage '${String((config as { stage?: unknown }).stage)}', not '${stage.name}'`);
  if (options.resume && stored && given && configHash(stored) !== configHash(given)) {
    throw new Error(`${options.configPath} differs from the config ${options.out} was started with; resume without --config, or train into a new --out`);
  }
  return config;
}

export async function runStage<C extends BaseConfig>(stage: StageDefinition<C>, options: RunOptions): Promise<SessionSummary> {
  const report = options.report ?? ((message: string) => process.stderr.write(`${message}\n`));
  // The config is checked before the lock, so a bad config leaves no run folder behind.
  await resolveConfig(stage, options);
  // From here on a signal stops the run cleanly (with a checkpoint once training started) and the
  // lock is released, whatever stage the run is in; the handlers come first, so no signal can
  // arrive between taking the lock and being able to release it.
  let stopSignal: string | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal) process.exit(130);
    stopSignal = signal;
    report(`${signal}: stopping after this step (again to abort without a checkpoint)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const lock = await acquireRunLock(options.out, report);
    try {
      return await runLocked(stage, options, report, () => stopSignal);
    } finally {
      lock.release();
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * The training step of a stage instance as its config asks for it. Frozen networks within
 * FROZEN_CONSTANTS_MAX_BYTES are built in as constants unless `frozenAsConstants` says otherwise
 * (the stages bench measures both).
 */
export function createTrainingStep(
  instance: StageInstance,
  config: BaseConfig,
  parameters: Readonly<Record<string, HostTensor>>,
  session: SessionOptions,
  frozenAsConstants?: boolean,
): Promise<TrainingStep> {
  return TrainingStep.create({
    parameters,
    ...(instance.trainable ? { trainable: instance.trainable, frozenAsConstants: frozenAsConstants ?? frozenBytes(parameters, instance.trainable) <= FROZEN_CONSTANTS_MAX_BYTES } : {}),
    ...(instance.noWeightDecay ? { noWeightDecay: instance.noWeightDecay } : {}),
    batch: instance.batchSpec,
    loss: instance.loss,
    optimizer: config.optimizer,
    schedule: config.schedule,
    ...(config.maxGradNorm !== undefined ? { maxGradNorm: config.maxGradNorm } : {}),
    ...(config.ema ? { ema: config.ema } : {}),
    seed: config.seed,
    session,
  });
}

async function runLocked<C extends BaseConfig>(stage: StageDefinition<C>, options: RunOptions, report: (message: string) => void, stopSignal: () => string | null): Promise<SessionSummary> {
  // Read again under the lock: another run may have written the folder's config.json meanwhile.
  const config = await resolveConfig(stage, options);
  const hash = configHash(config);
  const checkpointDirectory = join(options.out, 'checkpoints');
  let checkpoint: Checkpoint | null = null;
  if (options.resume) {
    checkpoint = await latestCheckpoint(checkpointDirectory);
    if (checkpoint && checkpoint.metadata.configHash !== hash) throw new Error(`${checkpoint.path} was written with another config (hash ${checkpoint.metadata.configHash.slice(0, 12)} vs ${hash.slice(0, 12)})`);
    if (checkpoint && checkpoint.metadata.stage !== stage.name) throw new Error(`${checkpoint.path} is a '${checkpoint.metadata.stage}' checkpoint, not '${stage.name}'`);
  } else if ((await listCheckpoints(checkpointDirectory)).length > 0) {
    throw new Error(`${options.out} already holds checkpoints; pass --resume to continue that run, or choose another --out`);
  }
  await mkdir(join(options.out, 'samples'), { recursive: true });
  await writeFileNamed(join(options.out, RUN_CONFIG), `${JSON.stringify(config, null, 2)}\n`);

  const device = await resolveDevice(options.device ?? 'cpu');
  const threads = options.threads === undefined ? defaultThreads() : checkThreads(options.threads);
  const instance = await stage.build(config, { device, threads, report });
  // A resumed run's checkpoint holds its parameters; initFrom only seeds step 0.
  let initial = instance.parameters;
  if (config.initFrom !== undefined && !checkpoint) {
    const fromSource = await readInitialParameters(config.initFrom, stage.name, instance.parameters, {
      ...(instance.addedByFineTune ? { addedByFineTune: instance.addedByFineTune } : {}),
      ...(instance.trainingOnly ? { trainingOnly: instance.trainingOnly } : {}),
      importModel: (directory) => stage.importModel(config, directory),
      ...(config.initFromExcept ? { fresh: config.initFromExcept } : {}),
    });
    initial = fromSource.parameters;
    const added = fromSource.keptInitial.length > 0 ? ` (new here, initialised fresh: ${fromSource.keptInitial.join(', ')})` : '';
    report(`parameters initialised from ${config.initFrom}${added}`);
  }
  const training = await createTrainingStep(instance, config, initial, { executionProvider: device, threads });
  if (checkpoint) training.loadState(await readCheckpointState(checkpoint));
  const startStep = training.step;
  const log = await StepLog.open(join(options.out, 'log.jsonl'), startStep);
  if (log.records.length !== startStep) report(`warning: log.jsonl holds ${log.records.length} records for ${startStep} completed steps`);
  report(checkpoint ? `resuming ${stage.name} from step ${startStep} (${checkpoint.path})` : `starting ${stage.name} at step 0`);
  report(`device ${device}, ${threads} threads, ${config.steps} steps of batch ${config.batchSize}, output ${options.out}`);

  const elapsedBefore = checkpoint?.metadata.elapsedSeconds ?? 0;
  const sessionStart = performance.now();
  const sessionSeconds = () => (performance.now() - sessionStart) / 1000;
  const budgetSeconds = options.budgetMinutes === undefined ? Infinity : options.budgetMinutes * 60;
  let lastCheckpointStep = startStep;
  let lastCheckpointTime = performance.now();
  let [dataMs, computeMs, overheadMs] = [0, 0, 0];

  const saveCheckpoint = async () => {
    if (training.step === lastCheckpointStep) return;
    await log.sync();
    await writeCheckpoint(checkpointDirectory, await training.state(), {
      stage: stage.name,
      seed: config.seed,
      configHash: hash,
      nextSample: training.step * config.batchSize,
      elapsedSeconds: elapsedBefore + sessionSeconds(),
      createdAt: new Date().toISOString(),
    });
    await pruneCheckpoints(checkpointDirectory, config.keepCheckpoints);
    lastCheckpointStep = training.step;
    lastCheckpointTime = performance.now();
    checkpoint = await latestCheckpoint(checkpointDirectory);
  };
  const writePlot = async () =>
    writeFileNamed(join(options.out, 'loss.png'), await renderLossCurve(log.records, `${stage.name}: loss, step ${training.step}`));
  const writeSamples = async () =>
    writeFileNamed(join(options.out, 'samples', `step-${String(training.step).padStart(8, '0')}.png`), await instance.sampleGrid(averagedParameters(await training.state())));
  const timed = async (work: () => Promise<unknown>) => {
    const start = performance.now();
    await work();
    overheadMs += performance.now() - start;
  };

  const progress = createProgress(options.progress, stage.name, config.steps, startStep);
  let reason: StopReason = 'completed';
  let smoothedLoss = NaN;
  try {
    while (training.step < config.steps) {
      if (stopSignal()) {
        reason = 'signal';
        break;
      }
      const done = training.step - startStep;
      const perStep = done > 0 ? sessionSeconds() / done : 0;
      if (sessionSeconds() + perStep > budgetSeconds) {
        reason = 'budget';
        break;
      }
      const dataStart = performance.now();
      const batch = await instance.batch(training.step + 1);
      const computeStart = performance.now();
      const result = await training.run(batch);
      const computeEnd = performance.now();
      dataMs += computeStart - dataStart;
      computeMs += computeEnd - computeStart;
      await log.append({
        step: result.step,
        loss: result.loss,
        gradNorm: result.gradNorm,
        lr: result.learningRate,
        dataMs: Number((computeStart - dataStart).toFixed(2)),
        computeMs: Number((computeEnd - computeStart).toFixed(2)),
        wallSeconds: Number((elapsedBefore + sessionSeconds()).toFixed(3)),
      });
      if (!Number.isFinite(result.loss)) throw new Error(`the loss is ${result.loss} at step ${result.step}; the last good checkpoint is ${checkpoint?.path ?? 'none'}`);
      smoothedLoss = Number.isNaN(smoothedLoss) ? result.loss : 0.95 * smoothedLoss + 0.05 * result.loss;
      progress.update(result.step, smoothedLoss, (result.step - startStep) / sessionSeconds(), config.batchSize);
      const step = result.step;
      const minutesSinceCheckpoint = (performance.now() - lastCheckpointTime) / 60000;
      if (step % config.checkpointEvery === 0 || (config.checkpointMinutes !== undefined && minutesSinceCheckpoint >= config.checkpointMinutes)) await timed(saveCheckpoint);
      if (step % config.plotEvery === 0) await timed(writePlot);
      if (config.sampleEvery > 0 && step % config.sampleEvery === 0) await timed(writeSamples);
    }
    const seconds = sessionSeconds();
    await saveCheckpoint();
    await writePlot();
    if (training.step > startStep) await writeSamples();
    const steps = training.step - startStep;
    const summary: SessionSummary = {
      stage: stage.name,
      startStep,
      endStep: training.step,
      reason,
      device,
      threads,
      seconds: Number(seconds.toFixed(1)),
      stepsPerSecond: steps / seconds || 0,
      samplesPerSecond: (steps * config.batchSize) / seconds || 0,
      dataShare: dataMs / (seconds * 1000) || 0,
      computeShare: computeMs / (seconds * 1000) || 0,
      overheadSeconds: Number((overheadMs / 1000).toFixed(1)),
    };
    await appendFile(join(options.out, 'sessions.jsonl'), `${JSON.stringify({ ...summary, finishedAt: new Date().toISOString() })}\n`);
    return summary;
  } finally {
    progress.stop();
    await log.close();
    await training.release();
    await instance.release();
  }
}

/**
 * `train export`: writes the newest checkpoint of `run` (its EMA weights, if it keeps them) as a
 * model folder. Several exports may fill one folder (a pipeline's text encoder, then its U-Net), so
 * the files go into an existing folder beside what it holds; a file it already has is replaced only
 * with `force`. The export is written to a temporary sibling first and moved in file by file, so an
 * export that fails or is refused leaves the folder as it was.
 */
export async function exportRun(run: string, to: string, options: { format?: string; force?: boolean } = {}): Promise<{ stage: string; step: number }> {
  const { format, force = false } = options;
  const out = resolve(to);
  if (out === resolve(run)) throw new Error(`--to ${to} is the run folder; export somewhere else`);
  const existing = await stat(out).catch(() => null);
  if (existing && !existing.isDirectory()) throw new Error(`--to ${to} exists and is not a folder`);
  const configPath = join(run, RUN_CONFIG);
  const json = parseJson(await readFile(configPath, 'utf8'), configPath) as { stage?: unknown };
  const stage = findStage(String(json.stage));
  if (format !== undefined && !stage.exportFormats?.includes(format)) {
    throw new Error(stage.exportFormats ? `the ${stage.name} stage exports ${stage.exportFormats.join(' or ')}, not ${JSON.stringify(format)}` : `the ${stage.name} stage exports one layout; --format is not for it`);
  }
  const config = parseConfig(stage.schema, json, configPath);
  const checkpoint = await latestCheckpoint(join(run, 'checkpoints'));
  if (!checkpoint) throw new Error(`${run} has no checkpoint yet`);
  const state = await readCheckpointState(checkpoint);
  await mkdir(dirname(out), { recursive: true });
  const temporary = await mkdtemp(join(dirname(out), `.${basename(out)}.export-`));
  try {
    try {
      await stage.exportModel(config, averagedParameters(state), temporary, format ?? stage.exportFormats?.[0]);
    } catch (error) {
      // Errors name the folder the user asked for, not the temporary one.
      throw new Error((error as Error).message.split(temporary).join(to));
    }
    await moveFilesInto(temporary, out, to, force);
  } finally {
    await rm(temporary, { recursive: true, force: true });
  }
  return { stage: stage.name, step: state.step };
}

/** Moves every file under `source` to its place under `out` (named `shown` in messages); refuses existing files unless `force`. */
async function moveFilesInto(source: string, out: string, shown: string, force: boolean): Promise<void> {
  const entries = await readdir(source, { recursive: true, withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => relative(source, join(entry.parentPath ?? entry.path, entry.name)));
  if (!force) {
    const present = (await Promise.all(files.map(async (file) => ((await stat(join(out, file)).catch(() => null)) ? file : null)))).filter((file) => file !== null);
    if (present.length) {
      const more = present.length > 1 ? ` (and ${present.length - 1} more of the export's files)` : '';
      throw new Error(`${join(shown, present[0]!)} already exists${more}; pass --force to replace them`);
    }
  }
  for (const file of files) {
    await mkdir(dirname(join(out, file)), { recursive: true });
    await rename(join(source, file), join(out, file));
  }
}

interface Progress {
  update(step: number, loss: number, stepsPerSecond: number, batchSize: number): void;
  stop(): void;
}

function createProgress(mode: RunOptions['progress'], stage: string, total: number, start: number): Progress {
  const chosen = mode ?? (process.stderr.isTTY ? 'bar' : 'lines');
  if (chosen === 'none') return { update: () => undefined, stop: () => undefined };
  // Off a terminal cli-progress prints the bar as a plain line on a schedule, which suits log files.
  const bar = new cliProgress.SingleBar(
    {
      format: `${stage} [{bar}] step {value}/{total} | loss {loss} | {speed} steps/s, {samples} samples/s | ETA {eta_formatted}`,
      stream: process.stderr,
      noTTYOutput: chosen === 'lines',
      notTTYSchedule: 30000,
      etaBuffer: 50,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, start, { loss: '-', speed: '-', samples: '-' });
  return {
    update(step, loss, stepsPerSecond, batchSize) {
      bar.update(step, { loss: loss.toPrecision(4), speed: stepsPerSecond.toFixed(2), samples: (stepsPerSecond * batchSize).toFixed(1) });
    },
    stop: () => bar.stop(),
  };
}
