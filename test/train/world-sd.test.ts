// The world-sd chain on tiny configs: CLIP-mini and U-Net-mini stages train, write sample grids
// (retrieval matrix, sampler generations) and export into one pipeline folder that the CLIP-text
// pipeline loads and `eval world-sd` measures; U-Net batches are a pure function of the step.
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AutoencoderKL, parseAutoencoderKLConfig } from '../../src/models/autoencoder_kl.js';
import { evaluateWorldSd } from '../../src/eval/world-sd.js';
import { writeWorldSdReport } from '../../src/eval/world-sd-report.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { latestCheckpoint, readCheckpointState } from '../../src/train/checkpoint.js';
import { parseConfig } from '../../src/train/config.js';
import { clipStage } from '../../src/train/clip.js';
import { runStage } from '../../src/train/runner.js';
import { minSnrWeights, unetStage } from '../../src/train/unet.js';
import { Random } from '../../src/util/random.js';
import { DDPMScheduler } from '../../src/schedulers/index.js';
import { writeTinyJudges } from '../eval/tiny-judges.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
let scratch = '';

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-world-sd-'));
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
});
after(async () => rm(scratch, { recursive: true, force: true }));

/** The parameters of a run's newest checkpoint. */
async function lastParameters(run: string) {
  const checkpoint = await latestCheckpoint(join(run, 'checkpoints'));
  assert.ok(checkpoint, `${run} has a checkpoint`);
  return (await readCheckpointState(checkpoint)).parameters;
}

