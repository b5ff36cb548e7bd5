// The loss curve as a PNG: an SVG drawn here (log-scale loss against step, the raw losses faint and
// an exponential moving average on top) rasterised with sharp.
import sharp from 'sharp';

export interface CurvePoint {
  step: number;
  loss: number;
}

const WIDTH = 800;
const HEIGHT = 450;
const MARGIN = { left: 70, right: 20, top: 36, bottom: 44 };
/** Weight of the newest loss in the moving average. */
const SMOOTHING = 0.02;

/** Round numbers for axis ticks between lo and hi (about `count` of them). */
function linearTicks(lo: number, hi: number, count: number): number[] {
  const raw = (hi - lo) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= raw) ?? raw;
  const ticks: number[] = [];
  for (let tick = Math.ceil(lo / step) * step; tick <= hi + 1e-9; tick += step) ticks.push(tick);
  return ticks;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

function formatLoss(value: number): string {
  return value >= 0.01 && value < 1000 ? String(Number(value.toPrecision(2))) : value.toExponential(0);
}

/** The SVG document of the curve; losses ≤ 0 or non-finite are left out (log scale). */
export function lossCurveSvg(points: readonly CurvePoint[], title: string): string {
  const valid = points.filter((p) => Number.isFinite(p.loss) && p.loss > 0);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
  ];
  if (valid.length > 0) {
    const firstStep = valid[0]!.step;
    const lastStep = Math.max(valid.at(-1)!.step, firstStep + 1);
    const logs = valid.map((p) => Math.log10(p.loss));
    let [lo, hi] = [Math.min(...logs), Math.max(...logs)];
    if (hi - lo < 0.1) [lo, hi] = [lo - 0.05, hi + 0.05];
    const x = (step: number) => MARGIN.left + ((step - firstStep) / (lastStep - firstStep)) * plotWidth;
    const y = (log: number) => MARGIN.top + (1 - (log - lo) / (hi - lo)) * plotHeight;
    for (const tick of linearTicks(firstStep, lastStep, 8)) {
      parts.push(`<line x1="${x(tick)}" x2="${x(tick)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotHeight}" stroke="#eee"/>`);
      parts.push(`<text x="${x(tick)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${tick}</text>`);
    }
    // Ticks at 1, 2 and 5 times each power of ten inside the range, finer when it spans less than a decade.
    const factors = hi - lo < 1 ? [1, 1.5, 2, 3, 4, 5, 7] : [1, 2, 5];
    for (let decade = Math.floor(lo); decade <= Math.ceil(hi); decade++) {
      for (const factor of factors) {
        const log = decade + Math.log10(factor);
        if (log < lo || log > hi) continue;
        parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(log)}" y2="${y(log)}" stroke="#eee"/>`);
        parts.push(`<text x="${MARGIN.left - 6}" y="${y(log) + 4}" text-anchor="end">${formatLoss(10 ** log)}</text>`);
      }
    }
    const path = (values: readonly number[]) => values.map((log, i) => `${i ? 'L' : 'M'}${x(valid[i]!.step).toFixed(1)},${y(log).toFixed(1)}`).join('');
    // Bias-corrected exponential moving average, so the smoothed curve starts at the first losses.
    let average = 0;
    const smoothed = logs.map((log, i) => {
      average = (1 - SMOOTHING) * average + SMOOTHING * log;
      return average / (1 - (1 - SMOOTHING) ** (i + 1));
    });
    parts.push(`<path d="${path(logs)}" fill="none" stroke="#9ecae1" stroke-width="1"/>`);
    parts.push(`<path d="${path(smoothed)}" fill="none" stroke="#08519c" stroke-width="2"/>`);
  }
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#444"/>`);
  parts.push(`<text x="${MARGIN.left + plotWidth / 2}" y="${HEIGHT - 8}" text-anchor="middle">step</text>`);
  parts.push(`<text x="16" y="${MARGIN.top + plotHeight / 2}" text-anchor="middle" transform="rotate(-90 16 ${MARGIN.top + plotHeight / 2})">loss (log scale)</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

export async function renderLossCurve(points: readonly CurvePoint[], title: string): Promise<Buffer> {
  return sharp(Buffer.from(lossCurveSvg(points, title))).png().toBuffer();
}
