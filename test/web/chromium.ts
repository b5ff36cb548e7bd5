// Headless Chromium for the page's tests (Debian's chromium through playwright-core; CHROMIUM_PATH
// overrides the path): no sandbox (CI runs as root), no GPU, and none of the browser's own traffic.
// With KOSMOS_G_SCREENSHOTS=1 the tests also write the screenshots of docs/screenshots/.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';

const SCREENSHOTS = process.env.KOSMOS_G_SCREENSHOTS === '1' ? fileURLToPath(new URL('../../../docs/screenshots/', import.meta.url)) : null;

/** Writes docs/screenshots/NAME when screenshots were asked for. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (SCREENSHOTS === null) return;
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, name), fullPage: true });
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
