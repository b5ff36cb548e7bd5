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
import { POSITION_CENTRES, POSITIONS, type Position } from '../world/vocabulary.js';
import type { World } from '../world/world.js';

/** Grey of the CLIP mean colour: an occluded cell carries no signal after normalisation. */
const OCCLUSION_RGB = [123, 117, 104] as const;

export function dot(a: Float32Array, b: Float32Array): number {
  let total = 0;
  for (let k = 0; k < a.length; k++) total += a[k]! * b[k]!;
  return total;
}

/** The nearest of the nine named positions to a centre (fractions of the canvas). */
export function nearestPosition(x: number, y: number): Position {
  let best: Position = 'centre';
  let bestDistance = Infinity;
  for (const position of POSITIONS) {
    const [px, py] = POSITION_CENTRES[position];
    const distance = (px - x) ** 2 + (py - y) ** 2;
    if (distance < bestDistance) [best, bestDistance] = [position, distance];
  }
  return best;
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
    const scores = this.conceptEmbeds.map((embed, index) => [dot(imageEmbed, embed), index] as const);
    scores.sort((a, b) => b[0] - a[0]);
    return scores.map(([, index]) => this.concepts[index]!);
  }

  /**
   * Where `concept` is in `image`: each cell of a grid×grid partition is greyed out in turn, and
   * the cell centres are averaged with weights max(0, drop in similarity to "a <concept>").
   * Returns the centre as fractions of the canvas ((0.5, 0.5) when no occlusion lowers the score).
   */
  async locate(image: RgbaImage, concept: string, grid = 4): Promise<{ x: number; y: number }> {
    const index = this.concepts.indexOf(concept);
    if (index < 0) throw new Error(`'${concept}' is not one of the probe's concepts`);
    const cell = image.width / grid;
    const occluded = Array.from({ length: grid * grid }, (_, k) => {
      const copy = { width: image.width, height: image.height, data: Uint8Array.from(image.data) };
      const [cx, cy] = [k % grid, Math.floor(k / grid)];
      for (let y = Math.round(cy * cell); y < Math.round((cy + 1) * cell); y++) {
        for (let x = Math.round(cx * cell); x < Math.round((cx + 1) * cell); x++) copy.data.set(OCCLUSION_RGB, (y * image.width + x) * 4);
      }
      return copy;
    });
    const [base, ...masked] = await this.embedImages([image, ...occluded]);
    const text = this.conceptEmbeds[index]!;
    const reference = dot(base!, text);
    let [total, sx, sy] = [0, 0, 0];
    masked.forEach((embed, k) => {
      const drop = Math.max(0, reference - dot(embed, text));
      total += drop;
      sx += drop * ((k % grid) + 0.5) / grid;
      sy += drop * (Math.floor(k / grid) + 0.5) / grid;
    });
    return total > 0 ? { x: sx / total, y: sy / total } : { x: 0.5, y: 0.5 };
  }

  async release(): Promise<void> {
    await Promise.all([this.imageSession.release(), this.textSession.release()]);
  }
}
