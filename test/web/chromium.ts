// Headless Chromium for the page's tests (Debian's chromium through playwright-core; CHROMIUM_PATH
// overrides the path): no sandbox (CI runs as root), no GPU, and none of the browser's own traffic.
import { type Browser, chromium } from 'playwright-core';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
