// Captioned scenes for the text–image stages (CLIP-mini, U-Net-mini) and their evaluation: sample
// i of a stream is a pure function of (seed, i). A share of the samples are single-subject scenes,
// and some of those are captioned with the bare subject ("a noto cat", "a cat"), the phrasing of
// zero-shot classification prompts. The scene spec comes along, so evaluation knows where each
// subject was drawn.
import { z } from 'zod';
import { captionScene, styleWord } from '../world/caption.js';
import { DEFAULT_MAX_OVERLAP, renderScene, sampleScene, tryMoveSubject, type PlacedSubject, type SceneSpec } from '../world/scene.js';
import { makeSplits, splitPool, type SplitName } from '../world/splits.js';
import type { RgbaImage } from '../world/image.js';
import type { World } from '../world/world.js';
import { deriveSeed, Random } from '../util/random.js';

export const captionedScenesSchema = z.strictObject({
  /** Fraction of samples that are single-subject scenes. */
  singleSubjectFraction: z.number().min(0).max(1).default(0.3),
  /** Fraction of single-subject samples captioned with the bare subject instead of the scene caption. */
  shortCaptionFraction: z.number().min(0).max(1).default(0.5),
  /**
   * Fraction of sample pairs (2k, 2k + 1) that are position twins: the same background and
   * subjects at the same sizes, every subject at another position, both captioned in full with
   * the same phrasing. In a contrastive batch each twin is the other's hard negative, which only
   * the position words tell apart — without them CLIP-mini's text encoder learns to ignore those
   * words, and a U-Net conditioned on it cannot place subjects.
   */
  positionTwinFraction: z.number().min(0).max(1).optional(),
  /**
   * Subject ids (`style:concept`) never drawn: a judge leaves out the subjects it will judge, so that its figures on them are held-out figures.
   */
  excludeSubjects: z.array(z.string().regex(/^[^:]+:[^:]+$/, 'a subject id is style:concept')).optional(),
  /** Draw only subjects and scene-emoji backgrounds of these styles (the scenes of a style LoRA). */
  styles: z.array(z.string().min(1)).min(1).optional(),
});

export type CaptionedScenesConfig = z.output<typeof captionedScenesSchema>;

/** `world.json` of a model folder: the world (scene size, concept subset, split pools) its models were trained on. */
export const WORLD_FILE = 'world.json';

export interface WorldDescription {
  sceneSize: number;
  concepts: string[];
  splits: SplitName[];
  splitSeed: number;
}

export interface CaptionedScene {
  image: RgbaImage;
  caption: string;
  spec: SceneSpec;
  /** Set on both members of a position-twin pair (samples 2k and 2k + 1). */
  positionTwin?: true;
}

/** The bare-subject caption of a concept: "a cat", or with its style word "a noto cat". */
export function subjectCaption(world: World, concept: string, style?: string): string {
  const name = world.catalog.conceptById.get(concept)?.names[0];
  if (name === undefined) throw new Error(`unknown concept '${concept}'`);
  const words = style === undefined ? name : `${styleWord(world, style)} ${name}`;
  return `${/^[aeiou]/i.test(words) ? 'an' : 'a'} ${words}`;
}

export class CaptionedSceneStream {
  readonly subjects: readonly string[];
  readonly backgroundStyles: readonly string[];

  constructor(
    readonly world: World,
    readonly seed: number,
    splits: readonly SplitName[],
    splitSeed: number,
    private readonly options: CaptionedScenesConfig,
  ) {
    const manifest = makeSplits(world.catalog, splitSeed);
    const pools = splits.map((split) => splitPool(world.catalog, manifest, split));
    const excluded = new Set(options.excludeSubjects ?? []);
    const unknown = [...excluded].filter((id) => !world.catalog.subjectById.has(id));
    if (unknown.length) throw new Error(`excludeSubjects names subjects this world does not have: ${unknown.join(', ')}`);
    const unknownStyles = (options.styles ?? []).filter((style) => !world.catalog.styleById.has(style));
    if (unknownStyles.length) throw new Error(`styles names styles this world does not have: ${unknownStyles.join(', ')}`);
    const inStyle = (style: string) => options.styles?.includes(style) ?? true;
    this.subjects = [...new Set(pools.flatMap((pool) => pool.subjects))].filter((id) => !excluded.has(id) && inStyle(world.catalog.subjectById.get(id)!.style)).sort();
    this.backgroundStyles = [...new Set(pools.flatMap((pool) => pool.backgroundStyles))].filter(inStyle).sort();
    if (this.subjects.length === 0) throw new Error(`the ${splits.join(' + ')} split has no subjects${options.styles ? ` of style ${options.styles.join(', ')}` : ''} in this catalog`);
  }

