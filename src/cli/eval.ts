// `kosmos-g eval world-sd --model DIR`: evaluates a world-sd pipeline folder (VAE, CLIP-mini,
// U-Net-mini) on evaluation-seed scenes and writes metrics.json, samples.png and report.html.
import type { Command } from 'commander';
import type { Device } from '../graph/devices.js';
import { evaluateWorldSd } from '../eval/world-sd.js';
import { writeWorldSdReport } from '../eval/world-sd-report.js';
import { positiveInteger } from './arguments.js';
import { checkReportFolder } from './output.js';
import { registerEvalKosmosLmCommand } from './eval-kosmos-lm.js';
import { registerEvalDreamBenchCommand } from './eval-dreambench.js';
import { registerEvalJudgesCommand } from './eval-judges.js';
import { registerEvalLoraCommand } from './eval-lora.js';
import { registerEvalVaeCommand } from './eval-vae.js';

/** The files `writeWorldSdReport` writes into --out. */
const WORLD_SD_REPORT_FILES = ['metrics.json', 'samples.png', 'report.html'];

function guidanceList(value: string): number[] {
  const scales = value.split(',').map(Number);
  if (!scales.length || scales.some((scale) => !Number.isFinite(scale) || scale < 1)) throw new Error(`--guidance must be comma-separated numbers ≥ 1, got '${value}'`);
  return scales;
}

interface EvalFlags {
  model: string;
  out: string;
  steps: number;
  guidance: number[];
  retrievalScenes: number;
  zeroShotScenes: number;
  twinPairs: number;
  judge?: string;
  singlePrompts: number;
  twoSubjectPrompts: number;
  tuningPrompts: number;
  vaeScenes: number;
  device: string;
  threads?: number;
  force?: boolean;
}

export function registerEvalCommand(program: Command): void {
  const evaluate = program.command('eval').description('evaluate trained models');
  registerEvalKosmosLmCommand(evaluate);
  registerEvalDreamBenchCommand(evaluate);
  registerEvalJudgesCommand(evaluate);
  registerEvalVaeCommand(evaluate);
  registerEvalLoraCommand(evaluate);
  evaluate
    .command('world-sd')
    .description("the world's Stable Diffusion (VAE PSNR, CLIP-mini retrieval and zero-shot, U-Net-mini generations) on scenes never trained on")
    .requiredOption('--model <dir>', 'pipeline folder (vae, text_encoder, vision, clip_tokenizer, unet, scheduler, world.json)')
    .option('--out <dir>', 'report folder', 'eval/world-sd')
    .option('--steps <n>', 'DPM-Solver++ steps', positiveInteger('--steps'), 25)
    .option('--guidance <list>', 'guidance scales to tune over (comma-separated)', guidanceList, [2, 3, 4, 5, 7])
    .option('--retrieval-scenes <n>', 'scenes in the retrieval pool', positiveInteger('--retrieval-scenes'), 100)
    .option('--zero-shot-scenes <n>', 'single-subject scenes classified zero-shot', positiveInteger('--zero-shot-scenes'), 200)
    .option('--judge <dir>', 'what scores the generations: a judges folder, a CLIPModel folder, or a pipeline folder with a CLIP-mini such as the model itself (default: the embedded models/judges)')
    .option('--twin-pairs <n>', 'single-subject position-twin pairs CLIP-mini must tell apart', positiveInteger('--twin-pairs'), 100)
    .option('--single-prompts <n>', 'single-subject prompts generated', positiveInteger('--single-prompts'), 100)
    .option('--two-subject-prompts <n>', 'two-subject prompts generated', positiveInteger('--two-subject-prompts'), 40)
    .option('--tuning-prompts <n>', 'prompts per guidance scale when tuning', positiveInteger('--tuning-prompts'), 24)
    .option('--vae-scenes <n>', 'scenes per split for the VAE PSNR', positiveInteger('--vae-scenes'), 64)
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'intra-op CPU threads', positiveInteger('--threads'))
    .option('--force', 'replace an earlier report in --out')
    .action(async (flags: EvalFlags) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device ${flags.device} (cpu, webgpu or auto)`);
      await checkReportFolder(flags.out, WORLD_SD_REPORT_FILES, flags.force ?? false);
      const result = await evaluateWorldSd(flags.model, {
        steps: flags.steps,
        guidanceScales: flags.guidance,
        retrievalScenes: flags.retrievalScenes,
        zeroShotScenes: flags.zeroShotScenes,
        twinPairs: flags.twinPairs,
        ...(flags.judge !== undefined ? { judge: flags.judge } : {}),
        singlePrompts: flags.singlePrompts,
        twoSubjectPrompts: flags.twoSubjectPrompts,
        tuningPrompts: flags.tuningPrompts,
        vaeScenesPerSplit: flags.vaeScenes,
        device: flags.device as Device,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        report: (message) => process.stderr.write(`${message}\n`),
      });
      await writeWorldSdReport(flags.out, result);
      const { vae, clip, unet } = result.metrics;
      const pct = (value: number | undefined) => `${((value ?? 0) * 100).toFixed(1)}%`;
      console.log(
        `VAE PSNR ${vae.psnr.toFixed(2)} dB; CLIP-mini retrieval ${pct(clip.captionToImageTop1)}, zero-shot ${pct(clip.zeroShotTop1)}, position twins ${pct(clip.twinPairsMatched)}; ` +
          `U-Net-mini (guidance ${unet.guidanceScale}) concept ${pct(unet.singleSubject.generated.conceptTop1)}, position ${pct(unet.singleSubject.generated.position)}, ` +
          `two subjects ${pct(unet.twoSubjects.generated.bothPresentTop5)}; report in ${flags.out}`,
      );
    });
}
