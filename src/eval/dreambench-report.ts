// What `eval dreambench` writes: metrics.json (the scores overall, per subject, per prompt and per
// (subject, prompt), the settings and the timings), scores.csv (every scored image) and report.html
// (the scores against the paper's table, a bar chart, and grids: the reference, then the N
// generations of each prompt). Every score is max(100 · mean cosine, 0) over its images; the
// per-image figures in scores.csv are 100 · cosine, not floored.
//
// The report links the reference photos where they lie in the data folder instead of copying them:
// DreamBench's photos are read from ../shared and never committed, and a report under docs/ must
// not carry them along.
import { join, relative, resolve, sep } from 'node:path';
import { escapeUTF8 } from 'entities';
import { writeFileAtomic } from '../io/atomic-file.js';
import type { DreamBenchData } from './dreambench-data.js';
import type { DreamBenchRow, EvalSettings } from './dreambench.js';
import type { WorldMeasuresReport } from './world-measures.js';
import { worldMeasuresHtml } from './world-measures-report.js';

/** One scored image. */
export interface ImageScore {
  subject: string;
  class: string;
  /** The prompt's index in its list; null for the oracle's photos. */
  promptIndex: number | null;
  /** The model's input prompt; null for the oracle. */
  prompt: string | null;
  clipTPrompt: string | null;
  /** k within the prompt (the oracle: the photo's index among the subject's others). */
  image: number;
  seed: number | null;
  /** Relative to --out for generations, to the data folder for the oracle's photos. */
  file: string;
  source: 'generated' | 'data';
  /** 100 · cosine. */
  dino: number;
  clipI: number;
  clipT: number | null;
  /** World data: F1 of the image's Canny edges against its prompt's true scene's (edge-agreement.ts); null without a true scene. */
  edgeF1: number | null;
}

export interface Scores {
  images: number;
  dino: number | null;
  clipI: number | null;
  clipT: number | null;
  /** Mean edge F1 (not scaled, not floored); null without true scenes. */
  edgeF1: number | null;
}

export interface RunInfo {
  resumed: boolean;
  generated: number;
  reused: number;
  generationSeconds: number;
  generationImagesPerSecond: number | null;
  scoringSeconds: number;
  scoringImagesPerSecond: number | null;
}

/** The Kosmos-G paper's DreamBench table (reference §9), as 100 · cosine. */
export const PAPER_TABLE: readonly { method: string; dino: number; clipI: number; clipT: number | null }[] = [
  { method: 'Real images (oracle)', dino: 77.4, clipI: 88.5, clipT: null },
  { method: 'Textual Inversion', dino: 56.9, clipI: 78.0, clipT: 25.5 },
  { method: 'DreamBooth (Imagen)', dino: 69.6, clipI: 81.2, clipT: 30.6 },
  { method: 'BLIP-Diffusion (zero-shot)', dino: 59.4, clipI: 77.9, clipT: 30.0 },
  { method: 'Kosmos-G', dino: 69.4, clipI: 84.7, clipT: 28.7 },
];

export interface DreamBenchMetrics {
  row: DreamBenchRow;
  model: string | null;
  data: string;
  judges: string;
  settings: EvalSettings;
  subjects: number;
  images: number;
  overall: Scores;
  bySubject: (Scores & { subject: string; class: string; prompts: (Scores & { index: number; prompt: string | null; clipTPrompt: string | null })[] })[];
  /** Per prompt index across subjects (the object and live lists differ in their middle ten). */
  byPrompt: (Scores & { index: number; prompts: string[] })[];
  paper: typeof PAPER_TABLE;
  run: RunInfo;
  /** World data only: the world-exact measures (world-measures.ts). */
  world?: WorldMeasuresReport;
}

