// The DreamBench evaluation on the real DreamBench copy (../shared/dreambench, read in place) with
// a tiny random Kosmos-G pipeline and tiny random judges: the official prompts and seeds, images on
// disk, scores recomputed from those files, resume, the baselines, and the refusals.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { buildCases, officialSeed, readDreamBench } from '../../src/eval/dreambench-data.js';
import { evaluateDreamBench, type DreamBenchOptions } from '../../src/eval/dreambench.js';
import { CSV_COLUMNS, scoresOf, type ImageScore } from '../../src/eval/dreambench-report.js';
import { cosine, loadJudges } from '../../src/eval/judges.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { writeTinyJudges } from './tiny-judges.js';

const shared = resolve('../shared/dreambench');
const scratch = await mkdtemp(join(tmpdir(), 'dreambench-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const tiny = join(scratch, 'tiny');
const judges = join(scratch, 'judges');
await createRandomPipeline(tiny, { config: 'tiny', seed: 0 });
await writeTinyJudges(judges);

const subset = { model: tiny, data: shared, judges, subjects: ['cat', 'backpack'], prompts: 2, imagesPerPrompt: 2, steps: 2, guidance: 3, threads: 1 } satisfies Partial<DreamBenchOptions>;

/** scores.csv back into records (prompts hold commas, so fields may be quoted). */
function parseCsv(text: string): Record<string, string>[] {
  const rows = text.trim().split('\n').map((line) => [...line.matchAll(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)].slice(0, -1).map(([, field]) => (field!.startsWith('"') ? field!.slice(1, -1).replace(/""/g, '"') : field!)));
  const [header, ...body] = rows;
  assert.deepEqual(header, [...CSV_COLUMNS]);
  return body.map((fields) => Object.fromEntries(header!.map((name, i) => [name, fields[i]!])));
}

const mtimes = async (out: string, files: readonly string[]) => Promise.all(files.map(async (file) => (await stat(join(out, file))).mtimeMs));
const rgb = async (path: string) => Uint8Array.from(await sharp(path).raw().toBuffer());

test('the official prompts, CLIP-T prompts and seeds, on all of DreamBench and on a subset', async () => {
  const data = await readDreamBench(shared);
  assert.equal(data.subjects.length, 30);
  assert.equal(data.subjects.reduce((n, s) => n + s.images.length, 0), 158);
  const all = buildCases(data, { imagesPerPrompt: 4, seed: 0 });
  assert.equal(all.length, 750);
  assert.equal(all.flatMap((c) => c.images).length, 3000);
  const find = (subject: string, index: number) => all.find((c) => c.subject === subject && c.promptIndex === index)!;
  assert.equal(find('backpack', 0).inputPrompt, '<i> in the jungle');
  assert.equal(find('backpack', 20).inputPrompt, '<i>, red');
  assert.equal(find('backpack', 20).clipTPrompt, 'a red backpack');
  assert.equal(find('cat', 10).inputPrompt, '<i> wearing a red hat');
  assert.equal(find('bear_plushie', 0).clipTPrompt, 'a stuffed animal in the jungle');
  assert.equal(find('bear_plushie', 0).textPrompt, 'stuffed animal in the jungle');
  assert.equal(find('cat', 3).reference, 'images/cat/04.jpg');
  // Batches of 5 prompts re-seeded alike: image k of prompt p from seed + 5k + p mod 5.
  assert.deepEqual(find('dog', 7).images.map((i) => i.seed), [2, 7, 12, 17]);
  assert.deepEqual(find('dog', 7).images.map((i) => i.seed), find('can', 2).images.map((i) => i.seed));
  assert.equal(new Set(all.flatMap((c) => c.images.map((i) => i.seed))).size, 20);
  assert.equal(officialSeed(100, 24, 3), 119);
  assert.equal(buildCases({ ...data, dropObject: false }, { imagesPerPrompt: 1, seed: 0 })[0]!.inputPrompt, 'backpack <i> in the jungle');

  const cases = buildCases(data, { subjects: ['cat', 'backpack'], prompts: 2, imagesPerPrompt: 2, seed: 0 });
  assert.deepEqual(cases.map((c) => `${c.subject} ${c.promptIndex} ${c.inputPrompt}`), ['backpack 0 <i> in the jungle', 'backpack 1 <i> in the snow', 'cat 0 <i> in the jungle', 'cat 1 <i> in the snow']);
  assert.deepEqual(cases.map((c) => c.images.map((i) => `${i.file}@${i.seed}`)), [
    ['images/backpack/00-0.png@0', 'images/backpack/00-1.png@5'], ['images/backpack/01-0.png@1', 'images/backpack/01-1.png@6'],
    ['images/cat/00-0.png@0', 'images/cat/00-1.png@5'], ['images/cat/01-0.png@1', 'images/cat/01-1.png@6'],
  ]);
  assert.throws(() => buildCases(data, { subjects: ['dog4'], imagesPerPrompt: 1, seed: 0 }), /unknown subject dog4 \(the data has backpack, /);
});

test('a data folder missing files or naming images that do not exist is refused in one line, before --out is made', async () => {
  const copy = join(scratch, 'broken-data');
  await cp(shared, copy, { recursive: true });
  await unlink(join(copy, 'images', 'cat', '03.jpg'));
  const out = join(scratch, 'never-made');
  await assert.rejects(evaluateDreamBench({ ...subset, data: copy, out }), /^Error: DreamBench folder .*broken-data: subjects\.json names images that do not exist: images\/cat\/03\.jpg$/);
  await assert.rejects(stat(out), /ENOENT/);
  await rm(join(copy, 'prompts.json'));
  await assert.rejects(readDreamBench(copy), /DreamBench folder .*broken-data is missing prompts\.json$/);
  await writeFile(join(copy, 'prompts.json'), '{"object": []');
  await assert.rejects(readDreamBench(copy), /prompts\.json: not valid JSON/);
  await cp(join(shared, 'prompts.json'), join(copy, 'prompts.json'));
  await cp(join(shared, 'images', 'cat', '03.jpg'), join(copy, 'images', 'cat', '03.jpg'));
  const evalJson = JSON.parse(await readFile(join(copy, 'kosmosg_eval.json'), 'utf8')) as { reference_image: Record<string, string> };
  evalJson.reference_image['cat'] = 'images/cat/09.jpg';
  await writeFile(join(copy, 'kosmosg_eval.json'), JSON.stringify(evalJson));
  await assert.rejects(readDreamBench(copy), /the reference image of cat, images\/cat\/09\.jpg, is not among its images/);
});

test('end to end: 2 subjects × 2 prompts × 2 images, scores recomputed from the saved images, resume reuses them', async () => {
  const out = join(scratch, 'run');
  const first = await evaluateDreamBench({ ...subset, out });
  const { metrics, records } = first;
  assert.equal(metrics.run.generated, 8);
  assert.equal(metrics.images, 8);
  assert.deepEqual(records.map((r) => `${r.subject}/${r.promptIndex}/${r.image} ${r.prompt} | ${r.clipTPrompt} @${r.seed}`), [
    'backpack/0/0 <i> in the jungle | a backpack in the jungle @0', 'backpack/0/1 <i> in the jungle | a backpack in the jungle @5',
    'backpack/1/0 <i> in the snow | a backpack in the snow @1', 'backpack/1/1 <i> in the snow | a backpack in the snow @6',
    'cat/0/0 <i> in the jungle | a cat in the jungle @0', 'cat/0/1 <i> in the jungle | a cat in the jungle @5',
    'cat/1/0 <i> in the snow | a cat in the snow @1', 'cat/1/1 <i> in the snow | a cat in the snow @6',
  ]);
  const files = records.map((r) => r.file);
  assert.deepEqual((await readdir(join(out, 'images', 'cat'))).sort(), ['00-0.png', '00-1.png', '01-0.png', '01-1.png']);
  assert.deepEqual((await readdir(out)).sort(), ['eval.json', 'images', 'metrics.json', 'report.html', 'scores.csv']);

  // A saved image is the pipeline's own output for that prompt, reference image and seed.
  const pipeline = await KosmosGPipeline.fromPretrained(tiny, { threads: 1 });
  try {
    const direct = await pipeline.generate({ prompt: '<i> in the snow', images: [join(shared, 'images/cat/04.jpg')], seed: 6, steps: 2, guidanceScale: 3 });
    assert.deepEqual(new Uint8Array(direct.images[0]!.data), await rgb(join(out, 'images/cat/01-1.png')));
  } finally {
    await pipeline.dispose();
  }

  // The judges run again on the files: per-image scores equal scores.csv, aggregates equal metrics.json.
  const csv = parseCsv(await readFile(join(out, 'scores.csv'), 'utf8'));
  const loaded = await loadJudges(judges, { threads: 1 });
  const recomputed: ImageScore[] = [];
  try {
    for (const [k, record] of records.entries()) {
      const reference = join(shared, record.subject === 'cat' ? 'images/cat/04.jpg' : 'images/backpack/02.jpg');
      const path = join(out, record.file);
      const [[clip, clipRef], [dino, dinoRef], [text]] = [await loaded.clip.embedImages([path, reference]), await loaded.dino.features([path, reference]), await loaded.clip.embedTexts([record.clipTPrompt!])];
      const scores = { dino: 100 * cosine(dino!, dinoRef!), clipI: 100 * cosine(clip!, clipRef!), clipT: 100 * cosine(clip!, text!) };
      recomputed.push({ ...record, ...scores });
      for (const [key, column] of [['dino', 'dino'], ['clipI', 'clip_i'], ['clipT', 'clip_t']] as const) {
        assert.ok(Math.abs(scores[key] - Number(csv[k]![column])) < 1e-4, `${record.file} ${key}: ${scores[key]} vs ${csv[k]![column]}`);
      }
      assert.equal(csv[k]!['prompt'], record.prompt);
      assert.equal(Number(csv[k]!['seed']), record.seed);
    }
  } finally {
    await loaded.close();
  }
  const close = (a: number | null, b: number | null) => a !== null && b !== null && Math.abs(a - b) < 1e-4;
  const reported = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')) as typeof metrics;
  const overall = scoresOf(recomputed);
  for (const key of ['dino', 'clipI', 'clipT'] as const) {
    assert.ok(close(overall[key], reported.overall[key]), `overall ${key}`);
    for (const subject of reported.bySubject) assert.ok(close(scoresOf(recomputed.filter((r) => r.subject === subject.subject))[key], subject[key]), `${subject.subject} ${key}`);
    for (const prompt of reported.byPrompt) assert.ok(close(scoresOf(recomputed.filter((r) => r.promptIndex === prompt.index))[key], prompt[key]), `prompt ${prompt.index} ${key}`);
  }
  assert.equal(reported.bySubject.find((s) => s.subject === 'cat')!.prompts.length, 2);
  const html = await readFile(join(out, 'report.html'), 'utf8');
  assert.match(html, /src="\.\.\/[^"]*images\/cat\/04\.jpg"/); // the reference is linked from the data folder
  assert.match(html, /src="images\/cat\/01-1\.png"/);
  assert.match(html, /Kosmos-G \(paper\)<\/td><td>69\.4<\/td><td>84\.7<\/td><td>28\.7/);

  // Resume: nothing is generated, the files are untouched, the scores are the same.
  const before = await mtimes(out, files);
  const again = await evaluateDreamBench({ ...subset, out, resume: true });
  assert.deepEqual([again.metrics.run.generated, again.metrics.run.reused, again.metrics.run.resumed], [0, 8, true]);
  assert.deepEqual(await mtimes(out, files), before);
  assert.deepEqual(again.metrics.overall, metrics.overall);

  // A lost image is regenerated alone, identical to the first run's.
  const lost = join(out, 'images/backpack/00-1.png');
  const original = await rgb(lost);
  await unlink(lost);
  const repaired = await evaluateDreamBench({ ...subset, out, resume: true });
  assert.deepEqual([repaired.metrics.run.generated, repaired.metrics.run.reused], [1, 7]);
  assert.deepEqual(await rgb(lost), original);

  // An occupied --out is refused unless --resume (same evaluation) or --force.
  await assert.rejects(evaluateDreamBench({ ...subset, out }), /--out .*run already holds this DreamBench evaluation; pass --resume to continue it/);
  await assert.rejects(evaluateDreamBench({ ...subset, out, steps: 3, resume: true }), /--out .*run holds another DreamBench evaluation \(steps 3 here, 2 there\); --resume continues only the same one; pass --force/);
  await assert.rejects(evaluateDreamBench({ ...subset, out, resume: true, force: true }), /exclude each other/);
  const stranger = join(scratch, 'stranger');
  await mkdir(stranger);
  await writeFile(join(stranger, 'notes.txt'), 'mine');
  await assert.rejects(evaluateDreamBench({ ...subset, out: stranger, force: true }), /--out .*stranger is not empty and holds no DreamBench evaluation/);
  assert.equal(await readFile(join(stranger, 'notes.txt'), 'utf8'), 'mine');
  await writeFile(join(out, 'notes.txt'), 'kept');
  const forced = await evaluateDreamBench({ ...subset, out, force: true, prompts: 1, imagesPerPrompt: 1 });
  assert.deepEqual([forced.metrics.run.generated, forced.metrics.images], [2, 2]);
  assert.deepEqual((await readdir(join(out, 'images', 'cat'))).sort(), ['00-0.png']);
  assert.equal(await readFile(join(out, 'notes.txt'), 'utf8'), 'kept');
});

test('--workers 2 splits the prompts between two threads and saves the same images; impossible counts are refused before --out is made', { skip: availableParallelism() < 2 && 'needs 2 cores' }, async () => {
  const [one, two] = [join(scratch, 'workers-1'), join(scratch, 'workers-2')];
  const single = await evaluateDreamBench({ ...subset, out: one });
  const split = await evaluateDreamBench({ ...subset, out: two, workers: 2 });
  assert.equal(split.metrics.run.generated, 8);
  for (const record of single.records) assert.deepEqual(await rgb(join(two, record.file)), await rgb(join(one, record.file)), record.file);
  assert.deepEqual(split.metrics.overall, single.metrics.overall);

  const never = join(scratch, 'workers-refused');
  await assert.rejects(evaluateDreamBench({ ...subset, out: never, workers: availableParallelism() + 1 }), new RegExp(`--workers ${availableParallelism() + 1} exceeds this machine's ${availableParallelism()} CPU cores`));
  await assert.rejects(evaluateDreamBench({ ...subset, out: never, workers: 2, device: 'webgpu' }), /--workers splits the prompts between CPU threads; it needs --device cpu, not webgpu/);
  await assert.rejects(evaluateDreamBench({ ...subset, out: never, workers: 0 }), /--workers must be a positive integer, got 0/);
  await assert.rejects(stat(never), { code: 'ENOENT' });
});

test('model folders of the wrong kind for the row are refused before --out is touched', async () => {
  const variant = async (name: string, drop: readonly string[], className?: string) => {
    const dir = join(scratch, name);
    await cp(tiny, dir, { recursive: true });
    const index = JSON.parse(await readFile(join(dir, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    for (const key of drop) delete index[key];
    if (className) index['_class_name'] = className;
    await writeFile(join(dir, 'model_index.json'), JSON.stringify(index));
    return dir;
  };
  const textOnly = await variant('text-only', ['tokenizer', 'vision', 'connector', 'mllm', 'aligner'], 'StableDiffusionPipeline');
  const out = join(scratch, 'wrong-kind');
  await assert.rejects(evaluateDreamBench({ ...subset, model: textOnly, out }), /--model .*text-only is not a Kosmos-G pipeline folder \(StableDiffusionPipeline; model_index\.json lists no tokenizer, vision, connector, mllm, aligner\).*--baseline text/);
  const kosmosOnly = await variant('kosmos-only', ['text_encoder', 'clip_tokenizer']);
  await assert.rejects(evaluateDreamBench({ ...subset, model: kosmosOnly, out, baseline: 'text' }), /--model .*kosmos-only is not a text-to-image folder \(KosmosGPipeline; model_index\.json lists no text_encoder, clip_tokenizer\)/);
  await assert.rejects(stat(out), /ENOENT/);
});

test('the text baseline puts the class word where the image was; the oracle scores the other photos against the reference', async () => {
  const text = await evaluateDreamBench({ ...subset, out: join(scratch, 'text'), baseline: 'text', subjects: ['bear_plushie'], prompts: 1, imagesPerPrompt: 1 });
  assert.deepEqual(text.records.map((r) => [r.prompt, r.clipTPrompt, r.seed]), [['stuffed animal in the jungle', 'a stuffed animal in the jungle', 0]]);
  assert.equal(text.metrics.row, 'text');

  const oracle = await evaluateDreamBench({ data: shared, judges, out: join(scratch, 'oracle'), baseline: 'oracle', subjects: ['cat', 'backpack'], threads: 1 });
  assert.deepEqual(oracle.records.map((r) => r.file), ['images/backpack/00.jpg', 'images/backpack/01.jpg', 'images/backpack/03.jpg', 'images/backpack/04.jpg', 'images/backpack/05.jpg', 'images/cat/00.jpg', 'images/cat/01.jpg', 'images/cat/02.jpg', 'images/cat/03.jpg']);
  assert.ok(oracle.records.every((r) => r.source === 'data' && r.clipT === null && r.promptIndex === null));
  assert.equal(oracle.metrics.overall.clipT, null);
  assert.equal(oracle.metrics.run.generated, 0);
  assert.deepEqual(await readdir(join(scratch, 'oracle')).then((names) => names.sort()), ['eval.json', 'metrics.json', 'report.html', 'scores.csv']);
});

test('the random row scores as many photos of other subjects as the oracle has, drawn with the seed', async () => {
  const oracleCount = 9; // backpack 5 + cat 4 photos other than the references
  const random = await evaluateDreamBench({ data: shared, judges, out: join(scratch, 'random'), baseline: 'random', subjects: ['cat', 'backpack'], threads: 1 });
  assert.equal(random.records.length, oracleCount);
  assert.ok(random.records.every((r) => r.source === 'data' && !r.file.startsWith(`images/${r.subject}/`) && r.clipT === null));
  assert.equal(random.metrics.row, 'random');
  assert.equal(random.metrics.run.generated, 0);
  const again = await evaluateDreamBench({ data: shared, judges, out: join(scratch, 'random-again'), baseline: 'random', subjects: ['cat', 'backpack'], threads: 1 });
  assert.deepEqual(again.records.map((r) => r.file), random.records.map((r) => r.file));
  const otherSeed = await evaluateDreamBench({ data: shared, judges, out: join(scratch, 'random-seed'), baseline: 'random', subjects: ['cat', 'backpack'], seed: 7, threads: 1 });
  assert.notDeepEqual(otherSeed.records.map((r) => r.file), random.records.map((r) => r.file));
  assert.match(await readFile(join(scratch, 'random', 'report.html'), 'utf8'), /random images \(other subjects&apos; photos\)/);
});

test('eval dreambench from the command line: killed with SIGKILL mid-run, --resume keeps the saved images and finishes', async () => {
  const out = join(scratch, 'killed');
  const cli = resolve('dist/src/cli/main.js');
  const args = [cli, 'eval', 'dreambench', '--model', tiny, '--data', shared, '--out', out, '--judges', judges, '--subjects', 'backpack,cat', '--prompts', '3', '--images-per-prompt', '1', '--steps', '2', '--guidance', '3', '--threads', '1'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((done) => child.on('exit', () => done()));
  // Kill as soon as the first image is on disk.
  const first = join(out, 'images', 'backpack', '00-0.png');
  for (let waited = 0; !(await stat(first).catch(() => null)); waited += 20) {
    assert.ok(waited < 30_000 && child.exitCode === null, `no image after ${waited} ms: ${stderr}`);
    await new Promise((done) => setTimeout(done, 20));
  }
  child.kill('SIGKILL');
  await exited;
  const saved = (await readdir(join(out, 'images'), { recursive: true })).filter((name) => name.endsWith('.png'));
  assert.ok(saved.length >= 1 && saved.length < 6, `${saved.length} images before the kill`);
  assert.ok(!(await stat(join(out, 'metrics.json')).catch(() => null)), 'killed before scoring');
  const files = saved.map((name) => join('images', name));
  const before = await mtimes(out, files);
  const resumed = await evaluateDreamBench({ ...subset, subjects: ['backpack', 'cat'], prompts: 3, imagesPerPrompt: 1, out, resume: true });
  assert.deepEqual([resumed.metrics.run.reused, resumed.metrics.run.generated], [saved.length, 6 - saved.length]);
  assert.deepEqual(await mtimes(out, files), before);
});
