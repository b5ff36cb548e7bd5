// The controlnet stage on its tiny config over a random `init-random --config tiny` pipeline: a new
// ControlNet is from_unet (the U-Net's encoder weights, zero convs) and leaves the U-Net's
// prediction unchanged; it learns; layout batches hold layout maps; a cross-attention width other
// than the U-Net's is refused; a run killed with SIGKILL and resumed logs the losses of an
// uninterrupted one, and its export loads through loadControlNet and steers generation.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { TrainingStep } from '../../src/graph/train-step.js';
import { readAutoencoderKLConfig } from '../../src/models/autoencoder_kl.js';
import { ControlNetModel } from '../../src/models/controlnet.js';
import { UNet2DConditionModel } from '../../src/models/unet_2d_condition.js';
import { checkpointInitialized } from '../../src/nn/layers.js';
import { cannyEdges, layoutColour } from '../../src/pipeline/control-maps.js';
import { loadControlNet } from '../../src/pipeline/controlnet.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';
import { parseConfig } from '../../src/train/config.js';
import { type ControlnetConfig, controlNetConfigFor, ControlNetTrainingRoot, controlnetStage } from '../../src/train/controlnet.js';
import { ForwardSession } from '../../src/train/forward.js';
import { readStepLog } from '../../src/train/log.js';
import { exportRun } from '../../src/train/runner.js';
import { WORLD_TEST_CACHE, trainCli } from './train-cli.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const quiet = { device: 'cpu' as const, threads: 2, report: () => undefined };

let scratch = '';
let base = '';
let configPath = '';
let config: ControlnetConfig;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-controlnet-'));
  process.env['KOSMOS_G_CACHE'] = WORLD_TEST_CACHE;
  base = join(scratch, 'base');
  await createRandomPipeline(base, { config: 'tiny', seed: 3 });
  // The shipped tiny config names models/world-sd-mini; the random tiny pipeline stands in.
  const json = { ...(JSON.parse(await readFile(join(root, 'configs/train/controlnet-tiny.json'), 'utf8')) as Record<string, unknown>), base };
  configPath = join(scratch, 'controlnet-tiny.json');
  await writeFile(configPath, JSON.stringify(json));
  config = parseConfig(controlnetStage.schema, json, 'controlnet-tiny.json');
});
after(async () => rm(scratch, { recursive: true, force: true }));