const mean = (values: readonly number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;

/** max(mean of 100 · cosine, 0) of each metric over `records`. */
export function scoresOf(records: readonly ImageScore[]): Scores {
  const floor = (values: readonly number[]) => (values.length ? Math.max(mean(values), 0) : null);
  const clipT = records.flatMap((record) => (record.clipT === null ? [] : [record.clipT]));
  const edges = records.flatMap((record) => (record.edgeF1 === null ? [] : [record.edgeF1]));
  return { images: records.length, dino: floor(records.map((r) => r.dino)), clipI: floor(records.map((r) => r.clipI)), clipT: floor(clipT), edgeF1: edges.length ? mean(edges) : null };
}

function groupBy<K>(records: readonly ImageScore[], key: (record: ImageScore) => K): Map<K, ImageScore[]> {
  const groups = new Map<K, ImageScore[]>();
  for (const record of records) {
    const k = key(record);
    groups.set(k, [...(groups.get(k) ?? []), record]);
  }
  return groups;
}

export function summarize(records: readonly ImageScore[], context: { settings: EvalSettings; data: DreamBenchData; judges: string; run: RunInfo }): DreamBenchMetrics {
  const { settings } = context;
  const bySubject = [...groupBy(records, (record) => record.subject)].map(([subject, group]) => ({
    subject,
    class: group[0]!.class,
    ...scoresOf(group),
    prompts: [...groupBy(group, (record) => record.promptIndex)].flatMap(([index, prompt]) =>
      index === null ? [] : [{ index, prompt: prompt[0]!.prompt, clipTPrompt: prompt[0]!.clipTPrompt, ...scoresOf(prompt) }],
    ),
  }));
  const byPrompt = [...groupBy(records, (record) => record.promptIndex)]
    .flatMap(([index, group]) => (index === null ? [] : [{ index, prompts: [...new Set(group.map((record) => record.prompt!))], ...scoresOf(group) }]))
    .sort((a, b) => a.index - b.index);
  return {
    row: settings.row,
    model: settings.model,
    data: settings.data,
    judges: context.judges,
    settings,
    subjects: bySubject.length,
    images: records.length,
    overall: scoresOf(records),
    bySubject,
    byPrompt,
    paper: PAPER_TABLE,
    run: context.run,
  };
}

// ---- files -----------------------------------------------------------------------------------------

function csvField(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export const CSV_COLUMNS = ['subject', 'class', 'prompt_index', 'prompt', 'clip_t_prompt', 'image', 'seed', 'file', 'source', 'dino', 'clip_i', 'clip_t', 'edge_f1'] as const;

/** Every image's scores; numbers at full precision, so the metrics recompute from the file. */
export function scoresCsv(records: readonly ImageScore[]): string {
  const rows = records.map((r) => [r.subject, r.class, r.promptIndex, r.prompt, r.clipTPrompt, r.image, r.seed, r.file, r.source, r.dino, r.clipI, r.clipT, r.edgeF1].map(csvField).join(','));
  return `${[CSV_COLUMNS.join(','), ...rows].join('\n')}\n`;
}

export const fixed = (value: number | null) => (value === null ? '–' : value.toFixed(1));
export const html = (text: string) => escapeUTF8(text);

/** A file path as a relative URL from the report's folder. */
export function link(from: string, path: string): string {
  return relative(resolve(from), resolve(path)).split(sep).map(encodeURIComponent).join('/');
}

const ROW_NAMES: Record<DreamBenchRow, string> = {
  'kosmos-g': 'Kosmos-G (this model)', text: 'text baseline (class word, no image)', 'text-style': 'text baseline (style and class words, no image)', oracle: 'real images (oracle)',
  random: "random images (other subjects' photos)",
};
/** The row's name; the world oracle scores true scenes, not photos. */
const rowName = (metrics: DreamBenchMetrics) =>
  metrics.world && metrics.row === 'oracle' ? 'true scenes (oracle)' : metrics.world && metrics.row === 'random' ? "random images (other subjects' true scenes)" : ROW_NAMES[metrics.row];

function comparisonTable(metrics: DreamBenchMetrics): string {
  // Edge F1 exists only on world data, where every prompt has a true scene; the paper has none.
  const edges = metrics.overall.edgeF1 !== null;
  const edgeCell = (value: number | null) => (edges ? `<td>${value === null ? '–' : value.toFixed(3)}</td>` : '');
  const rows = [
    `<tr class="ours"><td>${html(rowName(metrics))}</td><td>${fixed(metrics.overall.dino)}</td><td>${fixed(metrics.overall.clipI)}</td><td>${fixed(metrics.overall.clipT)}</td>${edgeCell(metrics.overall.edgeF1)}</tr>`,
    ...metrics.paper.map((row) => `<tr><td>${html(row.method)} (paper)</td><td>${fixed(row.dino)}</td><td>${fixed(row.clipI)}</td><td>${fixed(row.clipT)}</td>${edgeCell(null)}</tr>`),
  ];
  return `<table><tr><th>method</th><th>DINO</th><th>CLIP-I</th><th>CLIP-T</th>${edges ? '<th>edge F1 vs true scene</th>' : ''}</tr>\n${rows.join('\n')}\n</table>`;
}

/** The adapters a generation used, in words ('' without any). */
function adaptersText(settings: DreamBenchMetrics['settings']): string {
  const parts = [
    settings.controlnet
      ? `ControlNet ${settings.controlnet.model} at scale ${settings.controlnet.scale}, on ${settings.controlnet.control === 'canny' ? `the Canny edges (${settings.controlnet.low}, ${settings.controlnet.high})` : 'the layout map'} of each prompt's true scene`
      : '',
    settings.lora ? `LoRA ${settings.lora.file} at scale ${settings.lora.scale}` : '',
  ].filter(Boolean);
  return parts.length ? ` With ${parts.join('; ')}.` : '';
}

/** Horizontal bars, one group per metric: this run, the paper's Kosmos-G, the paper's real images. */
function chart(metrics: DreamBenchMetrics): string {
  const kosmos = metrics.paper.find((row) => row.method === 'Kosmos-G')!;
  const real = metrics.paper.find((row) => row.method === 'Real images (oracle)')!;
  const groups = (['dino', 'clipI', 'clipT'] as const).map((key) => {
    const name = { dino: 'DINO', clipI: 'CLIP-I', clipT: 'CLIP-T' }[key];
    const bars = [
      ['this run', metrics.overall[key], '#d62728'],
      ['Kosmos-G (paper)', kosmos[key], '#1f77b4'],
      ['real images (paper)', real[key], '#7f7f7f'],
    ] as const;
    const lines = bars.map(([label, value, colour]) =>
      `<div class="bar"><span>${html(label)}</span><i style="width:${value === null ? 0 : Math.min(value, 100) * 3}px;background:${colour}"></i>${fixed(value)}</div>`,
    );
    return `<div class="group"><b>${name}</b>${lines.join('')}</div>`;
  });
  return `<div class="chart">${groups.join('\n')}</div>`;
}

function subjectTable(metrics: DreamBenchMetrics): string {
  const rows = metrics.bySubject.map((s) => `<tr><td>${html(s.subject)}</td><td>${html(s.class)}</td><td>${s.images}</td><td>${fixed(s.dino)}</td><td>${fixed(s.clipI)}</td><td>${fixed(s.clipT)}</td></tr>`);
  return `<table><tr><th>subject</th><th>class</th><th>images</th><th>DINO</th><th>CLIP-I</th><th>CLIP-T</th></tr>\n${rows.join('\n')}\n</table>`;
}

function promptTable(metrics: DreamBenchMetrics): string {
  if (!metrics.byPrompt.length) return '';
  const rows = metrics.byPrompt.map((p) => `<tr><td>${p.index}</td><td>${p.prompts.map(html).join('<br>')}</td><td>${p.images}</td><td>${fixed(p.dino)}</td><td>${fixed(p.clipI)}</td><td>${fixed(p.clipT)}</td></tr>`);
  return `<h2>Per prompt</h2>\n<table><tr><th>#</th><th>prompt</th><th>images</th><th>DINO</th><th>CLIP-I</th><th>CLIP-T</th></tr>\n${rows.join('\n')}\n</table>`;
}

export function figure(src: string, caption: string): string {
  return `<figure><img src="${src}" loading="lazy" alt=""><figcaption>${caption}</figcaption></figure>`;
}

/** Per subject: one row per prompt, the reference then the N generations (the oracle: the reference then the other photos). */
function grids(out: string, records: readonly ImageScore[], data: DreamBenchData): string {
  const references = new Map(data.subjects.map((subject) => [subject.subject, join(data.directory, subject.reference)]));
  const sections = [...groupBy(records, (record) => record.subject)].map(([subject, group]) => {
    const reference = figure(link(out, references.get(subject)!), 'reference');
    const rows = [...groupBy(group, (record) => record.promptIndex)].map(([index, images]) => {
      const cells = images.map((r) => figure(link(out, r.source === 'data' ? join(data.directory, r.file) : join(out, r.file)), `${fixed(r.dino)} / ${fixed(r.clipI)} / ${fixed(r.clipT)}`));
      const title = index === null ? 'the other photos' : `${index}: ${html(images[0]!.prompt ?? '')} <small>(CLIP-T: ${html(images[0]!.clipTPrompt ?? '')})</small>`;
      return `<div class="grid"><p>${title}</p>${reference}${cells.join('')}</div>`;
    });
    return `<h3>${html(subject)} (${html(group[0]!.class)})</h3>\n${rows.join('\n')}`;
  });
  return sections.join('\n');
}

export function reportHtml(out: string, metrics: DreamBenchMetrics, records: readonly ImageScore[], data: DreamBenchData): string {
  const { settings, run } = metrics;
  const sampling =
    settings.row === 'oracle'
      ? `No generation: ${metrics.world ? 'the true scene of each prompt, rendered by the world' : "each subject's photos other than its reference"}.`
      : settings.row === 'random'
        ? `No generation: in place of each ${metrics.world ? 'true scene, the true scene of the same prompt for another subject' : 'photo, a photo of another subject'}, drawn with seed ${settings.seed}.`
      : `${settings.imagesPerPrompt} images per prompt, ${settings.steps} ${settings.scheduler} steps, guidance ${settings.guidance}, seed ${settings.seed} (image k of prompt p from seed + 5·k + p mod 5, as the official batches of 5 prompts re-seed), ${settings.size === null ? "the model's default size" : `${settings.size} px`}.${adaptersText(settings)}`;
  const speed = [
    run.generated ? `generated ${run.generated} images in ${run.generationSeconds.toFixed(1)} s (${run.generationImagesPerSecond!.toFixed(2)} images/s)` : '',
    run.reused ? `${run.reused} reused from disk` : '',
    `scored ${metrics.images} images in ${run.scoringSeconds.toFixed(1)} s (${(run.scoringImagesPerSecond ?? 0).toFixed(2)} images/s)`,
  ].filter(Boolean);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>DreamBench: ${html(rowName(metrics))}</title>
<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
tr.ours{font-weight:bold}.chart{display:flex;gap:2em;margin:1em 0}.bar{display:flex;align-items:center;gap:.4em;font-size:.85em}.bar span{width:9em}.bar i{display:inline-block;height:.9em}
.grid{display:flex;flex-wrap:wrap;align-items:flex-start;gap:.3em;margin:.4em 0}.grid p{width:100%;margin:.2em 0}figure{margin:0;text-align:center;font-size:.7em}figure img{width:96px;height:96px;object-fit:cover;display:block}</style></head>
<body>
<h1>DreamBench: ${html(rowName(metrics))}</h1>
<p>Model: ${html(metrics.model ?? '–')}<br>Data: ${html(metrics.data)} (${metrics.subjects} subjects, ${metrics.images} images scored)<br>Judges: ${html(metrics.judges)}<br>${html(sampling)}<br>${html(speed.join('; '))}.</p>
<p>Each score is max(100 · mean cosine, 0) over the images: DINO (CLS features) and CLIP-I (projected image embeddings) against the subject's one reference image, CLIP-T against the DreamBooth prompt with the class word. The paper's numbers come from its judges (DINO ViT-S/16, CLIP ViT-B/32) on 512 px generations and full-resolution photos; they compare with this run only where the same judges were used.</p>
${comparisonTable(metrics)}
${chart(metrics)}
<h2>Per subject</h2>
${subjectTable(metrics)}
${promptTable(metrics)}
${metrics.world ? worldMeasuresHtml(out, data.directory, metrics.world) : ''}
<h2>Images</h2>
<p>Under each image: DINO / CLIP-I / CLIP-T (100 · cosine). Reference photos are linked from the data folder, not copied.</p>
${grids(out, records, data)}
</body></html>
`;
}

/** Writes metrics.json, scores.csv and report.html into `out` (each atomically). */
export async function writeDreamBenchReport(out: string, metrics: DreamBenchMetrics, records: readonly ImageScore[], data: DreamBenchData): Promise<void> {
  await writeFileAtomic(join(out, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
  await writeFileAtomic(join(out, 'scores.csv'), scoresCsv(records));
  await writeFileAtomic(join(out, 'report.html'), reportHtml(out, metrics, records, data));
}
