// `kosmos-g eval lora`: a style LoRA's shift toward its style as its scale goes 0 → 1, for a
// Kosmos-G folder and a text-to-image folder, on a world DreamBench (src/eval/lora-shift.ts).
import { join } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_JUDGES } from '../eval/clip-judge-probe.js';
import { type LoraShiftOptions, evaluateLoraShift } from '../eval/lora-shift.js';
import type { Device } from '../graph/devices.js';
import { positiveInteger } from './arguments.js';

function scaleList(value: string): number[] {
  const scales = value.split(',').map((part) => Number(part.trim()));
  if (!value.trim() || scales.some((scale) => !Number.isFinite(scale) || scale < 0)) throw new Error(`--scales must be non-negative numbers separated by commas, got '${value}'`);
  return scales;
}

function nonNegativeInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new Error(`--seed must be a non-negative integer, got '${value}'`);
  return n;
}

function guidanceValue(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new Error(`--guidance must be a number, got '${value}'`);
  return n;
}

/** The options as commander parses them: the device still a word to check. */
type LoraFlags = Omit<LoraShiftOptions, 'device' | 'report' | 'subjects'> & { device: string };

export function registerEvalLoraCommand(evaluate: Command): void {
  evaluate
    .command('lora')
    .description("a style LoRA's shift: how often the independent judge names its style as its scale goes from 0 to 1, with Kosmos-G and with CLIP-text conditioning")
    .option('--model <dir>', 'a Kosmos-G folder (its row: the reference image at <i>)')
    .option('--text-model <dir>', 'a text-to-image folder (its row: the style and class words)')
    .requiredOption('--data <dir>', 'a world DreamBench (data build --kind dreambench)')
    .requiredOption('--lora <file>', 'the LoRA (PEFT/diffusers or kohya safetensors)')
    .requiredOption('--style <name>', 'the world style the LoRA was trained on, e.g. twemoji')
    .requiredOption('--out <dir>', 'one DreamBench evaluation per row and scale, lora-shift.json and lora-shift.svg')
    .option('--scales <list>', 'LoRA scales (0: without it)', scaleList, [0, 0.25, 0.5, 0.75, 1])
    .option('--judges <dir>', 'the judges folder (default the embedded models/judges)', DEFAULT_JUDGES)
    .option('--images-per-prompt <n>', "images per prompt (default the data's)", positiveInteger('--images-per-prompt'))
    .option('--steps <n>', "denoising steps (default the data's)", positiveInteger('--steps'))
    .option('--guidance <g>', "guidance scale (default the data's)", guidanceValue)
    .option('--seed <n>', 'base seed (official scheme)', nonNegativeInteger)
    .option('--prompts <n>', 'only the first N prompts of each subject', positiveInteger('--prompts'))
    .option('--resume', 'continue: saved images are reused')
    .option('--force', 'replace the evaluations in --out')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'CPU threads per graph (with --workers: per worker)', positiveInteger('--threads'))
    .option('--workers <n>', 'worker threads that split the prompts, each with its own copy of the model (CPU only)', positiveInteger('--workers'))
    .action(async (flags: LoraFlags) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device '${flags.device}' (cpu, webgpu or auto)`);
      const report = await evaluateLoraShift({ ...flags, device: flags.device as Device, report: (message) => process.stderr.write(`${message}\n`) });
      for (const row of report.rows) {
        const points = row.points.map((point) => `${point.scale}: ${(100 * point.fraction).toFixed(1)} %`).join(', ');
        console.log(`${row.row} (${row.model}): images named ${report.style} by LoRA scale: ${points}`);
      }
      console.log(`chart in ${join(flags.out, 'lora-shift.svg')}`);
    });
}
