// `kosmos-g serve` as a user starts it: it prints its address, serves, and on SIGTERM finishes the
// running job, records the waiting one as cancelled and exits 0; bad flags are one-line errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { assertOneLineError, runCli } from '../cli/run-cli.js';
import { scratch, tinyPipeline } from '../pipeline/tiny.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('serve prints its address, and SIGTERM finishes the running job, cancels the waiting one and exits 0', async () => {
  const data = await mkdtemp(join(scratch, 'serve-cli-'));
  const child = spawn(process.execPath, [main, 'serve', '--model', await tinyPipeline(), '--port', '0', '--data', data, '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /serving .* at (http:\/\/127\.0\.0\.1:\d+)\//.exec(stdout);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  const post = (steps: number) =>
    fetch(`${url}/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', steps }) }).then(
      async (response) => ((await response.json()) as { id: string }).id,
    );
  const running = await post(40);
  const waiting = await post(2);
  // Wait until the first job has started, so the second is still waiting at SIGTERM.
  for (;;) {
    const status = (await (await fetch(`${url}/v1/generations/${running}`)).json()) as { state: string };
    if (status.state === 'running') break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  assert.match(stdout, /SIGTERM: finishing the running jobs/);
  const state = async (id: string) => (JSON.parse(await readFile(join(data, 'jobs', `${id}.json`), 'utf8')) as { state: string }).state;
  assert.equal(await state(running), 'done');
  assert.equal(await state(waiting), 'cancelled');
  assert.ok((await readdir(join(data, 'images'))).includes(`${running}-0.png`));
});

test('serve refuses bad flags with one line', async () => {
  const model = await tinyPipeline();
  assertOneLineError(await runCli(['serve', '--model', model, '--host', '0.0.0.0', '--port', '0', '--data', join(scratch, 'never')]), /refusing to bind 0\.0\.0\.0 without --api-key/);
  assertOneLineError(await runCli(['serve', '--model', model, '--port', '70000']), /--port must be an integer from 0 to 65535/);
  assertOneLineError(await runCli(['serve', '--model', model, '--lora', 'style']), /--lora takes NAME=PATH/);
  assertOneLineError(await runCli(['serve', '--model', model, '--lora', '../x=a.safetensors', '--port', '0', '--data', join(scratch, 'never')]), /LoRA name "\.\.\/x" must be/);
  assertOneLineError(await runCli(['serve', '--model', join(scratch, 'no-such-model'), '--port', '0']), /no-such-model/);
});
