// `kosmos-g eval dreambench`: Kosmos-G's DreamBench protocol (src/eval/dreambench.ts) on a folder
// in the DreamBench layout, scored by independent judges; writes images/, metrics.json,
// scores.csv and report.html into --out. Flags are checked here; the data, model and --out are
// checked by the evaluation before anything is generated.
import { join } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_JUDGES } from '../eval/clip-judge-probe.js';
import type { Device } from '../graph/devices.js';
import { SCHEDULER_CHOICES, type SchedulerChoice } from '../pipeline/diffusion.js';
import { BASELINES, evaluateDreamBench } from '../eval/dreambench.js';

function integer(flag: string, minimum: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < minimum) throw new Error(`${flag} must be an integer ≥ ${minimum}, got '${value}'`);
    return n;
  };
}

function decimal(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} must be a number, got '${value}'`);
    return n;
  };
}

function subjectList(value: string): string[] {
  const names = value.split(',').map((name) => name.trim()).filter(Boolean);
  if (!names.length) throw new Error(`--subjects must name subjects separated by commas, got '${value}'`);
  return names;
}

interface DreamBenchFlags {
  model?: string;
  data: string;
  out: string;
  judges: string;
  imagesPerPrompt?: number;
  steps?: number;
  guidance?: number;
  scheduler?: string;
  seed?: number;
  size?: number;
  subjects?: string[];
  prompts?: number;
  baseline?: string;
  controlnet?: string;
  control?: string;
  controlScale?: number;
  lora?: string;
  loraScale?: number;
  resume?: boolean;
  force?: boolean;
  device: string;
  threads?: number;
  workers?: number;
}

const fixed = (value: number | null) => (value === null ? '–' : value.toFixed(1));

/** Registers `dreambench` on the `eval` command. */
export function registerEvalDreamBenchCommand(evaluate: Command): void {
  evaluate
    .command('dreambench')
    .description("Kosmos-G's DreamBench protocol: DINO, CLIP-I and CLIP-T of generations from each subject's reference image, by independent judges")
    .option('--model <dir>', 'pipeline folder: Kosmos-G, or text-to-image with --baseline text or text-style (not needed for --baseline oracle or random)')
    .requiredOption('--data <dir>', 'a folder in the DreamBench layout (subjects.json, prompts.json, kosmosg_eval.json, images/), e.g. ../shared/dreambench')
    .requiredOption('--out <dir>', 'evaluation folder: images/, eval.json, metrics.json, scores.csv, report.html')
    .option('--judges <dir>', 'holds clip/ (a transformers CLIPModel folder) and dino/ (a transformers ViTModel folder); default the embedded models/judges', DEFAULT_JUDGES)
    .option('--images-per-prompt <n>', "images per prompt (default kosmosg_eval.json's, 4)", integer('--images-per-prompt', 1))
    .option('--steps <n>', "denoising steps (default kosmosg_eval.json's, 100)", integer('--steps', 1))
    .option('--guidance <g>', "guidance scale (default kosmosg_eval.json's, 7.5)", decimal('--guidance'))
    .option('--scheduler <name>', `sampler: ${SCHEDULER_CHOICES.join(', ')} (default kosmosg_eval.json's, dpm++)`)
    .option('--seed <n>', 'base seed; image k of prompt p starts from seed + 5·k + (p mod 5) (default 0)', integer('--seed', 0))
    .option('--size <px>', "output side in pixels (default the model's)", integer('--size', 1))
    .option('--subjects <a,b>', 'only these subjects', subjectList)
    .option('--prompts <n>', 'only the first N prompts of each subject (world data: and of the two-subject prompts and edits)', integer('--prompts', 1))
    .option('--baseline <row>', "text: the class word instead of the image, through a text-to-image folder; text-style (world data): the style and class words; oracle: the subject's other photos (world data: the true scene of each prompt); random: as many images of other subjects (world data: their true scene of the prompt)")
    .option('--controlnet <dir>', "world data: a ControlNet steered by each prompt's true scene (the report has the edge F1 and the layout placement of every row)")
    .option('--control <kind>', "what the ControlNet sees of the true scene: canny (its edges, the default) or layout (its layout map)")
    .option('--control-scale <s>', 'ControlNet conditioning scale (default 1)', decimal('--control-scale'))
    .option('--lora <file>', 'a LoRA (PEFT/diffusers or kohya safetensors) applied to the U-Net')
    .option('--lora-scale <s>', 'LoRA scale (default 1)', decimal('--lora-scale'))
    .option('--resume', 'continue the evaluation in --out: saved images are reused, scores recomputed')
    .option('--force', 'replace the evaluation in --out')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'CPU threads per graph (with --workers: per worker; default the cores shared out)', integer('--threads', 1))
    .option('--workers <n>', 'worker threads that split the prompts, each with its own copy of the model (CPU only; small models run more images per second than on one pipeline; default 1)', integer('--workers', 1))
    .action(async (flags: DreamBenchFlags) => {
      if (flags.baseline !== undefined && !(BASELINES as readonly string[]).includes(flags.baseline)) throw new Error(`unknown --baseline '${flags.baseline}' (${BASELINES.join(', ')})`);
      if (flags.scheduler !== undefined && !(SCHEDULER_CHOICES as string[]).includes(flags.scheduler)) throw new Error(`unknown scheduler '${flags.scheduler}' (choose ${SCHEDULER_CHOICES.join(', ')})`);
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device '${flags.device}' (cpu, webgpu or auto)`);
      if (flags.baseline !== 'oracle' && flags.baseline !== 'random' && !flags.model) throw new Error('--model is required (except for --baseline oracle and random)');
      if ((flags.controlScale !== undefined || flags.control !== undefined) && !flags.controlnet) throw new Error(`${flags.control !== undefined ? '--control' : '--control-scale'} needs --controlnet`);
      if (flags.control !== undefined && flags.control !== 'canny' && flags.control !== 'layout') throw new Error(`unknown --control '${flags.control}' (canny or layout)`);
      if (flags.loraScale !== undefined && !flags.lora) throw new Error('--lora-scale needs --lora');
      const { metrics } = await evaluateDreamBench({
        ...(flags.model !== undefined ? { model: flags.model } : {}),
        data: flags.data,
        out: flags.out,
        judges: flags.judges,
        ...(flags.imagesPerPrompt !== undefined ? { imagesPerPrompt: flags.imagesPerPrompt } : {}),
        ...(flags.steps !== undefined ? { steps: flags.steps } : {}),
        ...(flags.guidance !== undefined ? { guidance: flags.guidance } : {}),
        ...(flags.scheduler !== undefined ? { scheduler: flags.scheduler as SchedulerChoice } : {}),
        ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
        ...(flags.size !== undefined ? { size: flags.size } : {}),
        ...(flags.subjects !== undefined ? { subjects: flags.subjects } : {}),
        ...(flags.prompts !== undefined ? { prompts: flags.prompts } : {}),
        ...(flags.baseline !== undefined ? { baseline: flags.baseline as (typeof BASELINES)[number] } : {}),
        ...(flags.controlnet !== undefined ? { controlnet: { model: flags.controlnet, ...(flags.control !== undefined ? { control: flags.control as 'canny' | 'layout' } : {}), ...(flags.controlScale !== undefined ? { scale: flags.controlScale } : {}) } } : {}),
        ...(flags.lora !== undefined ? { lora: { file: flags.lora, ...(flags.loraScale !== undefined ? { scale: flags.loraScale } : {}) } } : {}),
        resume: flags.resume ?? false,
        force: flags.force ?? false,
        device: flags.device as Device,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        ...(flags.workers !== undefined ? { workers: flags.workers } : {}),
        report: (message) => process.stderr.write(`${message}\n`),
      });
      const { overall, run } = metrics;
      const edges = overall.edgeF1 === null ? '' : `, edge F1 ${overall.edgeF1.toFixed(3)}`;
      console.log(
        `DreamBench ${metrics.row}: DINO ${fixed(overall.dino)}, CLIP-I ${fixed(overall.clipI)}, CLIP-T ${fixed(overall.clipT)}${edges} over ${metrics.images} images of ${metrics.subjects} subject${metrics.subjects === 1 ? '' : 's'} ` +
          `(paper: ${metrics.row === 'oracle' ? 'real images 77.4 / 88.5 / –' : 'Kosmos-G 69.4 / 84.7 / 28.7'}); ${run.generated} generated, ${run.reused} reused; report in ${join(flags.out, 'report.html')}`,
      );
      const world = metrics.world;
      if (world) {
        const rate = (r: { rate: number | null }) => (r.rate === null ? '–' : `${(100 * r.rate).toFixed(0)} %`);
        console.log(
          `world measures: concept ${rate(world.prompts.concept)}, style ${rate(world.prompts.style)}, background ${rate(world.prompts.background)}, position ${rate(world.prompts.position)}; ` +
            `two subjects present ${rate(world.multi.bothPresentTop5)}; edits: subject kept ${rate(world.edits.subjectKept)}, background changed as asked ${rate(world.edits.backgroundToTarget)}` +
            (world.placement ? `; placed in their layout masks: ${rate(world.placement.prompts)} single, ${rate(world.placement.multi)} two-subject` : ''),
        );
      }
    });
}
