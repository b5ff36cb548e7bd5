// `kosmos-g info DIR`: the components of a pipeline folder with their classes, parameter counts,
// tensor dtypes and sizes on disk (read from the safetensors headers; no weights are loaded), after
// the folder passed every check `generate` makes when it loads it.
import type { Command } from 'commander';
import { describePipeline, formatPipelineInfo } from '../pipeline/info.js';

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description('check a pipeline folder as generate loads it, then describe it: components, parameter counts, dtypes, sizes on disk')
    .showHelpAfterError(false)
    .argument('<dir>', 'pipeline folder (model_index.json + components)')
    .option('--json', 'print JSON instead of a table')
    .action(async (directory: string, flags: { json?: boolean }) => {
      const info = await describePipeline(directory);
      process.stdout.write(flags.json ? `${JSON.stringify(info, null, 2)}\n` : `${formatPipelineInfo(info).join('\n')}\n`);
    });
}
