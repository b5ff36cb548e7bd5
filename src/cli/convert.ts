// `kosmos-g convert`, three ways (docs/convert.md):
//   --from CHECKPOINT --out DIR [--sd DIR] --sentencepiece F --dict F   an official Kosmos-G checkpoint
//                                                                        → a Kosmos-G pipeline folder
//   --from SD_DIR --out DIR [--text-encoder DIR]                         a diffusers StableDiffusionPipeline
//                                                                        folder → a text-to-image folder
//   --decoder SD_DIR --into KOSMOS_G_DIR --out DIR [--decoder-scheduler] a Kosmos-G folder with the U-Net
//                                                                        and VAE of a Stable Diffusion folder
// A `--from` folder with a model_index.json is a diffusers pipeline; without one, a checkpoint.
// Pickles are read by the safe reader (src/io/pickle.ts), which runs nothing; the conversions
// themselves are src/convert/.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { readConfigJson } from '../io/config-json.js';
import { parseArchitectureOverrides } from '../convert/architecture.js';
import { convertDiffusersPipeline, isPipelineFolder, substituteDecoder } from '../convert/diffusers.js';
import { convertKosmosG } from '../convert/kosmos_g.js';
import type { ComponentReport } from '../convert/output_folder.js';

interface ConvertFlags {
  from?: string;
  out?: string;
  sd?: string;
  sentencepiece?: string;
  dict?: string;
  archConfig?: string;
  variant?: string;
  textEncoder?: string;
  decoder?: string;
  into?: string;
  decoderScheduler?: boolean;
  force?: boolean;
}

type Mode = 'checkpoint' | 'diffusers' | 'decoder';

/** The flags each way of converting reads; any other is refused rather than silently ignored. */
const MODE_FLAGS: Record<Mode, readonly (keyof ConvertFlags)[]> = {
  checkpoint: ['from', 'out', 'sd', 'sentencepiece', 'dict', 'archConfig', 'variant', 'force'],
  diffusers: ['from', 'out', 'textEncoder', 'variant', 'force'],
  decoder: ['decoder', 'into', 'out', 'decoderScheduler', 'variant', 'force'],
};

const MODE_NAMES: Record<Mode, string> = {
  checkpoint: 'an official checkpoint as --from',
  diffusers: 'a diffusers pipeline folder as --from',
  decoder: '--decoder and --into',
};

const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;

function requireFlags(flags: ConvertFlags, names: readonly (keyof ConvertFlags)[], why = ''): void {
  const missing = names.filter((name) => !flags[name]).map(flagName);
  if (missing.length) throw new Error(`${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} required${why}`);
}

async function modeOf(flags: ConvertFlags): Promise<Mode> {
  if (flags.decoder !== undefined || flags.into !== undefined) return 'decoder';
  requireFlags(flags, ['from'], ' (or --decoder with --into)');
  if (await isPipelineFolder(flags.from!)) return 'diffusers';
  // A diffusers or transformers model's config.json names its class; a checkpoint folder's does not.
  const config = await readConfigJson(join(flags.from!, 'config.json')).catch(() => null);
  if (config && ('_class_name' in config || 'architectures' in config)) {
    throw new Error(`--from ${flags.from} is a single model folder (config.json, no model_index.json): convert the diffusers pipeline folder it belongs to, or give a CLIPTextModel folder as --text-encoder`);
  }
  return 'checkpoint';
}

