// The embedded default end to end, where users touch it: `kosmos-g generate` without --model uses
// models/kosmos-g-mini from any working directory, and `import { KosmosGPipeline } from 'kosmos-g'`
// resolves through package.json from an installed package (a node_modules link to this checkout)
// and runs the README's library example.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { DEFAULT_MODEL } from '../../src/pipeline/default_model.js';
import { describePipeline } from '../../src/pipeline/info.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
let scratch = '';

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-default-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

function run(command: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }));
  });
}

test('the default model is the embedded kosmos-g-mini, a Kosmos-G pipeline folder', async () => {
  assert.equal(DEFAULT_MODEL, join(root, 'models', 'kosmos-g-mini'));
  const index = JSON.parse(await readFile(join(DEFAULT_MODEL, 'model_index.json'), 'utf8')) as { _class_name: string };
  assert.equal(index._class_name, 'KosmosGPipeline');
});

test('init-random --config mini writes every component in exactly the default model\'s shapes', { timeout: 120000 }, async () => {
  const random = join(scratch, 'mini-random');
  await createRandomPipeline(random, { config: 'mini', seed: 1 });
  const counts = async (directory: string) => (await describePipeline(directory)).components.map(({ name, className, parameters }) => ({ name, className, parameters }));
  assert.deepEqual(await counts(random), await counts(DEFAULT_MODEL));
});

test('generate without --model uses kosmos-g-mini from another working directory', { timeout: 120000 }, async () => {
  const out = join(scratch, 'cat.png');
  const image = join(root, 'examples', 'openmoji-cat.png');
  const cli = join(root, 'dist', 'src', 'cli', 'main.js');
  const result = await run(process.execPath, [cli, 'generate', '--prompt', '<i> on a beach', '--image', image, '--steps', '2', '--seed', '1', '--threads', '1', '--out', out], scratch);
  assert.equal(result.code, 0, result.stderr);
  const { width, height } = await sharp(out).metadata();
  assert.deepEqual([width, height], [64, 64]);
  const sidecar = JSON.parse(await readFile(join(scratch, 'cat.json'), 'utf8')) as { model: string; pipeline: string };
  assert.deepEqual([sidecar.model, sidecar.pipeline], ['kosmos-g-mini', 'kosmos-g']);
});

test("the README's library example runs from an installed package", { timeout: 120000 }, async () => {
  const project = join(scratch, 'project');
  await mkdir(join(project, 'node_modules'), { recursive: true });
  await symlink(root, join(project, 'node_modules', 'kosmos-g'), 'dir');
  await writeFile(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  const image = JSON.stringify(join(root, 'examples', 'openmoji-cat.png'));
  await writeFile(
    join(project, 'example.js'),
    [
      "import { writeFile } from 'node:fs/promises';",
      "import { KosmosGPipeline, DEFAULT_MODEL, encodePng } from 'kosmos-g';",
      '',
      'const pipeline = await KosmosGPipeline.fromPretrained(DEFAULT_MODEL, { threads: 1 });',
      `const { images } = await pipeline.generate({ prompt: '<i> on a beach', images: [${image}], steps: 2, guidanceScale: 3, seed: 1 });`,
      "await writeFile('cat.png', await encodePng(images[0]));",
      'await pipeline.dispose();',
    ].join('\n'),
  );
  const result = await run(process.execPath, ['example.js'], project);
  assert.equal(result.code, 0, result.stderr);
  assert.ok((await stat(join(project, 'cat.png'))).size > 0);
});
