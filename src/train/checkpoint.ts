// Training checkpoints: one folder per checkpoint (`step-00001200/`) holding the parameters and
// the optimizer state as safetensors and `state.json` (step, seed, config hash, data cursor,
// elapsed time); a run with weight EMA keeps its averages in the optimizer state (`ema.<key>`).
// The folder is assembled under a temporary name, every file fsynced, then renamed into place in
// one step, so a kill -9 at any moment leaves only complete checkpoints behind.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { averagedParameters, type TrainingState } from '../graph/train-step.js';
import type { HostTensor } from '../onnx/dtype.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { syncDirectory, writeFileAtomic } from '../io/atomic-file.js';
import { parseJson } from '../io/file-errors.js';

const CHECKPOINT_PATTERN = /^step-(\d{8})$/;
const TEMPORARY_PREFIX = '.step-';
const PARAMETERS_FILE = 'parameters.safetensors';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'state.json';

const metadataSchema = z.strictObject({
  format: z.literal('kosmos-g-training-checkpoint'),
  version: z.literal(1),
  stage: z.string(),
  step: z.number().int().nonnegative(),
  seed: z.number().int().nonnegative(),
  configHash: z.string(),
  /**
   * Where the data stream continues: the index of the next sample. Batches are a pure function of
   * (seed, step), so this is step · batchSize and is stored to make the checkpoint self-describing.
   */
  nextSample: z.number().int().nonnegative(),
  /** Training wall time of the run so far, summed over every session that worked on it. */
  elapsedSeconds: z.number().nonnegative(),
  createdAt: z.string(),
});

export type CheckpointMetadata = z.output<typeof metadataSchema>;

