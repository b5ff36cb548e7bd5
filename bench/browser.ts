// `npm run bench -- browser`: the same Kosmos-G generation in headless Chromium (the page's worker,
// onnxruntime-web on wasm; threads work because the server makes the page cross-origin isolated)
// and in Node (onnxruntime-node), at 1 and 2 threads each: kosmos-g-mini with a two-image
// interleaved prompt at its default size and steps, and the tiny random pipeline. Medians of several runs after one warm-up, the first
// load (download, Cache API, sessions) apart, and the ratio page / Node. One JSON line per case;
// nothing is asserted about time. Needs Chromium (CHROMIUM_PATH, default /usr/bin/chromium).
import { cpus, tmpdir } from 'node:os';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { DEFAULT_STEPS } from '../src/pipeline/diffusion.js';
import { KosmosGPipeline } from '../src/pipeline/kosmos_g_pipeline.js';
import { createRandomPipeline } from '../src/pipeline/random_pipeline.js';
import { startServer } from '../src/server/server.js';
import { median, round } from './measure.js';

const RUNS = 2;
/** The pipeline's default, what `generate` does without --steps. */
const STEPS = DEFAULT_STEPS;
const THREADS = [1, 2];
const SEED = 3;
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const MINI = fileURLToPath(new URL('../../models/kosmos-g-mini', import.meta.url));

interface Case {
  name: string;
  model: string;
  prompt: string;
  images: string[];
}

interface PageTimes {
  loadMs: number;
  threads: number;
  backend: string;
  generateMs: number[];
}

/** Page code: loads the model in the page's worker, then generates `runs` + 1 times (the first is the warm-up). */
function pageScript(prompt: string, images: string[], runs: number, threads: number): string {
  return `(async () => {
    const worker = new Worker('device-worker.js', { type: 'module' });
    const next = () => new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => { if (data.type === 'error') reject(new Error(data.message)); else if (data.type === 'loaded' || data.type === 'done') resolve(data); };
      worker.onerror = (error) => reject(new Error(error.message));
    });
    const start = performance.now();
    worker.postMessage({ type: 'load', modelUrl: new URL('model/', location.href).href, device: 'wasm', threads: ${threads} });
    const loaded = await next();
    const loadMs = performance.now() - start;
    const generateMs = [];
    for (let run = 0; run <= ${runs}; run++) {
      worker.postMessage({ type: 'generate', id: run, prompt: ${JSON.stringify(prompt)}, images: ${JSON.stringify(images)}, negativePrompt: '', steps: ${STEPS}, guidance: 6, scheduler: 'dpm++', seed: ${SEED}, numImages: 1, previewEvery: 0 });
      generateMs.push((await next()).generateMs);
    }
    worker.terminate();
    return { loadMs, threads: loaded.threads, backend: loaded.backend, generateMs: generateMs.slice(1) };
  })()`;
}

async function inPage(browserCase: Case, dataUrls: string[], scratch: string, threads: number): Promise<PageTimes> {
  const server = await startServer({ model: browserCase.model, data: join(scratch, `data-${browserCase.name}-${threads}`), port: 0, warn: () => {} });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    return (await page.evaluate(pageScript(browserCase.prompt, dataUrls, RUNS, threads))) as PageTimes;
  } finally {
    await browser.close();
    await server.close();
  }
}

async function inNode(browserCase: Case, threads: number): Promise<{ loadMs: number; generateMs: number[] }> {
  const start = performance.now();
  const pipeline = await KosmosGPipeline.fromPretrained(browserCase.model, { threads });
  const loadMs = performance.now() - start;
  try {
    const generateMs: number[] = [];
    for (let run = 0; run <= RUNS; run++) {
      const begin = performance.now();
      await pipeline.generate({ prompt: browserCase.prompt, images: browserCase.images, steps: STEPS, seed: SEED });
      generateMs.push(performance.now() - begin);
    }
    return { loadMs, generateMs: generateMs.slice(1) };
  } finally {
    await pipeline.dispose();
  }
}

export async function runBrowserBench(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-browser-'));
  try {
    const tiny = join(scratch, 'tiny');
    await createRandomPipeline(tiny, { config: 'tiny', seed: 0 });
    const cases: Case[] = [
      { name: 'kosmos-g-mini', model: MINI, prompt: '<i> and <i> on a beach', images: [join(EXAMPLES, 'openmoji-cat.png'), join(EXAMPLES, 'openmoji-umbrella.png')] },
      { name: 'tiny-random', model: tiny, prompt: 'a <i> in the rain', images: [join(EXAMPLES, 'openmoji-cat.png')] },
    ];
    for (const benchCase of cases) {
      const dataUrls = await Promise.all(benchCase.images.map(async (path) => `data:image/png;base64,${(await readFile(path)).toString('base64')}`));
      for (const threads of THREADS) {
        const page = await inPage(benchCase, dataUrls, scratch, threads);
        const node = await inNode(benchCase, threads);
        const pageMs = median(page.generateMs);
        const nodeMs = median(node.generateMs);
        console.log(
          JSON.stringify({
            bench: 'browser',
            case: `${benchCase.name}-${threads}-thread${threads === 1 ? '' : 's'}`,
            work: `${benchCase.images.length}-image interleaved prompt, ${STEPS} DPM-Solver++ steps (the default), guidance 6, default size`,
            page: { backend: page.backend, threads: page.threads, firstLoadMs: Math.round(page.loadMs), secondsPerImage: round(pageMs / 1000), runs: page.generateMs.map((ms) => Math.round(ms)) },
            node: { backend: 'cpu', threads, loadMs: Math.round(node.loadMs), secondsPerImage: round(nodeMs / 1000), runs: node.generateMs.map((ms) => Math.round(ms)) },
            // Above 1: the page is slower than Node by this factor.
            pageOverNode: round(pageMs / nodeMs),
            cpu: `${cpus().length}× ${cpus()[0]?.model.trim() ?? 'unknown'}`,
          }),
        );
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
