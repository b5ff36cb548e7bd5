// Reconstruction PSNR: the metric itself, and a run of the evaluation on a small random VAE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AutoencoderKL, parseAutoencoderKLConfig } from '../../src/models/autoencoder_kl.js';
import { psnrFromMse, rgbMse, vaeReconstructionPsnr } from '../../src/eval/world.js';
import { Random } from '../../src/util/random.js';
import { testWorld } from '../world/fixture.js';

test('PSNR of 8-bit RGB images ignores alpha and caps exact matches', () => {
  const a = { width: 2, height: 1, data: Uint8Array.of(10, 20, 30, 255, 0, 0, 0, 0) };
  const b = { width: 2, height: 1, data: Uint8Array.of(13, 20, 30, 0, 0, 0, 3, 255) };
  assert.equal(rgbMse(a, b), 3);
  assert.equal(psnrFromMse(255 * 255), 0);
  assert.ok(Math.abs(psnrFromMse(65.025) - 30) < 1e-9);
  assert.ok(Math.abs(psnrFromMse(rgbMse(a, a)) - 78.13) < 0.01);
  assert.throws(() => rgbMse(a, { width: 1, height: 2, data: a.data }), /differ in size/);
});

test('VAE reconstruction PSNR on evaluation scenes of each split', async () => {
  const world = await testWorld();
  const config = parseAutoencoderKLConfig({
    in_channels: 3, out_channels: 3, down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
    block_out_channels: [8, 16], layers_per_block: 1, act_fn: 'silu', latent_channels: 4, norm_num_groups: 4, sample_size: world.sceneSize, scaling_factor: 1,
  });
  const random = new Random(3);
  const vae = new AutoencoderKL(config, { random: { next: () => random.next() } });
  const report = await vaeReconstructionPsnr(vae, world, { scenesPerSplit: 5, batchSize: 2, session: { threads: 1 } });
  assert.equal(report.scenes, 10);
  assert.deepEqual(Object.keys(report.bySplit), ['train', 'heldout']);
  for (const split of Object.values(report.bySplit)) assert.equal(split.scenes, 5);
  // Jensen: the mean of per-scene PSNRs is at least the PSNR of the pooled MSE; an untrained VAE is poor.
  assert.ok(report.worstPsnr <= report.pooledPsnr && report.pooledPsnr <= report.psnr, JSON.stringify(report));
  assert.ok(report.psnr > 0 && report.psnr < 20, `untrained VAE PSNR ${report.psnr}`);
  assert.deepEqual(await vaeReconstructionPsnr(vae, world, { scenesPerSplit: 5, batchSize: 2, session: { threads: 1 } }), report);
});
