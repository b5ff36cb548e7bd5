// `kosmos-g init-random --config tiny --out DIR`: a complete pipeline folder with random weights,
// for trying and testing every code path without trained models.
import type { Command } from 'commander';
import { RANDOM_CONFIGS, type RandomConfigName, createRandomPipeline } from '../pipeline/random_pipeline.js';

export function registerInitRandomCommand(program: Command): void {
  program
    .command('init-random')
    .description('create a random-weight pipeline folder (every component, consistent sizes)')
    .showHelpAfterError(false)
    .option('--config <name>', `size: ${RANDOM_CONFIGS.join(', ')}`, 'tiny')
    .option('--seed <n>', 'seed of the random weights', '0')
    .option('--out <dir>', 'folder to create (must not exist)')
    .action(async (flags: { config: string; seed: string; out?: string }) => {
      if (!flags.out) throw new Error('--out is required');
      if (!(RANDOM_CONFIGS as readonly string[]).includes(flags.config)) throw new Error(`unknown config '${flags.config}' (choose ${RANDOM_CONFIGS.join(', ')})`);
      const seed = Number(flags.seed);
      if (!/^\d+$/.test(flags.seed) || !Number.isSafeInteger(seed)) throw new Error(`--seed must be a non-negative integer, got '${flags.seed}'`);
      await createRandomPipeline(flags.out, { config: flags.config as RandomConfigName, seed });
      process.stdout.write(`wrote a ${flags.config} random-weight pipeline to ${flags.out}\n`);
    });
}
