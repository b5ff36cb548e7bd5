// The VAE stage on the tiny config: a budget stop leaves a checkpoint, and the export is an fp16
// diffusers folder that AutoencoderKL.fromPretrained loads, with a measured scaling factor and
// the artwork's attribution. Fine-tuning from a run (initFrom) with a frozen encoder changes only the
// decoder side.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

test('initFrom starts from another run\'s parameters, and trainEncoder false trains only the decoder side', async () => {
  const source = join(scratch, 'source');
  await runStage(vaeStage, { out: source, configPath: tinyConfig, threads: 1, budgetMinutes: 0.0005, progress: 'none', report: () => undefined });
  const sourceParameters = (await readCheckpointState((await latestCheckpoint(join(source, 'checkpoints')))!)).parameters;

  const json = JSON.parse(await readFile(tinyConfig, 'utf8')) as Record<string, unknown>;
  const fineTuneConfig = await writeConfig('decoder', { ...json, initFrom: source, trainEncoder: false, steps: 2, checkpointEvery: 2 });
  const messages: string[] = [];
  const out = join(scratch, 'decoder');
  await runStage(vaeStage, { out, configPath: fineTuneConfig, threads: 1, progress: 'none', report: (m) => messages.push(m) });
  assert.match(messages.join('\n'), /parameters initialised from/);
  const { parameters } = await readCheckpointState((await latestCheckpoint(join(out, 'checkpoints')))!);
  let decoderChanged = 0;
  for (const [key, tensor] of Object.entries(parameters)) {
    const frozen = key.startsWith('encoder.') || key.startsWith('quant_conv.');
    const same = Buffer.compare(Buffer.from((tensor.data as Float32Array).buffer), Buffer.from((sourceParameters[key]!.data as Float32Array).buffer)) === 0;
    if (frozen) assert.ok(same, `${key} is frozen but changed`);
    else if (!same) decoderChanged++;
  }
  assert.ok(decoderChanged > 10, `only ${decoderChanged} decoder tensors changed`);

  // A released (exported, float16) VAE folder is a source too, read back as float32 (the export
  // test above checks the values).
  const released = join(scratch, 'released-vae');
  await vaeStage.exportModel(parseConfig(vaeStage.schema, json, tinyConfig), sourceParameters, released);
  const fromRelease = await writeConfig('from-release', { ...json, initFrom: released, steps: 1, checkpointEvery: 1 });
  const releaseMessages: string[] = [];
  await runStage(vaeStage, { out: join(scratch, 'from-release'), configPath: fromRelease, threads: 1, progress: 'none', report: (m) => releaseMessages.push(m) });
  assert.match(releaseMessages.join('\n'), /parameters initialised from .*released-vae$/m);
  const imported = await vaeStage.importModel(parseConfig(vaeStage.schema, json, tinyConfig), released);
  assert.deepEqual(Object.keys(imported).sort(), Object.keys(sourceParameters).sort());
  assert.ok(Object.values(imported).every((tensor) => tensor.dtype === 'float32'));

  // A model of another width does not fit: the error names the tensor and both shapes.
  const wider = await writeConfig('wider', { ...json, initFrom: source, model: { ...(json['model'] as object), block_out_channels: [8, 24] } });
  await assert.rejects(
    runStage(vaeStage, { out: join(scratch, 'wider'), configPath: wider, threads: 1, progress: 'none', report: () => undefined }),
    /initFrom: .* does not fit this model:[\s\S]*\[24/,
  );
  await assert.rejects(
    runStage(vaeStage, { out: join(scratch, 'nowhere'), configPath: await writeConfig('missing', { ...json, initFrom: join(scratch, 'missing') }), threads: 1, progress: 'none', report: () => undefined }),
    /initFrom: .*missing is neither a checkpoint folder, a run folder with checkpoints nor a 'vae' model folder/,
  );
});

async function writeConfig(name: string, json: Record<string, unknown>): Promise<string> {
  const path = join(scratch, `${name}.json`);
  await writeFile(path, JSON.stringify(json));
  return path;
}
