// The generation memory estimate: it grows with the size, the number of images, guidance and a
// ControlNet; a request over the limit is refused with one line; --max-memory sizes parse.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkGenerationMemory, estimateGenerationMemory, parseByteSize, type GenerationRequest } from '../../src/pipeline/memory.js';

// kosmos-g-mini's shapes: U-Net channels 64/128/192, VAE 32/64/128 (4× downsampling) with mid-block attention.
const model = { unet: { block_out_channels: [64, 128, 192] }, vae: { block_out_channels: [32, 64, 128], mid_block_add_attention: true }, parameters: 6_000_000 };
const request: GenerationRequest = { width: 256, height: 256, numImages: 1, guided: true, controlnet: false };
const GiB = 2 ** 30;

test('the estimate grows with the size, the number of images, guidance and a ControlNet', () => {
  const base = estimateGenerationMemory(model, request);
  const larger = estimateGenerationMemory(model, { ...request, width: 512, height: 512 });
  // Four times the pixels: the U-Net's maps grow 4×, the VAE's attention scores 16× (its maps 4×).
  assert.equal(larger.unetStep, 4 * base.unetStep);
  assert.ok(larger.vaeDecode > 8 * base.vaeDecode, `${larger.vaeDecode} vs ${base.vaeDecode}`);
  const more = estimateGenerationMemory(model, { ...request, numImages: 4 });
  assert.equal(more.unetStep, 4 * base.unetStep);
  assert.equal(more.vaeDecode, 4 * base.vaeDecode);
  assert.ok(more.total > base.total);
  assert.equal(estimateGenerationMemory(model, { ...request, guided: false }).unetStep, base.unetStep / 2);
  assert.equal(estimateGenerationMemory(model, { ...request, controlnet: true }).unetStep, 2 * base.unetStep);
  assert.equal(base.weights, 4 * model.parameters);
  // 256×256: 64×64 latents, batch 2: 64 maps × 2 × 64 channels × 4096 positions × 4 bytes.
  assert.equal(base.unetStep, 64 * 2 * 64 * 4096 * 4);
  // One image: 4096² attention scores and 4 full-resolution maps of 64 channels, 4 bytes each.
  assert.equal(base.vaeDecode, (4096 * 4096 + 4 * 64 * 256 * 256) * 4);
});

test('a request over the limit is refused with one line naming the sizes; one under it passes', () => {
  const hostile = { ...request, width: 4096, height: 4096 };
  assert.throws(
    () => checkGenerationMemory(estimateGenerationMemory(model, hostile), hostile, 200 * 2 ** 20, 8 * GiB),
    (error: Error) =>
      /^1 image of 4096×4096 would need about [\d.]+ GiB of memory \(U-Net step [\d.]+ GiB, VAE decode [\d.]+ GiB, ×1\.5 margin, 200 MiB in use\), over the 8\.0 GiB limit; lower the size or the number of images, or raise --max-memory$/.test(error.message),
  );
  const many = { ...request, numImages: 64 };
  assert.throws(() => checkGenerationMemory(estimateGenerationMemory(model, many), many, 0, 8 * GiB), { message: /^64 images of 256×256 would need/ });
  const estimate = estimateGenerationMemory(model, request);
  checkGenerationMemory(estimate, request, 0, 8 * GiB);
  // The memory already in use counts: the same request is refused once the process holds the rest.
  assert.throws(() => checkGenerationMemory(estimate, request, 8 * GiB - estimate.total + 1, 8 * GiB), /over the 8\.0 GiB limit/);
});

test('--max-memory takes bytes with binary suffixes and refuses anything else', () => {
  assert.equal(parseByteSize('4G', '--max-memory'), 4 * GiB);
  assert.equal(parseByteSize('512M', '--max-memory'), 512 * 2 ** 20);
  assert.equal(parseByteSize('1.5GiB', '--max-memory'), 1.5 * GiB);
  assert.equal(parseByteSize('64k', '--max-memory'), 64 * 1024);
  assert.equal(parseByteSize('2000000000', '--max-memory'), 2_000_000_000);
  for (const bad of ['', '0', '-1G', '4X', 'G', 'lots', '1e400', '99999999T']) {
    assert.throws(() => parseByteSize(bad, '--max-memory'), { message: `--max-memory must be a size in bytes such as 4G, 512M or 2000000000, got '${bad}'` }, bad);
  }
});
