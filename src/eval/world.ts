// Evaluation of the world's "Stable Diffusion" components on scenes never trained on: they come
// from the evaluation seed, which training configs are not allowed to use.
import type { SessionOptions } from '../graph/session.js';
import type { AutoencoderKL } from '../models/autoencoder_kl.js';
import { imagesToTensor, tensorToImages } from '../train/images.js';
import { createReconstructor } from '../train/vae.js';
import { EVAL_SCENE_SEED, WorldStream } from '../train/world-data.js';
import type { RgbaImage } from '../world/image.js';
import type { SplitName } from '../world/splits.js';
import type { World } from '../world/world.js';

/** Per-scene MSE floor (in 8-bit units²): an exact reconstruction counts as 78.1 dB, not infinity. */
const MIN_MSE = 1e-3;

/** Mean squared error over the RGB channels of two images of one size, in 8-bit units. */
export function rgbMse(a: RgbaImage, b: RgbaImage): number {
  if (a.width !== b.width || a.height !== b.height) throw new Error(`images differ in size: ${a.width}×${a.height} vs ${b.width}×${b.height}`);
  let total = 0;
  for (let p = 0; p < a.data.length; p += 4) {
    for (let c = 0; c < 3; c++) {
      const d = a.data[p + c]! - b.data[p + c]!;
      total += d * d;
    }
  }
  return total / ((a.data.length / 4) * 3);
}

/** Peak signal-to-noise ratio in dB of an 8-bit MSE. */
export function psnrFromMse(mse: number): number {
  return 10 * Math.log10((255 * 255) / Math.max(mse, MIN_MSE));
}

export interface ReconstructionScore {
  scenes: number;
  /** Mean over scenes of each scene's PSNR (dB). */
  psnr: number;
  /** PSNR of the MSE pooled over every scene (dB). */
  pooledPsnr: number;
  /** The lowest per-scene PSNR (dB). */
  worstPsnr: number;
}

export interface VaeReconstructionReport extends ReconstructionScore {
  seed: number;
  bySplit: Partial<Record<SplitName, ReconstructionScore>>;
}

export interface VaeReconstructionOptions {
  /** Scenes per split (default 128). */
  scenesPerSplit?: number;
  /** Subject pools to draw scenes from (default: train and heldout). */
  splits?: readonly SplitName[];
  splitSeed?: number;
  batchSize?: number;
  session?: SessionOptions;
}

function score(mses: readonly number[]): ReconstructionScore {
  const psnrs = mses.map(psnrFromMse);
  return {
    scenes: mses.length,
    psnr: psnrs.reduce((a, b) => a + b, 0) / psnrs.length,
    pooledPsnr: psnrFromMse(mses.reduce((a, b) => a + b, 0) / mses.length),
    worstPsnr: Math.min(...psnrs),
  };
}

/**
 * VAE reconstruction PSNR on evaluation scenes: each 8-bit scene is encoded, its posterior mean
 * decoded and post-processed as Kosmos-G does (clamp(x/2 + 0.5, 0, 1), round(· 255)), and compared
 * with the scene in 8 bits.
 */
export async function vaeReconstructionPsnr(vae: AutoencoderKL, world: World, options: VaeReconstructionOptions = {}): Promise<VaeReconstructionReport> {
  const perSplit = options.scenesPerSplit ?? 128;
  const batchSize = Math.min(options.batchSize ?? 16, perSplit);
  const splits = options.splits ?? ['train', 'heldout'];
  const reconstructor = await createReconstructor(vae, batchSize, options.session);
  const parameters = vae.stateDict();
  const bySplit: Partial<Record<SplitName, ReconstructionScore>> = {};
  const all: number[] = [];
  try {
    for (const split of splits) {
      const stream = new WorldStream(world, 't2i', EVAL_SCENE_SEED, [split], options.splitSeed ?? 0);
      const mses: number[] = [];
      for (let start = 0; start < perSplit; start += batchSize) {
        // The last batch is filled up with the scenes after it and those extra scores dropped (fixed graph batch).
        const scenes = Array.from({ length: batchSize }, (_, k) => stream.sample(start + k).target);
        const { reconstruction } = await reconstructor.run(parameters, { image: imagesToTensor(scenes) });
        const decoded = tensorToImages(reconstruction!);
        for (let k = 0; k < batchSize && start + k < perSplit; k++) mses.push(rgbMse(scenes[k]!, decoded[k]!));
      }
      bySplit[split] = score(mses);
      all.push(...mses);
    }
  } finally {
    await reconstructor.release();
  }
  return { seed: EVAL_SCENE_SEED, ...score(all), bySplit };
}
