// `kosmos-g init-random --config tiny --out DIR`: a complete pipeline folder with random weights,
// for trying and testing every code path without trained models (`kosmos-g`: the paper's sizes).
import type { Command } from 'commander';
import { RANDOM_CONFIGS, RANDOM_DTYPES, type RandomConfigName, type RandomWeightsDtype, createRandomPipeline } from '../pipeline/random_pipeline.js';

export function registerInitRandomCommand(program: Command): void {
  program
    .command('init-random')
    .description('create a random-weight pipeline folder (every component, consistent sizes)')
    .showHelpAfterError(false)
    .option('--config <name>', `size: ${RANDOM_CONFIGS.join(', ')} (kosmos-g: the paper's, 11.3 GB in float32)`, 'tiny')
    .option('--dtype <type>', `weight storage: ${RANDOM_DTYPES.join(', ')}`, 'float32')
    .option('--seed <n>', 'seed of the random weights', '0')
    .option('--out <dir>', 'folder to create (must not exist)')
    .action(async (flags: { config: string; dtype: string; seed: string; out?: string }) => {
      if (!flags.out) throw new Error('--out is required');
      if (!(RANDOM_CONFIGS as readonly string[]).includes(flags.config)) throw new Error(`unknown config '${flags.config}' (choose ${RANDOM_CONFIGS.join(', ')})`);
      if (!(RANDOM_DTYPES as readonly string[]).includes(flags.dtype)) throw new Error(`unknown dtype '${flags.dtype}' (choose ${RANDOM_DTYPES.join(', ')})`);
      const seed = Number(flags.seed);
      if (!/^\d+$/.test(flags.seed) || !Number.isSafeInteger(seed)) throw new Error(`--seed must be a non-negative integer, got '${flags.seed}'`);
      await createRandomPipeline(flags.out, {
        config: flags.config as RandomConfigName,
        dtype: flags.dtype as RandomWeightsDtype,
        seed,
        // The paper config takes minutes: one line per network written.
        onNetwork: (name, parameters) => process.stderr.write(`${name}: ${(parameters / 1e6).toFixed(1)} M parameters written\n`),
      });
      process.stdout.write(`wrote a ${flags.config} random-weight pipeline (${flags.dtype}) to ${flags.out}\n`);
    });
}
