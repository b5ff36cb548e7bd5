// Builds the page served at `/`: type-checks web/src (esbuild only strips types), bundles
// web/src/main.ts into dist/web/app.js and the on-device generation worker (the pipeline itself,
// on the browser platform) into dist/web/device-worker.js, copies onnxruntime-web's wasm build
// into dist/web/ort/ and the HTML and CSS next to them.
// Run from anywhere: `node web/build.mjs`; exits non-zero on a type or bundling error.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
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

/** `#platform` is the browser's in every bundle here, from source, so the worker and the pipeline share one instance. */
const browserPlatform = {
  name: 'browser-platform',
  setup(builder) {
    builder.onResolve({ filter: /^#platform$/ }, () => ({ path: join(root, 'src', 'platform', 'browser.ts') }));
  },
};
const bundle = { bundle: true, format: 'esm', platform: 'browser', target: 'es2022', minify: true, sourcemap: true, logLevel: 'warning', plugins: [browserPlatform] };
/** The wasm build with the WebGPU (JSEP) kernels: its loader and binary, loaded from ort/ by the worker. */
const ORT_FILES = ['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm'];

try {
  await build({ ...bundle, entryPoints: [join(web, 'src', 'main.ts')], outfile: join(out, 'app.js') });
  await build({ ...bundle, entryPoints: [join(web, 'src', 'device', 'worker.ts')], outfile: join(out, 'device-worker.js') });
  await mkdir(join(out, 'ort'), { recursive: true });
  const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm'));
  await Promise.all(ORT_FILES.map((name) => copyFile(join(ortDist, name), join(out, 'ort', name))));
  await Promise.all(['index.html', 'style.css'].map((name) => copyFile(join(web, name), join(out, name))));
} catch (error) {
  // esbuild has already printed its diagnostics; anything else (a copy failing) is printed here.
  if (!(error instanceof Error && 'errors' in error)) console.error(error);
  process.exit(1);
}