test('CLIP-mini and U-Net-mini train, export one pipeline folder, generate and evaluate', { timeout: 120000 }, async () => {
  const pipeline = join(scratch, 'pipeline');
  const quiet = { threads: 1, progress: 'none' as const, report: () => undefined };

  const clipConfigPath = join(root, 'configs/train/clip-tiny.json');
  const clipRun = join(scratch, 'clip');
  const clipSummary = await runStage(clipStage, { out: clipRun, configPath: clipConfigPath, ...quiet });
  assert.equal(clipSummary.endStep, 6);
  assert.ok((await stat(join(clipRun, 'samples', 'step-00000006.png'))).size > 0, 'retrieval matrix written');
  const clipConfig = parseConfig(clipStage.schema, JSON.parse(await readFile(clipConfigPath, 'utf8')), 'clip-tiny.json');
  await clipStage.exportModel(clipConfig, await lastParameters(clipRun), pipeline);
  const world = JSON.parse(await readFile(join(pipeline, 'world.json'), 'utf8')) as { concepts: string[] };
  assert.deepEqual(world.concepts, [...clipConfig.data.concepts!].sort());

  // A random VAE of the tiny VAE config stands in for a trained one.
  const vaeJson = JSON.parse(await readFile(join(root, 'configs/train/vae-tiny.json'), 'utf8')) as { model: Record<string, unknown> };
  const random = new Random(9);
  await new AutoencoderKL(parseAutoencoderKLConfig({ ...vaeJson.model, scaling_factor: 0.5 }), { random: { next: () => random.next() } }).save(join(pipeline, 'vae'));

  const unetJson = JSON.parse(await readFile(join(root, 'configs/train/unet-tiny.json'), 'utf8')) as Record<string, unknown>;
  const unetConfigPath = join(scratch, 'unet-tiny.json');
  // The shipped config trains on models/world-sd-mini's encoders; here the tiny ones (CLIP 32 wide) stand in.
  const unetModel = { ...(unetJson['model'] as Record<string, unknown>), cross_attention_dim: 32 };
  await writeFile(unetConfigPath, JSON.stringify({ ...unetJson, model: unetModel, vae: join(pipeline, 'vae'), textEncoder: join(pipeline, 'text_encoder') }));
  const unetConfig = parseConfig(unetStage.schema, JSON.parse(await readFile(unetConfigPath, 'utf8')), 'unet-tiny.json');
  const built = await unetStage.build(unetConfig, { device: 'cpu', threads: 1, report: () => undefined });
  try {
    const [first, again, next] = [await built.batch(1), await built.batch(1), await built.batch(2)];
    assert.deepEqual(first, again, 'a step has one batch');
    assert.notDeepEqual(first['noise']!.data, next['noise']!.data);
    // snrGamma 5: min-SNR-γ weights min(SNR(t), 5) / SNR(t) of the batch's timesteps.
    const alphasCumprod = new DDPMScheduler(unetConfig.scheduler).alphasCumprod;
    const expected = minSnrWeights(alphasCumprod, Array.from(first['timesteps']!.data as Float32Array), 5);
    assert.deepEqual(first['loss_weights']!.data, expected);
    assert.ok(expected.every((weight) => weight > 0 && weight <= 1));
  } finally {
    await built.release();
  }
  const unetRun = join(scratch, 'unet');
  const unetSummary = await runStage(unetStage, { out: unetRun, configPath: unetConfigPath, ...quiet });
  assert.equal(unetSummary.endStep, 4);
  assert.ok(Number.isFinite(unetSummary.stepsPerSecond) && unetSummary.dataShare > 0);
  assert.ok((await stat(join(unetRun, 'samples', 'step-00000004.png'))).size > 0, 'sampler grid written');
  await unetStage.exportModel(unetConfig, await lastParameters(unetRun), pipeline);

  const textToImage = await TextToImagePipeline.fromPretrained(pipeline, { threads: 1 });
  try {
    const { images } = await textToImage.generate({ prompt: 'a noto-style cat on the left and a red apple on the right', steps: 3, guidanceScale: 3, seed: 1 });
    assert.deepEqual([images[0]!.width, images[0]!.height], [32, 32]);
  } finally {
    await textToImage.dispose();
  }

  const result = await evaluateWorldSd(pipeline, {
    steps: 2,
    guidanceScales: [1, 3],
    retrievalScenes: 6,
    zeroShotScenes: 6,
    twinPairs: 4,
    judge: pipeline,
    singlePrompts: 3,
    twoSubjectPrompts: 2,
    tuningPrompts: 2,
    vaeScenesPerSplit: 2,
    threads: 1,
  });
  const { metrics } = result;
  assert.equal(metrics.clip.retrievalScenes, 6);
  assert.equal(metrics.unet.judge, pipeline);
  assert.ok(metrics.clip.twinPairs >= 3 && metrics.clip.twinPairs <= 4, `${metrics.clip.twinPairs} of 4 pairs are twins`);
  assert.ok(metrics.vae.psnr > 0 && metrics.vae.psnr < 60);
  assert.deepEqual(metrics.unet.tuning.map((t) => t.guidanceScale), [1, 3]);
  assert.equal(result.singleCases.length, 3);
  assert.ok(result.singleCases.every((item) => item.concepts.length === 1 && item.prompt.length > 0));
  assert.ok(result.twoSubjectCases.every((item) => item.concepts.length === 2));
  // The real scenes are rendered subjects: the probe's own calibration numbers are fractions too.
  for (const value of [metrics.clip.captionToImageTop1, metrics.clip.zeroShotTop1, metrics.clip.twinPairsMatched, metrics.unet.singleSubject.realScenes.position!, metrics.unet.twoSubjects.generated.bothPresentTop5!]) {
    assert.ok(value >= 0 && value <= 1);
  }
  assert.ok(['x', 'y'].every((axis) => Number.isFinite(metrics.unet.singleSubject.realScenes.positionSlope![axis as 'x' | 'y'])));
  const report = join(scratch, 'report');
  await writeWorldSdReport(report, result);
  const html = await readFile(join(report, 'report.html'), 'utf8');
  assert.match(html, /caption → image top-1 among 6 scenes/);
  assert.ok((await stat(join(report, 'samples.png'))).size > 0);
  assert.deepEqual(JSON.parse(await readFile(join(report, 'metrics.json'), 'utf8')), JSON.parse(JSON.stringify(metrics)));

  // An independent CLIPModel judge (a judges folder's clip/) scores the generations instead.
  const judges = join(scratch, 'judges');
  await writeTinyJudges(judges);
  const judged = await evaluateWorldSd(pipeline, { steps: 2, guidanceScales: [3], retrievalScenes: 4, zeroShotScenes: 4, twinPairs: 2, judge: judges, singlePrompts: 2, twoSubjectPrompts: 2, tuningPrompts: 1, vaeScenesPerSplit: 1, threads: 1 });
  assert.equal(judged.metrics.unet.judge, join(judges, 'clip'));
  assert.ok(judged.metrics.unet.singleSubject.realScenes.conceptTop1! >= 0 && judged.metrics.unet.singleSubject.realScenes.conceptTop1! <= 1);
  const notAJudge = join(scratch, 'not-a-judge');
  await mkdir(notAJudge);
  await assert.rejects(evaluateWorldSd(pipeline, { judge: notAJudge, threads: 1 }), /is neither a judges folder \(clip\/\), a CLIPModel folder nor a pipeline folder with a CLIP-mini/);

  // A judge trained on other concepts is refused before any measuring.
  const otherWorld = join(scratch, 'other-world');
  await mkdir(otherWorld, { recursive: true });
  for (const folder of ['text_encoder', 'vision']) await cp(join(pipeline, folder), join(otherWorld, folder), { recursive: true });
  const description = JSON.parse(await readFile(join(pipeline, 'world.json'), 'utf8')) as { concepts: string[] };
  await writeFile(join(otherWorld, 'world.json'), JSON.stringify({ ...description, concepts: description.concepts.slice(1) }));
  await assert.rejects(evaluateWorldSd(pipeline, { judge: otherWorld, threads: 1 }), /judge .* was trained on another world/);
});

test('min-SNR-γ weights are min(SNR, γ) / SNR with SNR = ᾱ / (1 − ᾱ)', () => {
  // ᾱ 0.9, 0.5, 0.1 → SNR 9, 1, 1/9: only the first exceeds γ = 5.
  const weights = minSnrWeights([0.9, 0.5, 0.1], [2, 0, 1, 0], 5);
  assert.deepEqual(Array.from(weights), [1, Math.fround(5 / 9), 1, Math.fround(5 / 9)]);
});
