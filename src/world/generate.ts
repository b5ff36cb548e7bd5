// On-the-fly sample generation: sample i of a (kind, split, seed) stream is a pure function of
// those four values, so shards and live generation produce identical samples.
import { captionScene } from './caption.js';
import { applyEdit, EDIT_KINDS, type EditKind } from './edits.js';
import {
  buildComposeSample,
  buildEditSample,
  buildTextToImageSample,
  LayoutSegmenter,
  LexiconExtractor,
  type EntityExtractor,
  type InterleavedSample,
  type SampleKind,
  type Segmenter,
} from './instruct.js';
import { deriveSeed, Random } from '../util/random.js';
import { DEFAULT_MAX_OVERLAP, renderScene, sampleScene, type RenderedScene, type SceneSpec } from './scene.js';
import { makeSplits, splitPool, type SplitManifest, type SplitName, type SplitPool } from './splits.js';
import type { World } from './world.js';

export const SAMPLE_KINDS = ['t2i', 'edit', 'compose'] as const;

/** Stage-3 mixture of the paper: text-to-image : edits : compositional = 1 : 2 : 2. */
export const STAGE3_MIXTURE: Readonly<Record<SampleKind, number>> = { t2i: 1, edit: 2, compose: 2 };

export type StreamKind = SampleKind | 'mix';

export function parseStreamKind(name: string): StreamKind {
  if (name === 'mix' || (SAMPLE_KINDS as readonly string[]).includes(name)) return name as StreamKind;
  throw new Error(`unknown sample kind '${name}'; expected one of ${[...SAMPLE_KINDS, 'mix'].join(', ')}`);
}

export interface GeneratorOptions {
  kind: StreamKind;
  split: SplitName;
  seed: number;
  splitSeed?: number;
  /** Side of entity crops in compose samples (defaults to the scene size). */
  cropSize?: number;
  maxOverlap?: number;
  /** Replace the default lexicon extractor (e.g. with a language model). */
  extractor?: EntityExtractor;
  /** Replace the default render-mask segmenter (e.g. with a segmentation model). */
  segmenter?: (scene: RenderedScene) => Segmenter;
}

export class SampleGenerator {
  readonly splits: SplitManifest;
  readonly pool: SplitPool;
  private readonly extractor: EntityExtractor;
  private readonly cropSize: number;

  constructor(
    readonly world: World,
    readonly options: GeneratorOptions,
  ) {
    this.splits = makeSplits(world.catalog, options.splitSeed);
    this.pool = splitPool(world.catalog, this.splits, options.split);
    this.extractor = options.extractor ?? new LexiconExtractor(world.lexicon);
    this.cropSize = options.cropSize ?? world.sceneSize;
  }

  private scene(rng: Random): RenderedScene {
    const spec = sampleScene(this.world, rng, { subjects: this.pool.subjects, backgroundStyles: this.pool.backgroundStyles, ...this.overlap() });
    return renderScene(this.world, spec);
  }

  private overlap(): { maxOverlap: number } {
    return { maxOverlap: this.options.maxOverlap ?? DEFAULT_MAX_OVERLAP };
  }

  kindOf(index: number): SampleKind {
    if (this.options.kind !== 'mix') return this.options.kind;
    const rng = new Random(deriveSeed(this.options.seed ^ 0x5bd1e995, index));
    return SAMPLE_KINDS[rng.weighted(SAMPLE_KINDS.map((k) => STAGE3_MIXTURE[k]))] as SampleKind;
  }

  sample(index: number): InterleavedSample {
    if (!Number.isInteger(index) || index < 0) throw new Error(`sample index must be a non-negative integer, got ${index}`);
    const rng = new Random(deriveSeed(this.options.seed, index));
    const kind = this.kindOf(index);
    // Rejections (no entity segmented, edit that does not fit) draw again from the same stream.
    for (let attempt = 0; attempt < 16; attempt++) {
      const made = kind === 't2i' ? this.textToImage(rng) : kind === 'edit' ? this.edit(rng) : this.compose(rng);
      if (made) return made;
    }
    throw new Error(`could not build a ${kind} sample for index ${index}; the ${this.options.split} subject pool may be too small`);
  }

  private textToImage(rng: Random): InterleavedSample {
    const scene = this.scene(rng);
    const caption = captionScene(this.world, scene.spec, rng);
    return buildTextToImageSample(scene.image, caption.text, subjectIds(scene.spec), [scene.spec.background]);
  }

  private compose(rng: Random): InterleavedSample | null {
    const scene = this.scene(rng);
    const caption = captionScene(this.world, scene.spec, rng);
    const segmenter = this.options.segmenter ? this.options.segmenter(scene) : new LayoutSegmenter(scene);
    return buildComposeSample(
      { image: scene.image, caption: caption.text, subjects: subjectIds(scene.spec), backgrounds: [scene.spec.background] },
      this.extractor,
      segmenter,
      rng,
      this.cropSize,
    );
  }

  private edit(rng: Random): InterleavedSample | null {
    const kind = rng.pick(EDIT_KINDS) as EditKind;
    const before = this.scene(rng);
    const edit = applyEdit(this.world, before.spec, kind, rng, {
      subjects: this.pool.subjects,
      backgroundStyles: this.pool.backgroundStyles,
      ...this.overlap(),
    });
    if (!edit) return null;
    const after = renderScene(this.world, edit.after);
    const caption = captionScene(this.world, before.spec, rng);
    return buildEditSample(
      {
        before: before.image,
        after: after.image,
        sourceCaption: caption.text,
        instruction: edit.instruction,
        edit: edit.kind,
        subjects: [...new Set([...subjectIds(edit.before), ...subjectIds(edit.after)])],
        backgrounds: [edit.before.background, edit.after.background],
      },
      rng,
    );
  }
}

export function subjectIds(spec: SceneSpec): string[] {
  return spec.subjects.map((s) => s.subject);
}
