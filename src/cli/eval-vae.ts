// `kosmos-g eval vae --vae DIR [--world DIR]`: a VAE folder's reconstruction PSNR on the evaluation
// scenes of `eval world-sd`, by split, without a pipeline around it (a VAE run's export can be
// measured before a U-Net is trained on its latents).
import { join } from 'node:path';
import type { Command } from 'commander';
import type { Device } from '../graph/devices.js';
import { evaluateVae } from '../eval/world-sd.js';
import { DEFAULT_MODEL } from '../pipeline/default_model.js';
import { positiveInteger } from './arguments.js';

/** The world the embedded models were trained on. */
const DEFAULT_WORLD = join(DEFAULT_MODEL, '..', 'world-sd-mini');

interface EvalVaeFlags {
  vae: string;
  world: string;
  vaeScenes: number;
  json?: boolean;
  device: string;
  threads?: number;
}

export function registerEvalVaeCommand(evaluate: Command): void {
  evaluate
    .command('vae')
    .description("a VAE folder's reconstruction PSNR on the evaluation scenes of eval world-sd, by split")
    .requiredOption('--vae <dir>', 'VAE folder (config.json + weights), e.g. the output of train export')
    .option('--world <dir>', "pipeline folder whose world.json names the scenes' world (default: the embedded world-sd-mini)", DEFAULT_WORLD)
    .option('--vae-scenes <n>', 'scenes per split', positiveInteger('--vae-scenes'), 64)
    .option('--json', 'print the figures as JSON')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'intra-op CPU threads', positiveInteger('--threads'))
    .action(async (flags: EvalVaeFlags) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device ${flags.device} (cpu, webgpu or auto)`);
      const report = await evaluateVae(flags.vae, flags.world, { scenesPerSplit: flags.vaeScenes, device: flags.device as Device, ...(flags.threads !== undefined ? { threads: flags.threads } : {}) });
      if (flags.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      console.log(`VAE PSNR ${report.psnr.toFixed(2)} dB over ${report.scenes} scenes (pooled ${report.pooledPsnr.toFixed(2)}, worst ${report.worstPsnr.toFixed(1)})`);
      for (const [split, score] of Object.entries(report.bySplit)) console.log(`  ${split}: ${score!.psnr.toFixed(2)} dB over ${score!.scenes} scenes (worst ${score!.worstPsnr.toFixed(1)})`);
    });
}
