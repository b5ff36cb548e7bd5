// The world-exact measures: their logic with a judge whose embeddings say exactly what each image
// shows, then a world DreamBench evaluated end to end with a tiny random pipeline and tiny random
// judges — the Kosmos-G row (two-subject prompts with two reference images, edits with the source),
// the text-style row, the oracle row on the true scenes, the Kosmos-G row with a ControlNet (Canny, layout) and a LoRA,
// and eval lora's style shift.
import test from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { buildCases, officialSeed, readDreamBench, type DreamBenchData } from '../../src/eval/dreambench-data.js';
import { evaluateDreamBench, type DreamBenchOptions } from '../../src/eval/dreambench.js';
import type { DreamBenchMetrics } from '../../src/eval/dreambench-report.js';
import { buildWorldJobs, readWorldDreamBench, type WorldDreamBench } from '../../src/eval/world-dreambench.js';
import { edgeF1OfFiles } from '../../src/eval/edge-agreement.js';
import { subjectsPlaced } from '../../src/eval/layout-placement.js';
import { evaluateLoraShift } from '../../src/eval/lora-shift.js';
import { measureWorld, type ClipEmbedder } from '../../src/eval/world-measures.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { decodeImage } from '../../src/world/image.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { tinyExtras } from '../pipeline/tiny.js';
import { buildTestDreamBench } from '../world/dreambench-fixture.js';
import { writeTinyJudges } from './tiny-judges.js';

