// The fuzzer in the test suite: a bounded campaign over every target must find nothing (any
// uncaught exception, runtime error class, multi-line message, crash, hang or memory past the cap
// in a reader of untrusted input fails it); every input kept from earlier findings must now be
// refused (or accepted) cleanly; and the harness must turn each kind of misbehaviour into a
// finding and minimise it, so that a quiet campaign means something.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { replay, runCampaign } from '../../fuzz/campaign.js';
import { Random } from '../../fuzz/random.js';
import { CANARY_VARIANTS } from '../../fuzz/targets/canary.js';
import { DEFAULT_TARGETS } from '../../fuzz/targets/index.js';

const REGRESSIONS = fileURLToPath(new URL('../../../test/fuzz/regressions/', import.meta.url));
/**
 * The command's default caps: several times what the slowest clean case takes on busy cores, and
 * less than the kept hangs took before their fixes.
 */
const LIMITS = { timeMs: 10_000, memoryMb: 1024 };
/** Cases of the bounded pass, shared equally by the targets. */
const CASES = 3500;

test(`a ${CASES}-case campaign over every target finds nothing`, async () => {
  const report = await runCampaign({ ...LIMITS, cases: CASES, seed: 18, targets: DEFAULT_TARGETS, workers: 2, minimiseTests: 0, minimiseSeconds: 0 });
  assert.equal(report.cases, CASES);
  for (const target of DEFAULT_TARGETS) {
    const tally = report.tallies[target.name]!;
    assert.equal(tally.cases, CASES / DEFAULT_TARGETS.length, target.name);
    // Both outcomes occur: the seeds are valid inputs and the mutations make invalid ones.
    assert.ok(tally.accepted > 0 && tally.refused > 0, `${target.name}: ${tally.accepted} accepted, ${tally.refused} refused`);
    const variants = new Set((await target.seeds()).map((seed) => seed.variant));
    assert.deepEqual(Object.keys(tally.variants).sort(), [...variants].sort(), `${target.name}: every variant ran`);
  }
  const described = report.findings.map(({ target, variant, verdict, caseIndex }) => `${target}/${variant} case ${caseIndex}: ${verdict.kind} ${verdict.errorClass ?? ''} ${verdict.message}\n${verdict.stack ?? ''}`);
  assert.deepEqual(described, []);
});

test('every kept regression input is handled cleanly', async () => {
  const names = (await readdir(REGRESSIONS)).filter((name) => name.endsWith('.bin')).sort();
  assert.ok(names.length >= 10, `only ${names.length} regression inputs in ${REGRESSIONS}`);
  const files = await Promise.all(names.map(async (name) => ({ path: name, input: Uint8Array.from(await readFile(join(REGRESSIONS, name))) })));
  const results = await replay(files, { ...LIMITS, minimiseTests: 0, minimiseSeconds: 0 });
  const findings = results.filter(({ verdict }) => verdict.outcome === 'finding').map(({ path, verdict }) => `${path}: ${JSON.stringify(verdict)}`);
  assert.deepEqual(findings, []);
});

test('the harness reports each kind of misbehaviour and minimises its input to the trigger', async () => {
  const expected: Record<string, [kind: string, errorClass?: string]> = {
    crash: ['crash'],
    hang: ['hang'],
    memory: ['memory'],
    'type-error': ['internal-error', 'TypeError'],
    'string-throw': ['non-error-throw', 'string'],
    uncaught: ['uncaught', 'Error'],
    'multi-line': ['message', 'Error'],
  };
  assert.deepEqual(Object.keys(expected).sort(), [...CANARY_VARIANTS].sort());
  const files = CANARY_VARIANTS.map((variant) => ({ path: `canary.${variant}.kept.bin`, input: Uint8Array.from(Buffer.from('some ! input')) }));
  const results = await replay(files, { timeMs: 1500, memoryMb: 384, minimiseTests: 60, minimiseSeconds: 60 });
  for (const { path, verdict, finding } of results) {
    const variant = path.split('.')[1]!;
    assert.equal(verdict.outcome, 'finding', path);
    const [kind, errorClass] = expected[variant]!;
    assert.equal(verdict.outcome === 'finding' && verdict.kind, kind, path);
    if (errorClass) assert.equal(verdict.outcome === 'finding' && verdict.errorClass, errorClass, path);
    assert.equal(Buffer.from(finding!.minimised).toString(), '!', `${path} is minimised to the trigger`);
  }
  // Without the trigger the canary refuses cleanly, and so does the harness report it.
  const [clean] = await replay([{ path: 'canary.crash.clean.bin', input: Uint8Array.from(Buffer.from('calm input')) }], { ...LIMITS, minimiseTests: 0, minimiseSeconds: 0 });
  assert.deepEqual(clean!.verdict, { outcome: 'refused', message: 'no trigger in the input' });
});

test('a case is the same for the same seed, target and index, and differs for another seed', async () => {
  for (const target of DEFAULT_TARGETS) {
    const [seed] = await target.seeds();
    const make = (runSeed: number, index: number) => Buffer.from(target.mutate(seed!, Random.forCase(runSeed, target.name, index)));
    const cases = Array.from({ length: 8 }, (_, index) => make(1, index));
    assert.ok(cases.every((input, index) => input.equals(make(1, index))), target.name);
    assert.ok(cases.some((input, index) => !input.equals(make(2, index))), target.name);
  }
});