function print(heading: string, components: readonly ComponentReport[], notes: readonly string[]): void {
  const lines = [heading, ...components.map(({ name, source }) => `  ${name.padEnd(14)} ${source}`), ...notes.map((note) => `  ${note}`)];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function convert(flags: ConvertFlags): Promise<void> {
  const mode = await modeOf(flags);
  const unexpected = (Object.keys(flags) as (keyof ConvertFlags)[]).filter((name) => flags[name] !== undefined && !MODE_FLAGS[mode].includes(name));
  if (unexpected.length) throw new Error(`${unexpected.map(flagName).join(', ')} ${unexpected.length > 1 ? 'do' : 'does'} not go with ${MODE_NAMES[mode]}`);
  if (flags.variant !== undefined && !/^\w+$/.test(flags.variant)) throw new Error(`--variant must be a name such as fp16, got '${flags.variant}'`);
  const force = flags.force ?? false;
  if (mode === 'decoder') {
    requireFlags(flags, ['decoder', 'into', 'out']);
    const report = await substituteDecoder({ decoder: flags.decoder!, into: flags.into!, out: flags.out!, variant: flags.variant, scheduler: flags.decoderScheduler, force });
    print(`wrote ${flags.into} with the decoder of ${flags.decoder} to ${flags.out}`, report.components, report.notes);
  } else if (mode === 'diffusers') {
    requireFlags(flags, ['out']);
    const report = await convertDiffusersPipeline({ from: flags.from!, out: flags.out!, variant: flags.variant, textEncoder: flags.textEncoder, force });
    print(`converted ${flags.from} (diffusers StableDiffusionPipeline) to ${flags.out}`, report.components, report.notes);
  } else {
    const isFolder = await stat(flags.from!).then((entry) => entry.isDirectory(), () => false);
    requireFlags(flags, ['out', 'sentencepiece', 'dict'], isFolder ? ` (--from ${flags.from} has no model_index.json, so it is read as an official Kosmos-G checkpoint)` : '');
    const architecture = flags.archConfig ? parseArchitectureOverrides(await readConfigJson(flags.archConfig), flags.archConfig) : {};
    const report = await convertKosmosG({
      from: flags.from!,
      out: flags.out!,
      sd: flags.sd,
      variant: flags.variant,
      sentencePiece: flags.sentencepiece!,
      dictionary: flags.dict!,
      architecture,
      force,
    });
    const shown = report.leftOut.slice(0, 6).join(', ');
    const leftOut = report.leftOut.length ? [`left out ${report.leftOut.length} checkpoint tensor(s) no component reads: ${shown}${report.leftOut.length > 6 ? ', …' : ''}`] : [];
    print(`converted ${flags.from} (${report.format}) to ${flags.out}`, report.components, [...report.notes, ...leftOut]);
  }
}

export function registerConvertCommand(program: Command): void {
  program
    .command('convert')
    .description('convert an official Kosmos-G checkpoint or a diffusers Stable Diffusion folder into a pipeline folder, or give a Kosmos-G folder another decoder')
    .showHelpAfterError(false)
    .option('--from <path>', 'an official checkpoint (.pt, .safetensors or index, or a folder of them), or a diffusers StableDiffusionPipeline folder (has model_index.json)')
    .option('--out <dir>', 'pipeline folder to create')
    .option('--sd <dir>', 'checkpoint: Stable Diffusion 1.5 folder in the diffusers layout for unet/, vae/ and scheduler/ (needed unless the checkpoint holds them)')
    .option('--sentencepiece <file>', "checkpoint: the official tokenizer's sentencepiece.bpe.model")
    .option('--dict <file>', "checkpoint: the official fairseq dictionary's dict.txt")
    .option('--arch-config <file>', 'checkpoint: JSON of config.json fields per component (vision, connector, mllm, aligner, unet, vae) over those read from the checkpoint')
    .option('--text-encoder <dir>', 'diffusers: a transformers CLIPTextModel folder to use instead of the pipeline\'s text_encoder/')
    .option('--decoder <dir>', 'Stable Diffusion folder (diffusers layout) whose unet/ and vae/ replace those of --into')
    .option('--into <dir>', 'the Kosmos-G pipeline folder whose decoder is replaced (it is copied to --out, not changed)')
    .option('--decoder-scheduler', "with --decoder: take the decoder folder's scheduler too")
    .option('--variant <name>', 'read the weights variant of that name (fp16) where a Stable Diffusion component has it')
    .option('--force', 'replace an existing --out folder')
    .addHelpText(
      'after',
      [
        '',
        'Ways to convert (docs/convert.md):',
        '  convert --from CHECKPOINT --out DIR [--sd SD_DIR] --sentencepiece FILE --dict FILE',
        '  convert --from SD_DIR --out DIR [--text-encoder CLIP_TEXT_DIR] [--variant fp16]',
        '  convert --decoder SD_DIR --into KOSMOS_G_DIR --out DIR [--decoder-scheduler] [--variant fp16]',
        '',
      ].join('\n'),
    )
    .action((flags: ConvertFlags) => convert(flags));
}
