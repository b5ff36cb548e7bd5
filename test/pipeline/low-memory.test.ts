// KosmosGPipeline's low-memory option on the tiny random pipeline: the same images as the default
// path, every session released when its phase is over (nothing stays cached), and the phases
// reported in the order they ran; generate --low-memory on the command line.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import type { PhaseInfo } from '../../src/pipeline/phases.js';
import { assertOneLineError, runCli } from '../cli/run-cli.js';
import { sameBytes, scratch, tinyPipeline } from './tiny.js';

async function pattern(path: string, phase: number): Promise<string> {
  const pixels = Buffer.alloc(40 * 40 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 11 + phase * 53) % 256;
  await sharp(pixels, { raw: { width: 40, height: 40, channels: 3 } }).png().toFile(path);
  return path;
}

test('lowMemory gives the default path\'s images, releases every session, and reports each network\'s phase', async () => {
  const directory = await tinyPipeline();
  const images = [await pattern(join(scratch, 'low-a.png'), 1), await pattern(join(scratch, 'low-b.png'), 2)];
  const request = { prompt: '<i> wearing <i> on the beach', images, steps: 4, seed: 5, negativePrompt: 'blurry', previewEvery: 2 };
  const cached = await KosmosGPipeline.fromPretrained(directory, { threads: 1 });
  const lean = await KosmosGPipeline.fromPretrained(directory, { threads: 1, lowMemory: true });
  try {
    const expected = await cached.generate(request);
    assert.equal(cached.runtime.stats.sessions, 8); // vision, connector, MLLM and aligner twice (prompt, unconditional), U-Net, VAE
    const phases: PhaseInfo[] = [];
    const previews: number[] = [];
    for (let call = 0; call < 2; call++) {
      phases.length = 0;
      const { images: generated } = await lean.generate({ ...request, onPhase: (info) => phases.push(info), onStep: ({ preview }) => preview && previews.push(preview.length) });
      assert.ok(sameBytes(generated[0]!.data, expected.images[0]!.data), `call ${call + 1}`);
      assert.equal(lean.runtime.stats.sessions, 0);
    }
    assert.deepEqual(previews, [1, 1, 1, 1]);
    // The two previews' decodes run inside the U-Net's phase and report their own.
    assert.deepEqual(phases.map(({ phase }) => phase), ['vision', 'connector', 'mllm', 'aligner', 'mllm', 'aligner', 'vae', 'vae', 'unet', 'vae']);
    assert.ok(phases.every(({ ms }) => ms > 0));
    assert.equal(lean.runtime.stats.misses, 2 * 10);
  } finally {
    await Promise.all([cached.dispose(), lean.dispose()]);
  }
});

test('generate --low-memory writes the same image as without it; the CLIP-text pipeline refuses it', async () => {
  const directory = await tinyPipeline();
  const image = await pattern(join(scratch, 'low-cli.png'), 3);
  const common = ['generate', '--model', directory, '--prompt', '<i> on the beach', '--image', image, '--steps', '3', '--seed', '4', '--threads', '1'];
  const [plain, lean] = [join(scratch, 'cli-plain.png'), join(scratch, 'cli-lean.png')];
  for (const [out, extra] of [[plain, []], [lean, ['--low-memory']]] as const) {
    const result = await runCli([...common, ...extra, '--out', out]);
    assert.equal(result.code, 0, result.stderr);
  }
  assert.ok(sameBytes(await sharp(plain).raw().toBuffer(), await sharp(lean).raw().toBuffer()));
  assertOneLineError(await runCli(['generate', '--model', directory, '--pipeline', 'clip-text', '--prompt', 'a cat', '--low-memory', '--out', join(scratch, 'never.png')]), /--low-memory needs the kosmos-g pipeline/);
});
