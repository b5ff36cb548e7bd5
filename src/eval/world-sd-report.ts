// The files `eval world-sd` writes: metrics.json, samples.png (per prompt: the real scene it
// describes above the generated image) and report.html (metrics against the targets, the grid and
// its prompts).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { escapeUTF8 } from 'entities';
import { imageGridPng } from '../train/images.js';
import type { GeneratedCase, WorldSdMetrics, WorldSdResult } from './world-sd.js';

const percent = (value: number | undefined) => (value === undefined ? '–' : `${(value * 100).toFixed(1)} %`);
const slopes = (slope: { x: number; y: number } | undefined) => (slope ? `${slope.x.toFixed(2)} / ${slope.y.toFixed(2)}` : '–');

function row(what: string, value: string, target: string, met: boolean | null): string {
  const verdict = met === null ? '' : met ? 'met' : 'not met';
  return `<tr><td>${escapeUTF8(what)}</td><td>${value}</td><td>${target}</td><td>${verdict}</td></tr>`;
}

function metricsTable(metrics: WorldSdMetrics): string {
  const { vae, clip, unet, targets } = metrics;
  const single = unet.singleSubject;
  const pair = unet.twoSubjects;
  return [
    '<table><tr><th>measure</th><th>value</th><th>target</th><th></th></tr>',
    row(`VAE PSNR, ${vae.scenes} evaluation scenes (mean of per-scene)`, `${vae.psnr.toFixed(2)} dB`, `≥ ${targets.vaePsnr} dB`, vae.psnr >= targets.vaePsnr),
    ...Object.entries(vae.bySplit).map(([split, score]) => row(`VAE PSNR, ${split} split`, `${score!.psnr.toFixed(2)} dB (worst ${score!.worstPsnr.toFixed(1)})`, '', null)),
    row(`CLIP-mini caption → image top-1 among ${clip.retrievalScenes} scenes`, percent(clip.captionToImageTop1), `≥ ${percent(targets.retrievalTop1)}`, clip.captionToImageTop1 >= targets.retrievalTop1),
    row('CLIP-mini image → caption top-1', percent(clip.imageToCaptionTop1), '', null),
    row(`CLIP-mini zero-shot concept top-1 (${clip.zeroShotScenes} single-subject scenes, ${metrics.world.concepts.length} concepts)`, percent(clip.zeroShotTop1), `≥ ${percent(targets.zeroShotTop1)}`, clip.zeroShotTop1 >= targets.zeroShotTop1),
    row('CLIP-mini zero-shot concept top-5', percent(clip.zeroShotTop5), '', null),
    row(`CLIP-mini position: single-subject twin pairs matched, not swapped (${clip.twinPairs} pairs; chance 50 %)`, percent(clip.twinPairsMatched), '', null),
    ...(unet.judge !== metrics.model ? [row('U-Net-mini measures scored by the CLIP-mini of', unet.judge, '', null)] : []),
    row(`U-Net-mini single subject: prompted concept ranked first (${single.generated.prompts} prompts)`, percent(single.generated.conceptTop1), `≥ ${percent(targets.generatedConcept)}`, (single.generated.conceptTop1 ?? 0) >= targets.generatedConcept),
    row('… the same measure on the real scenes', percent(single.realScenes.conceptTop1), '', null),
    row('U-Net-mini single subject: centre nearest the prompted position', percent(single.generated.position), `≥ ${percent(targets.generatedPosition)}`, (single.generated.position ?? 0) >= targets.generatedPosition),
    row('… the same measure on the real scenes', percent(single.realScenes.position), '', null),
    row('U-Net-mini single subject: slope of the located centre on the prompted one (x / y)', slopes(single.generated.positionSlope), '', null),
    row('… the same measure on the real scenes', slopes(single.realScenes.positionSlope), '', null),
    row(`U-Net-mini two subjects: both in CLIP-mini's top 5 (${pair.generated.prompts} prompts)`, percent(pair.generated.bothPresentTop5), 'report', null),
    row('… the same measure on the real scenes', percent(pair.realScenes.bothPresentTop5), '', null),
    '</table>',
  ].join('\n');
}

function promptList(title: string, cases: readonly GeneratedCase[], offset: number): string {
  const items = cases.map((item, k) => `<li value="${offset + k + 1}">${escapeUTF8(item.prompt)}</li>`).join('\n');
  return `<h3>${escapeUTF8(title)}</h3>\n<ol>\n${items}\n</ol>`;
}

/** Writes metrics.json, samples.png and report.html into `directory`. */
export async function writeWorldSdReport(directory: string, { metrics, singleCases, twoSubjectCases }: WorldSdResult): Promise<void> {
  await mkdir(directory, { recursive: true });
  await writeFile(join(directory, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
  const shown = [...singleCases.slice(0, 16), ...twoSubjectCases.slice(0, 8)];
  // Two rows per band of 8 prompts: the real scenes, then the generations.
  const rows = [];
  for (let start = 0; start < shown.length; start += 8) {
    const band = shown.slice(start, start + 8);
    rows.push(band.map((item) => item.real), band.map((item) => item.generated));
  }
  await writeFile(join(directory, 'samples.png'), await imageGridPng(rows, 3));
  const { unet } = metrics;
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>world-sd evaluation</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style></head>
<body>
<h1>world-sd evaluation: ${escapeUTF8(metrics.model)}</h1>
<p>Scenes of the evaluation seed ${metrics.evaluationSeed} (never trained on); ${metrics.world.concepts.length} concepts, splits ${escapeUTF8(metrics.world.splits.join(' + '))}.
Generations: ${unet.steps} DPM-Solver++ steps, guidance ${unet.guidanceScale} (tuned over ${unet.tuning.map((t) => t.guidanceScale).join(', ')} on separate prompts), ${unet.secondsPerImage.toFixed(2)} s per image.
Subjects are located by their difference from the background: the centre of mass of pixels whose colour is far from every colour of the image's 2-pixel frame.</p>
${metricsTable(metrics)}
<h2>Samples</h2>
<p>Bands of up to 8 prompts: the real evaluation scene the prompt describes, then the generated image.</p>
<img src="samples.png" alt="real scenes and generations">
${promptList('Single-subject prompts', singleCases.slice(0, 16), 0)}
${promptList('Two-subject prompts', twoSubjectCases.slice(0, 8), 16)}
</body></html>
`;
  await writeFile(join(directory, 'report.html'), html);
}
