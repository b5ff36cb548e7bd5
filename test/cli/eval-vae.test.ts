// `eval vae`: a VAE folder measured alone on the evaluation scenes of the embedded world, the same
// figure `eval world-sd` reports for the pipeline around it; a folder without a world is refused.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratch, tinyPipeline } from '../pipeline/tiny.js';
import { assertOneLineError, runCli } from './run-cli.js';

test('eval vae reports the PSNR by split as text and JSON; --world must describe a world', async () => {
  const vae = join(await tinyPipeline(), 'vae');
  const text = await runCli(['eval', 'vae', '--vae', vae, '--vae-scenes', '2', '--threads', '1']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^VAE PSNR \d+\.\d\d dB over 4 scenes \(pooled \d+\.\d\d, worst \d+\.\d\)\n  train: \d+\.\d\d dB over 2 scenes .*\n  heldout: \d+\.\d\d dB over 2 scenes/);
  const json = await runCli(['eval', 'vae', '--vae', vae, '--vae-scenes', '2', '--threads', '1', '--json']);
  const report = JSON.parse(json.stdout) as { psnr: number; scenes: number; bySplit: Record<string, { psnr: number }> };
  assert.equal(report.scenes, 4);
  // The same scenes, the same figure.
  assert.equal(text.stdout.split(' ')[2], report.psnr.toFixed(2));
  assertOneLineError(await runCli(['eval', 'vae', '--vae', vae, '--world', join(scratch, 'nowhere')]), /has no world\.json: --world must be a pipeline folder/);
});
