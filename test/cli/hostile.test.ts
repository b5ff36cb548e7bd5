// What a hostile user tries on the other commands: contact sheets too large to draw, a .jpg --out, an
// existing output, broken dataset shards, run configs and checkpoint state that are not JSON, a
// schedule shorter than the run, report folders of earlier evaluations, a short doctor run, parity
// started outside the repository, and a shipped config naming a folder nothing creates. Each is one
// line on stderr (or a clean result), decided before any work.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { assertOneLineError, runCli } from './run-cli.js';

const cli = (args: string[], cwd = root) => runCli(args, { env: environment, cwd });

const root = fileURLToPath(new URL('../../../', import.meta.url));
const environment = { ...process.env, NO_COLOR: '1', KOSMOS_G_CACHE: join(tmpdir(), 'kosmos-g-world-test-cache') };

let scratch = '';
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-hostile-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

test('data preview refuses oversized sheets, a non-PNG --out and an existing file before drawing anything', async () => {
  const out = join(scratch, 'sheet.png');
  const preview = (...args: string[]) => ['data', 'preview', '--kind', 't2i', '--concepts', 'cat,dog', ...args];
  assertOneLineError(await cli(preview('--cell', '100000', '--out', out)), /^--cell must be from 16 to 512, got 100000$/);
  assertOneLineError(await cli(preview('--n', '100000', '--out', out)), /^a \d+×\d+ contact sheet is over the 64 M pixel limit; draw fewer samples or smaller cells$/);
  assertOneLineError(await cli(preview('--n', '0', '--out', out)), /^--n must be at least 1, got 0$/);
  assertOneLineError(await cli(preview('--out', join(scratch, 'sheet.jpg'))), /^--out must name a \.png file, got '.*sheet\.jpg'$/);
  assert.ok(!existsSync(out) && !existsSync(join(scratch, 'sheet.jpg')));

  const drawn = await cli(preview('--n', '3', '--cell', '32', '--out', out));
  assert.equal(drawn.code, 0, drawn.stderr);
  const metadata = await sharp(out).metadata();
  assert.equal(metadata.format, 'png');
  const bytes = await readFile(out);
  assertOneLineError(await cli(preview('--n', '2', '--out', out)), /sheet\.png already exists; pass --force to replace it$/);
  assert.ok(bytes.equals(await readFile(out)), 'the sheet is untouched');
  assert.equal((await cli(preview('--n', '2', '--out', out, '--force'))).code, 0);
  assert.ok(!bytes.equals(await readFile(out)), 'replaced with --force');
});

