// `eval judges`: ROC AUC by ranks against hand-computed cases, and the command end to end on a
// small world DreamBench and the real DreamBench photos with tiny random judges (every figure a
// fraction, the pair counts as the data gives them, an existing report kept unless --force).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { rocAuc, type JudgeQuality } from '../../src/eval/judge-quality.js';
import { DREAMBENCH_TEST_CACHE, buildTestDreamBench } from '../world/dreambench-fixture.js';
import { writeTinyJudges } from './tiny-judges.js';

const run = promisify(execFile);
const scratch = await mkdtemp(join(tmpdir(), 'judge-quality-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

test('ROC AUC: separation, reversal, ties and a mixed case', () => {
  assert.equal(rocAuc([3, 4], [1, 2]), 1);
  assert.equal(rocAuc([1, 2], [3, 4]), 0);
  assert.equal(rocAuc([1, 1], [1, 1, 1]), 0.5);
  assert.equal(rocAuc([1, 3], [2]), 0.5);
  // Pairs (p, n): (2,1) 1, (2,2) ½, (3,1) 1, (3,2) 1 → 3.5 / 4.
  assert.equal(rocAuc([2, 3], [1, 2]), 0.875);
  assert.throws(() => rocAuc([], [1]), /needs positives and negatives/);
});

test('eval judges end to end: held-out world subjects and real photos, figures in range, no silent overwrite', { timeout: 180000 }, async () => {
  const bench = join(scratch, 'bench');
  const judges = join(scratch, 'judges');
  await buildTestDreamBench(bench);
  await writeTinyJudges(judges);
  const out = join(scratch, 'out');
  const cli = resolve('dist/src/cli/main.js');
  const args = [cli, 'eval', 'judges', '--judges', judges, '--data', bench, '--real', resolve('../shared/dreambench'), '--out', out, '--views', '2', '--threads', '1'];
  const env = { ...process.env, KOSMOS_G_CACHE: DREAMBENCH_TEST_CACHE };
  const { stdout } = await run(process.execPath, args, { env });
  assert.match(stdout, /DINO: AUC other subjects 0\.\d{3}/);
  const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')) as JudgeQuality;
  assert.equal(metrics.heldOutSubjects, 3);
  assert.equal(metrics.positives, 3 * 25);
  assert.equal(metrics.negatives, 3 * 25 * 2);
  assert.ok(metrics.sameConceptNegatives > 0 && metrics.sameConceptNegatives % 2 === 0);
  for (const quality of [metrics.dino, metrics.clipImage]) {
    for (const value of Object.values(quality)) assert.ok(value >= 0 && value <= 1);
  }
  assert.ok(metrics.clipZeroShot.conceptTop1 >= 0 && metrics.clipZeroShot.conceptTop1 <= 1 && metrics.clipZeroShot.images === 75);
  assert.equal(metrics.real!.images, 158);
  for (const value of [metrics.real!.dino.aucOtherSubjects, metrics.real!.dino.aucSameClass, metrics.real!.clipImage.aucOtherSubjects]) assert.ok(value >= 0 && value <= 1);

  await assert.rejects(run(process.execPath, args, { env }), (error: { stderr: string }) => /metrics\.json already exists; pass --force to replace it/.test(error.stderr));
  await run(process.execPath, [...args, '--force'], { env });
});
