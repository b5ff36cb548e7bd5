// Sample sources for the training loaders: a shard folder or live generation, behind one
// interface, so a stage can train from disk or from the world with the same code.
import { SampleGenerator, type GeneratorOptions } from './generate.js';
import type { InterleavedSample } from './instruct.js';
import { Random } from '../util/random.js';
import { readRecords, readShardManifest, recordToSample, type SampleRecord, type ShardManifest } from './shards.js';
import type { World } from './world.js';

export interface SampleSource {
  /** Number of samples, or null for an endless generated stream. */
  readonly count: number | null;
  get(index: number): Promise<InterleavedSample>;
}

export class ShardSource implements SampleSource {
  private constructor(
    readonly dir: string,
    readonly manifest: ShardManifest,
    private readonly records: SampleRecord[],
  ) {}

  static async open(dir: string): Promise<ShardSource> {
    const manifest = readShardManifest(dir);
    const records: SampleRecord[] = [];
    for await (const record of readRecords(dir)) records.push(record);
    if (records.length !== manifest.count) throw new Error(`${dir}: manifest says ${manifest.count} samples, shards hold ${records.length}`);
    return new ShardSource(dir, manifest, records);
  }

  get count(): number {
    return this.records.length;
  }

  get(index: number): Promise<InterleavedSample> {
    const record = this.records[index];
    if (!record) throw new Error(`sample ${index} is outside ${this.dir} (${this.records.length} samples)`);
    return recordToSample(this.dir, record);
  }
}

export class GeneratedSource implements SampleSource {
  readonly generator: SampleGenerator;

  constructor(
    world: World,
    options: GeneratorOptions,
    readonly count: number | null = null,
  ) {
    this.generator = new SampleGenerator(world, options);
  }

  async get(index: number): Promise<InterleavedSample> {
    if (this.count !== null && index >= this.count) throw new Error(`sample ${index} is outside this ${this.count}-sample stream`);
    return this.generator.sample(index);
  }
}

export type SourceSpec =
  | { shards: string }
  | { generate: GeneratorOptions; world: World; count?: number };

export async function openSource(spec: SourceSpec): Promise<SampleSource> {
  if ('shards' in spec) return ShardSource.open(spec.shards);
  return new GeneratedSource(spec.world, spec.generate, spec.count ?? null);
}

export interface BatchOptions {
  batchSize: number;
  /** Shuffle each epoch with this seed (finite sources only); in order when absent. */
  shuffleSeed?: number;
  /** Stop after this many batches (required for endless sources). */
  maxBatches?: number;
}

/** Batches in epoch order; finite sources run one epoch unless maxBatches asks for more. */
export async function* batches(source: SampleSource, options: BatchOptions): AsyncGenerator<InterleavedSample[]> {
  const { batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
  if (source.count === null && options.maxBatches === undefined) throw new Error('an endless generated source needs maxBatches');
  const limit = options.maxBatches ?? Math.ceil((source.count as number) / batchSize);
  let position = 0;
  let order: number[] | null = null;
  let epoch = 0;
  const indexAt = (i: number): number => {
    if (source.count === null) return i;
    const n = source.count;
    const e = Math.floor(i / n);
    if (!order || e !== epoch) {
      epoch = e;
      order = Array.from({ length: n }, (_, k) => k);
      if (options.shuffleSeed !== undefined) new Random(options.shuffleSeed + e * 7919).shuffle(order);
    }
    return order[i % n] as number;
  };
  for (let b = 0; b < limit; b++) {
    const indices = Array.from({ length: batchSize }, (_, k) => indexAt(position + k));
    position += batchSize;
    yield Promise.all(indices.map((i) => source.get(i)));
  }
}