test('data stats names the shard and line of a broken record', async () => {
  const dataset = join(scratch, 'dataset');
  await mkdir(dataset);
  await writeFile(join(dataset, 'manifest.json'), JSON.stringify({ format: 'kosmos-g-world-shards', version: 1, kind: 't2i', split: 'train', shards: [{ file: 'shard-00000.jsonl', count: 2 }] }));
  const record = { index: 0, kind: 't2i', text: 'a cat', caption: 'a cat', images: [], target: 'shard-00000/0-target.png', subjects: ['noto:cat'], backgrounds: [] };
  const shard = join(dataset, 'shard-00000.jsonl');
  await writeFile(shard, `${JSON.stringify(record)}\n{"kind": "t2i", "text": "a d`);
  assertOneLineError(await cli(['data', 'stats', dataset]), /^.*shard-00000\.jsonl line 2 is not valid JSON \(.*\)$/);
  await writeFile(shard, `${JSON.stringify(record)}\n{"kind": "t2i"}\n`);
  assertOneLineError(await cli(['data', 'stats', dataset]), /^.*shard-00000\.jsonl line 2 is not a sample record/);
  await writeFile(join(dataset, 'manifest.json'), 'not json\n{');
  assertOneLineError(await cli(['data', 'stats', dataset]), /^.*manifest\.json is not valid JSON \(/);
});

test('train refuses a schedule shorter than the run, and names a run config or checkpoint state that is not JSON', async () => {
  const tiny = JSON.parse(await readFile(join(root, 'configs/train/vae-tiny.json'), 'utf8')) as Record<string, unknown>;
  const short = join(scratch, 'short-schedule.json');
  await writeFile(short, JSON.stringify({ ...tiny, steps: 20 }));
  const refused = await cli(['train', 'vae', '--config', short, '--out', join(scratch, 'short-run')]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /short-schedule\.json: invalid training config:\n.*totalSteps 12 is less than steps 20: the last 8 steps would train at the final learning rate 0; set it to at least steps/);
  assert.ok(!existsSync(join(scratch, 'short-run')), 'no run folder is created');

  const runFolder = join(scratch, 'broken-run');
  const checkpoint = join(runFolder, 'checkpoints', 'step-00000002');
  await mkdir(checkpoint, { recursive: true });
  await writeFile(join(runFolder, 'config.json'), '{"stage": "vae", ');
  assertOneLineError(await cli(['train', 'vae', '--out', runFolder, '--resume']), /broken-run\/config\.json is not valid JSON \(/);
  await writeFile(join(runFolder, 'config.json'), JSON.stringify(tiny));
  await writeFile(join(checkpoint, 'state.json'), 'nope\n');
  assertOneLineError(await cli(['train', 'vae', '--out', runFolder, '--resume']), /step-00000002\/state\.json is not valid JSON \(/);
  assert.ok(!existsSync(join(runFolder, 'run.lock')), 'the lock is released after the error');
});

test('eval world-sd and eval kosmos-lm keep an earlier report unless --force', async () => {
  const absent = join(scratch, 'no-such-model');
  for (const [command, file] of [['world-sd', 'report.html'], ['kosmos-lm', 'metrics.json']] as const) {
    const out = join(scratch, `eval-${command}`);
    await mkdir(out);
    await writeFile(join(out, file), 'earlier');
    assertOneLineError(await cli(['eval', command, '--model', absent, '--out', out]), new RegExp(`${file.replace('.', '\\.')} already exists; pass --force to replace the report in `));
    // With --force the evaluation starts (and fails on the absent model instead).
    const forced = await cli(['eval', command, '--model', absent, '--out', out, '--force']);
    assert.notEqual(forced.code, 0);
    assert.doesNotMatch(forced.stderr, /already exists/);
    assert.equal(await readFile(join(out, file), 'utf8'), 'earlier');
  }
});

test('doctor calls a short run a run, not an engine failure', async () => {
  const result = await cli(['doctor', '--steps', '20', '--threads', '1']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^ok: the engine runs \(20 steps are too few to judge learning; use --steps 50 or more\)$/m);
  assertOneLineError(await cli(['doctor', '--steps', 'x']), /^--steps must be a positive integer, got 'x'$/);
});

test('parity finds the shared fixtures from any working folder', async () => {
  const result = await cli(['parity', '--case', '06_schedulers'], scratch);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^06_schedulers\s+betas\s.*pass$/m);
  assertOneLineError(await cli(['parity', '--fixtures', 'absent-fixtures'], scratch), /^the fixtures folder .*absent-fixtures does not exist; pass --fixtures DIR$/);
});

test('every folder a shipped training config names exists, or is a run an earlier stage writes; unet-tiny trains as shipped', async () => {
  const folder = join(root, 'configs/train');
  const pathKeys = ['vae', 'textEncoder', 'tokenizer', 'vision', 'initFrom', 'kosmosG'];
  for (const name of await readdir(folder)) {
    const config = JSON.parse(await readFile(join(folder, name), 'utf8')) as Record<string, unknown>;
    for (const key of pathKeys) {
      const path = config[key];
      if (typeof path === 'string' && !path.startsWith('runs/')) assert.ok(existsSync(join(root, path)), `${name}: ${key} ${path} does not exist`);
    }
  }
  const result = await cli(['train', 'unet', '--config', 'configs/train/unet-tiny.json', '--out', join(scratch, 'unet-tiny'), '--threads', '1', '--progress', 'none']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^unet: steps 0 → 4 \(completed\)/);
});
