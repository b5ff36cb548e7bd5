// `convert` for Stable Diffusion folders in the diffusers layout, the paper's "seamless
// substitution": any SD 1.5 fine-tune can be the decoder.
//   convertDiffusersPipeline   a StableDiffusionPipeline folder → a text-to-image folder in this
//                              project's layout (generate's CLIP-text path): unet, vae,
//                              text_encoder, scheduler, and the CLIP tokenizer as clip_tokenizer/;
//                              safety_checker, feature_extractor and other unused parts left out
//   substituteDecoder          a Kosmos-G folder with its unet/ and vae/ (and scheduler/ if asked)
//                              replaced by a Stable Diffusion folder's
//   openDecoder                the U-Net, VAE and scheduler of such a folder, also for `--sd`
// Component folders are read by ./model_folder.ts (variants, shards, safe pickles, legacy names).
// Every input is checked (classes, configs, tensors, widths) before `--out` is written, into a
// temporary sibling renamed into place.
import { cp, copyFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readConfigJson } from '../io/config-json.js';
import { parseAlignerConfig } from '../models/aligner.js';
import type { AutoencoderKL } from '../models/autoencoder_kl.js';
import { parseClipTextConfig } from '../models/clip_text.js';
import { type UNet2DConditionModel, perBlockValues } from '../models/unet_2d_condition.js';
import type { Module } from '../nn/module.js';
import { DIFFUSION_COMPONENTS, KOSMOS_G_COMPONENTS, clipTokenizerComponent, readPipelineFolder, requireComponents } from '../pipeline/folder.js';
import {
  type DeclaredClass, type ModelFolder, type SchedulerFolder, TEXT_ENCODER_KIND, UNET_KIND, VAE_KIND,
  isFolder, matchModelFolder, openModelFolder, readSchedulerFolder, writeClipTokenizer, writeModelFolder, writeSchedulerFolder,
} from './model_folder.js';
import { type ComponentReport, checkOutput, copyDocumentation, filesOf, writeFolderAtomically } from './output_folder.js';

export interface FolderConversionReport {
  out: string;
  components: ComponentReport[];
  /** What was left out or changed on the way (unused components and tensors, a scheduler's class). */
  notes: string[];
}

interface ModelIndex {
  path: string;
  className: string;
  record: Record<string, unknown>;
  /** Each listed component's class; metadata (`_…`), flags (`requires_safety_checker`) and `[null, null]` entries are not components. */
  classes: Map<string, string>;
}

/** Whether `directory` holds a model_index.json, i.e. is a pipeline folder rather than a checkpoint or a single model. */
export const isPipelineFolder = (directory: string) => stat(join(directory, 'model_index.json')).then((entry) => entry.isFile(), () => false);

/** The class `index` gives component `name`, if it lists it. */
function declaredClass(index: ModelIndex | null, name: string): DeclaredClass | undefined {
  const className = index?.classes.get(name);
  return className === undefined ? undefined : { className, path: index!.path };
}

async function readModelIndex(directory: string): Promise<ModelIndex | null> {
  if (!(await isPipelineFolder(directory))) return null;
  const path = join(directory, 'model_index.json');
  const record = await readConfigJson(path);
  const classes = new Map<string, string>();
  for (const [name, entry] of Object.entries(record)) {
    if (name.startsWith('_') || !Array.isArray(entry) || entry[1] === null) continue;
    if (entry.length !== 2 || typeof entry[1] !== 'string') throw new Error(`${path}: ${name} must be [library, class], got ${JSON.stringify(entry)}`);
    classes.set(name, entry[1]);
  }
  return { path, className: typeof record['_class_name'] === 'string' ? record['_class_name'] : '', record, classes };
}

/** The one width a U-Net cross-attends to (per-block values must agree); `where` names its config. */
export function singleCrossAttentionDim(config: { cross_attention_dim: number | number[]; block_out_channels: number[] }, where: string): number {
  const values = perBlockValues(config.cross_attention_dim, config.block_out_channels.length, 'cross_attention_dim');
  if (new Set(values).size !== 1) throw new Error(`${where}: per-block cross_attention_dim ${values.join(', ')} differ; one condition width is needed`);
  return values[0]!;
}

async function closeAll(folders: readonly ModelFolder<Module>[]): Promise<void> {
  await Promise.all(folders.map((folder) => folder.source.close()));
}

