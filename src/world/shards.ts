// Shard storage. A dataset folder holds:
//   manifest.json       what was built (kind, split, seed, sizes, splits, package versions, shards)
//   ATTRIBUTION.md      licences of the artwork it contains
//   shard-00000.jsonl   one sample per line (text, caption, image paths, slot and subject metadata)
//   shard-00000/        the PNG images those lines reference (<index>-in<k>.png, <index>-target.png)
// Reading decodes the PNGs back to RGBA and yields the same InterleavedSample objects the
// generator makes.
import { createReadStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseJson } from '../io/file-errors.js';
import { attributionMarkdown } from './attribution.js';
import type { BackgroundSpec } from './backgrounds.js';
import { SampleGenerator, type StreamKind } from './generate.js';
import { decodeImage, encodePng } from './image.js';
import type { InterleavedSample, SampleKind, SlotInfo } from './instruct.js';
import type { SplitManifest, SplitName } from './splits.js';

export const SHARD_FORMAT = 'kosmos-g-world-shards';
export const SHARD_FORMAT_VERSION = 1;
export const DEFAULT_SHARD_SIZE = 1000;

export interface ShardManifest {
  format: typeof SHARD_FORMAT;
  version: number;
  kind: StreamKind;
  split: SplitName;
  seed: number;
  count: number;
  sceneSize: number;
  spriteSize: number;
  cropSize: number;
  shards: { file: string; count: number }[];
  splits: SplitManifest;
  packages: Record<string, string>;
}

export interface SampleRecord {
  index: number;
  kind: SampleKind;
  text: string;
  caption: string;
  instruction?: string;
  edit?: string;
  images: string[];
  target: string;
  slots?: SlotInfo[];
  subjects: string[];
  backgrounds: BackgroundSpec[];
}

export interface WriteShardsOptions {
  count: number;
  out: string;
  shardSize?: number;
  onProgress?: (done: number, total: number) => void;
}

function shardName(n: number): string {
  return `shard-${String(n).padStart(5, '0')}`;
}

export async function writeShards(generator: SampleGenerator, options: WriteShardsOptions): Promise<ShardManifest> {
  const { count, out } = options;
  const shardSize = options.shardSize ?? DEFAULT_SHARD_SIZE;
  if (!Number.isInteger(count) || count <= 0) throw new Error(`sample count must be a positive integer, got ${count}`);
  if (!Number.isInteger(shardSize) || shardSize <= 0) throw new Error(`shard size must be a positive integer, got ${shardSize}`);
  if (existsSync(join(out, 'manifest.json'))) throw new Error(`${out} already holds a dataset (manifest.json); choose an empty folder`);
  mkdirSync(out, { recursive: true });
  const world = generator.world;
  const shards: { file: string; count: number }[] = [];
  for (let first = 0, n = 0; first < count; first += shardSize, n++) {
    const name = shardName(n);
    mkdirSync(join(out, name), { recursive: true });
    const lines: string[] = [];
    const last = Math.min(count, first + shardSize);
    for (let index = first; index < last; index++) {
      const sample = generator.sample(index);
      const stem = String(index).padStart(8, '0');
      const images = sample.images.map((_, k) => `${name}/${stem}-in${k}.png`);
      const target = `${name}/${stem}-target.png`;
      const pngs = await Promise.all([...sample.images, sample.target].map((image) => encodePng(image)));
      pngs.forEach((png, k) => writeFileSync(join(out, k < images.length ? (images[k] as string) : target), png));
      const record: SampleRecord = {
        index,
        kind: sample.kind,
        text: sample.text,
        caption: sample.caption,
        ...(sample.instruction !== undefined ? { instruction: sample.instruction } : {}),
        ...(sample.edit !== undefined ? { edit: sample.edit } : {}),
        images,
        target,
        ...(sample.slots !== undefined ? { slots: sample.slots } : {}),
        subjects: sample.subjects,
        backgrounds: sample.backgrounds,
      };
      lines.push(JSON.stringify(record));
      options.onProgress?.(index + 1, count);
    }
    writeFileSync(join(out, `${name}.jsonl`), `${lines.join('\n')}\n`);
    shards.push({ file: `${name}.jsonl`, count: last - first });
  }
  const manifest: ShardManifest = {
    format: SHARD_FORMAT,
    version: SHARD_FORMAT_VERSION,
    kind: generator.options.kind,
    split: generator.options.split,
    seed: generator.options.seed,
    count,
    sceneSize: world.sceneSize,
    spriteSize: world.sprites.size,
    cropSize: generator.options.cropSize ?? world.sceneSize,
    shards,
    splits: generator.splits,
    packages: Object.fromEntries(world.catalog.styles.map((s) => [s.packageName, s.version])),
  };
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(out, 'ATTRIBUTION.md'), attributionMarkdown(world.catalog, { styles: usedStyles(generator) }));
  return manifest;
}

