// The plain CLIP-text Stable Diffusion path, the baseline of the evaluations: the prompt goes
// through the CLIP tokenizer (transformers' CLIPTokenizer: basic cleaning, 77 tokens, end-token
// padding, truncation) and the CLIP text encoder's last_hidden_state is the U-Net's condition; the
// unconditional condition encodes the negative prompt, or "" as diffusers does. Sampling, guidance,
// noise, ControlNet and LoRA are the shared LatentDiffusion loop. A prompt longer than the encoder
// reads is truncated as diffusers does, but not silently: the result carries a warning.
import { checkpointInitialized } from '../nn/layers.js';
import { Graph } from '../graph/graph.js';
import type { Device } from '../graph/devices.js';
import { Runtime } from '../graph/runtime.js';
import type { HostTensor } from '../onnx/dtype.js';
import { CLIPTextModel, parseClipTextConfig } from '../models/clip_text.js';

import { ClipTokenizer } from '../tokenizers/clip_bpe.js';
import { type GeneratedImage, LatentDiffusion, type SamplingOptions, type SamplingSettings } from './diffusion.js';
import { DIFFUSION_COMPONENTS, clipTokenizerComponent, readPipelineFolder, requireComponents } from './folder.js';
import { BoundModel, type WeightQuantization } from './weights.js';
import { readControlImage } from './controlnet.js';

export interface PipelineLoadOptions {
  /** cpu (default), webgpu, or auto (WebGPU when an adapter is found). */
  device?: Device;
  /** CPU threads per graph; default one per core. */
  threads?: number;
  /** Weight-only quantization of the linear layers (the text or condition networks and the U-Net), for CPU inference. */
  quantize?: WeightQuantization;
}

export interface TextToImageOptions extends SamplingOptions {
  prompt: string;
  negativePrompt?: string;
}

export interface GenerationResult {
  images: GeneratedImage[];
  /** Every setting the images depend on, defaults filled in. */
  settings: SamplingSettings & { prompt: string; negativePrompt: string };
  /** What the images do not reflect of the request (e.g. the part of a prompt past the encoder's tokens). */
  warnings: string[];
}

export class TextToImagePipeline {
  private constructor(
    readonly directory: string,
    readonly runtime: Runtime,
    readonly diffusion: LatentDiffusion,
    readonly textEncoder: BoundModel<CLIPTextModel>,
    readonly tokenizer: ClipTokenizer,
  ) {}

  /** Loads the CLIP-text path of a pipeline folder (a Kosmos-G folder with text_encoder + clip_tokenizer, or a Stable Diffusion folder). */
  static async fromPretrained(directory: string, options: PipelineLoadOptions = {}): Promise<TextToImagePipeline> {
    const folder = await readPipelineFolder(directory);
    const components = requireComponents(folder, [...DIFFUSION_COMPONENTS, 'text_encoder'], 'CLIP-text generation');
    const tokenizerComponent = clipTokenizerComponent(folder);
    if (!tokenizerComponent) throw new Error(`model folder ${directory} cannot be used for CLIP-text generation: model_index.json lists no clip_tokenizer`);
    const tokenizer = await ClipTokenizer.fromPretrained(tokenizerComponent.directory);
    const runtime = await Runtime.create({ device: options.device, threads: options.threads });
    try {
      const textEncoder = await BoundModel.open(
        'text_encoder',
        components.get('text_encoder')!.directory,
        (config) => new CLIPTextModel(parseClipTextConfig(config, 'text_encoder/config.json'), { random: checkpointInitialized }),
        undefined,
        { quantize: options.quantize },
      );
      try {
        const diffusion = await LatentDiffusion.load(
          runtime,
          { unet: components.get('unet')!.directory, vae: components.get('vae')!.directory, scheduler: components.get('scheduler')!.directory },
          { quantize: options.quantize },
        );
        if (textEncoder.model.config.vocab_size < tokenizer.vocabularySize) {
          throw new Error(`text_encoder has ${textEncoder.model.config.vocab_size} token embeddings, the CLIP tokenizer ${tokenizer.vocabularySize} ids`);
        }
        return new TextToImagePipeline(directory, runtime, diffusion, textEncoder, tokenizer);
      } catch (error) {
        await textEncoder.close();
        throw error;
      }
    } catch (error) {
      await runtime.dispose();
      throw error;
    }
  }

  /** CLIP last_hidden_state of `text`: (1, 77, hidden_size). */
  async encodePrompt(text: string): Promise<HostTensor> {
    const length = this.textEncoder.model.config.max_position_embeddings;
    const { ids } = this.tokenizer.encode(text, { contextLength: length, cleaning: 'basic' });
    const feeds = { input_ids: { dtype: 'int64' as const, shape: [1, length], data: BigInt64Array.from(ids.map(BigInt)) } };
    const session = await this.runtime.compile(
      'text_encoder',
      { input_ids: [1, length] },
      () => {
        const graph = new Graph('clip_text');
        const inputIds = graph.input('input_ids', 'int64', [1, length]);
        return graph.toModel({ last_hidden_state: this.textEncoder.model.forward(this.textEncoder.bind(graph), inputIds).lastHiddenState });
      },
      { externalData: this.textEncoder.externalData },
    );
    return (await session.run(feeds))['last_hidden_state']!;
  }

  /** A warning when `text` has more tokens than the text encoder reads (its positions less start and end). */
  truncationWarning(text: string, what: string): string | null {
    const readable = this.textEncoder.model.config.max_position_embeddings - 2;
    const tokens = this.tokenizer.tokenize(text, 'basic').length;
    return tokens > readable ? `the ${what} has ${tokens} tokens; the CLIP text encoder reads the first ${readable} and ignores the rest` : null;
  }

  async generate(options: TextToImageOptions): Promise<GenerationResult> {
    if (typeof options.prompt !== 'string') throw new Error('prompt must be a string');
    // The control image is read first: the output size follows it.
    const control = options.controlnet ? await readControlImage(options.controlnet) : undefined;
    const settings = this.diffusion.resolve(options, { scheduler: 'dpm++' }, control);
    const negativePrompt = options.negativePrompt ?? '';
    const warnings = [
      this.truncationWarning(options.prompt, 'prompt'),
      settings.guidanceScale > 1 ? this.truncationWarning(negativePrompt, 'negative prompt') : null,
    ].filter((warning): warning is string => warning !== null);
    const extras = await this.diffusion.prepare(settings, options, control);
    try {
      const condition = await this.encodePrompt(options.prompt);
      // Without guidance (g ≤ 1) the unconditional branch is never run.
      const unconditional = settings.guidanceScale > 1 ? await this.encodePrompt(negativePrompt) : condition;
      const images = await this.diffusion.sample(condition, unconditional, settings, options, extras);
      return { images, settings: { prompt: options.prompt, negativePrompt, ...settings }, warnings };
    } finally {
      await this.diffusion.releaseExtras(extras);
    }
  }

  async dispose(): Promise<void> {
    await Promise.all([this.diffusion.close(), this.textEncoder.close()]);
    await this.runtime.dispose();
  }
}