export interface Decoder {
  directory: string;
  unet: ModelFolder<UNet2DConditionModel>;
  vae: ModelFolder<AutoencoderKL>;
  scheduler: SchedulerFolder;
  crossAttentionDim: number;
  /** Checks the U-Net's and VAE's tensors against their configs (after the caller's width checks). */
  match(): void;
  close(): Promise<void>;
}

/**
 * The U-Net, VAE and scheduler of a Stable Diffusion folder in the diffusers layout (a Kosmos-G
 * folder's do as well); model_index.json is optional, its classes are checked when it is there.
 */
export async function openDecoder(directory: string, flag: string, variant?: string): Promise<Decoder> {
  if (!(await isFolder(join(directory, 'unet')))) throw new Error(`${flag} ${directory} is not a Stable Diffusion folder in the diffusers layout: it has no unet/ folder`);
  const index = await readModelIndex(directory);
  const opened: ModelFolder<Module>[] = [];
  try {
    const unet = await openModelFolder(join(directory, 'unet'), UNET_KIND, { variant, declared: declaredClass(index, 'unet') });
    opened.push(unet);
    const vae = await openModelFolder(join(directory, 'vae'), VAE_KIND, { variant, declared: declaredClass(index, 'vae') });
    opened.push(vae);
    const scheduler = await readSchedulerFolder(join(directory, 'scheduler'));
    const unetConfig = join(unet.directory, 'config.json');
    const { in_channels: input, out_channels: output } = unet.model.config;
    const latents = vae.model.config.latent_channels;
    if (input !== latents || output !== latents) {
      throw new Error(`${unetConfig}: a U-Net of ${input} input and ${output} output channels does not denoise the ${latents}-channel latents of ${join(vae.directory, 'config.json')} (an inpainting or other non-text-to-image U-Net?)`);
    }
    const crossAttentionDim = singleCrossAttentionDim(unet.model.config, unetConfig);
    return { directory, unet, vae, scheduler, crossAttentionDim, match: () => opened.forEach(matchModelFolder), close: () => closeAll(opened) };
  } catch (error) {
    await closeAll(opened);
    throw error;
  }
}

type ReportLines = Pick<FolderConversionReport, 'components' | 'notes'>;

/** Writes a model folder into `directory/<its name>` and reports it; `from` begins its report line. */
async function writeReported(folder: ModelFolder<Module>, directory: string, report: ReportLines, from = ''): Promise<void> {
  const { tensors, leftOut } = await writeModelFolder(folder, join(directory, folder.plan.name));
  report.components.push({ name: folder.plan.name, source: `${from}${tensors} tensors of ${folder.weights}` });
  const shown = `${leftOut.slice(0, 6).join(', ')}${leftOut.length > 6 ? ', …' : ''}`;
  if (leftOut.length) report.notes.push(`${folder.plan.name}: left out ${leftOut.length} tensor(s) its model does not read: ${shown}`);
}

/** Writes the decoder's unet/ and vae/ into `directory`, the decoder folder's model card and licence beside each. */
export async function writeDecoder(decoder: Decoder, directory: string, report: ReportLines, from = ''): Promise<void> {
  for (const folder of [decoder.unet, decoder.vae]) {
    await writeReported(folder, directory, report, from);
    await copyDocumentation(decoder.directory, join(directory, folder.plan.name));
  }
}

/** Writes the scheduler into `directory/scheduler`; `from` begins its report line. */
export async function writeDecoderScheduler(scheduler: SchedulerFolder, directory: string, report: ReportLines, from = ''): Promise<void> {
  await writeSchedulerFolder(scheduler, join(directory, 'scheduler'));
  const written = scheduler.config._class_name;
  report.components.push({ name: 'scheduler', source: `${from}${scheduler.path} as ${written}` });
  if (written !== scheduler.sourceClass) {
    report.notes.push(`scheduler: ${scheduler.sourceClass} is not implemented here; its training schedule is kept under ${written} (the sampler is chosen at generation time)`);
  }
}

const writeIndex = (directory: string, index: Record<string, unknown>) => writeFile(join(directory, 'model_index.json'), `${JSON.stringify(index, null, 2)}\n`);

