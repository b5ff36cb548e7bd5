// CLIP-mini as a measuring instrument: normalised image and caption embeddings of a pipeline
// folder's text_encoder + vision, zero-shot concept ranking with bare-subject prompts ("a cat"),
// and subject localisation by occlusion: the centre of mass of how much the similarity to the
// concept's prompt drops when each cell of a grid is greyed out.
import { join } from 'node:path';
import type { SessionOptions } from '../graph/session.js';
import type { HostTensor } from '../onnx/dtype.js';
import { ClipTokenizer } from '../tokenizers/clip_bpe.js';
import { ClipMini, imagesToClipPixels } from '../train/clip-model.js';
import { encodeCaptions } from '../train/clip.js';
import { subjectCaption } from '../train/captioned-scenes.js';
import { ForwardSession } from '../train/forward.js';
import type { RgbaImage } from '../world/image.js';
import type { World } from '../world/world.js';

export function dot(a: Float32Array, b: Float32Array): number {
  let total = 0;
  for (let k = 0; k < a.length; k++) total += a[k]! * b[k]!;
  return total;
}

/** `names` ranked by the dot product of their embeddings with `embed`, best first. */
export function rankByDot(embed: Float32Array, candidates: readonly Float32Array[], names: readonly string[]): string[] {
  const scores = candidates.map((candidate, index) => [dot(embed, candidate), index] as const);
  scores.sort((a, b) => b[0] - a[0]);
  return scores.map(([, index]) => names[index]!);
}

export class ClipMiniProbe {
  private conceptEmbeds: Float32Array[] = [];

  private constructor(
    readonly model: ClipMini,
    private readonly tokenizer: ClipTokenizer,
    private readonly imageSession: ForwardSession,
    private readonly textSession: ForwardSession,
    private readonly batchSize: number,
    readonly concepts: readonly string[],
  ) {}

  /** Loads `text_encoder/`, `vision/` and `clip_tokenizer/` of a pipeline folder; `concepts` are the zero-shot classes. */
  static async open(directory: string, world: World, concepts: readonly string[], session: SessionOptions, batchSize = 16): Promise<ClipMiniProbe> {
    const model = await ClipMini.load(join(directory, 'text_encoder'), join(directory, 'vision'));
    const tokenizer = await ClipTokenizer.fromPretrained(join(directory, 'clip_tokenizer'));
    const side = model.visionConfig.vision_cfg.image_size;
    const tokens = model.textConfig.max_position_embeddings;
    const imageSession = await ForwardSession.create(model, { pixel_values: { dtype: 'float32', shape: [batchSize, 3, side, side] } }, (context, { pixel_values }) => ({ embeds: model.embedImages(context, pixel_values!) }), session);
    const textSession = await ForwardSession.create(model, { input_ids: { dtype: 'int64', shape: [batchSize, tokens] } }, (context, { input_ids }) => ({ embeds: model.embedTexts(context, input_ids!) }), session);
    const probe = new ClipMiniProbe(model, tokenizer, imageSession, textSession, batchSize, concepts);
    probe.conceptEmbeds = await probe.embedTexts(concepts.map((concept) => subjectCaption(world, concept)));
    return probe;
  }

  /** Runs `session` over `items` in batches of the compiled size (the last one padded with its first item). */
  private async batched<T>(items: readonly T[], session: ForwardSession, feed: (chunk: readonly T[]) => Record<string, HostTensor>): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let start = 0; start < items.length; start += this.batchSize) {
      const chunk = items.slice(start, start + this.batchSize);
      const padded = [...chunk, ...Array.from({ length: this.batchSize - chunk.length }, () => chunk[0]!)];
      const embeds = (await session.run(this.model.stateDict(), feed(padded)))['embeds']!.data as Float32Array;
      const dim = embeds.length / this.batchSize;
      for (let k = 0; k < chunk.length; k++) out.push(embeds.slice(k * dim, (k + 1) * dim));
    }
    return out;
  }

  embedImages(images: readonly RgbaImage[]): Promise<Float32Array[]> {
    return this.batched(images, this.imageSession, (chunk) => ({ pixel_values: imagesToClipPixels(chunk) }));
  }

  /** Captions at 77 tokens, as the text-to-image pipeline encodes prompts. */
  embedTexts(captions: readonly string[]): Promise<Float32Array[]> {
    return this.batched(captions, this.textSession, (chunk) => ({ input_ids: encodeCaptions(this.tokenizer, chunk, this.model.textConfig.max_position_embeddings) }));
  }

  /** Concepts ranked by similarity to an image embedding, best first. */
  rankConcepts(imageEmbed: Float32Array): string[] {
    return rankByDot(imageEmbed, this.conceptEmbeds, this.concepts);
  }

  async release(): Promise<void> {
    await Promise.all([this.imageSession.release(), this.textSession.release()]);
  }
}
