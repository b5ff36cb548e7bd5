// `npm run build:web`: the page as a folder any static host can serve, generating on the visitor's
// own device only. It holds the built page (dist/web), the model folder under model/ with its
// files.json manifest, site.json (the model described as the server's /v1/models would) and
// _headers, the cross-origin isolation headers in the format Netlify and Cloudflare Pages read
// (without them the page still works, on one wasm thread).
//   node web/build-site.mjs [--model DIR] [--out DIR] [--force]
// Run after `npm run build`; exits non-zero with a one-line message on any problem.
import { cp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

async function main() {
  const { values } = parseArgs({ options: { model: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean', default: false } } });
  const model = resolve(values.model ?? join(root, 'models', 'kosmos-g-mini'));
  const out = resolve(values.out ?? join(root, 'dist', 'site'));
  const page = join(root, 'dist', 'web');
  // The build's own modules: the manifest, the folder check and the model description the server uses.
  const { folderManifest, MANIFEST_FILE } = await import('../dist/src/io/folder-manifest.js');
  const { readPipelineFolder } = await import('../dist/src/pipeline/folder.js');
  const { describeModel, pipelineKindOf, readModelInfo } = await import('../dist/src/server/model-info.js');
  const { ISOLATION_HEADERS } = await import('../dist/src/server/model-files.js');

  if (!(await stat(join(page, 'device-worker.js')).catch(() => null))) throw new Error('the page is not built: run `npm run build` first');
  const folder = await readPipelineFolder(model);
  if (pipelineKindOf(folder) !== 'kosmos-g') throw new Error(`${model} is not a Kosmos-G folder; the page runs the Kosmos-G pipeline only`);
  if (await stat(out).catch(() => null)) {
    if (!values.force) throw new Error(`${out} exists; pass --force to replace it`);
    await rm(out, { recursive: true, force: true });
  }
  await mkdir(out, { recursive: true });
  await cp(page, out, { recursive: true, filter: (source) => !source.endsWith('.map') });
  await cp(model, join(out, 'model'), { recursive: true, filter: (source) => !basename(source).startsWith('.') });
  await writeFile(join(out, 'model', MANIFEST_FILE), `${JSON.stringify(await folderManifest(join(out, 'model')), null, 1)}\n`);
  const name = values.model === undefined ? 'kosmos-g-mini' : basename(model);
  const description = describeModel({ name, pipeline: 'kosmos-g', info: await readModelInfo(folder), loras: [], controlnets: [] });
  await writeFile(join(out, 'site.json'), `${JSON.stringify(description, null, 2)}\n`);
  await writeFile(join(out, '_headers'), `/*\n${Object.entries(ISOLATION_HEADERS).map(([header, value]) => `  ${header}: ${value}\n`).join('')}`);
  process.stdout.write(`${out}: the page and ${name}; serve the folder with any static host\n`);
}

main().catch((error) => {
  process.stderr.write(`build-site: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
