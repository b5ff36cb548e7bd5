// `kosmos-g eval kosmos-lm --model DIR`: the stage-1 MLLM of a Kosmos-G folder, on held-out data
// (concept naming of held-out-style subjects by caption likelihood, held-out perplexity);
// writes metrics.json into --out and prints the figures.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { Device } from '../graph/devices.js';
import { evaluateKosmosLm } from '../eval/kosmos-lm.js';
import { positiveInteger } from './arguments.js';
import { checkReportFolder } from './output.js';

export function registerEvalKosmosLmCommand(evaluate: Command): void {
  evaluate
    .command('kosmos-lm')
    .description("Kosmos-G's MLLM on held-out data: concept naming of held-out-style subjects by caption likelihood, perplexity")
    .requiredOption('--model <dir>', 'Kosmos-G folder (tokenizer, vision, connector, mllm, world.json)')
    .option('--out <dir>', 'folder for metrics.json', 'eval/kosmos-lm')
    .option('--images <n>', 'held-out-style subjects to name', positiveInteger('--images'), 200)
    .option('--batches <n>', 'batches of 16 held-out sequences for the perplexity', positiveInteger('--batches'), 16)
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'intra-op CPU threads', positiveInteger('--threads'))
    .option('--force', 'replace an earlier metrics.json in --out')
    .action(async (flags: { model: string; out: string; images: number; batches: number; device: string; threads?: number; force?: boolean }) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device ${flags.device} (cpu, webgpu or auto)`);
      await checkReportFolder(flags.out, ['metrics.json'], flags.force ?? false);
      const metrics = await evaluateKosmosLm(flags.model, {
        images: flags.images,
        perplexityBatches: flags.batches,
        device: flags.device as Device,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        report: (message) => process.stderr.write(`${message}\n`),
      });
      await mkdir(flags.out, { recursive: true });
      await writeFile(join(flags.out, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
      const pct = (value: number) => `${(value * 100).toFixed(1)}%`;
      console.log(`concept naming of ${metrics.images} held-out-style subjects: top-1 ${pct(metrics.conceptTop1)}, top-5 ${pct(metrics.conceptTop5)}, calibrated by the caption prior ${pct(metrics.calibratedConceptTop1)} / ${pct(metrics.calibratedConceptTop5)} (chance ${pct(1 / metrics.concepts)}); perplexity on ${metrics.sequences} sequences: validation ${metrics.validationPerplexity.toFixed(2)}, held-out split ${metrics.heldOutPerplexity.toFixed(2)}`);
    });
}
