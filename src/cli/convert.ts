// `kosmos-g convert --from FILE.pt|FILE.safetensors|DIR --out DIR [--sd DIR] --sentencepiece FILE --dict FILE`:
// an official Kosmos-G checkpoint → a pipeline folder for `generate`. Pickles are read by the safe
// reader (src/io/pickle.ts), which runs nothing; the conversion itself is src/convert/.
import type { Command } from 'commander';
import { readConfigJson } from '../io/config-json.js';
import { parseArchitectureOverrides } from '../convert/architecture.js';
import { convertKosmosG } from '../convert/kosmos_g.js';

interface ConvertFlags {
  from?: string;
  out?: string;
  sd?: string;
  sentencepiece?: string;
  dict?: string;
  archConfig?: string;
  force?: boolean;
}

export function registerConvertCommand(program: Command): void {
  program
    .command('convert')
    .description('convert an official Kosmos-G checkpoint (.pt, or safetensors with the official key names) into a pipeline folder')
    .showHelpAfterError(false)
    .option('--from <path>', 'checkpoint: a torch .pt file (zip or legacy), a .safetensors file or index, or a folder of safetensors')
    .option('--out <dir>', 'pipeline folder to create')
    .option('--sd <dir>', 'Stable Diffusion 1.5 folder in the diffusers layout for unet/, vae/ and scheduler/ (needed unless the checkpoint holds them)')
    .option('--sentencepiece <file>', "the official tokenizer's sentencepiece.bpe.model")
    .option('--dict <file>', "the official fairseq dictionary's dict.txt")
    .option('--arch-config <file>', 'JSON of config.json fields per component (vision, connector, mllm, aligner, unet, vae) over those read from the checkpoint')
    .option('--force', 'replace an existing --out folder')
    .action(async (flags: ConvertFlags) => {
      const missing = (['from', 'out', 'sentencepiece', 'dict'] as const).filter((flag) => !flags[flag]).map((flag) => `--${flag}`);
      if (missing.length) throw new Error(`${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} required`);
      const architecture = flags.archConfig ? parseArchitectureOverrides(await readConfigJson(flags.archConfig), flags.archConfig) : {};
      const report = await convertKosmosG({
        from: flags.from!,
        out: flags.out!,
        sd: flags.sd,
        sentencePiece: flags.sentencepiece!,
        dictionary: flags.dict!,
        architecture,
        force: flags.force,
      });
      const lines = [`converted ${flags.from} (${report.format}) to ${flags.out}`];
      for (const { name, from, tensors } of report.components) lines.push(`  ${name.padEnd(10)} ${tensors === null ? `copied from ${from}` : `${tensors} tensors from ${from}`}`);
      if (report.leftOut.length) {
        const shown = report.leftOut.slice(0, 6).join(', ');
        lines.push(`  left out ${report.leftOut.length} checkpoint tensor(s) no component reads: ${shown}${report.leftOut.length > 6 ? ', …' : ''}`);
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
