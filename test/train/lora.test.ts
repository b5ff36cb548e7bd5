// The LoRA stage on a tiny random pipeline: at step 0 the LoRA changes nothing, training lowers the
// loss and moves only the LoRA pairs, both export layouts load through the generation loader and
// reproduce the trained LoRA's U-Net output, bad target modules are refused in one line, the style
// filter keeps one style, and a run killed with SIGKILL and resumed logs the uninterrupted losses.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { TrainingStep } from '../../src/graph/train-step.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { LoraAdapter } from '../../src/models/lora.js';
import { UNet2DConditionModel } from '../../src/models/unet_2d_condition.js';
import { constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { mergedContext } from '../../src/pipeline/weights.js';
import { CaptionedSceneStream } from '../../src/train/captioned-scenes.js';
import { latestCheckpoint, listCheckpoints, readCheckpointState } from '../../src/train/checkpoint.js';
import { parseConfig } from '../../src/train/config.js';
import { readStepLog } from '../../src/train/log.js';
import { createAdapter, exportLora, KOHYA_FILE, loraStage, PEFT_FILE, type LoraConfig } from '../../src/train/lora.js';
import { exportRun } from '../../src/train/runner.js';
import { openWorld } from '../../src/train/world-data.js';
import { WORLD_TEST_CACHE, trainCli } from './train-cli.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const quiet = { device: 'cpu' as const, threads: 1, report: () => undefined };

let scratch = '';
let base = '';
let configPath = '';
let configJson: Record<string, unknown> = {};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-lora-'));
  process.env['KOSMOS_G_CACHE'] = WORLD_TEST_CACHE;
  base = join(scratch, 'base');
  await createRandomPipeline(base, { config: 'tiny', seed: 5 });
  // The shipped config names the folder `init-random` writes; here the test's own stands in.
  configJson = { ...(JSON.parse(await readFile(join(root, 'configs/train/lora-tiny.json'), 'utf8')) as Record<string, unknown>), base };
  configPath = join(scratch, 'lora-tiny.json');
  await writeFile(configPath, JSON.stringify(configJson));
});
after(async () => rm(scratch, { recursive: true, force: true }));

const parse = (json: unknown): LoraConfig => parseConfig(loraStage.schema, json, 'lora-tiny.json');

/** The U-Net's prediction for `feeds` (sample, timestep, encoder_hidden_states), with `adapter` at scale 1 when given. */
async function unetOutput(unet: UNet2DConditionModel, adapter: LoraAdapter | null, feeds: Record<string, HostTensor>): Promise<Float32Array> {
  const graph = new Graph('unet');
  const [sample, timestep, hidden] = ['sample', 'timestep', 'encoder_hidden_states'].map((name) => graph.input(name, 'float32', feeds[name]!.shape));
  const unetContext = constantBindings(graph, unet);
  const context = adapter ? mergedContext(graph, [{ module: unet, context: unetContext }, { module: adapter, context: constantBindings(graph, adapter) }]) : unetContext;
  const prediction = unet.forward(context, sample!, timestep!, hidden!, adapter ? { adapter: adapter.runtime(unet, context, 1) } : {});
  const session = await GraphSession.create(encodeModel(graph.toModel({ prediction })), { threads: 1 });
  try {
    return (await session.run(feeds))['prediction']!.data as Float32Array;
  } finally {
    await session.release();
  }
}

async function loadLora(unet: UNet2DConditionModel, file: string): Promise<LoraAdapter> {
  const reader = await openSafetensors(file);
  try {
    return await LoraAdapter.fromSafetensors(unet, reader);
  } finally {
    await reader.close();
  }
}

