// Kosmos-G's condition encoder: an interleaved prompt and its images → the (1, 77, d) condition the
// U-Net reads in place of CLIP text states, and the unconditional one for classifier-free guidance
// (official `encode_condition`):
//   condition     = M(MLLM([<s>] + Σ_i (text_i + <image>×(Q+1) + </image>) + tail, image latents))
//   unconditional = M(MLLM([<s>] + tokens(negative prompt)))   — [<s>] alone for an empty one
// The pipeline folder holds `tokenizer/`, `vision/`, `connector/`, `mllm/` and `aligner/`.
import { join } from '#platform';
import type { Runtime } from '../graph/runtime.js';
import type { HostTensor } from '../onnx/dtype.js';
import { type KosmosTokenizer, loadKosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { type ConditionRunOptions, KosmosGConditionModel } from './condition_model.js';
import type { WeightQuantization } from './weights.js';
import { type ImageLimits, type ImageSource, preprocessImages } from './images.js';
import { type InterleavedPrompt, buildInterleavedPrompt, buildUnconditionalPrompt, checkImageCount } from './prompt.js';

/** An image given to the encoder: a file path, a data URL, or encoded bytes (a Buffer is a Uint8Array). */
export type ImageInput = ImageSource;

export interface ConditionEncoderOptions {
  runtime: Runtime;
  /** Release each network's session right after it ran (see KosmosGConditionModel). */
  lowMemory?: boolean;
  /** Weight-only quantization of the networks' linear layers. */
  quantize?: WeightQuantization | undefined;
  /** Size limits applied to every input image. */
  imageLimits?: ImageLimits;
}

function int64Row(ids: readonly number[]): HostTensor {
  return { dtype: 'int64', shape: [1, ids.length], data: BigInt64Array.from(ids, (id) => BigInt(id)) };
}

export class KosmosGConditionEncoder {
  private constructor(
    readonly tokenizer: KosmosTokenizer,
    readonly model: KosmosGConditionModel,
    private readonly imageLimits: ImageLimits,
  ) {}

  static async fromPipelineFolder(directory: string, options: ConditionEncoderOptions): Promise<KosmosGConditionEncoder> {
    const tokenizer = await loadKosmosTokenizer(join(directory, 'tokenizer'));
    const model = await KosmosGConditionModel.fromPipelineFolder(directory, { runtime: options.runtime, lowMemory: options.lowMemory, quantize: options.quantize });
    return KosmosGConditionEncoder.fromParts(tokenizer, model, options.imageLimits);
  }

  /** From a tokenizer and networks built elsewhere; checks that the tokenizer's ids fit the MLLM. */
  static fromParts(tokenizer: KosmosTokenizer, model: KosmosGConditionModel, imageLimits: ImageLimits = {}): KosmosGConditionEncoder {
    if (tokenizer.vocabularySize > model.vocabularySize) {
      throw new Error(`the tokenizer has ${tokenizer.vocabularySize} ids but the MLLM's embedding only ${model.vocabularySize} rows`);
    }
    return new KosmosGConditionEncoder(tokenizer, model, imageLimits);
  }

  /** Q: latent vectors per image (64 in the paper). */
  get queries(): number {
    return this.model.queries;
  }

  /** (77, d) of the aligner output. */
  get conditionShape(): [number, number] {
    return this.model.conditionShape;
  }

  /** The token layout of a prompt with `imageCount` images (throws if the `<i>` count differs). */
  layout(prompt: string, imageCount: number): InterleavedPrompt {
    return buildInterleavedPrompt(prompt, imageCount, this.tokenizer, this.queries);
  }

  /** (1, 77, d): the condition for `prompt`, whose `<i>` placeholders take `images` in order. */
  async encode(prompt: string, images: readonly ImageInput[], options: ConditionRunOptions = {}): Promise<HostTensor> {
    if (typeof prompt !== 'string') throw new Error('the prompt must be a string');
    // The count is checked before any image is decoded.
    checkImageCount(prompt, images.length);
    const layout = this.layout(prompt, images.length);
    const tokens = int64Row(layout.tokens);
    if (images.length === 0) return (await this.model.encodeTokens(tokens, undefined, options)).condition;
    const pixels = await preprocessImages(images, this.model.imageSize, this.imageLimits);
    const latents = await this.model.imageLatents(pixels, options);
    const mask: HostTensor = { dtype: 'bool', shape: [1, layout.tokens.length], data: Uint8Array.from(layout.imageMask, Number) };
    return (await this.model.encodeTokens(tokens, { mask, latents }, options)).condition;
  }

  /** (1, 77, d): M(MLLM([<s>])), or M(MLLM([<s>] + tokens(negativePrompt))) for a non-empty negative prompt. */
  async encodeUnconditional(negativePrompt = '', options: ConditionRunOptions = {}): Promise<HostTensor> {
    return (await this.model.encodeTokens(int64Row(buildUnconditionalPrompt(this.tokenizer, negativePrompt)), undefined, options)).condition;
  }
}

/**
 * encode_condition's guidance batch: cat([unconditional × (B·n), condition.repeat(n)]) along the
 * batch axis, for unconditional (1, 77, d), conditions (B, 77, d) and n images per prompt. The
 * first half is what the U-Net's unconditional prediction reads.
 */
export function guidanceConditionBatch(unconditional: HostTensor, condition: HostTensor, imagesPerPrompt = 1): HostTensor<'float32'> {
  const [batch, ...rest] = condition.shape as [number, ...number[]];
  if (unconditional.shape.join() !== [1, ...rest].join()) {
    throw new Error(`unconditional [${unconditional.shape.join(', ')}] does not match one condition [1, ${rest.join(', ')}]`);
  }
  if (!Number.isInteger(imagesPerPrompt) || imagesPerPrompt < 1) throw new Error(`images per prompt must be a positive integer, got ${imagesPerPrompt}`);
  const rowSize = rest.reduce((a, b) => a * b, 1);
  const rows = batch * imagesPerPrompt;
  const data = new Float32Array(2 * rows * rowSize);
  for (let row = 0; row < rows; row++) data.set(unconditional.data as Float32Array, row * rowSize);
  // torch's repeat(n, 1, 1) tiles the whole batch n times.
  for (let copy = 0; copy < imagesPerPrompt; copy++) data.set(condition.data as Float32Array, (rows + copy * batch) * rowSize);
  return { dtype: 'float32', shape: [2 * rows, ...rest], data };
}
