// The page served at `/` (web/), driven in headless Chromium against a real server with a tiny
// random pipeline: images in (picked, dropped, pasted), prompt, settings, Generate, progress and preview, the gallery, and
// the downloaded PNG's settings. Needs Chromium (CHROMIUM_PATH, default /usr/bin/chromium) and the
// built page (`npm run build` builds both). With KOSMOS_G_SCREENSHOTS=1 it also writes the
// screenshots of docs/screenshots/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { readPngText } from '../../src/pipeline/image_output.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { tinyExtras } from '../pipeline/tiny.js';
import { WORLD_TEST_CACHE } from '../train/train-cli.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { launchChromium, screenshot } from './chromium.js';

/** Generous: the tiny model is quick, but the machine may be busy with other tests. */
const GENERATION_TIMEOUT_MS = 180_000;

let scratch: string;
let server: RunningServer | undefined;
let browser: Browser | undefined;
let red: string;
let blue: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-web-test-'));
  const model = join(scratch, 'tiny');
  await createRandomPipeline(model, { config: 'tiny', seed: 0 });
  // A world of two concepts, for layout maps, drawn from the world tests' sprite cache.
  await writeFile(join(model, 'world.json'), JSON.stringify({ sceneSize: 64, concepts: ['cat', 'dog'], splits: ['train'], splitSeed: 0 }));
  red = join(scratch, 'red.png');
  blue = join(scratch, 'blue.png');
  await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 230, g: 30, b: 30 } } }).png().toFile(red);
  await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 30, g: 30, b: 230 } } }).png().toFile(blue);
  // A ControlNet for the tiny U-Net (test/pipeline/tiny.ts), so the page shows its fields.
  const { controlnet } = await tinyExtras();
  server = await startServer({ model, data: join(scratch, 'data'), port: 0, warn: () => {}, controlnets: { edges: controlnet }, cache: WORLD_TEST_CACHE });
  browser = await launchChromium();
});