  /** Concepts the stream draws, sorted. */
  concepts(): string[] {
    return [...new Set(this.subjects.map((subject) => this.world.catalog.subjectById.get(subject)!.concept))].sort();
  }

  /** Styles whose artwork the stream's scenes can contain (subjects and scene-emoji backgrounds). */
  styles(): string[] {
    return [...new Set([...this.subjects.map((subject) => this.world.catalog.subjectById.get(subject)!.style), ...this.backgroundStyles])].sort();
  }

  sample(index: number): CaptionedScene {
    const pair = Math.floor(index / 2);
    const twinFraction = this.options.positionTwinFraction ?? 0;
    if (twinFraction > 0 && new Random(deriveSeed(this.seed ^ 0x7a11, pair)).chance(twinFraction)) {
      const twin = this.positionTwin(pair, index % 2);
      if (twin) return twin;
    }
    const rng = new Random(deriveSeed(this.seed, index));
    const single = rng.chance(this.options.singleSubjectFraction);
    const spec = this.sampleSpec(rng, single);
    const { image } = renderScene(this.world, spec);
    const subject = spec.subjects[0]!;
    const caption =
      single && rng.chance(this.options.shortCaptionFraction)
        ? subjectCaption(this.world, subject.concept, rng.chance(0.5) ? subject.style : undefined)
        : captionScene(this.world, spec, rng).text;
    return { image, caption, spec };
  }

  /** A scene of `subject` alone (any of this stream's subjects) on one of the stream's backgrounds, uncaptioned. */
  subjectScene(subject: string, rng: Random): { image: RgbaImage; spec: SceneSpec } {
    if (!this.subjects.includes(subject)) throw new Error(`${subject} is not among this stream's subjects`);
    const spec = sampleScene(this.world, rng, { subjects: [subject], backgroundStyles: this.backgroundStyles, maxOverlap: DEFAULT_MAX_OVERLAP, maxSubjects: 1 });
    return { image: renderScene(this.world, spec).image, spec };
  }

  /** A scene of the stream's subjects and backgrounds; `single`: exactly one subject. */
  private sampleSpec(rng: Random, single: boolean): SceneSpec {
    return sampleScene(this.world, rng, {
      subjects: this.subjects,
      backgroundStyles: this.backgroundStyles,
      maxOverlap: DEFAULT_MAX_OVERLAP,
      ...(single ? { maxSubjects: 1 } : {}),
    });
  }

  /** Member 0 or 1 of position-twin pair `pair`, or null when the subjects find no other free positions. */
  private positionTwin(pair: number, member: number): CaptionedScene | null {
    const rng = new Random(deriveSeed(this.seed ^ 0x7a12, pair));
    // Single-subject twins in the stream's proportion: there only the position words tell the
    // captions apart, with no subject to bind them to (the form of the position prompts).
    const spec = this.sampleSpec(rng, rng.chance(this.options.singleSubjectFraction));
    const moved: PlacedSubject[] = [];
    for (const subject of spec.subjects) {
      const taken = new Set([subject.position, ...moved.map((placed) => placed.position)]);
      const placed = tryMoveSubject(this.world, this.world.sceneSize, subject, moved, taken, rng, DEFAULT_MAX_OVERLAP);
      if (!placed) return null;
      moved.push(placed);
    }
    // Both members are worked out to the same layouts; only the requested one is rendered.
    const layout = member === 0 ? spec : { ...spec, subjects: moved };
    const caption = captionScene(this.world, layout, new Random(deriveSeed(this.seed ^ 0x7a13, pair))).text;
    return { image: renderScene(this.world, layout).image, caption, spec: layout, positionTwin: true };
  }

  /**
   * Scene `index` of a separate sequence of scenes with exactly `subjects` subjects, captioned in
   * full (evaluation prompts with a known layout).
   */
  sceneWith(subjects: 1 | 2 | 3, index: number): CaptionedScene {
    const rng = new Random(deriveSeed(deriveSeed(this.seed, 0x5ce0 + subjects), index));
    const spec = sampleScene(this.world, rng, {
      subjects: this.subjects,
      backgroundStyles: this.backgroundStyles,
      maxOverlap: DEFAULT_MAX_OVERLAP,
      minSubjects: subjects,
      maxSubjects: subjects,
    });
    return { image: renderScene(this.world, spec).image, caption: captionScene(this.world, spec, rng).text, spec };
  }

  /** The samples of 1-based training step `step`: indices (step − 1)·B … step·B − 1. */
  batch(step: number, batchSize: number): CaptionedScene[] {
    return Array.from({ length: batchSize }, (_, k) => this.sample((step - 1) * batchSize + k));
  }
}