const scratch = await mkdtemp(join(tmpdir(), 'world-measures-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const bench = join(scratch, 'bench');
await buildTestDreamBench(bench);
const data = await readDreamBench(bench);
const world = (await readWorldDreamBench(data))!;
const names = data.subjects.map((subject) => subject.subject);

/** A judge whose text embeddings are one-hot per text and whose image of `path` shows exactly the texts `shows(path)` gives. */
function knowingJudge(shows: (path: string) => string[]): ClipEmbedder {
  const ids = new Map<string, number>();
  const embed = (texts: readonly string[]) => {
    const vector = new Float32Array(4096);
    for (const text of texts) vector[ids.get(text) ?? ids.set(text, ids.size).get(text)!] += 1 / Math.sqrt(texts.length);
    return vector;
  };
  return { embedTexts: async (texts) => texts.map((text) => embed([text])), embedImages: async (paths) => paths.map((path) => embed(shows(path as string))) };
}

/** The oracle's images as measureWorld receives them: every true scene and each multi and edit item's `image`. */
async function oracleImages(judge: ClipEmbedder, editImage: 'source' | 'target') {
  const records = await Promise.all(buildCases(data, { imagesPerPrompt: 1, seed: 0 }).map(async (item) => {
    const file = world.file.subjects[item.subject]!.scenes[item.promptIndex]!;
    const path = join(bench, file);
    const [embed] = await judge.embedImages([path]);
    return { subject: item.subject, class: item.class, promptIndex: item.promptIndex, prompt: item.clipTPrompt, clipTPrompt: item.clipTPrompt, image: 0, seed: null, file, source: 'data' as const, dino: 0, clipI: 0, clipT: 0, edgeF1: null, path, embed: embed! };
  }));
  const jobs = buildWorldJobs(world, data, { subjects: names, prompts: null, imagesPerPrompt: 1, seed: 0, styled: false }).map((job) => {
    const file = job.group === 'edits' ? world.edits[job.index]![editImage] : job.truth;
    return { job, prompt: job.clipTPrompt, images: [{ path: join(bench, file), file, source: 'data' as const }] };
  });
  return { dataDirectory: bench, records, jobs };
}

const kinds = (bench: DreamBenchData) => new Map(bench.subjects.map((subject) => [subject.subject, subject.live ? ('live' as const) : ('object' as const)]));

/** What each true scene shows in the world's words: its concepts, its subject's style, its background. */
function truthOf(bench: WorldDreamBench): (path: string) => string[] {
  const { concepts, subjects } = bench.file;
  const at = (file: string) => join(data.directory, file);
  const shows = new Map<string, string[]>();
  const said = (concept: string) => concepts[concept]!.prompt;
  for (const subject of data.subjects) {
    const entry = subjects[subject.subject]!;
    entry.scenes.forEach((file, p) => {
      const background = bench.file.prompts[subject.live ? 'live' : 'object'][p]!.background ?? 'on a plain white background';
      shows.set(at(file), [said(entry.concept), entry.style_prompts[entry.style]!, `${said(entry.concept)} ${background}`]);
    });
  }
  for (const item of bench.multi) {
    const pair = item.subjects.map((name) => said(subjects[name]!.concept));
    shows.set(at(item.scene), [...pair, `${pair.join(' and ')} ${item.background}`]);
  }
  for (const item of bench.edits) {
    const subject = said(subjects[item.subject]!.concept);
    shows.set(at(item.source), [subject, `${subject} ${item.source_background}`]);
    shows.set(at(item.target), [subject, `${subject} ${item.background}`]);
  }
  return (path) => shows.get(path) ?? [];
}

test('a judge that sees exactly what the true scenes show scores every measure 100 %, and an unchanged edit as unchanged', async () => {
  const judge = knowingJudge(truthOf(world));
  const report = await measureWorld(judge, world, kinds(data), await oracleImages(judge, 'target'));
  const { prompts, multi, edits } = report;
  assert.deepEqual(report.classes, { concepts: 6, backgrounds: world.file.background_phrases.length });
  assert.equal(prompts.images, 75);
  assert.deepEqual([prompts.concept, prompts.style], [{ measured: 75, hits: 75, rate: 1 }, { measured: 75, hits: 75, rate: 1 }]);
  // 20 of each subject's 25 prompts name a background, 5 a position (where the locator finds the true subject).
  assert.deepEqual([prompts.background, prompts.position], [{ measured: 60, hits: 60, rate: 1 }, { measured: 15, hits: 15, rate: 1 }]);
  assert.equal(prompts.byPrompt.length, 25);
  assert.deepEqual(prompts.byPrompt[20]!.position, { measured: 3, hits: 3, rate: 1 });
  assert.equal(prompts.byPrompt[20]!.background.measured, 0);
  assert.deepEqual([multi.bothPresentTop5.rate, multi.background.rate, multi.prompts], [1, 1, 2]);
  assert.deepEqual([edits.subjectKept.rate, edits.backgroundToTarget.rate, edits.backgroundUnchanged.rate, edits.edited.rate], [1, 1, 0, 1]);
  assert.deepEqual(multi.items[0]!.images[0]!.concepts.slice(0, 2).sort(), multi.items[0]!.subjects.map((name) => world.file.subjects[name]!.concept).sort());

  // Handing back the source is no edit: the subject is kept, the background is the old one.
  const unchanged = await measureWorld(judge, world, kinds(data), await oracleImages(judge, 'source'));
  assert.deepEqual([unchanged.edits.subjectKept.rate, unchanged.edits.backgroundToTarget.rate, unchanged.edits.backgroundUnchanged.rate, unchanged.edits.edited.rate], [1, 0, 1, 0]);

  // A judge that sees every image as the first subject's reference gets concepts wrong for the others.
  const first = world.file.subjects[names[0]!]!;
  const blind = knowingJudge(() => [world.file.concepts[first.concept]!.prompt, first.style_prompts[first.style]!]);
  const blindReport = await measureWorld(blind, world, kinds(data), await oracleImages(blind, 'target'));
  assert.deepEqual(blindReport.prompts.concept, { measured: 75, hits: 25, rate: 25 / 75 });
});

const tiny = join(scratch, 'tiny');
const judges = join(scratch, 'judges');
await createRandomPipeline(tiny, { config: 'tiny', seed: 0 });
await writeTinyJudges(judges);
const run = { model: tiny, data: bench, judges, imagesPerPrompt: 1, steps: 2, guidance: 3, threads: 1 } satisfies Partial<DreamBenchOptions>;
const rgb = async (path: string) => Uint8Array.from(await sharp(path).raw().toBuffer());

test('end to end on a world DreamBench: the Kosmos-G row runs the two-subject prompts with both references and the edits with the source', async () => {
  const out = join(scratch, 'kosmos');
  const { metrics } = await evaluateDreamBench({ ...run, out });
  assert.deepEqual([metrics.images, metrics.run.generated], [75, 79]);
  const measures = metrics.world!;
  assert.deepEqual([measures.prompts.images, measures.prompts.position.measured, measures.prompts.background.measured, measures.multi.images, measures.edits.images], [75, 15, 60, 2, 2]);
  for (const rate of [measures.prompts.concept, measures.prompts.style, measures.multi.bothPresentTop5, measures.edits.subjectKept]) assert.ok(rate.rate !== null && rate.rate >= 0 && rate.rate <= 1);
  const reported = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')) as DreamBenchMetrics;
  assert.deepEqual(reported.world, JSON.parse(JSON.stringify(measures)));
  const html = await readFile(join(out, 'report.html'), 'utf8');
  for (const heading of ['World-exact measures', 'Two-subject prompts', 'Edits']) assert.ok(html.includes(`${heading}</h`), heading);
  assert.match(html, /src="multi\/00-0\.png"/);

  const [multi, edit] = [world.multi[0]!, world.edits[1]!];
  const reference = (name: string) => join(bench, data.subjects.find((subject) => subject.subject === name)!.reference);
  assert.deepEqual(measures.multi.items[0]!.inputs, multi.subjects.map(reference));
  assert.equal(measures.edits.items[1]!.prompt, `<i> ${edit.instruction}`);
  const pipeline = await KosmosGPipeline.fromPretrained(tiny, { threads: 1 });
  try {
    const pair = await pipeline.generate({ prompt: multi.prompt, images: multi.subjects.map(reference), seed: officialSeed(0, 0, 0), steps: 2, guidanceScale: 3 });
    assert.deepEqual(new Uint8Array(pair.images[0]!.data), await rgb(join(out, 'multi/00-0.png')));
    const edited = await pipeline.generate({ prompt: edit.prompt, images: [join(bench, edit.source)], seed: officialSeed(0, 1, 0), steps: 2, guidanceScale: 3 });
    assert.deepEqual(new Uint8Array(edited.images[0]!.data), await rgb(join(out, 'edits/01-0.png')));
  } finally {
    await pipeline.dispose();
  }
  const again = await evaluateDreamBench({ ...run, out, resume: true });
  assert.deepEqual([again.metrics.run.generated, again.metrics.run.reused], [0, 79]);
  assert.deepEqual(again.metrics.world, measures);
});

test('the text-style row writes the style and class words where the images were; the real DreamBench has no style names', async () => {
  const { metrics, records } = await evaluateDreamBench({ ...run, out: join(scratch, 'text-style'), baseline: 'text-style', prompts: 1 });
  const word = (name: string) => `openmoji ${data.subjects.find((subject) => subject.subject === name)!.class}`;
  assert.deepEqual(records.map((r) => r.prompt), names.map((name) => `${word(name)} in the snowy mountains`));
  assert.deepEqual(records.map((r) => r.clipTPrompt), data.subjects.map((subject) => `a ${subject.class} in the snowy mountains`));
  const [multi, edit] = [metrics.world!.multi.items[0]!, metrics.world!.edits.items[0]!];
  assert.equal(multi.prompt, `${word(multi.subjects[0]!)} and ${word(multi.subjects[1]!)} ${world.multi[0]!.background}`);
  assert.equal(edit.prompt, `${word(edit.subjects[0]!)} ${world.edits[0]!.background}`);
  assert.equal(metrics.row, 'text-style');

  const out = join(scratch, 'never-made');
  await assert.rejects(evaluateDreamBench({ ...run, data: resolve('../shared/dreambench'), out, baseline: 'text-style' }), /--baseline text-style needs a world DreamBench .*has no world-dreambench\.json/);
  await assert.rejects(stat(out), /ENOENT/);
});

test('the oracle row measures the true scenes: DreamBench scores, and the world measures that calibrate the others', async () => {
  const { metrics, records } = await evaluateDreamBench({ data: bench, judges, out: join(scratch, 'oracle'), baseline: 'oracle', threads: 1 });
  assert.equal(records.length, 75);
  assert.ok(records.every((r) => r.source === 'data' && r.file === world.file.subjects[r.subject]!.scenes[r.promptIndex!] && r.clipT !== null));
  const measures = metrics.world!;
  assert.deepEqual([measures.prompts.images, measures.multi.images, measures.edits.images], [75, 2, 2]);
  // The locator on true scenes: every subject where its prompt put it.
  assert.deepEqual(measures.prompts.position, { measured: 15, hits: 15, rate: 1 });
  assert.ok(measures.prompts.concept.rate !== null && measures.prompts.background.rate !== null);
  assert.deepEqual(measures.multi.items.map((item) => item.images.map((image) => [image.file, image.source])), world.multi.map((item) => [[item.scene, 'data']]));
  assert.deepEqual(measures.edits.items.map((item) => item.images[0]!.file), world.edits.map((item) => item.target));
  assert.equal(metrics.run.generated, 0);
  assert.match(await readFile(join(scratch, 'oracle', 'report.html'), 'utf8'), /<h1>DreamBench: true scenes \(oracle\)<\/h1>/);
});

test("the random row shows each prompt's true scene of another subject, and no two-subject prompts or edits", async () => {
  const { metrics, records } = await evaluateDreamBench({ data: bench, judges, out: join(scratch, 'random'), baseline: 'random', threads: 1 });
  assert.equal(records.length, 75);
  for (const record of records) {
    const shown = Object.keys(world.file.subjects).find((subject) => world.file.subjects[subject]!.scenes[record.promptIndex!] === record.file);
    assert.ok(shown !== undefined && shown !== record.subject, `${record.file} is another subject's true scene of prompt ${record.promptIndex}`);
  }
  assert.deepEqual([metrics.world!.multi.images, metrics.world!.edits.images], [0, 0]);
});

test("adapters: a Canny ControlNet on each prompt's true scene and a LoRA, recorded in eval.json; every world row gets the edge F1", async () => {
  const { controlnet, lora } = await tinyExtras();
  const out = join(scratch, 'adapters');
  const adapters = { controlnet: { model: controlnet, scale: 0.8 }, lora: { file: lora, scale: 0.5 } };
  const { metrics, records } = await evaluateDreamBench({ ...run, out, prompts: 1, ...adapters });
  assert.deepEqual(metrics.settings.controlnet, { model: controlnet, control: 'canny', low: 100, high: 200, scale: 0.8 });
  assert.deepEqual(metrics.settings.lora, { file: lora, scale: 0.5 });
  assert.deepEqual(JSON.parse(await readFile(join(out, 'eval.json'), 'utf8')).settings.controlnet, metrics.settings.controlnet);

  // A saved image is the pipeline's own output with the same ControlNet input and LoRA.
  const item = records[0]!;
  const truth = join(bench, world.file.subjects[item.subject]!.scenes[item.promptIndex!]!);
  const pipeline = await KosmosGPipeline.fromPretrained(tiny, { threads: 1 });
  try {
    const direct = await pipeline.generate({
      prompt: item.prompt!, images: [join(bench, data.subjects.find((subject) => subject.subject === item.subject)!.reference)], seed: item.seed!, steps: 2, guidanceScale: 3,
      controlnet: { model: controlnet, image: truth, preprocess: { kind: 'canny' }, conditioningScale: 0.8 }, lora: { file: lora, scale: 0.5 },
    });
    assert.deepEqual(new Uint8Array(direct.images[0]!.data), await rgb(join(out, item.file)));
  } finally {
    await pipeline.dispose();
  }
  // Edge F1 of every image against its true scene, recomputed from the files; the mean is reported.
  for (const record of records) {
    assert.equal(record.edgeF1, await edgeF1OfFiles(join(bench, world.file.subjects[record.subject]!.scenes[record.promptIndex!]!), join(out, record.file)));
  }
  const mean = records.reduce((sum, record) => sum + record.edgeF1!, 0) / records.length;
  assert.ok(Math.abs(metrics.overall.edgeF1! - mean) < 1e-12);
  assert.match(await readFile(join(out, 'scores.csv'), 'utf8'), /,edge_f1\n/);
  assert.match(await readFile(join(out, 'report.html'), 'utf8'), /With ControlNet .* at scale 0\.8, on the Canny edges \(100, 200\) of each prompt&apos;s true scene; LoRA .* at scale 0\.5\.[\s\S]*edge F1 vs true scene<\/th>/);

  // Another adapter setting is another evaluation; the oracle's true scenes agree with themselves.
  await assert.rejects(evaluateDreamBench({ ...run, out, prompts: 1, ...adapters, lora: { file: lora, scale: 1 }, resume: true }), /holds another DreamBench evaluation \(lora .*"scale":1.* here, .*"scale":0\.5.* there\)/);
  const oracle = await evaluateDreamBench({ data: bench, judges, out: join(scratch, 'oracle-edges'), baseline: 'oracle', prompts: 1, threads: 1 });
  assert.equal(oracle.metrics.overall.edgeF1, 1);
  await assert.rejects(evaluateDreamBench({ data: bench, judges, out: join(scratch, 'none'), baseline: 'oracle', ...adapters }), /--baseline oracle generates nothing: a ControlNet or LoRA applies to the model rows only/);
  await assert.rejects(evaluateDreamBench({ ...run, data: resolve('../shared/dreambench'), out: join(scratch, 'none'), ...adapters }), /a ControlNet evaluation needs a world DreamBench .*has no world-dreambench\.json/);
});

test('eval lora: the fraction of images the judge names with the LoRA style, per row and scale, in one JSON and one chart', async () => {
  const { lora } = await tinyExtras();
  const out = join(scratch, 'lora-shift');
  const style = world.file.subjects[names[0]!]!.style;
  const options = { model: tiny, textModel: tiny, data: bench, judges, out, lora, style, scales: [1, 0], imagesPerPrompt: 1, steps: 2, guidance: 3, prompts: 1, threads: 1 };
  const report = await evaluateLoraShift(options);
  assert.deepEqual(report.rows.map((row) => [row.row, row.points.map((point) => point.scale)]), [['kosmos-g', [0, 1]], ['text-style', [0, 1]]]);
  for (const point of report.rows.flatMap((row) => row.points)) {
    assert.equal(Object.values(point.stylesNamed).reduce((sum, n) => sum + n, 0), point.images);
    assert.equal(point.named, point.stylesNamed[style] ?? 0);
    assert.equal(point.fraction, point.named / point.images);
  }
  // Each point is a DreamBench evaluation of its own, scale 0 without the LoRA.
  const settings = async (name: string) => JSON.parse(await readFile(join(out, name, 'eval.json'), 'utf8')).settings;
  assert.equal((await settings('kosmos-g-0')).lora, undefined);
  assert.deepEqual((await settings('text-style-1')).lora, { file: lora, scale: 1 });
  assert.equal((await settings('text-style-1')).row, 'text-style');
  assert.deepEqual(JSON.parse(await readFile(join(out, 'lora-shift.json'), 'utf8')), JSON.parse(JSON.stringify(report)));
  const svg = await readFile(join(out, 'lora-shift.svg'), 'utf8');
  assert.equal((svg.match(/<polyline /g) ?? []).length, 2);
  // Resumed, nothing is generated again and the figures are the same.
  assert.deepEqual(await evaluateLoraShift({ ...options, resume: true }), report);

  await assert.rejects(evaluateLoraShift({ ...options, style: 'crayon' }), /--style crayon is not a style the judge names for any subject \(styles: /);
  await assert.rejects(evaluateLoraShift({ ...options, model: undefined, textModel: undefined }), /give --model .*--text-model .*or both/);
  await assert.rejects(evaluateLoraShift({ ...options, scales: [0.5, 0.5] }), /--scales repeats a scale/);
  const stranger = join(scratch, 'lora-stranger');
  await mkdir(stranger);
  await writeFile(join(stranger, 'notes.txt'), 'mine');
  await assert.rejects(evaluateLoraShift({ ...options, out: stranger }), /holds files that are not a LoRA evaluation's \(notes\.txt\)/);
});

test("a layout ControlNet: each prompt's layout map is the control image; every world row gets the placement of its subjects", async () => {
  const { controlnet } = await tinyExtras();
  const out = join(scratch, 'layout');
  const { metrics, records } = await evaluateDreamBench({ ...run, out, prompts: 1, controlnet: { model: controlnet, control: 'layout' } });
  assert.deepEqual(metrics.settings.controlnet, { model: controlnet, control: 'layout', scale: 1 });
  const item = records[0]!;
  const map = join(bench, world.file.subjects[item.subject]!.layouts![item.promptIndex!]!);
  const pipeline = await KosmosGPipeline.fromPretrained(tiny, { threads: 1 });
  try {
    const reference = join(bench, data.subjects.find((subject) => subject.subject === item.subject)!.reference);
    const direct = await pipeline.generate({ prompt: item.prompt!, images: [reference], seed: item.seed!, steps: 2, guidanceScale: 3, controlnet: { model: controlnet, image: map } });
    assert.deepEqual(new Uint8Array(direct.images[0]!.data), await rgb(join(out, item.file)));
  } finally {
    await pipeline.dispose();
  }
  // One subject per single-subject image, two per two-subject image; recomputed from the files.
  const placement = metrics.world!.placement!;
  assert.deepEqual([placement.prompts.measured, placement.multi.measured], [records.length, 2]);
  const placed = await Promise.all(records.map(async (record) => {
    const entry = world.file.subjects[record.subject]!;
    return subjectsPlaced(await decodeImage(join(out, record.file)), await decodeImage(join(bench, entry.layouts![record.promptIndex!]!)), [entry.concept]);
  }));
  assert.equal(placement.prompts.hits, placed.flat().filter(Boolean).length);

  // The true scenes stand in their own masks; a folder built without layout maps has no placement and no layout ControlNet.
  const oracle = await evaluateDreamBench({ data: bench, judges, out: join(scratch, 'oracle-layout'), baseline: 'oracle', prompts: 1, threads: 1 });
  assert.equal(oracle.metrics.world!.placement!.prompts.rate, 1);
  const old = join(scratch, 'bench-without-layouts');
  await cp(bench, old, { recursive: true });
  const file = JSON.parse(await readFile(join(old, 'world-dreambench.json'), 'utf8')) as { subjects: Record<string, { layouts?: string[] }> };
  for (const subject of Object.values(file.subjects)) delete subject.layouts;
  await writeFile(join(old, 'world-dreambench.json'), JSON.stringify(file));
  const plain = await evaluateDreamBench({ data: old, judges, out: join(scratch, 'oracle-without-layouts'), baseline: 'oracle', prompts: 1, threads: 1 });
  assert.equal(plain.metrics.world!.placement, null);
  await assert.rejects(evaluateDreamBench({ ...run, data: old, out: join(scratch, 'none'), controlnet: { model: controlnet, control: 'layout' } }), /a layout ControlNet evaluation needs the layout map of every true scene: .* was built without them/);
});
