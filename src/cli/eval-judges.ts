// `kosmos-g eval judges --judges DIR --data WORLD_DREAMBENCH [--real DREAMBENCH]`: how well a
// judges folder tells subjects apart on subjects it never trained on (src/eval/judge-quality.ts);
// writes metrics.json into --out and prints the figures.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { Device } from '../graph/devices.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { evaluateJudges } from '../eval/judge-quality.js';
import { positiveInteger } from './arguments.js';

interface EvalJudgesFlags {
  judges: string;
  data: string;
  real?: string;
  out: string;
  views: number;
  force?: boolean;
  device: string;
  threads?: number;
}

export function registerEvalJudgesCommand(evaluate: Command): void {
  evaluate
    .command('judges')
    .description("the DreamBench judges on held-out subjects: same- vs other-subject ROC AUC, concept and style accuracy; optionally on real DreamBench photos")
    .requiredOption('--judges <dir>', 'judges folder (clip/ as a CLIPModel, dino/ as a ViTModel)')
    .requiredOption('--data <dir>', 'a world DreamBench (data build --kind dreambench) whose subjects the judges never trained on')
    .option('--real <dir>', 'a real DreamBench folder: same- vs other-subject AUC on its photos')
    .requiredOption('--out <dir>', 'folder for metrics.json')
    .option('--views <n>', "rendered views of each held-out concept's other styles", positiveInteger('--views'), 4)
    .option('--force', 'replace an existing metrics.json in --out')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'intra-op CPU threads', positiveInteger('--threads'))
    .action(async (flags: EvalJudgesFlags) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device ${flags.device} (cpu, webgpu or auto)`);
      const target = join(flags.out, 'metrics.json');
      if (!flags.force && (await stat(target).catch(() => null))) throw new Error(`${target} already exists; pass --force to replace it`);
      const metrics = await evaluateJudges({
        judges: flags.judges,
        data: flags.data,
        ...(flags.real !== undefined ? { real: flags.real } : {}),
        views: flags.views,
        device: flags.device as Device,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        report: (message) => process.stderr.write(`${message}\n`),
      });
      await mkdir(flags.out, { recursive: true });
      await writeFileAtomic(target, `${JSON.stringify(metrics, null, 2)}\n`);
      const pct = (value: number) => `${(100 * value).toFixed(1)}%`;
      const line = (name: string, q: typeof metrics.dino) =>
        `${name}: AUC other subjects ${q.aucOtherSubjects.toFixed(3)}, same concept in other styles ${q.aucSameConceptOtherStyle.toFixed(3)}; nearest-neighbour concept ${pct(q.conceptNearest)}, style ${pct(q.styleNearest)}`;
      console.log(`${metrics.heldOutSubjects} held-out subjects, ${metrics.positives} true scenes`);
      console.log(line('DINO', metrics.dino));
      console.log(line('CLIP image', metrics.clipImage));
      console.log(`CLIP zero-shot: concept ${pct(metrics.clipZeroShot.conceptTop1)} (chance ${pct(1 / metrics.clipZeroShot.concepts)}), style ${pct(metrics.clipZeroShot.styleTop1)}`);
      if (metrics.real) {
        const r = metrics.real;
        console.log(`real DreamBench (${r.images} photos): DINO AUC ${r.dino.aucOtherSubjects.toFixed(3)} / same class ${r.dino.aucSameClass.toFixed(3)}; CLIP-I AUC ${r.clipImage.aucOtherSubjects.toFixed(3)} / same class ${r.clipImage.aucSameClass.toFixed(3)}`);
      }
    });
}
