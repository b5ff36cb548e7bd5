// The VAE stage on the tiny config: a budget stop leaves a checkpoint, and the export is an fp16
// diffusers folder that AutoencoderKL.fromPretrained loads, with a measured scaling factor and
// the artwork's attribution.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { AutoencoderKL } from '../../src/models/autoencoder_kl.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../src/onnx/dtype.js';
import { latestCheckpoint, readCheckpointState } from '../../src/train/checkpoint.js';
import { parseConfig } from '../../src/train/config.js';
import { runStage } from '../../src/train/runner.js';
import { vaeStage } from '../../src/train/vae.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const tinyConfig = join(root, 'configs/train/vae-tiny.json');
let scratch = '';

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-vae-'));
  // The world tests' sprite cache: small, and rendered once per machine.
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
});
after(async () => rm(scratch, { recursive: true, force: true }));

test('a budget stop writes a checkpoint of the last step, and export writes a loadable fp16 VAE', async () => {
  const out = join(scratch, 'run');
  const messages: string[] = [];
  // 30 ms of budget: the first step runs, and the runner stops before the next.
  const summary = await runStage(vaeStage, { out, configPath: tinyConfig, threads: 1, budgetMinutes: 0.0005, progress: 'none', report: (m) => messages.push(m) });
  assert.equal(summary.reason, 'budget');
  assert.ok(summary.endStep >= 1 && summary.endStep < 12, `stopped at step ${summary.endStep}`);
  const checkpoint = await latestCheckpoint(join(out, 'checkpoints'));
  assert.equal(checkpoint?.metadata.step, summary.endStep);
  assert.equal(checkpoint?.metadata.nextSample, summary.endStep * 2);
  assert.match(messages.join('\n'), /starting vae at step 0/);

  const config = parseConfig(vaeStage.schema, JSON.parse(await readFile(tinyConfig, 'utf8')), 'vae-tiny.json');
  const { parameters } = await readCheckpointState(checkpoint!);
  const exported = join(scratch, 'vae');
  await vaeStage.exportModel(config, parameters, exported);
  const modelConfig = JSON.parse(await readFile(join(exported, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(modelConfig['_class_name'], 'AutoencoderKL');
  assert.ok(typeof modelConfig['scaling_factor'] === 'number' && modelConfig['scaling_factor'] > 0 && modelConfig['scaling_factor'] !== 1);
  const file = await SafetensorsFile.open(join(exported, 'model.safetensors'));
  assert.ok(file.names().every((name) => file.info(name).dtype === 'F16'));
  await file.close();
  const loaded = (await AutoencoderKL.fromPretrained(exported)).stateDict();
  assert.deepEqual(Object.keys(loaded).sort(), Object.keys(parameters).sort());
  for (const [key, tensor] of Object.entries(parameters)) {
    const expected = Float32Array.from(tensor.data as Float32Array, (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
    assert.deepEqual(loaded[key]!.data, expected, key);
  }
  const attribution = await readFile(join(exported, 'ATTRIBUTION.md'), 'utf8');
  assert.match(attribution, /^# Attribution/);
  assert.match(attribution, /openmoji/, 'the tiny config trains on both splits, so OpenMoji artwork is credited');
});
