// `eval lora`: how far a style LoRA moves a model's images toward its style as its scale goes from
// 0 to 1, measured on a world DreamBench by the independent CLIP judge. For each row (a Kosmos-G
// folder with the reference images at `<i>`, and a text-to-image folder with the style and class
// words) and each scale, one DreamBench evaluation runs in <out>/<row>-<scale>/ (dreambench.ts,
// with its resume and its checks); scale 0 runs without the LoRA. The judge names one style of the
// subject's concept for every single-subject image (world-measures.ts); the shift is the fraction
// of images named with the LoRA's style. Both rows land in one chart, lora-shift.svg, beside
// lora-shift.json.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic-file.js';
import type { Device } from '../graph/devices.js';
import { escapeUTF8 } from 'entities';
import { readDreamBench } from './dreambench-data.js';
import { type DreamBenchOptions, evaluateDreamBench } from './dreambench.js';
import { readWorldDreamBench } from './world-dreambench.js';

export const LORA_SHIFT_FILE = 'lora-shift.json';
const CHART_FILE = 'lora-shift.svg';

export interface LoraShiftOptions {
  /** A Kosmos-G folder (row `kosmos-g`) and/or a text-to-image folder (row `text-style`); at least one. */
  model?: string;
  textModel?: string;
  data: string;
  judges: string;
  out: string;
  lora: string;
  /** The world style the LoRA was trained on (a key of the subjects' style_prompts). */
  style: string;
  scales: readonly number[];
  imagesPerPrompt?: number;
  steps?: number;
  guidance?: number;
  seed?: number;
  subjects?: readonly string[];
  prompts?: number;
  resume?: boolean;
  force?: boolean;
  device?: Device;
  threads?: number;
  workers?: number;
  report?: (message: string) => void;
}

export interface LoraShiftPoint {
  scale: number;
  images: number;
  /** Images the judge named with the LoRA's style. */
  named: number;
  fraction: number;
  /** Every style the judge named, with its count. */
  stylesNamed: Record<string, number>;
  /** The row's DreamBench scores at this scale (subject fidelity). */
  dino: number | null;
  clipI: number | null;
}

export interface LoraShiftReport {
  lora: string;
  style: string;
  rows: { row: 'kosmos-g' | 'text-style'; model: string; points: LoraShiftPoint[] }[];
}

/** The style must be one the judge can name for every subject of the data. */
async function checkStyle(data: string, style: string): Promise<void> {
  const world = await readWorldDreamBench(await readDreamBench(data));
  if (!world) throw new Error(`eval lora needs a world DreamBench (data build --kind dreambench): ${data} has no world-dreambench.json, so its subjects have no style names`);
  const styles = [...new Set(Object.values(world.file.subjects).flatMap((subject) => Object.keys(subject.style_prompts)))].sort();
  const lacking = Object.entries(world.file.subjects).filter(([, subject]) => !(style in subject.style_prompts));
  if (lacking.length) throw new Error(`--style ${style} is not a style the judge names for ${lacking.length === Object.keys(world.file.subjects).length ? 'any subject' : `the subject ${lacking[0]![0]}`} (styles: ${styles.join(', ')})`);
}

/** `--out` holds this command's files and sub-evaluations only: anything else is refused. */
async function checkOut(out: string): Promise<void> {
  const entry = await stat(out).catch(() => null);
  if (!entry) return;
  if (!entry.isDirectory()) throw new Error(`--out ${out} is a file, not a folder`);
  const foreign = (await readdir(out)).filter((name) => name !== LORA_SHIFT_FILE && name !== CHART_FILE && !/^(kosmos-g|text-style)-[\d.]+$/.test(name));
  if (foreign.length) throw new Error(`--out ${out} holds files that are not a LoRA evaluation's (${foreign.slice(0, 3).join(', ')}); choose a new or empty folder`);
}

