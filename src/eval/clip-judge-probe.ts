// A transformers CLIPModel judge (models/judges/clip, or any CLIPModel folder) as the measuring
// instrument of `eval world-sd`, with the interface of the model's own CLIP-mini probe: normalised
// image and caption embeddings and zero-shot concept ranking with bare-subject prompts ("a cat").
// Images go through the judge's own CLIP preprocessing, as the DreamBench scores do.
import { fileURLToPath } from 'node:url';
import type { Device } from '../graph/devices.js';
import { Runtime } from '../graph/runtime.js';
import { subjectCaption } from '../train/captioned-scenes.js';
import { encodePng, type RgbaImage } from '../world/image.js';
import type { World } from '../world/world.js';
import { rankByDot } from './clip-mini-probe.js';
import { ClipJudge } from './judges.js';

/** The embedded judges folder of this package (dist/src/eval/ → the package root), as DEFAULT_MODEL is found. */
export const DEFAULT_JUDGES = fileURLToPath(new URL('../../../models/judges', import.meta.url));

/** What `eval world-sd` measures with: the model's CLIP-mini or an independent judge. */
export interface ConceptProbe {
  readonly concepts: readonly string[];
  embedImages(images: readonly RgbaImage[]): Promise<Float32Array[]>;
  embedTexts(captions: readonly string[]): Promise<Float32Array[]>;
  /** Concepts ranked by similarity to an image embedding, best first. */
  rankConcepts(imageEmbed: Float32Array): string[];
  release(): Promise<void>;
}

export class ClipJudgeProbe implements ConceptProbe {
  private constructor(
    private readonly runtime: Runtime,
    private readonly judge: ClipJudge,
    readonly concepts: readonly string[],
    private conceptEmbeds: Float32Array[],
  ) {}

  /** Loads a CLIPModel folder; `concepts` are the zero-shot classes. */
  static async open(directory: string, world: World, concepts: readonly string[], options: { device?: Device; threads?: number } = {}): Promise<ClipJudgeProbe> {
    const runtime = await Runtime.create({ device: options.device, threads: options.threads });
    try {
      const judge = await ClipJudge.load(directory, runtime, 16);
      const probe = new ClipJudgeProbe(runtime, judge, concepts, []);
      probe.conceptEmbeds = await judge.embedTexts(concepts.map((concept) => subjectCaption(world, concept)));
      return probe;
    } catch (error) {
      await runtime.dispose();
      throw error;
    }
  }

  async embedImages(images: readonly RgbaImage[]): Promise<Float32Array[]> {
    return this.judge.embedImages(await Promise.all(images.map((image) => encodePng(image))));
  }

  embedTexts(captions: readonly string[]): Promise<Float32Array[]> {
    return this.judge.embedTexts(captions);
  }

  rankConcepts(imageEmbed: Float32Array): string[] {
    return rankByDot(imageEmbed, this.conceptEmbeds, this.concepts);
  }

  async release(): Promise<void> {
    await this.judge.close();
    await this.runtime.dispose();
  }
}
