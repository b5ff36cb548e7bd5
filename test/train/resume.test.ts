// kill -9 at any moment, then --resume, must continue the identical run: the resumed log must hold
// exactly the losses of an uninterrupted run. Runs the real CLI on the tiny VAE config (also with
// weight EMA, whose averages must end bit-identical too) and on the tiny configs of the three
// Kosmos-G stages.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readStepLog } from '../../src/train/log.js';
import { latestCheckpoint, listCheckpoints, readCheckpointState } from '../../src/train/checkpoint.js';
import { createTinyChain } from './kosmos-g-tiny.js';
import { trainCli } from './train-cli.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

let scratch = '';
after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/**
 * Runs a tiny config whole, then killed after its first checkpoint and resumed; both logs must
 * agree. Returns both run folders (under `name`, the stage by default).
 */
async function checkResume(stage: string, tinyConfig: string, name = stage): Promise<{ whole: string; interrupted: string }> {
  const whole = join(scratch, `${name}-whole`);
  const interrupted = join(scratch, `${name}-interrupted`);

  const uninterrupted = await trainCli(stage, tinyConfig, whole, []);
  assert.equal(uninterrupted.code, 0, uninterrupted.stderr);
  const expected = await readStepLog(join(whole, 'log.jsonl'));
  const steps = (JSON.parse(await readFile(tinyConfig, 'utf8')) as { steps: number }).steps;
  assert.deepEqual(expected.map((record) => record.step), Array.from({ length: steps }, (_, i) => i + 1));

  // Killed right after the first checkpoint folder appears, mid-way through the following steps.
  const killed = await trainCli(stage, tinyConfig, interrupted, [], () => existsSync(join(interrupted, 'checkpoints', 'step-00000002')));
  assert.equal(killed.signal, 'SIGKILL', `the run finished before it could be killed:\n${killed.stderr}`);
  const beforeResume = await listCheckpoints(join(interrupted, 'checkpoints'));
  assert.ok(beforeResume.length > 0 && beforeResume.at(-1)!.step < steps, 'a checkpoint short of the end must exist');

  const resumed = await trainCli(stage, tinyConfig, interrupted, ['--resume']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming ${stage} from step ${beforeResume.at(-1)!.step}`));
  const actual = await readStepLog(join(interrupted, 'log.jsonl'));
  assert.deepEqual(
    actual.map(({ step, loss, gradNorm, lr }) => ({ step, loss, gradNorm, lr })),
    expected.map(({ step, loss, gradNorm, lr }) => ({ step, loss, gradNorm, lr })),
  );
  for (const file of ['loss.png', 'config.json', 'sessions.jsonl']) assert.ok(existsSync(join(interrupted, file)), `${file} is written`);

  // A finished run resumed again has nothing left to do and changes nothing.
  const again = await trainCli(stage, tinyConfig, interrupted, ['--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await readStepLog(join(interrupted, 'log.jsonl')), actual);
  return { whole, interrupted };
}

test('a run killed with SIGKILL and resumed logs the same losses as an uninterrupted run', async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-resume-'));
  await checkResume('vae', join(root, 'configs/train/vae-tiny.json'));
});

test('a run with weight EMA killed with SIGKILL and resumed ends with the same parameters, optimizer state and averages', async () => {
  scratch ||= await mkdtemp(join(tmpdir(), 'kosmos-g-resume-'));
  const config = join(scratch, 'vae-tiny-ema.json');
  const tiny = JSON.parse(await readFile(join(root, 'configs/train/vae-tiny.json'), 'utf8')) as Record<string, unknown>;
  // warmupSteps 1 and a 12-step run: the kill lands where the decay is already rising.
  await writeFile(config, JSON.stringify({ ...tiny, ema: { decay: 0.99, warmupSteps: 1 } }));
  const { whole, interrupted } = await checkResume('vae', config, 'vae-ema');
  const finalState = async (run: string) => readCheckpointState((await latestCheckpoint(join(run, 'checkpoints')))!);
  const [expected, actual] = [await finalState(whole), await finalState(interrupted)];
  assert.ok(Object.keys(actual.optimizer).some((name) => name.startsWith('ema.')), 'the checkpoint holds the averages');
  assert.deepEqual(actual, expected);
});

test('each Kosmos-G stage killed with SIGKILL and resumed logs the same losses as an uninterrupted run', { timeout: 600000 }, async () => {
  scratch ||= await mkdtemp(join(tmpdir(), 'kosmos-g-resume-'));
  const chain = await createTinyChain(join(scratch, 'kosmos-g'));
  for (const stage of ['kosmos-lm', 'kosmos-align', 'kosmos-instruct'] as const) await checkResume(stage, chain.configs[stage]);
});
