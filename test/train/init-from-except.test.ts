// `initFromExcept`: a warm start across a changed interface. The named keys start from the model's
// own initialisation whatever the source holds (their source shapes unchecked); every other key
// must still match exactly, and a name the model lacks, or the option without initFrom, is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { readInitialParameters } from '../../src/train/checkpoint.js';
import { vaeConfigSchema } from '../../src/train/vae.js';

const tensor = (shape: number[], value: number): HostTensor => ({ dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value) });

test('keys named by initFromExcept keep their fresh values even with another shape in the source', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'init-from-except-'));
  try {
    // A model folder whose conv_in was made for 4 latent channels; the model now takes 8.
    const source = { 'conv_in.weight': tensor([2, 4], 1), 'mid.weight': tensor([3], 2) };
    const expected = { 'conv_in.weight': tensor([2, 8], 0), 'mid.weight': tensor([3], 0) };
    const importModel = async () => structuredClone(source);
    const { parameters, keptInitial } = await readInitialParameters(folder, 'unet', expected, { importModel, fresh: ['conv_in.weight'] });
    assert.deepEqual(keptInitial, ['conv_in.weight']);
    assert.deepEqual(parameters['conv_in.weight'], expected['conv_in.weight']);
    assert.deepEqual([...parameters['mid.weight']!.data], [2, 2, 2], 'the inner layer carries over');
    await assert.rejects(readInitialParameters(folder, 'unet', expected, { importModel }), /conv_in\.weight: float32 \[2, 4\] in the source, the model has float32 \[2, 8\]/);
    await assert.rejects(readInitialParameters(folder, 'unet', expected, { importModel, fresh: ['conv_out.weight'] }), /initFromExcept names conv_out\.weight, which this model does not have/);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('initFromExcept without initFrom is refused', async () => {
  const config = JSON.parse(await readFile(fileURLToPath(new URL('../../../configs/train/vae-tiny.json', import.meta.url)), 'utf8')) as Record<string, unknown>;
  assert.equal(vaeConfigSchema.safeParse(config).success, true);
  const parsed = vaeConfigSchema.safeParse({ ...config, initFromExcept: ['encoder.conv_in.weight'] });
  assert.equal(parsed.success, false);
  assert.match(JSON.stringify(parsed.error?.issues), /initFromExcept only applies with initFrom/);
  assert.equal(vaeConfigSchema.safeParse({ ...config, initFrom: 'runs/any', initFromExcept: ['encoder.conv_in.weight'] }).success, true);
});