after(async () => {
  try {
    await browser?.close();
  } finally {
    try {
      await server?.close();
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
});

/** A fresh page on the server's `/`, once it has read the model's defaults. */
async function openPage(): Promise<Page> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  await page.goto(server!.url);
  await page.waitForSelector('body[data-ready]', { timeout: 30_000 }).catch((error: unknown) => {
    throw new Error(`the page did not load its settings (${String(error)}); page errors: ${problems.join('; ') || 'none'}`);
  });
  return page;
}

/** Page code that makes a DataTransfer holding the image file at `path` (this file is compiled without the DOM's types, so it is a string). */
async function transferOf(path: string, name: string): Promise<string> {
  const bytes = JSON.stringify([...(await readFile(path))]);
  return `(() => { const transfer = new DataTransfer(); transfer.items.add(new File([new Uint8Array(${bytes})], ${JSON.stringify(name)}, { type: 'image/png' })); return transfer; })()`;
}

/** Drops an image file on the tray, as a user dragging it from their files does. */
async function dropImage(page: Page, path: string): Promise<void> {
  const dataTransfer = await page.evaluateHandle(await transferOf(path, 'dropped.png'));
  await page.dispatchEvent('#image-tray', 'drop', { dataTransfer });
}

/** Pastes an image on the page, as Ctrl+V of a copied image does. */
async function pasteImage(page: Page, path: string): Promise<void> {
  await page.evaluate(`document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: ${await transferOf(path, 'pasted.png')}, bubbles: true, cancelable: true }))`);
}

test('two images and a prompt with two <i> generate an image whose PNG carries the prompt and seed', async () => {
  const page = await openPage();
  try {
    await screenshot(page, 'page-empty.png');
    const { models } = (await (await fetch(new URL('/v1/models', server!.url))).json()) as { models: Array<{ defaults: { steps: number } }> };
    assert.equal(await page.inputValue('#steps'), String(models[0]!.defaults.steps), 'the defaults come from /v1/models');
    // One image from the file picker, one dropped on the tray.
    await page.setInputFiles('#images-input', [red]);
    await page.waitForFunction("document.querySelectorAll('#image-tray img').length === 1");
    await dropImage(page, blue);
    await page.waitForFunction("document.querySelectorAll('#image-tray img').length === 2");
    const prompt = '<i> wearing <i> on the beach';
    await page.fill('#prompt', prompt);
    assert.match((await page.textContent('#image-count')) ?? '', /^2 <i> \/ 2 images: they match/);
    assert.equal(await page.locator('#prompt-preview img').count(), 2, 'each <i> shows as its thumbnail');
    await page.fill('#steps', '8');
    await page.fill('#seed', '1234');
    assert.equal(await page.isEnabled('#generate'), true);

    await page.click('#generate');
    await page.waitForFunction("document.querySelector('#progress').value > 0", undefined, { timeout: GENERATION_TIMEOUT_MS });
    await page.waitForFunction("document.querySelector('#live-preview').src.startsWith('data:image/png')", undefined, { timeout: GENERATION_TIMEOUT_MS });
    await screenshot(page, 'page-generating.png');

    await page.waitForFunction(
      "[...document.querySelectorAll('.gallery-item img')].some((img) => img.complete && img.naturalWidth > 0)",
      undefined,
      { timeout: GENERATION_TIMEOUT_MS },
    );
    const item = page.locator('.gallery-item').first();
    assert.equal(await item.locator('.seed').textContent(), 'seed 1234');
    assert.equal(await page.isVisible('#error'), false, (await page.textContent('#error')) ?? '');
    await screenshot(page, 'page-done.png');

    const [download] = await Promise.all([page.waitForEvent('download'), item.locator('a.download').first().click()]);
    const parameters = readPngText(await readFile(await download.path())).parameters;
    assert.ok(parameters !== undefined, 'the PNG has a tEXt "parameters" chunk');
    assert.ok(parameters.includes(prompt), parameters);
    assert.ok(parameters.includes('Seed: 1234'), parameters);

    // "use these settings again" puts the job's settings back into a changed form.
    await page.fill('#prompt', '<i> <i> elsewhere');
    await page.fill('#seed', '');
    await item.locator('button.reuse').click();
    assert.equal(await page.inputValue('#prompt'), prompt);
    assert.equal(await page.inputValue('#seed'), '1234');
    assert.equal(await page.inputValue('#steps'), '8');

    // A reload lists the finished job from GET /v1/generations.
    await page.reload();
    await page.waitForSelector('body[data-ready]');
    assert.equal(await page.locator('.gallery-item').count(), 1);
  } finally {
    await page.close();
  }
});

test('with a ControlNet the server makes Canny edges of the control image, and the size follows it', async () => {
  const page = await openPage();
  try {
    const wide = join(scratch, 'wide.png');
    await sharp({ create: { width: 96, height: 48, channels: 3, background: { r: 20, g: 160, b: 60 } } }).png().toFile(wide);
    const side = Number(await page.inputValue('#width'));
    await page.selectOption('#controlnet', 'edges');
    assert.equal(await page.isDisabled('#width'), true, 'the size follows the control image');
    await page.fill('#prompt', 'a cat');
    await page.fill('#steps', '3');
    await page.click('#generate');
    await page.waitForFunction("!document.querySelector('#error').hidden");
    assert.equal(await page.textContent('#error'), 'a ControlNet needs a control image');
    await page.setInputFiles('#control-image', [wide]);
    const before = await page.locator('.gallery-item').count();
    await page.click('#generate');
    await page.waitForFunction(`document.querySelectorAll('.gallery-item').length > ${before} || !document.querySelector('#error').hidden`, undefined, { timeout: GENERATION_TIMEOUT_MS });
    assert.equal(await page.isVisible('#error'), false, (await page.textContent('#error')) ?? '');
    assert.match((await page.locator('.gallery-item .details').first().textContent()) ?? '', new RegExp(`${2 * side}×${side}`));
  } finally {
    await page.close();
  }
});

test('a layout map is described as a world scene instead of an image, and the size follows the world\'s scenes', async () => {
  const page = await openPage();
  try {
    await page.selectOption('#controlnet', 'edges');
    await page.selectOption('#control-preprocess', 'layout');
    assert.deepEqual([await page.isVisible('#control-scene'), await page.isVisible('#control-image')], [true, false], 'the scene replaces the image picker');
    await page.fill('#prompt', 'a cat');
    await page.fill('#steps', '3');
    const showsError = async (message: RegExp) => {
      await page.click('#generate');
      await page.waitForFunction("!document.querySelector('#error').hidden", undefined, { timeout: GENERATION_TIMEOUT_MS });
      assert.match((await page.textContent('#error')) ?? '', message);
    };
    await page.fill('#control-scene', '{"subjects": [');
    await showsError(/^the layout scene is not JSON: /);
    await page.fill('#control-scene', JSON.stringify({ subjects: [{ concept: 'unicorn', style: 'noto', position: 'left' }] }));
    await showsError(/unknown concept "unicorn" \(this world has cat, dog\)/);
    await page.fill('#control-scene', JSON.stringify({ subjects: [{ concept: 'cat', style: 'noto', position: 'left', size: 'large' }] }));
    const before = await page.locator('.gallery-item').count();
    await page.click('#generate');
    await page.waitForFunction(`document.querySelectorAll('.gallery-item').length > ${before} || !document.querySelector('#error').hidden`, undefined, { timeout: GENERATION_TIMEOUT_MS });
    assert.equal(await page.isVisible('#error'), false, (await page.textContent('#error')) ?? '');
    assert.match((await page.locator('.gallery-item .details').first().textContent()) ?? '', /64×64/);
  } finally {
    await page.close();
  }
});

test('a prompt whose <i> count differs from the images shows the error and keeps Generate disabled', async () => {
  const page = await openPage();
  try {
    await page.setInputFiles('#images-input', [red]);
    await pasteImage(page, blue);
    await page.waitForFunction("document.querySelectorAll('#image-tray img').length === 2");
    await page.fill('#prompt', '<i> on the beach');
    const counter = page.locator('#image-count');
    assert.match((await counter.textContent()) ?? '', /^1 <i> \/ 2 images/);
    assert.match((await counter.getAttribute('class')) ?? '', /\berror\b/);
    assert.equal(await page.isDisabled('#generate'), true);
    assert.equal(await page.locator('#prompt-preview img').count(), 1);

    await page.fill('#prompt', '<i> and <i> on the beach <i>');
    assert.equal(await page.locator('#prompt-preview .missing').count(), 1, 'the third <i> has no image');
    assert.equal(await page.isDisabled('#generate'), true);

    // Removing the second image makes one <i> with one image: they match.
    await page.fill('#prompt', '<i> on the beach');
    await page.locator('#image-tray .remove').nth(1).click();
    assert.match((await counter.textContent()) ?? '', /^1 <i> \/ 1 image: they match/);
    assert.equal(await page.isEnabled('#generate'), true);
  } finally {
    await page.close();
  }
});