function usedStyles(generator: SampleGenerator): string[] {
  const styles = new Set<string>();
  for (const id of generator.pool.subjects) styles.add(id.slice(0, id.indexOf(':')));
  for (const style of generator.pool.backgroundStyles) styles.add(style);
  return [...styles];
}

export function readShardManifest(dir: string): ShardManifest {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) throw new Error(`${dir} is not a world dataset: manifest.json is missing`);
  const manifest = parseJson(readFileSync(path, 'utf8'), path) as ShardManifest | null;
  if (manifest?.format !== SHARD_FORMAT || !Array.isArray(manifest.shards)) throw new Error(`${path} is not a ${SHARD_FORMAT} manifest`);
  if (manifest.version !== SHARD_FORMAT_VERSION) throw new Error(`${path} has format version ${manifest.version}; this reader understands ${SHARD_FORMAT_VERSION}`);
  return manifest;
}

/** The fields every reader of a record relies on. */
function isSampleRecord(value: unknown): value is SampleRecord {
  const record = value as Partial<Record<keyof SampleRecord, unknown>> | null;
  return (
    typeof record === 'object' && record !== null && typeof record.kind === 'string' && typeof record.text === 'string' && typeof record.target === 'string' &&
    [record.images, record.subjects, record.backgrounds].every(Array.isArray)
  );
}

/** The JSONL records of a dataset, in index order, without decoding images; a broken line is an error naming its file and line. */
export async function* readRecords(dir: string): AsyncGenerator<SampleRecord> {
  const manifest = readShardManifest(dir);
  for (const shard of manifest.shards) {
    const path = join(dir, shard.file);
    const input = createReadStream(path);
    const opened = new Promise<void>((resolve, reject) => {
      input.once('open', () => resolve());
      input.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`cannot read ${path}: ${error.code ?? error.message}`)));
    });
    await opened;
    let number = 0;
    for await (const line of createInterface({ input, crlfDelay: Infinity })) {
      number++;
      if (line.trim().length === 0) continue;
      const record = parseJson(line, `${path} line ${number}`);
      if (!isSampleRecord(record)) throw new Error(`${path} line ${number} is not a sample record (kind, text, target, images, subjects, backgrounds)`);
      yield record;
    }
  }
}

export async function recordToSample(dir: string, record: SampleRecord): Promise<InterleavedSample> {
  const [target, ...images] = await Promise.all([record.target, ...record.images].map((p) => decodeImage(join(dir, p))));
  return {
    kind: record.kind,
    text: record.text,
    images,
    target: target as InterleavedSample['target'],
    caption: record.caption,
    ...(record.instruction !== undefined ? { instruction: record.instruction } : {}),
    ...(record.edit !== undefined ? { edit: record.edit } : {}),
    ...(record.slots !== undefined ? { slots: record.slots } : {}),
    subjects: record.subjects,
    backgrounds: record.backgrounds,
  };
}