export async function evaluateLoraShift(options: LoraShiftOptions): Promise<LoraShiftReport> {
  const rows = [
    ...(options.model ? [{ row: 'kosmos-g' as const, model: options.model }] : []),
    ...(options.textModel ? [{ row: 'text-style' as const, model: options.textModel }] : []),
  ];
  if (!rows.length) throw new Error('give --model (a Kosmos-G folder), --text-model (a text-to-image folder) or both');
  if (!options.scales.length || options.scales.some((scale) => !Number.isFinite(scale) || scale < 0)) throw new Error(`--scales must be non-negative numbers, got ${options.scales.join(',')}`);
  if (new Set(options.scales).size !== options.scales.length) throw new Error(`--scales repeats a scale: ${options.scales.join(',')}`);
  await checkStyle(options.data, options.style);
  await checkOut(options.out);
  const report: LoraShiftReport = { lora: options.lora, style: options.style, rows: [] };
  for (const { row, model } of rows) {
    const points: LoraShiftPoint[] = [];
    for (const scale of [...options.scales].sort((a, b) => a - b)) {
      options.report?.(`${row} with the LoRA at scale ${scale}`);
      const run: DreamBenchOptions = {
        model, data: options.data, judges: options.judges, out: join(options.out, `${row}-${scale}`),
        ...(row === 'text-style' ? { baseline: 'text-style' as const } : {}),
        // Scale 0 is the model itself: no LoRA graph at all.
        ...(scale > 0 ? { lora: { file: options.lora, scale } } : {}),
        imagesPerPrompt: options.imagesPerPrompt, steps: options.steps, guidance: options.guidance, seed: options.seed, subjects: options.subjects, prompts: options.prompts,
        resume: options.resume, force: options.force, device: options.device, threads: options.threads, workers: options.workers, report: options.report,
      };
      const { metrics } = await evaluateDreamBench(run);
      if (!metrics.world) throw new Error(`eval lora needs a world DreamBench (data build --kind dreambench): ${options.data} has no style names`);
      const { stylesNamed, images } = metrics.world.prompts;
      const named = stylesNamed[options.style] ?? 0;
      points.push({ scale, images, named, fraction: images ? named / images : 0, stylesNamed, dino: metrics.overall.dino, clipI: metrics.overall.clipI });
    }
    report.rows.push({ row, model, points });
  }
  await writeFileAtomic(join(options.out, LORA_SHIFT_FILE), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(join(options.out, CHART_FILE), shiftChart(report));
  return report;
}

const ROW_COLOURS = { 'kosmos-g': '#d62728', 'text-style': '#1f77b4' } as const;
const ROW_LABELS = { 'kosmos-g': 'Kosmos-G conditioning (reference image)', 'text-style': 'CLIP-text conditioning (style and class words)' } as const;

/** Fraction named with the LoRA's style against the scale, one line per row (a standalone SVG). */
export function shiftChart(report: LoraShiftReport): string {
  const [width, height, left, top, plotWidth, plotHeight] = [560, 320, 60, 30, 460, 220];
  const maxScale = Math.max(...report.rows.flatMap((row) => row.points.map((point) => point.scale)), 1);
  const x = (scale: number) => left + (scale / maxScale) * plotWidth;
  const y = (fraction: number) => top + (1 - fraction) * plotHeight;
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => `<line x1="${left}" x2="${left + plotWidth}" y1="${y(f)}" y2="${y(f)}" stroke="#ddd"/><text x="${left - 8}" y="${y(f) + 4}" text-anchor="end">${Math.round(f * 100)} %</text>`);
  const ticks = [...new Set(report.rows.flatMap((row) => row.points.map((point) => point.scale)))].map((scale) => `<text x="${x(scale)}" y="${top + plotHeight + 18}" text-anchor="middle">${scale}</text>`);
  const lines = report.rows.map(({ row, points }, k) => {
    const path = points.map((point) => `${x(point.scale)},${y(point.fraction)}`).join(' ');
    const dots = points.map((point) => `<circle cx="${x(point.scale)}" cy="${y(point.fraction)}" r="3" fill="${ROW_COLOURS[row]}"/>`).join('');
    const legend = `<text x="${left + 10}" y="${top + 16 + 16 * k}" fill="${ROW_COLOURS[row]}">${ROW_LABELS[row]}</text>`;
    return `<polyline points="${path}" fill="none" stroke="${ROW_COLOURS[row]}" stroke-width="2"/>${dots}${legend}`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="18" font-weight="bold">Images the judge names ${escapeUTF8(report.style)}, by LoRA scale</text>
${grid.join('\n')}
${ticks.join('\n')}
<text x="${left + plotWidth / 2}" y="${height - 8}" text-anchor="middle">LoRA scale</text>
${lines.join('\n')}
</svg>
`;
}
