// The world measures' part of report.html (world-measures.ts): the rates, the rates per prompt,
// and one table each for the two-subject prompts and the edits, with the row's inputs, its images
// and what the judge saw in each. Data images are linked where they lie, as the rest of the report
// links them.
import { join } from 'node:path';
import { figure, fixed, html, link } from './dreambench-report.js';
import type { Rate, WorldItem, WorldMeasuresReport } from './world-measures.js';

const percent = (r: Rate) => (r.rate === null ? '–' : `${(100 * r.rate).toFixed(0)} % <small>(${r.hits}/${r.measured})</small>`);

function table(header: readonly string[], rows: readonly string[][]): string {
  const cells = (tag: 'th' | 'td', values: readonly string[]) => `<tr>${values.map((value) => `<${tag}>${value}</${tag}>`).join('')}</tr>`;
  return `<table>${cells('th', header)}\n${rows.map((row) => cells('td', row)).join('\n')}\n</table>`;
}

function summary(report: WorldMeasuresReport): string {
  const { prompts, multi, edits } = report;
  return table(['prompts', 'measure', 'rate'], [
    [`${prompts.images} images`, `concept top-1 (among ${report.classes.concepts})`, percent(prompts.concept)],
    ['', 'style top-1', percent(prompts.style)],
    ['', `background top-1 (among ${report.classes.backgrounds})`, percent(prompts.background)],
    ['', 'position (located nearest the prompted one)', percent(prompts.position)],
    ...(report.placement ? [['', 'subject placed in its layout-map mask', percent(report.placement.prompts)]] : []),
    [`${multi.prompts} two-subject prompts, ${multi.images} images`, 'both concepts in the top 5', percent(multi.bothPresentTop5)],
    ['', 'background top-1', percent(multi.background)],
    ...(report.placement ? [['', 'subjects placed in their layout-map masks', percent(report.placement.multi)]] : []),
    ['', 'CLIP-T', fixed(multi.clipT)],
    [`${edits.prompts} edits, ${edits.images} images`, 'subject kept (concept top-1)', percent(edits.subjectKept)],
    ['', 'background changed to the asked one', percent(edits.backgroundToTarget)],
    ['', 'background left as in the source', percent(edits.backgroundUnchanged)],
    ['', 'both: subject kept and background changed', percent(edits.edited)],
    ['', 'CLIP-T', fixed(edits.clipT)],
  ]);
}

function byPrompt(report: WorldMeasuresReport): string {
  return table(
    ['#', 'prompt', 'images', 'concept', 'style', 'background', 'position'],
    report.prompts.byPrompt.map((p) => [String(p.index), p.prompts.map(html).join('<br>'), String(p.images), percent(p.concept), percent(p.style), percent(p.background), percent(p.position)]),
  );
}

/** One row per item: the references or the edit's source, the true scene, then the row's images with the judge's top concepts and background. */
function items(out: string, data: string, list: readonly WorldItem[]): string {
  if (!list.length) return '<p>None in this evaluation.</p>';
  return table(
    ['#', 'prompt', 'references or source | true scene | images'],
    list.map((item) => {
      const inputs = item.inputs.map((path) => figure(link(out, path), item.group === 'multi' ? 'reference' : 'source'));
      const truth = figure(link(out, join(data, item.truth)), 'true scene');
      const images = item.images.map((image) =>
        figure(link(out, image.source === 'data' ? join(data, image.file) : join(out, image.file)), `${html(image.concepts.slice(0, 2).join(', '))}<br>${html(image.background)}<br>CLIP-T ${fixed(image.clipT)}`),
      );
      return [String(item.index), `${html(item.prompt)}<br><small>CLIP-T: ${html(item.clipTPrompt)}</small>`, `<div class="grid">${[...inputs, truth, ...images].join('')}</div>`];
    }),
  );
}

/** The world measures' sections of report.html. */
export function worldMeasuresHtml(out: string, data: string, report: WorldMeasuresReport): string {
  return `<h2>World-exact measures</h2>
<p>The CLIP judge as a zero-shot classifier over the world's vocabulary: concepts ("a cat"), the subject concept's styles ("an openmoji cat"), background phrases ("a cat on a beach"); positions from the subject locator. Compare each rate with the oracle row's (the true scenes), which says how far the judge can be trusted.</p>
${summary(report)}
<h3>Per prompt</h3>
${byPrompt(report)}
<h3>Two-subject prompts</h3>
<p>Under each image: the judge's two most likely concepts, its background, CLIP-T.</p>
${items(out, data, report.multi.items)}
<h3>Edits</h3>
${items(out, data, report.edits.items)}
`;
}
