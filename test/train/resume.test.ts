// kill -9 at any moment, then --resume, must continue the identical run: the resumed log must hold
// exactly the losses of an uninterrupted run. Runs the real CLI on the tiny VAE config.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readStepLog } from '../../src/train/log.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const tinyConfig = join(root, 'configs/train/vae-tiny.json');
// The world tests' sprite cache: small, and rendered once per machine.
const environment = { ...process.env, KOSMOS_G_CACHE: join(tmpdir(), 'kosmos-g-world-test-cache') };

let scratch = '';
after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs `train vae` on the tiny config; `killWhen` is polled and the child gets SIGKILL once it holds. */
function train(out: string, extra: string[], killWhen?: () => boolean): Promise<Finished> {
  const child = spawn(process.execPath, [cli, 'train', 'vae', '--config', tinyConfig, '--out', out, '--threads', '1', '--progress', 'none', ...extra], { env: environment });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const poll = killWhen
    ? setInterval(() => {
        if (killWhen()) child.kill('SIGKILL');
      }, 2)
    : undefined;
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      resolve({ code, signal, stderr });
    });
  });
}

test('a run killed with SIGKILL and resumed logs the same losses as an uninterrupted run', async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-resume-'));
  const whole = join(scratch, 'whole');
  const interrupted = join(scratch, 'interrupted');

  const uninterrupted = await train(whole, []);
  assert.equal(uninterrupted.code, 0, uninterrupted.stderr);
  const expected = await readStepLog(join(whole, 'log.jsonl'));
  const steps = (JSON.parse(await readFile(tinyConfig, 'utf8')) as { steps: number }).steps;
  assert.deepEqual(expected.map((record) => record.step), Array.from({ length: steps }, (_, i) => i + 1));

  // Killed right after the first checkpoint folder appears, mid-way through the following steps.
  const killed = await train(interrupted, [], () => existsSync(join(interrupted, 'checkpoints', 'step-00000002')));
  assert.equal(killed.signal, 'SIGKILL', `the run finished before it could be killed:\n${killed.stderr}`);
  const beforeResume = await listCheckpoints(join(interrupted, 'checkpoints'));
  assert.ok(beforeResume.length > 0 && beforeResume.at(-1)!.step < steps, 'a checkpoint short of the end must exist');

  const resumed = await train(interrupted, ['--resume']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming vae from step ${beforeResume.at(-1)!.step}`));
  const actual = await readStepLog(join(interrupted, 'log.jsonl'));
  assert.deepEqual(
    actual.map(({ step, loss, gradNorm, lr }) => ({ step, loss, gradNorm, lr })),
    expected.map(({ step, loss, gradNorm, lr }) => ({ step, loss, gradNorm, lr })),
  );
  for (const file of ['loss.png', 'config.json', 'sessions.jsonl']) assert.ok(existsSync(join(interrupted, file)), `${file} is written`);

  // A finished run resumed again has nothing left to do and changes nothing.
  const again = await train(interrupted, ['--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await readStepLog(join(interrupted, 'log.jsonl')), actual);
});
