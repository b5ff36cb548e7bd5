// The world DreamBench builder (data build --kind dreambench): its folder passes eval dreambench's
// reader unchanged, holds only held-out-style subjects in the counts asked for, is the same bytes
// from the same seed, and never replaces a folder unasked.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { readDreamBench } from '../../src/eval/dreambench-data.js';
import { readWorldDreamBench, WORLD_DREAMBENCH_FILE } from '../../src/eval/world-dreambench.js';
import { layoutColour } from '../../src/pipeline/control-maps.js';
import { HELD_OUT_STYLE } from '../../src/world/catalog.js';
import { buildTestDreamBench, DREAMBENCH_TEST_CACHE, DREAMBENCH_TEST_CONCEPTS } from './dreambench-fixture.js';

const scratch = await mkdtemp(join(tmpdir(), 'world-dreambench-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const first = join(scratch, 'first');
const summary = await buildTestDreamBench(first);

/** Every file of a folder by relative path. */
async function contents(directory: string): Promise<Map<string, Buffer>> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(directory.length + 1)).sort();
  return new Map(await Promise.all(files.map(async (file) => [file, await readFile(join(directory, file))] as const)));
}

test('the folder passes the DreamBench reader, with the subjects, images and prompts asked for', async () => {
  const data = await readDreamBench(first);
  const world = await readWorldDreamBench(data);
  assert.ok(world, 'a world DreamBench');
  assert.deepEqual(data.subjects.map((s) => s.subject), summary.subjects);
  assert.equal(data.subjects.length, 3);
  assert.ok(summary.subjects.includes('pizza'), 'the held-out concept is always among the subjects');
  for (const subject of data.subjects) {
    assert.ok(subject.images.length >= 4 && subject.images.length <= 6, `${subject.subject}: ${subject.images.length} images`);
    assert.equal(subject.reference, `images/${subject.subject}/00.png`);
    assert.equal(subject.live, ['cat', 'dog'].includes(subject.subject));
    assert.equal(subject.class, world.file.concepts[world.file.subjects[subject.subject]!.concept]!.name);
    for (const image of subject.images) {
      const { format, width, height } = await sharp(join(first, image)).metadata();
      assert.deepEqual([format, width, height], ['png', 64, 64]);
    }
  }
  // DreamBench's list layout: 25 each, the first 10 and the last 5 shared, the middle 10 differ.
  const { object, live } = data.inputPrompts;
  assert.deepEqual([object.length, live.length], [25, 25]);
  assert.deepEqual([object.slice(0, 10), object.slice(20)], [live.slice(0, 10), live.slice(20)]);
  assert.ok(object.slice(10, 20).every((prompt) => !live.includes(prompt)));
  assert.deepEqual([object[0], object[11], live[10], object[20], object[23]], ['{} in the snowy mountains', '{} on marble', '{} on leaves', '{} at the top left', 'a small {} at the bottom right']);
  assert.deepEqual([data.clipTPrompts.object[0], data.clipTPrompts.live[24]], ['a {} in the snowy mountains', 'a large {} in the centre']);
  assert.equal(data.dreamboothPrompts.object[23], 'a small {0} {1} at the bottom right');

  assert.deepEqual([world.multi.length, world.edits.length], [2, 2]);
  for (const item of world.multi) {
    assert.equal(item.prompt, `<i> and <i> ${item.background}`);
    assert.ok(item.subjects[0] !== item.subjects[1] && item.subjects.every((s) => summary.subjects.includes(s)));
    assert.equal(item.layout.length, 2);
  }
  for (const edit of world.edits) {
    // The world's edit phrasing (world/edits.ts), to one of the named backgrounds, from another.
    assert.ok([`change the background, ${edit.background}`, `put everything ${edit.background}`, `set the scene ${edit.background}`].includes(edit.instruction), edit.instruction);
    assert.equal(edit.prompt, `<i> ${edit.instruction}`);
    assert.notEqual(edit.background, edit.source_background);
    assert.ok(world.file.background_phrases.includes(edit.background) && world.file.background_phrases.includes(edit.source_background));
  }
  assert.deepEqual(JSON.parse(await readFile(join(first, 'world.json'), 'utf8')), { sceneSize: 64, concepts: DREAMBENCH_TEST_CONCEPTS, splits: ['heldout'], splitSeed: 0 });
  const attribution = await readFile(join(first, 'ATTRIBUTION.md'), 'utf8');
  assert.match(attribution, /\| openmoji \| `@iconify-json\/openmoji@[\d.]+` \| \[OpenMoji\]\(.*\) \| \[CC-BY-SA-4\.0\]/);
  assert.match(attribution, /Share-alike: material containing .*openmoji/);
});

test('only held-out-style subjects, each with one true scene per prompt and zero-shot prompts of every style of its concept', async () => {
  const world = (await readWorldDreamBench(await readDreamBench(first)))!;
  assert.deepEqual(Object.keys(world.file.concepts).sort(), [...DREAMBENCH_TEST_CONCEPTS].sort());
  assert.equal(world.file.concepts['red-apple']!.prompt, 'a red apple');
  for (const [name, subject] of Object.entries(world.file.subjects)) {
    assert.equal(subject.style, HELD_OUT_STYLE);
    assert.equal(subject.world_subject, `${HELD_OUT_STYLE}:${subject.concept}`);
    assert.equal(subject.style_word, 'openmoji');
    assert.equal(subject.scenes.length, 25);
    assert.deepEqual(subject.layouts, subject.scenes.map((_, p) => `layouts/${name}/${String(p).padStart(2, '0')}.png`));
    assert.equal(subject.style_prompts[HELD_OUT_STYLE], `an openmoji ${world.file.concepts[subject.concept]!.name}`);
    assert.ok(Object.keys(subject.style_prompts).length >= 4, `${name}: ${Object.keys(subject.style_prompts).join(', ')}`);
  }
});

