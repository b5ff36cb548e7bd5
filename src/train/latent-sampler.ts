// Text-to-image sampling from parameters held in memory (a training run's live U-Net), for sample
// grids: the LatentDiffusion loop of the pipelines — seeded per-image noise × init_noise_sigma,
// DPM-Solver++ over the training noise schedule, classifier-free guidance on a [uncond; cond]
// batch — with the U-Net compiled once with its parameters as inputs, then the frozen VAE decode.
import type { SessionOptions } from '../graph/session.js';
import { add, div } from '../graph/ops/elementwise.js';
import type { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import type { HostTensor } from '../onnx/dtype.js';
import { seededNoise } from '../pipeline/diffusion.js';
import { schedulerByName, type SchedulerConfig } from '../schedulers/index.js';
import type { RgbaImage } from '../world/image.js';
import { ForwardSession } from './forward.js';
import { tensorToImages } from './images.js';
import type { FrozenEncoders } from './unet.js';

export interface SamplerSettings {
  steps: number;
  guidanceScale: number;
  /** Image i starts from the noise of seed + i, as the pipelines seed a batch. */
  seed: number;
}

export class LatentSampler {
  private constructor(
    private readonly encoders: FrozenEncoders,
    private readonly schedulerConfig: SchedulerConfig,
    private readonly count: number,
    private readonly unetSession: ForwardSession,
    private readonly decodeSession: ForwardSession,
  ) {}

  /** Compiles the U-Net for 2·count samples (both guidance halves) and the VAE decoder for count. */
  static async create(unet: UNet2DConditionModel, encoders: FrozenEncoders, schedulerConfig: SchedulerConfig, count: number, session: SessionOptions): Promise<LatentSampler> {
    const [channels, side] = encoders.latentShape as [number, number, number];
    const text = encoders.textEncoder.config;
    const unetSession = await ForwardSession.create(
      unet,
      {
        sample: { dtype: 'float32', shape: [2 * count, channels, side, side] },
        timestep: { dtype: 'float32', shape: [] },
        encoder_hidden_states: { dtype: 'float32', shape: [2 * count, text.max_position_embeddings, text.hidden_size] },
      },
      (context, { sample, timestep, encoder_hidden_states }) => ({ noise_pred: unet.forward(context, sample!, timestep!, encoder_hidden_states!, { fusedAttention: true }) }),
      session,
    );
    const vae = encoders.vae;
    const decodeSession = await ForwardSession.create(
      vae,
      { latents: { dtype: 'float32', shape: [count, channels, side, side] } },
      (context, { latents }) => ({ image: vae.decode(context, add(div(latents!, vae.config.scaling_factor), vae.config.shift_factor ?? 0)) }),
      session,
    );
    return new LatentSampler(encoders, schedulerConfig, count, unetSession, decodeSession);
  }

  /** One image per caption (exactly `count` captions), guidance against the empty caption. */
  async generate(parameters: Readonly<Record<string, HostTensor>>, captions: readonly string[], settings: SamplerSettings): Promise<RgbaImage[]> {
    if (captions.length !== this.count) throw new Error(`the sampler was compiled for ${this.count} captions, got ${captions.length}`);
    const hidden = await this.encoders.encodeText([...captions.map(() => ''), ...captions]); // (2n, 77, D): [uncond; cond]
    return this.generateFromConditions(parameters, hidden, settings);
  }

  /** One image per condition from encoder_hidden_states (2·count, 77, D) = [unconditional; conditional]. */
  async generateFromConditions(parameters: Readonly<Record<string, HostTensor>>, hidden: HostTensor, settings: SamplerSettings): Promise<RgbaImage[]> {
    const n = this.count;
    if (hidden.shape[0] !== 2 * n) throw new Error(`the sampler was compiled for ${n} images, got ${hidden.shape[0]} conditions (expected ${2 * n})`);
    const shape = [n, ...this.encoders.latentShape];
    const perImage = shape.slice(1).reduce((p, q) => p * q, 1);
    const scheduler = schedulerByName('dpm++', this.schedulerConfig);
    scheduler.setTimesteps(settings.steps);
    let latents: Float32Array = seededNoise(settings.seed, shape).map((value) => value * scheduler.initNoiseSigma);
    for (const timestep of scheduler.timesteps) {
      const input = scheduler.scaleModelInput(latents, timestep);
      const doubled = new Float32Array(2 * n * perImage);
      doubled.set(input, 0);
      doubled.set(input, n * perImage);
      const { noise_pred } = await this.unetSession.run(parameters, {
        sample: { dtype: 'float32', shape: [2 * n, ...shape.slice(1)], data: doubled },
        timestep: { dtype: 'float32', shape: [], data: Float32Array.of(timestep) },
        encoder_hidden_states: hidden,
      });
      const prediction = noise_pred!.data as Float32Array;
      const guided = new Float32Array(n * perImage);
      for (let i = 0; i < guided.length; i++) {
        const unconditional = prediction[i]!;
        guided[i] = unconditional + settings.guidanceScale * (prediction[n * perImage + i]! - unconditional);
      }
      latents = scheduler.step(guided, timestep, latents).prevSample;
    }
    const { image } = await this.decodeSession.run(this.encoders.vae.stateDict(), { latents: { dtype: 'float32', shape, data: latents } });
    return tensorToImages(image!);
  }

  async release(): Promise<void> {
    await Promise.all([this.unetSession.release(), this.decodeSession.release()]);
  }
}
