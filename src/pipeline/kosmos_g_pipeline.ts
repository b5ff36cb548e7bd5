// KosmosGPipeline: an interleaved prompt ("<i> wearing <i> on the beach" + two images) → images.
// The condition is the aligner's M(MLLM(prompt with image latents)), (1, 77, d), a drop-in for the
// CLIP text states; the unconditional condition is M(MLLM([<s>] + negative prompt)) (reference §5,
// condition.ts). Both go to the shared LatentDiffusion loop: CFG batch [uncond × n, cond × n],
// seeded platform-independent noise, the chosen scheduler (DPM-Solver++ by default, as the demo),
// VAE decode with clamp(x/2 + 0.5, 0, 1)·255, optional ControlNet and LoRA.
//
// Memory: by default every compiled graph stays cached for the next call. At the paper's size that
// is every network at once, the MLLM twice (the prompt and the unconditional pass are two graphs):
// more than 16 GB by the per-phase peaks `npm run bench -- kosmos-g` measures. `lowMemory` runs one
// network at a time instead, each session released when its phase is over, so the peak is the
// largest network (the MLLM: 4.8 GiB measured) plus activations, at the price of compiling every
// graph again on each call. On glibc, start the process with MALLOC_MMAP_THRESHOLD_=131072: malloc
// otherwise keeps released weights on its heap (3 GB measured after the condition networks).
import { Runtime } from '../graph/runtime.js';
import type { HostTensor } from '../onnx/dtype.js';
import { type ImageInput, KosmosGConditionEncoder } from './condition.js';
import { LatentDiffusion, type SamplingOptions } from './diffusion.js';
import { KOSMOS_G_COMPONENTS, readPipelineFolder, requireComponents } from './folder.js';
import { checkImageCount } from './prompt.js';
import type { GenerationResult, PipelineLoadOptions } from './text_to_image.js';
import { readControlImage } from './controlnet.js';

export interface KosmosGLoadOptions extends PipelineLoadOptions {
  /** Release each network's session as soon as its phase is over (see the file comment). */
  lowMemory?: boolean;
}

export interface KosmosGGenerateOptions extends SamplingOptions {
  /** Text with one `<i>` placeholder per image, in order. */
  prompt: string;
  images?: readonly ImageInput[];
  negativePrompt?: string;
}

export class KosmosGPipeline {
  private constructor(
    readonly directory: string,
    readonly runtime: Runtime,
    readonly encoder: KosmosGConditionEncoder,
    readonly diffusion: LatentDiffusion,
  ) {}

  static async fromPretrained(directory: string, options: KosmosGLoadOptions = {}): Promise<KosmosGPipeline> {
    const folder = await readPipelineFolder(directory);
    const components = requireComponents(folder, KOSMOS_G_COMPONENTS, 'Kosmos-G generation');
    const runtime = await Runtime.create({ device: options.device, threads: options.threads });
    try {
      const lowMemory = options.lowMemory ?? false;
      const { quantize } = options;
      const encoder = await KosmosGConditionEncoder.fromPipelineFolder(directory, { runtime, lowMemory, quantize });
      const diffusion = await LatentDiffusion.load(
        runtime,
        { unet: components.get('unet')!.directory, vae: components.get('vae')!.directory, scheduler: components.get('scheduler')!.directory },
        { lowMemory, quantize },
      );
      const [, width] = encoder.conditionShape;
      if (width !== diffusion.crossAttentionDim) {
        await diffusion.close();
        throw new Error(`the aligner's output is ${width} wide but the U-Net cross-attends to ${diffusion.crossAttentionDim}`);
      }
      return new KosmosGPipeline(directory, runtime, encoder, diffusion);
    } catch (error) {
      await runtime.dispose();
      throw error;
    }
  }

  /** The (1, 77, d) condition and unconditional condition of a prompt. */
  async encode(prompt: string, images: readonly ImageInput[], negativePrompt = ''): Promise<{ condition: HostTensor; unconditional: HostTensor }> {
    const condition = await this.encoder.encode(prompt, images);
    const unconditional = await this.encoder.encodeUnconditional(negativePrompt);
    return { condition, unconditional };
  }

  async generate(options: KosmosGGenerateOptions): Promise<GenerationResult & { settings: { images: number } }> {
    if (typeof options.prompt !== 'string') throw new Error('prompt must be a string');
    const images = options.images ?? [];
    // Every user error is raised before any image is decoded or any graph runs.
    checkImageCount(options.prompt, images.length);
    // The control image is read first: the output size follows it.
    const control = options.controlnet ? await readControlImage(options.controlnet) : undefined;
    const settings = this.diffusion.resolve(options, { scheduler: 'dpm++' }, control);
    const negativePrompt = options.negativePrompt ?? '';
    const extras = await this.diffusion.prepare(settings, options, control);
    try {
      const phases = { onPhase: options.onPhase };
      const condition = await this.encoder.encode(options.prompt, images, phases);
      // Without guidance (g ≤ 1) the unconditional branch is never run.
      const unconditional = settings.guidanceScale > 1 ? await this.encoder.encodeUnconditional(negativePrompt, phases) : condition;
      const generated = await this.diffusion.sample(condition, unconditional, settings, options, extras);
      return { images: generated, settings: { prompt: options.prompt, negativePrompt, images: images.length, ...settings }, warnings: [] };
    } finally {
      await this.diffusion.releaseExtras(extras);
    }
  }

  async dispose(): Promise<void> {
    await this.diffusion.close();
    await this.runtime.dispose();
  }
}
