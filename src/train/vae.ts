// VAE-mini: an AutoencoderKL (diffusers layout, loadable by AutoencoderKL.fromPretrained) trained
// from scratch on world scenes. Loss as Stable Diffusion's autoencoder without the perceptual and
// adversarial terms (no LPIPS network or discriminator weights exist here):
//   SD:   Σ_pixels |x − x̂| / B  +  kl_weight · Σ_latent KL(q(z|x) ‖ N(0, I)) / B
//   here: the same divided by the pixel count 3·H·W, i.e. mean |x − x̂| + kl_weight · ΣKL / (B·3·H·W),
// so `klWeight` means what SD's kl_weight (1e-6) means while the reported loss stays per pixel.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { LossContext } from '../graph/train-step.js';
import type { Value } from '../graph/graph.js';
import { abs, add, exp, mean, mul, sub, sum } from '../graph/ops/elementwise.js';
import { writeSafetensors } from '../io/safetensors.js';
import { AutoencoderKL, parseAutoencoderKLConfig, type AutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { gaussianNoise } from '../models/gaussian_noise.js';
import { attributionMarkdown } from '../world/attribution.js';
import { contextFromValues } from '../nn/module.js';
import type { SessionOptions } from '../graph/session.js';
import { deriveSeed, Random } from '../util/random.js';
import { baseConfigSchema, modelConfigSchema } from './config.js';
import { ForwardSession } from './forward.js';
import { imageGridPng, imagesToTensor, tensorToImages } from './images.js';
import type { StageDefinition } from './stage.js';
import { EVAL_SCENE_SEED, openWorld, worldDataSchema, WorldStream } from './world-data.js';

export const vaeConfigSchema = baseConfigSchema.extend({
  stage: z.literal('vae'),
  /** diffusers AutoencoderKL config.json keys; sample_size is the side of the training scenes. */
  model: modelConfigSchema(parseAutoencoderKLConfig, 'model'),
  loss: z.strictObject({
    reconstruction: z.enum(['l1', 'mse']),
    /** Stable Diffusion's kl_weight (relative to per-sample sums; SD uses 1e-6). */
    klWeight: z.number().min(0),
  }),
  /**
   * false: train only the decoder side (post_quant_conv, decoder), as Stable Diffusion's ft-MSE
   * decoder was fine-tuned — latents, and so a U-Net trained on them, stay valid. Default true.
   */
  trainEncoder: z.boolean().optional(),
  data: worldDataSchema,
  /** Held-out scenes reconstructed in the sample grids. */
  previewCount: z.number().int().positive().default(8),
});

export type VaeConfig = z.output<typeof vaeConfigSchema>;

/** Scenes used to measure the latent scale when exporting. */
const SCALE_SCENES = 256;

function latentShape(config: AutoencoderKLConfig, batch: number): number[] {
  const side = config.sample_size / 2 ** (config.block_out_channels.length - 1);
  return [batch, config.latent_channels, side, side];
}

/** Parameter initialisation from the run seed: Kaiming-uniform weights as torch's layers do. */
function initialModel(config: AutoencoderKLConfig, seed: number): AutoencoderKL {
  const random = new Random(deriveSeed(seed, 0x1417));
  return new AutoencoderKL(config, { random });
}

/** Reconstruction loss plus the weighted KL term (header comment), a float32 scalar. */
export function vaeLoss(model: AutoencoderKL, loss: VaeConfig['loss'], { graph, parameters, batch }: LossContext): Value {
  const context = contextFromValues(graph, model, parameters);
  const image = batch['image']!; // (B, 3, H, W) in [−1, 1]
  const posterior = model.encode(context, image); // mean, logvar, std: (B, L, h, w)
  const reconstruction = model.decode(context, model.sample(posterior, batch['noise']!)); // (B, 3, H, W)
  const difference = sub(reconstruction, image);
  const reconstructionLoss = loss.reconstruction === 'l1' ? mean(abs(difference)) : mean(mul(difference, difference));
  if (loss.klWeight === 0) return reconstructionLoss;
  // KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²) per latent element, summed over all of them.
  const { mean: mu, logvar } = posterior;
  const kl = mul(sum(sub(add(mul(mu, mu), exp(logvar)), add(logvar, 1))), 0.5);
  const [batchSize, channels, height, width] = image.shape as number[];
  return add(reconstructionLoss, mul(kl, loss.klWeight / (batchSize! * channels! * height! * width!)));
}

/** A compiled image → (reconstruction, posterior mean) graph for batches of `batchSize`, parameters fed per run. */
export async function createReconstructor(model: AutoencoderKL, batchSize: number, session: SessionOptions = {}): Promise<ForwardSession> {
  const side = model.config.sample_size;
  return ForwardSession.create(
    model,
    { image: { dtype: 'float32', shape: [batchSize, model.config.in_channels, side, side] } },
    (context, { image }) => {
      const posterior = model.encode(context, image!);
      return { reconstruction: model.decode(context, posterior.mean), latents: posterior.mean };
    },
    session,
  );
}

/**
 * 1 / standard deviation of posterior means over `count` evaluation scenes: the scaling factor that
 * gives diffusion latents unit variance (how Stable Diffusion's 0.18215 was chosen).
 */
export async function measureScalingFactor(model: AutoencoderKL, stream: WorldStream, count: number, session: SessionOptions = {}): Promise<number> {
  const batchSize = 16;
  const reconstructor = await createReconstructor(model, batchSize, session);
  let [total, totalSquares, n] = [0, 0, 0];
  try {
    for (let start = 0; start < count; start += batchSize) {
      const images = Array.from({ length: batchSize }, (_, k) => stream.sample(start + k).target);
      const { latents } = await reconstructor.run(model.stateDict(), { image: imagesToTensor(images) });
      for (const value of latents!.data as Float32Array) {
        total += value;
        totalSquares += value * value;
        n++;
      }
    }
  } finally {
    await reconstructor.release();
  }
  const variance = totalSquares / n - (total / n) ** 2;
  return 1 / Math.sqrt(variance);
}

export const vaeStage: StageDefinition<VaeConfig> = {
  name: 'vae',
  description: 'VAE-mini (AutoencoderKL layout) on world scenes: L1/MSE reconstruction + KL',
  schema: vaeConfigSchema,

  async build(config, environment) {
    const world = await openWorld(config.data, config.model.sample_size, environment.report);
    const stream = new WorldStream(world, 't2i', config.data.seed, config.data.splits, config.data.splitSeed);
    const preview = new WorldStream(world, 't2i', EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed);
    const previewImages = Array.from({ length: config.previewCount }, (_, i) => preview.sample(i).target);
    const model = initialModel(config.model, config.seed);
    const side = config.model.sample_size;
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    let reconstructor: ForwardSession | null = null;
    const parameters = model.stateDict();
    return {
      parameters,
      ...(config.trainEncoder === false ? { trainable: Object.keys(parameters).filter((key) => !key.startsWith('encoder.') && !key.startsWith('quant_conv.')) } : {}),
      // Biases and GroupNorm scales/shifts are not decayed (the usual AdamW practice).
      noWeightDecay: (key) => key.endsWith('.bias') || /norm/.test(key),
      batchSpec: {
        image: { dtype: 'float32', shape: [config.batchSize, config.model.in_channels, side, side] },
        noise: { dtype: 'float32', shape: latentShape(config.model, config.batchSize) },
      },
      loss: (context) => vaeLoss(model, config.loss, context),
      async batch(step) {
        const images = stream.batch(step, config.batchSize).map((sample) => sample.target);
        // Posterior-sampling noise from (seed, step) alone.
        const noise = gaussianNoise(deriveSeed(config.seed ^ 0x7e5a, step), latentShape(config.model, config.batchSize));
        return { image: imagesToTensor(images), noise };
      },
      async sampleGrid(parameters) {
        reconstructor ??= await createReconstructor(model, previewImages.length, session);
        const { reconstruction } = await reconstructor.run(parameters, { image: imagesToTensor(previewImages) });
        return imageGridPng([previewImages, tensorToImages(reconstruction!)]);
      },
      async release() {
        await reconstructor?.release();
      },
    };
  },

  async exportModel(config, parameters, directory) {
    const model = initialModel(config.model, config.seed);
    model.loadStateDict(parameters);
    const world = await openWorld(config.data, config.model.sample_size, () => undefined);
    const stream = new WorldStream(world, 't2i', EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed);
    const scalingFactor = await measureScalingFactor(model, stream, SCALE_SCENES);
    await mkdir(directory, { recursive: true });
    const modelConfig = { _class_name: 'AutoencoderKL', ...config.model, scaling_factor: Number(scalingFactor.toPrecision(5)) };
    await writeFile(join(directory, 'config.json'), `${JSON.stringify(modelConfig, null, 2)}\n`);
    await writeSafetensors(join(directory, 'model.safetensors'), model.stateDict(), { dtype: 'F16' });
    const trainingStream = new WorldStream(world, 't2i', config.data.seed, config.data.splits, config.data.splitSeed);
    await writeFile(join(directory, 'ATTRIBUTION.md'), attributionMarkdown(world.catalog, { styles: trainingStream.styles(), patterns: true }));
  },

  /** A VAE folder, as `exportModel` writes it (the pipeline's `vae/`). */
  async importModel(_config, directory) {
    return (await AutoencoderKL.fromPretrained(directory)).stateDict();
  },
};

