// Generation on the visitor's own device: the page's "Run on this device" runs the pipeline in a
// worker on onnxruntime-web (wasm; two threads, as the server sends the cross-origin isolation
// headers), fetching the model folder through its manifest into the Cache API. The image must be
// the one Node makes for the same prompt, images, seed and settings: the pipeline code is the
// same, the kernels (wasm SIMD vs native MLAS) may differ in the last bits. Needs Chromium
// (CHROMIUM_PATH, default /usr/bin/chromium) and the built page (`npm run build`).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { launchChromium, screenshot } from './chromium.js';

const MINI = fileURLToPath(new URL('../../../models/kosmos-g-mini', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));
/** Generous: loading and running in wasm beside other tests on two cores. */
const GENERATION_TIMEOUT_MS = 300_000;
/** The target of the browser issue: no channel of any pixel further than this from Node's. */
const MAX_PIXEL_DIFFERENCE = 2;

let scratch: string;
let browser: Browser | undefined;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-device-test-'));
  browser = await launchChromium();
});

after(async () => {
  try {
    await browser?.close();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

interface Settings {
  prompt: string;
  images: string[];
  steps: number;
  seed: number;
}

/** Fills the page's form, runs on this device and returns the gallery image's RGB bytes and the page's status lines. */
async function generateInPage(page: Page, settings: Settings): Promise<{ rgb: Uint8Array; width: number; height: number; device: string; status: string; preview: string }> {
  await page.selectOption('#run-on', 'device');
  await page.setInputFiles('#images-input', settings.images);
  await page.waitForFunction(`document.querySelectorAll('#image-tray img').length === ${settings.images.length}`);
  await page.fill('#prompt', settings.prompt);
  await page.fill('#steps', String(settings.steps));
  await page.fill('#seed', String(settings.seed));
  await page.click('#generate');
  await page.waitForFunction("document.querySelector('.gallery-item img')?.complete && document.querySelector('.gallery-item img').naturalWidth > 0 || !document.querySelector('#error').hidden", undefined, { timeout: GENERATION_TIMEOUT_MS });
  assert.equal(await page.isVisible('#error'), false, (await page.textContent('#error')) ?? '');
  // The gallery's PNG came from the worker's RGB through a canvas with opaque alpha: lossless.
  const { pixels, width, height } = await page.evaluate(`(async () => {
    const img = document.querySelector('.gallery-item img');
    const bitmap = await createImageBitmap(await (await fetch(img.src)).blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d');
    context.drawImage(bitmap, 0, 0);
    return { pixels: [...context.getImageData(0, 0, bitmap.width, bitmap.height).data], width: bitmap.width, height: bitmap.height };
  })()`) as { pixels: number[]; width: number; height: number };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = pixels[i * 4 + c]!;
  const preview = (await page.getAttribute('#live-preview', 'src')) ?? '';
  return { rgb, width, height, device: (await page.textContent('#device-status')) ?? '', status: (await page.textContent('#job-status')) ?? '', preview };
}

async function generateInNode(model: string, settings: Settings): Promise<{ data: Uint8Array; width: number; height: number }> {
  const pipeline = await KosmosGPipeline.fromPretrained(model, { threads: 2 });
  try {
    const { images } = await pipeline.generate({ prompt: settings.prompt, images: settings.images, steps: settings.steps, seed: settings.seed });
    return images[0]!;
  } finally {
    await pipeline.dispose();
  }
}

function maxDifference(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length, 'the images have the same size');
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

async function withServer<T>(model: string, use: (server: RunningServer, page: Page) => Promise<T>): Promise<T> {
  const server = await startServer({ model, data: join(scratch, `data-${Math.random().toString(36).slice(2)}`), port: 0, warn: () => {} });
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  try {
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready]', { timeout: 30_000 });
    return await use(server, page);
  } catch (error) {
    throw new Error(`${(error as Error).message}; page errors: ${problems.join('; ') || 'none'}`);
  } finally {
    await page.close();
    await server.close();
  }
}

test('kosmos-g-mini in the page on wasm: an interleaved prompt with two images gives the image Node gives', async () => {
  const settings = { prompt: '<i> and <i> on a beach', images: [join(EXAMPLES, 'openmoji-cat.png'), join(EXAMPLES, 'openmoji-umbrella.png')], steps: 4, seed: 7 };
  const { inPage, cachedFiles, isolated } = await withServer(MINI, async (_server, page) => {
    const inPage = await generateInPage(page, settings);
    await screenshot(page, 'page-device.png');
    const cachedFiles = (await page.evaluate("(async () => (await (await caches.open('kosmos-g-files-v1')).keys()).length)()")) as number;
    return { inPage, cachedFiles, isolated: (await page.evaluate('crossOriginIsolated')) as boolean };
  });
  assert.equal(isolated, true, 'the server makes the page cross-origin isolated');
  assert.match(inPage.device, /kosmos-g-mini on WebAssembly, 2 threads/);
  assert.ok(cachedFiles >= 8, `the model's files are in the Cache API (${cachedFiles})`);
  const inNode = await generateInNode(MINI, settings);
  assert.deepEqual([inPage.width, inPage.height], [inNode.width, inNode.height]);
  const difference = maxDifference(inPage.rgb, inNode.data);
  process.stdout.write(`# kosmos-g-mini, page (wasm) vs Node (CPU): max |Δ| = ${difference}/255 per channel\n`);
  assert.ok(difference <= MAX_PIXEL_DIFFERENCE, `max |Δ| ${difference}/255 is over ${MAX_PIXEL_DIFFERENCE}`);
});

test('the tiny random pipeline on this device: cancel, then a run with previews that gives the image Node gives', async () => {
  const model = join(scratch, 'tiny');
  await createRandomPipeline(model, { config: 'tiny', seed: 0 });
  const red = join(scratch, 'red.png');
  await sharp({ create: { width: 40, height: 24, channels: 3, background: { r: 230, g: 30, b: 30 } } }).png().toFile(red);
  const settings = { prompt: 'a <i> in the rain', images: [red], steps: 6, seed: 11 };
  const inPage = await withServer(model, async (_server, page) => {
    // Cancel stops the worker mid-run; the next generation starts a new one.
    await page.selectOption('#run-on', 'device');
    await page.fill('#prompt', 'a long run');
    await page.fill('#steps', '150');
    await page.click('#generate');
    await page.waitForFunction("/^Step \\d+ \\/ 150/.test(document.querySelector('#job-status').textContent)", undefined, { timeout: GENERATION_TIMEOUT_MS });
    await page.click('#cancel');
    await page.waitForFunction("document.querySelector('#job-status').textContent === 'Cancelled'");
    assert.equal(await page.locator('.gallery-item').count(), 0);
    return generateInPage(page, settings);
  });
  assert.match(inPage.status, /^Done on this device in [\d.]+ s \(seed 11\)$/);
  assert.match(inPage.preview, /^blob:/, 'the worker\'s step previews are shown');
  const inNode = await generateInNode(model, settings);
  const difference = maxDifference(inPage.rgb, inNode.data);
  process.stdout.write(`# tiny random pipeline, page (wasm) vs Node (CPU): max |Δ| = ${difference}/255 per channel\n`);
  assert.ok(difference <= MAX_PIXEL_DIFFERENCE, `max |Δ| ${difference}/255 is over ${MAX_PIXEL_DIFFERENCE}`);
});