test('step 0 generates as the base; training lowers the loss of a batch; PEFT and kohya exports reproduce the trained LoRA', { timeout: 120000 }, async () => {
  const config = parse(configJson);
  const instance = await loraStage.build(config, quiet);
  try {
    const loraKeys = instance.trainable!;
    assert.ok(loraKeys.length > 0 && loraKeys.every((key) => /\.lora_[AB]\.weight$/.test(key)), 'only the LoRA pairs train');
    assert.deepEqual([...instance.trainingOnly!, ...loraKeys].sort(), Object.keys(instance.parameters).sort());

    // Step 0: B is zero, so a generation with the exported LoRA is the base's, bit for bit.
    const initial = join(scratch, 'export-step-0');
    const initialFile = await exportLora(config, instance.parameters, initial, 'peft');
    const generator = await TextToImagePipeline.fromPretrained(base, { threads: 1 });
    try {
      const request = { prompt: 'a noto cat on the left and a red apple on the right', steps: 2, guidanceScale: 3, seed: 1 };
      const plain = await generator.generate(request);
      const withLora = await generator.generate({ ...request, lora: { file: initialFile, scale: 1 } });
      assert.deepEqual(withLora.images, plain.images);
    } finally {
      await generator.dispose();
    }

    const training = await TrainingStep.create({
      parameters: instance.parameters,
      trainable: loraKeys,
      batch: instance.batchSpec,
      loss: instance.loss,
      optimizer: config.optimizer,
      schedule: config.schedule,
      seed: config.seed,
      session: { threads: 1 },
    });
    const batch = await instance.batch(1);
    let trained: Record<string, HostTensor>;
    try {
      const losses: number[] = [];
      for (let step = 0; step < 5; step++) losses.push((await training.run(batch)).loss);
      assert.ok(losses.every(Number.isFinite) && losses.at(-1)! < losses[0]!, `losses on one batch: ${losses.join(', ')}`);
      trained = (await training.state()).parameters;
    } finally {
      await training.release();
    }
    for (const key of instance.trainingOnly!) assert.deepEqual(trained[key]!.data, instance.parameters[key]!.data, `${key} is frozen`);

    const peftFile = await exportLora(config, trained, join(scratch, 'export-peft'), 'peft');
    const kohyaFile = await exportLora(config, trained, join(scratch, 'export-kohya'), 'kohya');
    assert.deepEqual([peftFile, kohyaFile].map((file) => file.split('/').at(-1)), [PEFT_FILE, KOHYA_FILE]);
    const adapterConfig = JSON.parse(await readFile(join(scratch, 'export-peft', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([adapterConfig['r'], adapterConfig['lora_alpha'], adapterConfig['target_modules']], [2, 4, ['to_q', 'to_k', 'to_v', 'to_out.0']]);
    const peftReader = await openSafetensors(peftFile);
    const peftNames = peftReader.names();
    await peftReader.close();
    assert.ok(peftNames.every((name) => /^unet\.(down|mid|up)_blocks?\..+\.(to_q|to_k|to_v|to_out\.0)\.lora_[AB]\.weight$/.test(name)), peftNames.join(', '));

    // The same U-Net output with the in-training LoRA and with each file loaded by the generation loader.
    const unet = await UNet2DConditionModel.fromPretrained(join(base, 'unet'));
    const inTraining = createAdapter(unet, config);
    inTraining.loadStateDict(Object.fromEntries(loraKeys.map((key) => [key, trained[key]!])));
    const feeds = { sample: batch['noisy_latents']!, timestep: batch['timesteps']!, encoder_hidden_states: batch['encoder_hidden_states']! };
    const expected = await unetOutput(unet, inTraining, feeds);
    assert.notDeepEqual(expected, await unetOutput(unet, null, feeds), 'the trained LoRA changes the output');
    for (const file of [peftFile, kohyaFile]) {
      const loaded = await loadLora(unet, file);
      assert.deepEqual([...loaded.targets].sort(), [...inTraining.targets].sort(), file);
      assert.ok(loaded.targets.every((path) => loaded.layer(path)!.alpha === 4), `${file} keeps alpha`);
      assert.deepEqual(await unetOutput(unet, loaded, feeds), expected, file);
    }
    // importModel reads either layout back as the run's LoRA parameters.
    for (const folder of ['export-peft', 'export-kohya']) {
      const imported = await loraStage.importModel(config, join(scratch, folder));
      assert.deepEqual(Object.keys(imported).sort(), [...loraKeys].sort());
      for (const key of loraKeys) assert.deepEqual(imported[key]!.data, trained[key]!.data, `${folder}: ${key}`);
    }
  } finally {
    await instance.release();
  }
});

test('target modules that match no U-Net layer are refused in one line', async () => {
  const config = parse({ ...configJson, lora: { rank: 2, targetModules: ['to_k', 'to_qq'] } });
  await assert.rejects(loraStage.build(config, quiet), (error: Error) => {
    assert.match(error.message, /^lora\.targetModules to_qq match no Linear or Conv2d layer of the U-Net of .*\(its layers end in .*to_out\.0.*\)$/);
    assert.ok(!error.message.includes('\n'));
    return true;
  });
});

test('scenes.styles keeps the subjects and scene backgrounds of those styles only', async () => {
  const config = parse(configJson);
  const world = await openWorld(config.data, 64, () => undefined);
  const stream = new CaptionedSceneStream(world, 1, config.data.splits, 0, { ...config.scenes, styles: ['noto'] });
  assert.ok(stream.subjects.length > 0 && stream.subjects.every((id) => world.catalog.subjectById.get(id)!.style === 'noto'));
  assert.deepEqual(stream.styles(), ['noto']);
  const scene = stream.sample(0);
  assert.ok(scene.spec.subjects.every((subject) => subject.style === 'noto'));
  assert.throws(() => new CaptionedSceneStream(world, 1, config.data.splits, 0, { ...config.scenes, styles: ['crayon'] }), /styles names styles this world does not have: crayon$/);
});

/** `train lora` on the test config (train-cli.ts). */
const train = (out: string, extra: string[], killWhen?: () => boolean) => trainCli('lora', configPath, out, extra, killWhen);

test('a LoRA run killed with SIGKILL and resumed logs the same losses as an uninterrupted run, and exports', { timeout: 120000 }, async () => {
  const whole = join(scratch, 'run-whole');
  const interrupted = join(scratch, 'run-interrupted');
  const uninterrupted = await train(whole, []);
  assert.equal(uninterrupted.code, 0, uninterrupted.stderr);
  const expected = await readStepLog(join(whole, 'log.jsonl'));
  assert.deepEqual(expected.map((record) => record.step), [1, 2, 3, 4, 5, 6]);
  assert.ok(existsSync(join(whole, 'samples', 'step-00000006.png')), 'the base-vs-LoRA grid is written');

  const killed = await train(interrupted, [], () => existsSync(join(interrupted, 'checkpoints', 'step-00000002')));
  assert.equal(killed.signal, 'SIGKILL', `the run finished before it could be killed:\n${killed.stderr}`);
  const beforeResume = await listCheckpoints(join(interrupted, 'checkpoints'));
  assert.ok(beforeResume.length > 0 && beforeResume.at(-1)!.step < 6, 'a checkpoint short of the end exists');
  const resumed = await train(interrupted, ['--resume']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming lora from step ${beforeResume.at(-1)!.step}`));
  const actual = await readStepLog(join(interrupted, 'log.jsonl'));
  const fields = ({ step, loss, gradNorm, lr }: (typeof expected)[number]) => ({ step, loss, gradNorm, lr });
  assert.deepEqual(actual.map(fields), expected.map(fields));
  const finalState = async (run: string) => readCheckpointState((await latestCheckpoint(join(run, 'checkpoints')))!);
  assert.deepEqual((await finalState(interrupted)).parameters, (await finalState(whole)).parameters);

  const exported = join(scratch, 'run-export');
  assert.deepEqual(await exportRun(whole, exported), { stage: 'lora', step: 6 });
  assert.ok(existsSync(join(exported, PEFT_FILE)) && existsSync(join(exported, 'README.md')) && existsSync(join(exported, 'ATTRIBUTION.md')));
  const kohya = join(scratch, 'run-export-kohya');
  await exportRun(whole, kohya, { format: 'kohya' });
  assert.ok(existsSync(join(kohya, KOHYA_FILE)) && !existsSync(join(kohya, PEFT_FILE)));
  await assert.rejects(exportRun(whole, join(scratch, 'run-export-bad'), { format: 'ckpt' }), /the lora stage exports peft or kohya, not "ckpt"/);
});