export interface DiffusersConversionOptions {
  /** A StableDiffusionPipeline folder in the diffusers layout. */
  from: string;
  out: string;
  /** Weights variant to read (`fp16`), where a component has it. */
  variant?: string;
  /** A transformers CLIPTextModel folder used instead of the pipeline's text_encoder/. */
  textEncoder?: string;
  force?: boolean;
}

/** The components a text-to-image folder needs from a StableDiffusionPipeline folder. */
const TEXT_TO_IMAGE_COMPONENTS = ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler'];
const CLIP_TOKENIZER_CLASSES = ['CLIPTokenizer', 'CLIPTokenizerFast'];

export async function convertDiffusersPipeline(options: DiffusersConversionOptions): Promise<FolderConversionReport> {
  const force = options.force ?? false;
  const out = await checkOutput(options.out, force, [['--from', options.from], ['--text-encoder', options.textEncoder]]);
  const index = await readModelIndex(options.from);
  if (!index) throw new Error(`--from ${options.from} is not a diffusers pipeline folder: it has no model_index.json`);
  if (index.className !== 'StableDiffusionPipeline') {
    throw new Error(`${index.path}: a ${index.className || 'pipeline without _class_name'}, not a StableDiffusionPipeline (Stable Diffusion 1.x text-to-image)`);
  }
  const absent = TEXT_TO_IMAGE_COMPONENTS.filter((name) => !index.classes.has(name));
  if (absent.length) throw new Error(`${index.path} lists no ${absent.join(', ')}, which a text-to-image folder needs`);
  const tokenizerClass = index.classes.get('tokenizer')!;
  if (!CLIP_TOKENIZER_CLASSES.includes(tokenizerClass)) throw new Error(`${index.path}: the tokenizer is a ${tokenizerClass}; expected ${CLIP_TOKENIZER_CLASSES.join(' or ')}`);

  const decoder = await openDecoder(options.from, '--from', options.variant);
  try {
    const declared = options.textEncoder === undefined ? declaredClass(index, 'text_encoder') : undefined;
    const textEncoder = await openModelFolder(options.textEncoder ?? join(options.from, 'text_encoder'), TEXT_ENCODER_KIND, { variant: options.variant, declared });
    try {
      const hidden = textEncoder.model.config.hidden_size;
      if (hidden !== decoder.crossAttentionDim) {
        throw new Error(`${join(textEncoder.directory, 'config.json')}: hidden_size ${hidden} differs from the ${decoder.crossAttentionDim} that ${join(decoder.unet.directory, 'config.json')} cross-attends to`);
      }
      decoder.match();
      matchModelFolder(textEncoder);
      return await writeFolderAtomically(out, force, async (directory) => {
        const report: FolderConversionReport = { out, components: [], notes: [] };
        const tokenizerFrom = join(options.from, 'tokenizer');
        const tokenizer = await writeClipTokenizer(tokenizerFrom, join(directory, 'clip_tokenizer'));
        const vocabulary = textEncoder.model.config.vocab_size;
        if (tokenizer.vocabularySize > vocabulary) throw new Error(`${tokenizerFrom} gives ${tokenizer.vocabularySize} ids but ${join(textEncoder.directory, 'config.json')} has vocab_size ${vocabulary}`);
        await writeDecoder(decoder, directory, report);
        await writeReported(textEncoder, directory, report);
        report.components.push({ name: 'clip_tokenizer', source: `${tokenizer.vocabularySize} ids from ${tokenizerFrom}` });
        await writeDecoderScheduler(decoder.scheduler, directory, report);
        await copyDocumentation(options.from, directory);
        const unused = [...index.classes.keys()].filter((name) => !TEXT_TO_IMAGE_COMPONENTS.includes(name));
        if (unused.length) report.notes.push(`left out ${unused.join(', ')}: not used by this project`);
        await writeIndex(directory, {
          _class_name: 'StableDiffusionPipeline',
          _converted_from: basename(options.from),
          unet: ['diffusers', 'UNet2DConditionModel'],
          vae: ['diffusers', 'AutoencoderKL'],
          text_encoder: ['transformers', 'CLIPTextModel'],
          clip_tokenizer: ['transformers', 'CLIPTokenizer'],
          scheduler: ['diffusers', decoder.scheduler.config._class_name],
        });
        // The same folder check `generate` makes, before the folder is moved into place.
        const folder = await readPipelineFolder(directory);
        requireComponents(folder, [...DIFFUSION_COMPONENTS, 'text_encoder'], 'CLIP-text generation');
        if (!clipTokenizerComponent(folder)) throw new Error(`${directory}: no CLIP tokenizer was written`);
        return report;
      });
    } finally {
      await textEncoder.source.close();
    }
  } finally {
    await decoder.close();
  }
}