test("each true scene's layout map is black but for its subjects' concept colours, where the scene shows them", async () => {
  const world = (await readWorldDreamBench(await readDreamBench(first)))!;
  const colours = async (file: string) => {
    const { data, info } = await sharp(join(first, file)).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [64, 64]);
    const seen = new Set<string>();
    for (let p = 0; p < data.length; p += info.channels) seen.add(`${data[p]},${data[p + 1]},${data[p + 2]}`);
    return [...seen].sort();
  };
  const expected = (concepts: string[]) => ['0,0,0', ...concepts.map((concept) => layoutColour(concept).join(','))].sort();
  for (const subject of Object.values(world.file.subjects)) assert.deepEqual(await colours(subject.layouts![3]!), expected([subject.concept]));
  for (const item of world.multi) assert.deepEqual(await colours(item.layout_map!), expected(item.subjects.map((name) => world.file.subjects[name]!.concept)));
  for (const item of world.edits) assert.deepEqual(await colours(item.layout_map!), expected([world.file.subjects[item.subject]!.concept]));
});

test('a world DreamBench missing a true scene, or whose world files disagree with its subjects, is refused in one line', async () => {
  const copy = join(scratch, 'broken');
  await cp(first, copy, { recursive: true });
  const subject = summary.subjects[0]!;
  await unlink(join(copy, 'scenes', subject, '03.png'));
  await assert.rejects(readWorldDreamBench(await readDreamBench(copy)), new RegExp(`^Error: world DreamBench .*broken: it names images that do not exist or lie outside the folder: scenes/${subject}/03\\.png$`));
  const multi = JSON.parse(await readFile(join(copy, 'multi.json'), 'utf8')) as { subjects: string[] }[];
  multi[0]!.subjects[1] = 'dog4';
  await writeFile(join(copy, 'multi.json'), JSON.stringify(multi));
  await assert.rejects(readWorldDreamBench(await readDreamBench(copy)), /multi\.json item 0 names unknown subjects dog4/);
  await rm(join(copy, 'edits.json'));
  await assert.rejects(readWorldDreamBench(await readDreamBench(copy)), /world DreamBench .*broken is missing edits\.json/);
});

test('the same seed gives the same bytes, another seed other scenes, and a subject does not depend on the others drawn', async () => {
  const again = join(scratch, 'again');
  await buildTestDreamBench(again);
  const [a, b] = [await contents(first), await contents(again)];
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [file, bytes] of a) assert.ok(bytes.equals(b.get(file)!), `${file} differs`);
  const other = await contents((await buildTestDreamBench(join(scratch, 'other'), { seed: 1 })).out);
  assert.ok(!other.get('scenes/cat/00.png')!.equals(a.get('scenes/cat/00.png')!));
  const more = await contents((await buildTestDreamBench(join(scratch, 'more'), { subjects: 5, multi: 0, edits: 0 })).out);
  for (const [file, bytes] of a) if (/^(images|scenes)\//.test(file)) assert.ok(more.get(file)?.equals(bytes), `${file} changed with more subjects`);
});

test('an existing --out is refused unless --force, and --force replaces only a world DreamBench', async () => {
  await assert.rejects(buildTestDreamBench(first), /--out .*first already exists; pass --force to replace it/);
  await buildTestDreamBench(first, { force: true, seed: 1 });
  assert.equal(JSON.parse(await readFile(join(first, WORLD_DREAMBENCH_FILE), 'utf8')).seed, 1);
  const stranger = join(scratch, 'stranger');
  await mkdir(stranger);
  await writeFile(join(stranger, 'notes.txt'), 'mine');
  await assert.rejects(buildTestDreamBench(stranger, { force: true }), /--out .*stranger is not a world DreamBench/);
  assert.deepEqual(await readdir(stranger), ['notes.txt']);
  assert.deepEqual((await readdir(scratch)).filter((name) => name.startsWith('.')), [], 'no temporary folders left beside --out');
});

test('data build --kind dreambench from the command line writes the same folder; other kinds still need --n', async () => {
  const run = promisify(execFile);
  const cli = resolve('dist/src/cli/main.js');
  const worldFile = join(scratch, 'world.json');
  await writeFile(worldFile, JSON.stringify({ sceneSize: 64, concepts: DREAMBENCH_TEST_CONCEPTS, splits: ['train', 'heldout'], splitSeed: 0 }));
  const out = join(scratch, 'cli');
  const { stdout } = await run(process.execPath, [cli, 'data', 'build', '--kind', 'dreambench', '--out', out, '--subjects', '3', '--multi', '2', '--edits', '2', '--world', worldFile, '--cache', DREAMBENCH_TEST_CACHE]);
  assert.match(stdout, /world DreamBench: 3 subjects \(\d+ reference images\), 2 two-subject prompts, 2 edits ->/);
  const [built, expected] = [await contents(out), await contents(join(scratch, 'again'))];
  assert.deepEqual([...built.keys()], [...expected.keys()]);
  for (const [file, bytes] of built) assert.ok(bytes.equals(expected.get(file)!), `${file} differs`);
  await assert.rejects(run(process.execPath, [cli, 'data', 'build', '--kind', 'dreambench', '--out', out, '--world', worldFile, '--cache', DREAMBENCH_TEST_CACHE]), /already exists; pass --force/);
  await assert.rejects(run(process.execPath, [cli, 'data', 'build', '--kind', 't2i', '--out', join(scratch, 't2i')]), /--n is required for --kind t2i/);
});
