// The shipped judges (models/judges) as instruments: on subjects they never trained on, the
// oracle row (the subject's own true scenes; on real DreamBench its other photos) scores clearly
// above the random row (other subjects' images) in DINO and CLIP-I, on a small world DreamBench
// and on real DreamBench subjects.
import test from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_JUDGES } from '../../src/eval/clip-judge-probe.js';
import { evaluateDreamBench } from '../../src/eval/dreambench.js';
import { buildTestDreamBench } from '../world/dreambench-fixture.js';

const scratch = await mkdtemp(join(tmpdir(), 'shipped-judges-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

/** The oracle and random rows' overall DINO and CLIP-I on `data`. */
async function rows(data: string, name: string, selection: { subjects?: string[]; prompts?: number } = {}) {
  const score = async (baseline: 'oracle' | 'random') =>
    (await evaluateDreamBench({ data, judges: DEFAULT_JUDGES, out: join(scratch, `${name}-${baseline}`), baseline, threads: 1, ...selection })).metrics.overall;
  return { oracle: await score('oracle'), random: await score('random') };
}

test('world DreamBench: the true scenes score clearly above other subjects\' true scenes', { timeout: 600000 }, async () => {
  const bench = join(scratch, 'bench');
  await buildTestDreamBench(bench, { subjects: 6, multi: 1, edits: 1 });
  const { oracle, random } = await rows(bench, 'world', { prompts: 10 });
  assert.ok(oracle.dino! > random.dino! + 10, `DINO oracle ${oracle.dino} vs random ${random.dino}`);
  assert.ok(oracle.clipI! > random.clipI! + 5, `CLIP-I oracle ${oracle.clipI} vs random ${random.clipI}`);
});

test('real DreamBench: a subject\'s other photos score above other subjects\' photos', { timeout: 600000 }, async () => {
  const { oracle, random } = await rows(resolve('../shared/dreambench'), 'real', { subjects: ['backpack', 'can', 'cat', 'clock', 'dog', 'teapot', 'vase', 'duck_toy'] });
  assert.ok(oracle.dino! > random.dino!, `DINO oracle ${oracle.dino} vs random ${random.dino}`);
  assert.ok(oracle.clipI! > random.clipI!, `CLIP-I oracle ${oracle.clipI} vs random ${random.clipI}`);
});
