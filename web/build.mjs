// Builds the page served at `/`: type-checks web/src (esbuild only strips types), bundles
// web/src/main.ts into dist/web/app.js and copies the HTML and CSS next to it.
// Run from anywhere: `node web/build.mjs`; exits non-zero on a type or bundling error.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const web = dirname(fileURLToPath(import.meta.url));
const root = dirname(web);
const out = join(root, 'dist', 'web');

const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(web, 'tsconfig.json')], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error(`web/build.mjs: type check failed${tsc.error ? ` (${tsc.error.message})` : ''}`);
  process.exit(1);
}

try {
  await build({
    entryPoints: [join(web, 'src', 'main.ts')],
    outfile: join(out, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    logLevel: 'warning',
  });
  await mkdir(out, { recursive: true });
  await Promise.all(['index.html', 'style.css'].map((name) => copyFile(join(web, name), join(out, name))));
} catch (error) {
  // esbuild has already printed its diagnostics; anything else (a copy failing) is printed here.
  if (!(error instanceof Error && 'errors' in error)) console.error(error);
  process.exit(1);
}