test('a new ControlNet is from_unet and adds nothing; batches are a pure function of the step; one batch is learned', async () => {
  const built = await controlnetStage.build(config, quiet);
  try {
    const { parameters } = built;
    const copied = Object.keys(parameters).filter((key) => /^controlnet\.(conv_in|time_embedding|down_blocks|mid_block)\./.test(key));
    assert.ok(copied.length > 20);
    for (const key of copied) assert.deepEqual(parameters[key], parameters[key.replace(/^controlnet\./, 'unet.')], key);
    const zeroConvs = Object.keys(parameters).filter((key) => /^controlnet\.(controlnet_down_blocks\.\d+|controlnet_mid_block|controlnet_cond_embedding\.conv_out)\./.test(key));
    assert.ok(zeroConvs.length >= 4 && zeroConvs.every((key) => (parameters[key]!.data as Float32Array).every((value) => value === 0)), 'zero convs start at zero');
    assert.deepEqual(built.trainable, Object.keys(parameters).filter((key) => key.startsWith('controlnet.')));

    const [first, again, next] = [await built.batch(1), await built.batch(1), await built.batch(2)];
    assert.deepEqual(first, again, 'a step has one batch');
    assert.notDeepEqual(first['controlnet_cond']!.data, next['controlnet_cond']!.data);
    const control = first['controlnet_cond']!;
    assert.deepEqual(control.shape, [2, 3, 64, 64]);
    const edgeShare = (control.data as Float32Array).filter((value) => value === 1).length / control.data.length;
    assert.ok((control.data as Float32Array).every((value) => value === 0 || value === 1) && edgeShare > 0.01 && edgeShare < 0.5, `Canny maps are binary with some edges (${edgeShare})`);

    // The U-Net alone and with the new ControlNet's residuals, on the batch's inputs.
    const unet = await UNet2DConditionModel.fromPretrained(join(base, 'unet'));
    const vaeFactor = 2 ** ((await readAutoencoderKLConfig(join(base, 'vae'))).block_out_channels.length - 1);
    const model = new ControlNetTrainingRoot(new ControlNetModel(controlNetConfigFor(config, unet.config, vaeFactor), checkpointInitialized), unet);
    const inputs = Object.fromEntries(['noisy_latents', 'timesteps', 'encoder_hidden_states', 'controlnet_cond'].map((name) => [name, built.batchSpec[name]!]));
    const session = await ForwardSession.create(model, inputs, (context, batch) => ({
      plain: model.unet.forward(context, batch['noisy_latents']!, batch['timesteps']!, batch['encoder_hidden_states']!),
      controlled: model.predictNoise(context, batch['noisy_latents']!, batch['timesteps']!, batch['encoder_hidden_states']!, batch['controlnet_cond']!),
    }));
    const outputs = await session.run(parameters, Object.fromEntries(Object.keys(inputs).map((name) => [name, first[name]!])));
    await session.release();
    assert.deepEqual(Array.from(outputs['controlled']!.data as Float32Array), Array.from(outputs['plain']!.data as Float32Array));

    const training = await TrainingStep.create({
      parameters,
      trainable: built.trainable!,
      batch: built.batchSpec,
      loss: built.loss,
      optimizer: config.optimizer,
      schedule: { kind: 'constant', learningRate: 5e-3 },
      seed: 1,
    });
    const losses: number[] = [];
    for (let step = 0; step < 8; step++) losses.push((await training.run(first)).loss);
    await training.release();
    const falling = losses.every((loss, step) => step === 0 || loss < losses[step - 1]!);
    assert.ok(falling && losses.at(-1)! < 0.95 * losses[0]!, `the loss of a batch trained on falls step by step: ${losses.map((loss) => loss.toFixed(4)).join(' ')}`);
  } finally {
    await built.release();
  }
});

test('layout batches hold layout maps: black, or the colour of one of the world\'s concepts', async () => {
  const built = await controlnetStage.build({ ...config, control: 'layout' }, quiet);
  try {
    const control = (await built.batch(1))['controlnet_cond']!;
    const plane = 64 * 64;
    const colours = new Set(config.data.concepts!.map((concept) => layoutColour(concept).join()));
    const seen = new Set<string>();
    for (let b = 0; b < 2; b++) {
      for (let p = 0; p < plane; p++) {
        const rgb = [0, 1, 2].map((c) => Math.round((control.data as Float32Array)[(b * 3 + c) * plane + p]! * 255));
        if (rgb.some((level) => level !== 0)) seen.add(rgb.join());
      }
    }
    assert.ok(seen.size > 0 && [...seen].every((colour) => colours.has(colour)), `colours ${[...seen].join(' | ')}`);
  } finally {
    await built.release();
  }
});

test('a ControlNet that does not fit the base U-Net is refused in one line', async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ cross_attention_dim: 64 }, /^the ControlNet's cross_attention_dim 64 differs from the base U-Net's 32: both attend to the same text states$/],
    [{ conditioning_embedding_out_channels: [16, 32, 96] }, /conditioning_embedding_out_channels has 3 entries, which downsample control maps 4×; the VAE's latents are 8× smaller than images: give 4 entries/],
    [{ block_out_channels: [16, 16] }, /the ControlNet's encoder must have the base U-Net's shapes to start from its weights: conv_in\.weight is \[16, 4, 3, 3\] here, \[8, 4, 3, 3\]/],
    [{ conditioning_channels: 1 }, /conditioning_channels must be 3/],
    [{ cross_attention_dims: 32 }, /^model: unknown ControlNetModel keys: cross_attention_dims$/],
  ];
  for (const [model, message] of cases) {
    await assert.rejects(controlnetStage.build({ ...config, model }, quiet), (error: Error) => message.test(error.message) && !error.message.includes('\n'), JSON.stringify(model));
  }
});

