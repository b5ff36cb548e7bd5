// Training data from the emoji world, generated on the fly: sample n of a run is sample n of a
// seeded world stream, so any batch is a pure function of (data seed, step) and a resumed run
// needs no loader state. Evaluation draws scenes from a seed reserved for it, which training
// configs may not use, so evaluated scenes were never trained on.
import { z } from 'zod';
import { SampleGenerator } from '../world/generate.js';
import type { InterleavedSample, SampleKind } from '../world/instruct.js';
import { SPLIT_NAMES, type SplitName } from '../world/splits.js';
import { World } from '../world/world.js';
import { deriveSeed, Random } from '../util/random.js';

/** Seed of the scenes evaluation and preview grids use; no training stream may use it. */
export const EVAL_SCENE_SEED = 0x0e7a1;

export const worldDataSchema = z.strictObject({
  /** Seed of the sample stream. */
  seed: z
    .number()
    .int()
    .nonnegative()
    .refine((seed) => seed !== EVAL_SCENE_SEED, `seed ${EVAL_SCENE_SEED} is reserved for evaluation scenes`),
  /** Seed of the held-out concept split (the world's default is 0). */
  splitSeed: z.number().int().nonnegative().default(0),
  /** Subject pools to draw from; with several, a sample's pool is drawn in proportion to pool size. */
  splits: z.array(z.enum(SPLIT_NAMES)).min(1).default(['train']),
  /** Restrict the catalog to these concept ids (small test worlds). */
  concepts: z.array(z.string()).min(1).optional(),
});

export type WorldDataConfig = z.output<typeof worldDataSchema>;

export async function openWorld(data: WorldDataConfig, sceneSize: number, report: (message: string) => void): Promise<World> {
  let lastReport = 0;
  return World.open({
    sceneSize,
    ...(data.concepts ? { catalog: { concepts: data.concepts } } : {}),
    onWarning: report,
    onProgress: (done, total) => {
      if (done === total || performance.now() - lastReport > 10000) {
        lastReport = performance.now();
        report(`rendering sprites: ${done}/${total}`);
      }
    },
  });
}

/** A seeded stream of world samples of one kind over one or more split pools. */
export class WorldStream {
  private readonly generators: SampleGenerator[];
  private readonly weights: number[];

  constructor(
    world: World,
    kind: SampleKind,
    readonly seed: number,
    splits: readonly SplitName[],
    splitSeed: number,
  ) {
    this.generators = splits.map((split) => new SampleGenerator(world, { kind, split, seed, splitSeed }));
    this.weights = this.generators.map((generator) => generator.pool.subjects.length);
  }

  /** Styles whose artwork the stream's scenes can contain (subjects and scene-emoji backgrounds). */
  styles(): string[] {
    const styles = new Set<string>();
    for (const generator of this.generators) {
      for (const subject of generator.pool.subjects) styles.add(generator.world.catalog.subjectById.get(subject)!.style);
      for (const style of generator.pool.backgroundStyles) styles.add(style);
    }
    return [...styles].sort();
  }

  /** Sample `index` of the stream (pure function of seed and index). */
  sample(index: number): InterleavedSample {
    const choice = this.generators.length === 1 ? 0 : new Random(deriveSeed(this.seed ^ 0x51a7, index)).weighted(this.weights);
    return this.generators[choice]!.sample(index);
  }

  /** The `batchSize` samples of 1-based training step `step`: indices (step − 1)·B … step·B − 1. */
  batch(step: number, batchSize: number): InterleavedSample[] {
    return Array.from({ length: batchSize }, (_, k) => this.sample((step - 1) * batchSize + k));
  }
}