export interface DecoderSubstitutionOptions {
  /** The Stable Diffusion folder whose U-Net and VAE become the decoder. */
  decoder: string;
  /** The Kosmos-G pipeline folder whose decoder is replaced. */
  into: string;
  out: string;
  variant?: string;
  /** Also take the decoder folder's scheduler. */
  scheduler?: boolean;
  force?: boolean;
}

/**
 * A copy of the Kosmos-G folder `into` with the decoder of `decoder`. The condition path is copied
 * unchanged; a CLIP-text path (text_encoder, clip_tokenizer) is kept while its width still fits the
 * new U-Net; folders model_index.json does not list (evaluations, examples of the old decoder's
 * images) are left behind, top-level files (world.json, attribution) are kept.
 */
export async function substituteDecoder(options: DecoderSubstitutionOptions): Promise<FolderConversionReport> {
  const force = options.force ?? false;
  const out = await checkOutput(options.out, force, [['--decoder', options.decoder], ['--into', options.into]]);
  const index = await readModelIndex(options.into);
  if (index?.className !== 'KosmosGPipeline') throw new Error(`--into ${options.into} is ${index ? `a ${index.className} folder` : 'no pipeline folder'}, not a KosmosGPipeline one (its model_index.json)`);
  const folder = await readPipelineFolder(options.into);
  const components = requireComponents(folder, KOSMOS_G_COMPONENTS, 'Kosmos-G generation');
  const alignerConfig = join(components.get('aligner')!.directory, 'config.json');
  const conditionWidth = parseAlignerConfig(await readConfigJson(alignerConfig), alignerConfig).decoder_embed_dim;
  const decoder = await openDecoder(options.decoder, '--decoder', options.variant);
  try {
    if (decoder.crossAttentionDim !== conditionWidth) {
      throw new Error(`the aligner's output (${alignerConfig}) is ${conditionWidth} wide but the U-Net of ${join(decoder.unet.directory, 'config.json')} cross-attends to ${decoder.crossAttentionDim}`);
    }
    decoder.match();
    const replaced = ['unet', 'vae', ...(options.scheduler ? ['scheduler'] : [])];
    const textEncoder = folder.components.get('text_encoder');
    const textWidth = textEncoder ? parseClipTextConfig(await readConfigJson(join(textEncoder.directory, 'config.json'))).hidden_size : conditionWidth;
    const dropped = textWidth === decoder.crossAttentionDim ? [] : ['text_encoder', 'clip_tokenizer'].filter((name) => index.classes.has(name));
    return await writeFolderAtomically(out, force, async (directory) => {
      const report: FolderConversionReport = { out, components: [], notes: [] };
      for (const name of index.classes.keys()) {
        if (replaced.includes(name) || dropped.includes(name)) continue;
        await cp(join(options.into, name), join(directory, name), { recursive: true, dereference: true });
        report.components.push({ name, source: `copied from --into ${options.into}` });
      }
      for (const name of await filesOf(options.into, (file) => file !== 'model_index.json')) await copyFile(join(options.into, name), join(directory, name));
      await writeDecoder(decoder, directory, report);
      if (options.scheduler) await writeDecoderScheduler(decoder.scheduler, directory, report);
      if (dropped.length) report.notes.push(`left out ${dropped.join(', ')}: the CLIP-text path's ${textWidth}-wide text encoder does not fit the new U-Net's ${decoder.crossAttentionDim}`);
      const entries = Object.entries(index.record).filter(([name]) => !dropped.includes(name));
      const scheduler = options.scheduler ? { scheduler: ['diffusers', decoder.scheduler.config._class_name] } : {};
      await writeIndex(directory, { ...Object.fromEntries(entries), ...scheduler, _decoder_from: basename(options.decoder) });
      requireComponents(await readPipelineFolder(directory), KOSMOS_G_COMPONENTS, 'Kosmos-G generation');
      return report;
    });
  } finally {
    await decoder.close();
  }
}
