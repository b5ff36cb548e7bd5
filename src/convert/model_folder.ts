// One component folder of the diffusers or transformers layout, read as the component this project
// loads. A model folder (config.json + weights) has its weights found as diffusers' and
// transformers' loaders find them: a variant (`*.fp16.safetensors`) when asked for or when it is
// the only one, else the plain weights; safetensors before torch pickles, one file before a
// sharded index; a `.bin` pickle only through the safe reader (src/io/pickle.ts), which runs
// nothing. Opening reads config.json and the weights' headers only, so that widths can be checked
// first; `matchModelFolder` then checks the tensors against the model built from config.json
// before anything is written. The weights are written as one safetensors file under the names the
// loaders read: legacy VAE attention names modernised, tensors the model does not read (the
// `position_ids` buffer of older CLIP checkpoints, a `text_projection`) left out, element types
// kept. A scheduler keeps its config when this project has its class, else its training noise
// schedule under SD 1.5's PNDM config: the sampler is chosen at generation time. A CLIP tokenizer
// becomes vocab.json + merges.txt.
import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readConfigJson } from '../io/config-json.js';
import { AutoencoderKL, modernAttentionKey, parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { CLIPTextModel, parseClipTextConfig } from '../models/clip_text.js';
import { UNet2DConditionModel, parseUNetConfig } from '../models/unet_2d_condition.js';
import type { Module } from '../nn/module.js';
import { checkpointInitialized } from '../nn/layers.js';
import { SCHEDULER_CLASSES } from '../pipeline/folder.js';
import { SD15_SCHEDULER_CONFIG } from '../pipeline/random_pipeline.js';
import { type SchedulerConfig, schedulerFromConfig } from '../schedulers/index.js';
import { ClipTokenizer } from '../tokenizers/clip_bpe.js';
import { readTokenizerJson, writeVocabAndMerges } from '../tokenizers/tokenizer_json.js';
import { type ComponentPlan, matchTensors, writeComponent } from './components.js';
import { copyDocumentation } from './output_folder.js';
import { type CheckpointSource, openCheckpointSource } from './source.js';

/** How one kind of model folder is read and written. */
export interface ModelKind<M extends Module> {
  /** The component's name in a pipeline folder. */
  name: string;
  /** Classes a config's `_class_name` (diffusers) or `architectures[0]` (transformers) may name. */
  classes: readonly string[];
  /** The model of a config.json (`source` names the file in errors). */
  build(config: Record<string, unknown>, source: string): M;
  /** The weights file written, under the name this project's folders use. */
  weightsFile: string;
  /** The model's name for a stored key, where older layouts differ. */
  modelKey?: (storedKey: string) => string;
}

export const UNET_KIND: ModelKind<UNet2DConditionModel> = {
  name: 'unet',
  classes: ['UNet2DConditionModel'],
  build: (config, source) => new UNet2DConditionModel(parseUNetConfig(config, source), checkpointInitialized),
  weightsFile: 'diffusion_pytorch_model.safetensors',
};

export const VAE_KIND: ModelKind<AutoencoderKL> = {
  name: 'vae',
  classes: ['AutoencoderKL'],
  build: (config, source) => new AutoencoderKL(parseAutoencoderKLConfig(config, source), { random: checkpointInitialized }),
  weightsFile: 'diffusion_pytorch_model.safetensors',
  // Checkpoints written before diffusers 0.14 (SD 1.5's own VAE among them) name the attention query/key/value/proj_attn.
  modelKey: modernAttentionKey,
};

/** The text path reads last_hidden_state only, so a CLIPTextModelWithProjection's projection is left out. */
export const TEXT_ENCODER_KIND: ModelKind<CLIPTextModel> = {
  name: 'text_encoder',
  classes: ['CLIPTextModel', 'CLIPTextModelWithProjection'],
  build: (config, source) => new CLIPTextModel(parseClipTextConfig(config, source), { random: checkpointInitialized }),
  weightsFile: 'model.safetensors',
};

/** A model folder opened for conversion: its config read and model built, its weights chosen and opened. */
export interface ModelFolder<M extends Module> {
  directory: string;
  model: M;
  /** The weights file (or index) chosen. */
  weights: string;
  source: CheckpointSource;
  plan: ComponentPlan;
}

const oneLine = (error: unknown) => (error as Error).message.replace(/\s*\n\s*/g, '; ');

/** Whether `path` is a folder (false when absent). */
export const isFolder = (path: string) => stat(path).then((entry) => entry.isDirectory(), () => false);

const WEIGHTS_FILE = /^(?:diffusion_pytorch_model|model|pytorch_model)(?:\.(\w+))?\.(safetensors|bin)$/;
const WEIGHTS_INDEX = /^(?:diffusion_pytorch_model|model|pytorch_model)\.(safetensors|bin)\.index(?:\.(\w+))?\.json$/;

interface WeightsCandidate {
  file: string;
  variant: string | null;
  safetensors: boolean;
  sharded: boolean;
}

function weightsCandidate(file: string): WeightsCandidate[] {
  const single = WEIGHTS_FILE.exec(file);
  if (single) return [{ file, variant: single[1] ?? null, safetensors: single[2] === 'safetensors', sharded: false }];
  const index = WEIGHTS_INDEX.exec(file);
  return index ? [{ file, variant: index[2] ?? null, safetensors: index[1] === 'safetensors', sharded: true }] : [];
}

/** The weights a diffusers or transformers loader would read from `directory` (see the header). */
export async function chooseWeights(directory: string, variant: string | undefined): Promise<string> {
  const candidates = (await readdir(directory)).flatMap(weightsCandidate);
  const variants = [...new Set(candidates.flatMap(({ variant: name }) => (name === null ? [] : [name])))];
  let pool = candidates.filter((candidate) => candidate.variant === (variant ?? null));
  if (!pool.length) pool = candidates.filter((candidate) => candidate.variant === null);
  if (!pool.length && variants.length === 1) pool = candidates;
  if (!pool.length && !candidates.length) {
    throw new Error(`${directory} holds no weights (diffusion_pytorch_model.safetensors, model.safetensors or pytorch_model.bin, a variant such as *.fp16.safetensors, or a sharded *.index.json)`);
  }
  if (!pool.length) throw new Error(`${directory} has no ${variant ? `${variant} and no ` : ''}plain weights, only the ${variants.join(', ')} variants: choose one with --variant`);
  pool.sort((a, b) => Number(b.safetensors) - Number(a.safetensors) || Number(a.sharded) - Number(b.sharded));
  return join(directory, pool[0]!.file);
}

/** A component's class as a pipeline's model_index.json gives it. */
export interface DeclaredClass {
  className: string;
  /** The model_index.json. */
  path: string;
}

/**
 * Reads a model folder: config.json (the class it declares, and the one model_index.json gives,
 * must be one of `kind`'s), the model built from it, the weights chosen and opened. The caller
 * closes `source`.
 */
export async function openModelFolder<M extends Module>(directory: string, kind: ModelKind<M>, options: { variant?: string; declared?: DeclaredClass } = {}): Promise<ModelFolder<M>> {
  if (!(await isFolder(directory))) throw new Error(`${directory} is missing (the ${kind.name} folder)`);
  const configPath = join(directory, 'config.json');
  const config = await readConfigJson(configPath);
  const architectures = config['architectures'];
  const configClass = config['_class_name'] ?? (Array.isArray(architectures) ? architectures[0] : undefined);
  for (const [className, path] of [[options.declared?.className, options.declared?.path], [configClass, configPath]]) {
    if (className !== undefined && !kind.classes.includes(String(className))) throw new Error(`${String(path)}: the ${kind.name} is a ${String(className)}; expected ${kind.classes.join(' or ')}`);
  }
  let model: M;
  try {
    model = kind.build(config, configPath);
  } catch (error) {
    const message = oneLine(error);
    throw new Error(message.includes(configPath) ? message : `${configPath}: ${message}`);
  }
  const weights = await chooseWeights(directory, options.variant);
  const source = await openCheckpointSource(weights).catch((error: unknown) => {
    const pickled = /\.bin$|\.bin\.index/.test(weights);
    throw new Error(`${oneLine(error)}${pickled ? ' (a .bin pickle is read only when it holds plain tensors; save the model as safetensors instead)' : ''}`);
  });
  const plan: ComponentPlan = { name: kind.name, model, config, sourcePrefix: '', outputPrefix: '', weightsFile: kind.weightsFile, modelKey: kind.modelKey };
  return { directory, model, weights, source, plan };
}

/** Checks that the weights hold every tensor the model reads, with its shape (an error names the weights file). */
export function matchModelFolder(folder: ModelFolder<Module>): void {
  matchTensors(folder.source, folder.plan);
}

/** Writes the component into `to`: config.json as given, the matched tensors, the folder's documentation. */
export async function writeModelFolder(folder: ModelFolder<Module>, to: string): Promise<{ tensors: number; leftOut: string[] }> {
  const used = new Set(await writeComponent(to, folder.source, folder.plan));
  await copyDocumentation(folder.directory, to);
  return { tensors: used.size, leftOut: [...folder.source.tensors.keys()].filter((key) => !used.has(key)) };
}

/** Keys that describe the training noise schedule, which every sampler reads the same way. */
const TRAINING_SCHEDULE_KEYS = ['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas', 'prediction_type', 'timestep_spacing', 'steps_offset'];

export interface SchedulerFolder {
  path: string;
  /** The class the source config names. */
  sourceClass: string;
  config: SchedulerConfig & { _class_name: string };
}

/** `directory/scheduler_config.json`, its class kept when this project has it (see the header). */
export async function readSchedulerFolder(directory: string): Promise<SchedulerFolder> {
  const path = join(directory, 'scheduler_config.json');
  const source = await readConfigJson(path);
  const sourceClass = source['_class_name'];
  if (typeof sourceClass !== 'string' || !sourceClass.endsWith('Scheduler')) throw new Error(`${path}: _class_name ${JSON.stringify(sourceClass)} is not a diffusers scheduler`);
  const schedule = Object.fromEntries(TRAINING_SCHEDULE_KEYS.filter((key) => Object.hasOwn(source, key)).map((key) => [key, source[key]]));
  // Checked by the schedulers themselves just below.
  const config = ((SCHEDULER_CLASSES as readonly string[]).includes(sourceClass) ? source : { ...SD15_SCHEDULER_CONFIG, ...schedule }) as SchedulerFolder['config'];
  try {
    schedulerFromConfig(config);
  } catch (error) {
    throw new Error(`${path}: ${oneLine(error)}`);
  }
  return { path, sourceClass, config };
}

export async function writeSchedulerFolder(scheduler: SchedulerFolder, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  await writeFile(join(to, 'scheduler_config.json'), `${JSON.stringify(scheduler.config, null, 2)}\n`);
}

/**
 * A CLIP tokenizer folder as this project reads it (vocab.json + merges.txt), from the slow
 * tokenizer's files or, where a folder has only the fast tokenizer's, tokenizer.json. Read from
 * `from` first, so a broken file is named where the user has it.
 */
export async function writeClipTokenizer(from: string, to: string): Promise<ClipTokenizer> {
  const files = await readdir(from).catch(() => {
    throw new Error(`${from} is missing (the CLIP tokenizer folder)`);
  });
  await mkdir(to, { recursive: true });
  if (files.includes('vocab.json') && files.includes('merges.txt')) {
    const tokenizer = await ClipTokenizer.fromPretrained(from);
    for (const file of ['vocab.json', 'merges.txt']) await copyFile(join(from, file), join(to, file), constants.COPYFILE_FICLONE);
    return tokenizer;
  }
  if (!files.includes('tokenizer.json')) throw new Error(`${from} holds neither vocab.json and merges.txt nor tokenizer.json`);
  const definition = await readTokenizerJson(join(from, 'tokenizer.json'));
  await writeVocabAndMerges(to, definition);
  return ClipTokenizer.fromBpe(definition.vocab, definition.merges);
}
