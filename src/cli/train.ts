// `kosmos-g train <stage>`: runs a training stage with the generic runner (resumable checkpoints,
// JSONL log, loss curve, sample grids, wall-clock budget); `train export` turns a run's newest
// checkpoint into a loadable model folder.
import type { Command } from 'commander';
import type { Device } from '../graph/devices.js';
import { exportRun, runStage } from '../train/runner.js';
import { TRAINING_STAGES } from '../train/stages.js';

interface TrainFlags {
  config?: string;
  out: string;
  resume?: boolean;
  device: string;
  threads?: number;
  budgetMinutes?: number;
  progress?: string;
}

function positiveNumber(what: string, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!(n > 0) || (integer && !Number.isInteger(n))) throw new Error(`${what} must be a positive ${integer ? 'integer' : 'number'}, got '${value}'`);
    return n;
  };
}

export function registerTrainCommand(program: Command): void {
  const train = program.command('train').description('train a component of the world model (resumable; see configs/train/)');
  for (const stage of TRAINING_STAGES) {
    train
      .command(stage.name)
      .description(stage.description)
      .option('--config <file>', 'training config (JSON); optional with --resume, which then uses the run\'s config.json')
      .requiredOption('--out <dir>', 'run folder, e.g. runs/NAME')
      .option('--resume', 'continue from the newest checkpoint in --out')
      .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
      .option('--threads <n>', 'intra-op CPU threads (default: one per core)', positiveNumber('--threads', true))
      .option('--budget-minutes <n>', 'stop with a checkpoint before this many minutes', positiveNumber('--budget-minutes', false))
      .option('--progress <mode>', 'bar, lines or none (default: bar on a terminal, else lines)')
      .action(async (flags: TrainFlags) => {
        if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device ${flags.device} (cpu, webgpu or auto)`);
        if (flags.progress !== undefined && !['bar', 'lines', 'none'].includes(flags.progress)) throw new Error(`unknown progress mode ${flags.progress} (bar, lines or none)`);
        const summary = await runStage(stage, {
          out: flags.out,
          ...(flags.config !== undefined ? { configPath: flags.config } : {}),
          resume: flags.resume ?? false,
          device: flags.device as Device,
          ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
          ...(flags.budgetMinutes !== undefined ? { budgetMinutes: flags.budgetMinutes } : {}),
          ...(flags.progress !== undefined ? { progress: flags.progress as 'bar' | 'lines' | 'none' } : {}),
        });
        const percent = (share: number) => `${(share * 100).toFixed(1)}%`;
        console.log(
          `${summary.stage}: steps ${summary.startStep} → ${summary.endStep} (${summary.reason}) in ${summary.seconds} s: ` +
            `${summary.stepsPerSecond.toFixed(3)} steps/s, ${summary.samplesPerSecond.toFixed(2)} samples/s; ` +
            `data ${percent(summary.dataShare)}, compute ${percent(summary.computeShare)}, checkpoints/plots/samples ${summary.overheadSeconds} s`,
        );
      });
  }
  train
    .command('export')
    .description("write a run's newest checkpoint (its EMA weights when the run keeps an EMA) as a model folder (e.g. diffusers layout, fp16)")
    .requiredOption('--run <dir>', 'run folder')
    .requiredOption('--to <dir>', 'model folder to write')
    .option('--format <name>', 'layout, for stages that write several (lora: peft, kohya)')
    .option('--force', 'replace files the model folder already has')
    .action(async (flags: { run: string; to: string; format?: string; force?: boolean }) => {
      const { stage, step } = await exportRun(flags.run, flags.to, { ...(flags.format ? { format: flags.format } : {}), force: flags.force === true });
      console.log(`exported ${stage} at step ${step} to ${flags.to}`);
    });
}