export interface Checkpoint {
  path: string;
  metadata: CheckpointMetadata;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** Writes `state` as checkpoint folder `checkpointName(step)` under `directory`; returns its path. */
export async function writeCheckpoint(directory: string, state: TrainingState, metadata: Omit<CheckpointMetadata, 'format' | 'version' | 'step'>): Promise<string> {
  await mkdir(directory, { recursive: true });
  const name = checkpointName(state.step);
  const final = join(directory, name);
  const temporary = join(directory, `${TEMPORARY_PREFIX}${String(state.step).padStart(8, '0')}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(temporary);
    const fullMetadata: CheckpointMetadata = { format: 'kosmos-g-training-checkpoint', version: 1, step: state.step, ...metadata };
    // writeSafetensors and writeFileAtomic fsync each file and the temporary folder itself.
    await writeSafetensors(join(temporary, PARAMETERS_FILE), state.parameters, { metadata: { step: String(state.step) } });
    await writeSafetensors(join(temporary, OPTIMIZER_FILE), state.optimizer, { metadata: { step: String(state.step) } });
    await writeFileAtomic(join(temporary, STATE_FILE), `${JSON.stringify(fullMetadata, null, 2)}\n`);
    if ((await listCheckpoints(directory)).some((checkpoint) => checkpoint.step === state.step)) {
      // Batches and updates are deterministic, so an existing checkpoint of this step holds the same tensors.
      await rm(temporary, { recursive: true, force: true });
      return final;
    }
    await rename(temporary, final);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    // The folder's temporary name means nothing to a person; the checkpoint's does.
    throw new Error(`cannot write the checkpoint ${final}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  await syncDirectory(directory);
  return final;
}

/** Complete checkpoints under `directory`, oldest first (temporary folders are not listed). */
export async function listCheckpoints(directory: string): Promise<{ step: number; path: string }[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names
    .map((name) => ({ match: CHECKPOINT_PATTERN.exec(name), name }))
    .filter((entry): entry is { match: RegExpExecArray; name: string } => entry.match !== null)
    .map(({ match, name }) => ({ step: Number(match[1]), path: join(directory, name) }))
    .sort((a, b) => a.step - b.step);
}

export async function readCheckpointMetadata(path: string): Promise<CheckpointMetadata> {
  const file = join(path, STATE_FILE);
  const parsed = metadataSchema.safeParse(parseJson(await readFile(file, 'utf8'), file));
  if (!parsed.success) throw new Error(`${file}: not a training checkpoint:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The newest complete checkpoint, or null when there is none. */
export async function latestCheckpoint(directory: string): Promise<Checkpoint | null> {
  const last = (await listCheckpoints(directory)).at(-1);
  return last ? { path: last.path, metadata: await readCheckpointMetadata(last.path) } : null;
}

export async function readCheckpointState(checkpoint: Checkpoint): Promise<TrainingState> {
  const read = async (file: string) => Object.fromEntries(await readSafetensors(join(checkpoint.path, file)));
  return { step: checkpoint.metadata.step, parameters: await read(PARAMETERS_FILE), optimizer: await read(OPTIMIZER_FILE) };
}

export interface InitialParameterSource {
  /** Keys a fine-tune adds to its source's (a new training-only head): absent from any source. */
  addedByFineTune?: readonly string[];
  /** Keys `train export` does not write (the logit scale, training heads): absent from a model folder. */
  trainingOnly?: readonly string[];
  /** Reads a model folder the stage exported, as float32 training parameters. */
  importModel: (directory: string) => Promise<Record<string, HostTensor>>;
  /** Keys kept at their `expected` value whatever the source holds (the config's `initFromExcept`). */
  fresh?: readonly string[];
}

/**
 * The parameters `initFrom` names: a run folder's newest checkpoint, one checkpoint folder, or a
 * model folder that `train export` wrote (a released model; it holds no optimizer state). A
 * checkpoint with weight EMA gives its averages, the weights `train export` would write, so a
 * fine-tune with a frozen encoder keeps the latents of the exported one. They are
 * checked against `expected`: every key present with the same dtype and shape, no extra keys. Keys
 * the source may lack (`addedByFineTune`, and `trainingOnly` for a model folder) keep their
 * `expected` value and are listed in `keptInitial`.
 */
export async function readInitialParameters(
  path: string,
  stage: string,
  expected: Readonly<Record<string, HostTensor>>,
  source: InitialParameterSource,
): Promise<{ parameters: Record<string, HostTensor>; keptInitial: string[] }> {
  const isCheckpoint = CHECKPOINT_PATTERN.test(basename(path));
  const isRun = !isCheckpoint && (await isDirectory(join(path, 'checkpoints')));
  let parameters: Record<string, HostTensor>;
  let origin = path;
  let mayLack = source.addedByFineTune ?? [];
  if (isCheckpoint || isRun) {
    const checkpoint = isCheckpoint ? { path, metadata: await readCheckpointMetadata(path) } : await latestCheckpoint(join(path, 'checkpoints'));
    if (!checkpoint) throw new Error(`initFrom: ${path} is a run folder without checkpoints yet`);
    if (checkpoint.metadata.stage !== stage) throw new Error(`initFrom: ${checkpoint.path} is a '${checkpoint.metadata.stage}' checkpoint, not '${stage}'`);
    parameters = averagedParameters(await readCheckpointState(checkpoint));
    origin = checkpoint.path;
  } else {
    try {
      parameters = await source.importModel(path);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`initFrom: ${path} is neither a checkpoint folder, a run folder with checkpoints nor a '${stage}' model folder (${reason})`);
    }
    mayLack = [...mayLack, ...(source.trainingOnly ?? [])];
  }
  const problems: string[] = [];
  const keptInitial: string[] = [];
  const fresh = new Set(source.fresh ?? []);
  for (const key of fresh) if (!(key in expected)) problems.push(`initFromExcept names ${key}, which this model does not have`);
  for (const [key, tensor] of Object.entries(expected)) {
    if (fresh.has(key)) {
      parameters[key] = tensor;
      keptInitial.push(key);
      continue;
    }
    const found = parameters[key];
    if (!found) {
      if (!mayLack.includes(key)) problems.push(`missing ${key}`);
      else {
        parameters[key] = tensor;
        keptInitial.push(key);
      }
    } else if (found.dtype !== tensor.dtype || found.shape.join(',') !== tensor.shape.join(',')) {
      problems.push(`${key}: ${found.dtype} [${found.shape.join(', ')}] in the source, the model has ${tensor.dtype} [${tensor.shape.join(', ')}]`);
    }
  }
  for (const key of Object.keys(parameters)) if (!(key in expected)) problems.push(`unexpected ${key}`);
  if (problems.length > 0) throw new Error(`initFrom: ${origin} does not fit this model:\n  ${problems.slice(0, 20).join('\n  ')}${problems.length > 20 ? `\n  … ${problems.length - 20} more` : ''}`);
  return { parameters, keptInitial };
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() ?? false;
}

/** Deletes all but the newest `keep` checkpoints, and temporary folders a killed run left behind. */
export async function pruneCheckpoints(directory: string, keep: number): Promise<void> {
  const checkpoints = await listCheckpoints(directory);
  for (const old of checkpoints.slice(0, Math.max(0, checkpoints.length - keep))) await rm(old.path, { recursive: true, force: true });
  for (const name of await readdir(directory)) {
    if (name.startsWith(TEMPORARY_PREFIX) && name.endsWith('.tmp') && !name.includes(`.${process.pid}.`)) await rm(join(directory, name), { recursive: true, force: true });
  }
}