/** `train controlnet` on the test config (train-cli.ts). */
const train = (out: string, extra: string[], killWhen?: () => boolean) => trainCli('controlnet', configPath, out, extra, killWhen);

test('a run killed with SIGKILL and resumed logs the same losses; its export loads and steers generate --controlnet', { timeout: 180000 }, async () => {
  const [whole, interrupted] = [join(scratch, 'whole'), join(scratch, 'interrupted')];
  const [uninterrupted, killed] = await Promise.all([
    train(whole, []),
    // Killed right after the first checkpoint folder appears, mid-way through the following steps.
    train(interrupted, [], () => existsSync(join(interrupted, 'checkpoints', 'step-00000002'))),
  ]);
  assert.equal(uninterrupted.code, 0, uninterrupted.stderr);
  assert.equal(killed.signal, 'SIGKILL', `the run finished before it could be killed:\n${killed.stderr}`);
  const expected = await readStepLog(join(whole, 'log.jsonl'));
  assert.deepEqual(expected.map((record) => record.step), Array.from({ length: config.steps }, (_, i) => i + 1));
  assert.ok(existsSync(join(whole, 'samples', `step-${String(config.steps).padStart(8, '0')}.png`)), 'sample grid written');
  const beforeResume = await listCheckpoints(join(interrupted, 'checkpoints'));
  assert.ok(beforeResume.length > 0 && beforeResume.at(-1)!.step < config.steps, 'a checkpoint short of the end must exist');

  const resumed = await train(interrupted, ['--resume']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming controlnet from step ${beforeResume.at(-1)!.step}`));
  const actual = await readStepLog(join(interrupted, 'log.jsonl'));
  assert.deepEqual(
    actual.map(({ step, loss, gradNorm, lr }) => ({ step, loss, gradNorm, lr })),
    expected.map(({ step, loss, gradNorm, lr }) => ({ step, loss, gradNorm, lr })),
  );

  const exported = join(scratch, 'exported');
  assert.deepEqual(await exportRun(whole, exported), { stage: 'controlnet', step: config.steps });
  const folderConfig = JSON.parse(await readFile(join(exported, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(folderConfig['_class_name'], 'ControlNetModel');
  assert.deepEqual(folderConfig['_kosmos_g_control'], { kind: 'canny', low: 100, high: 200 });
  const loaded = await loadControlNet(exported);
  assert.equal(loaded.model.parameterCount(), new ControlNetModel(loaded.model.config, checkpointInitialized).parameterCount());
  await loaded.close();

  // A Canny map of the example world scene at the pipeline's 64 px, as a control image file.
  const { data } = await sharp(join(root, 'examples', 'scene-openmoji-cat.png')).flatten({ background: '#ffffff' }).resize(64, 64).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const controlImage = join(scratch, 'edges.png');
  await sharp(Buffer.from(cannyEdges(new Uint8Array(data), 64, 64, config.canny)), { raw: { width: 64, height: 64, channels: 1 } }).png().toFile(controlImage);
  const pipeline = await TextToImagePipeline.fromPretrained(base, { threads: 2 });
  try {
    const request = { prompt: 'a cat on the left', steps: 3, seed: 5 };
    const plain = await pipeline.generate(request);
    const controlled = await pipeline.generate({ ...request, controlnet: { model: exported, image: controlImage } });
    assert.deepEqual([controlled.images[0]!.width, controlled.images[0]!.height], [64, 64]);
    assert.ok(controlled.images[0]!.data.some((value, i) => value !== plain.images[0]!.data[i]), 'the trained ControlNet changes the image');
  } finally {
    await pipeline.dispose();
  }
});
