// Config validation, checkpoint folders, the JSONL log and the runner's refusals.
import { mkdir, mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { configHash, parseConfig } from '../../src/train/config.js';
import { latestCheckpoint, listCheckpoints, pruneCheckpoints, readCheckpointState, writeCheckpoint } from '../../src/train/checkpoint.js';
import { readStepLog, StepLog, type StepRecord } from '../../src/train/log.js';
import { lossCurveSvg } from '../../src/train/plot.js';
import { runStage } from '../../src/train/runner.js';
import { findStage } from '../../src/train/stages.js';
import { vaeStage } from '../../src/train/vae.js';
import { EVAL_SCENE_SEED } from '../../src/train/world-data.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
let scratch = '';
let tiny: Record<string, unknown> = {};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-train-'));
  tiny = JSON.parse(await readFile(join(root, 'configs/train/vae-tiny.json'), 'utf8')) as Record<string, unknown>;
});
after(async () => rm(scratch, { recursive: true, force: true }));

test('every committed config parses against the schema of the stage it names; defaults are filled in', async () => {
  const folder = join(root, 'configs/train');
  const names = (await readdir(folder)).filter((name) => name.endsWith('.json'));
  assert.ok(names.length > 10, `only ${names.length} configs found in ${folder}`);
  for (const name of names) {
    const json = JSON.parse(await readFile(join(folder, name), 'utf8')) as { stage: string };
    assert.ok(parseConfig(findStage(json.stage).schema, json, name).steps > 0, name);
  }
  const mini = JSON.parse(await readFile(join(root, 'configs/train/vae-mini.json'), 'utf8')) as unknown;
  assert.deepEqual(parseConfig(vaeStage.schema, mini, 'vae-mini.json').model.block_out_channels, [32, 64, 128]);
  const config = parseConfig(vaeStage.schema, tiny, 'vae-tiny.json');
  assert.equal(config.keepCheckpoints, 2);
  assert.equal(config.data.splitSeed, 0);
  assert.equal(config.model.shift_factor, null);
});

test('config errors name the file and every offending path', () => {
  const broken = {
    ...tiny,
    batchSize: 0,
    lerningRate: 1,
    schedule: { kind: 'cosine', learningRate: 0.001, warmupSteps: 10, totalSteps: 5 },
    model: { ...(tiny['model'] as object), norm_num_groups: 3 },
    data: { seed: EVAL_SCENE_SEED },
  };
  assert.throws(
    () => parseConfig(vaeStage.schema, broken, 'broken.json'),
    (error: Error) =>
      /^broken\.json: invalid training config/.test(error.message) &&
      /batchSize/.test(error.message) &&
      /lerningRate/.test(error.message) &&
      /totalSteps greater than warmupSteps/.test(error.message) &&
      /norm_num_groups = 3/.test(error.message) &&
      /reserved for evaluation/.test(error.message),
  );
});

test('the config hash ignores key order and changes with any value', () => {
  const config = parseConfig(vaeStage.schema, tiny, 'tiny');
  const reordered = parseConfig(vaeStage.schema, Object.fromEntries(Object.entries(tiny).reverse()), 'tiny');
  assert.equal(configHash(config), configHash(reordered));
  assert.notEqual(configHash(config), configHash(parseConfig(vaeStage.schema, { ...tiny, seed: 8 }, 'tiny')));
});

function tensor(values: number[]): HostTensor {
  return { dtype: 'float32', shape: [values.length], data: Float32Array.from(values) };
}

const metadata = { stage: 'vae', seed: 1, configHash: 'abc', nextSample: 0, elapsedSeconds: 1.5, createdAt: '2020-01-01T00:00:00.000Z' };

test('checkpoints round-trip exactly; temporary folders are ignored and pruned; old ones are pruned', async () => {
  const directory = join(scratch, 'checkpoints');
  const state = (step: number) => ({ step, parameters: { 'a.weight': tensor([step, 0.1, -3e-8]) }, optimizer: { 'exp_avg.a.weight': tensor([1 / 3, step, 7]) } });
  for (const step of [2, 4, 6]) await writeCheckpoint(directory, state(step), { ...metadata, nextSample: step * 2 });
  await mkdir(join(directory, '.step-00000008.99999.dead.tmp'));
  assert.deepEqual((await listCheckpoints(directory)).map((c) => c.step), [2, 4, 6]);
  const latest = await latestCheckpoint(directory);
  assert.equal(latest?.metadata.step, 6);
  assert.equal(latest?.metadata.nextSample, 12);
  const restored = await readCheckpointState(latest!);
  assert.deepEqual(restored, state(6));
  await pruneCheckpoints(directory, 2);
  assert.deepEqual((await readdir(directory)).sort(), ['step-00000004', 'step-00000006']);
});

test('reopening the log keeps only whole records up to the checkpoint step', async () => {
  const path = join(scratch, 'log.jsonl');
  const record = (step: number): StepRecord => ({ step, loss: 1 / step, gradNorm: 2, lr: 0.1, dataMs: 1, computeMs: 2, wallSeconds: step });
  await writeFile(path, `${[1, 2, 3, 4].map((s) => JSON.stringify(record(s))).join('\n')}\n{"step":5,"lo`);
  const log = await StepLog.open(path, 3);
  assert.deepEqual(log.records, [record(1), record(2), record(3)]);
  await log.append(record(4));
  await log.close();
  assert.deepEqual(await readStepLog(path), [1, 2, 3, 4].map(record));
});

test('the loss curve plots finite positive losses on a log axis', () => {
  const svg = lossCurveSvg([{ step: 1, loss: 1 }, { step: 2, loss: Number.NaN }, { step: 3, loss: 0.1 }], 'title <x>');
  assert.match(svg, /title &lt;x&gt;/);
  assert.equal((svg.match(/<path /g) ?? []).length, 2);
  assert.match(svg, />0\.1</);
});

test('the runner refuses to overwrite a run, and a resume with a different config', async () => {
  const out = join(scratch, 'run');
  const configPath = join(scratch, 'tiny.json');
  await writeFile(configPath, JSON.stringify(tiny));
  await writeCheckpoint(join(out, 'checkpoints'), { step: 2, parameters: {}, optimizer: {} }, metadata);
  await assert.rejects(runStage(vaeStage, { out, configPath, progress: 'none' }), /already holds checkpoints; pass --resume/);
  await writeFile(join(out, 'config.json'), JSON.stringify({ ...tiny, seed: 99 }));
  await assert.rejects(runStage(vaeStage, { out, configPath, resume: true, progress: 'none' }), /differs from the config .* was started with/);
  await writeFile(join(out, 'config.json'), JSON.stringify(tiny));
  await assert.rejects(runStage(vaeStage, { out, configPath, resume: true, progress: 'none' }), /was written with another config/);
  await assert.rejects(runStage(vaeStage, { out: join(scratch, 'empty'), progress: 'none' }), /a config file is required/);
});
