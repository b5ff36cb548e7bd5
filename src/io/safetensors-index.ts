// Sharded checkpoints (`*.safetensors.index.json` with a weight_map from tensor name to shard file)
// and the one entry point that opens whatever a model folder holds.

import { platform, dirname, isAbsolute, join, relative, resolve } from '#platform';
import { writeFileAtomic } from './atomic-file.js';
import { describeValue, oneLine } from './describe-value.js';
import { elementCount, type HostTensor } from '../onnx/dtype.js';
import { describeAvailable, isPlainObject, SafetensorsFile, writeSafetensors, type ReadOptions, type SafetensorsReader, type TensorInfo, type WriteOptions } from './safetensors.js';

/** Single-file names that diffusers and transformers save, in the order they are looked for. */
const SINGLE_FILE_NAMES = ['model.safetensors', 'diffusion_pytorch_model.safetensors'];
const INDEX_SUFFIX = '.safetensors.index.json';

/** A checkpoint split over several safetensors files, presented as one lazy set of tensors. */
export class ShardedSafetensors implements SafetensorsReader {
  private constructor(
    /** The index file. */
    readonly path: string,
    readonly metadata: Readonly<Record<string, unknown>>,
    private readonly shardOf: Map<string, SafetensorsFile>,
    private readonly shards: SafetensorsFile[],
  ) {}

  /**
   * Parses the index, opens every shard it references (headers only) and checks that each shard
   * really holds the tensors the index assigns to it.
   */
  static async open(indexPath: string): Promise<ShardedSafetensors> {
    const fail = (problem: string): never => {
      throw new Error(`${indexPath}: invalid safetensors index: ${problem}`);
    };
    const text = await platform.readText(indexPath);
    let index: unknown;
    try {
      index = JSON.parse(text);
    } catch (error) {
      return fail(`not valid JSON (${oneLine((error as Error).message)})`);
    }
    if (!isPlainObject(index)) return fail('expected a JSON object');
    const { metadata = {}, weight_map: weightMap } = index;
    if (!isPlainObject(metadata)) return fail('"metadata" must be an object');
    if (!isPlainObject(weightMap)) return fail('"weight_map" must be an object mapping tensor names to shard files');

    const directory = dirname(indexPath);
    const shardFiles = new Map<string, string>();
    for (const [name, file] of Object.entries(weightMap)) {
      if (typeof file !== 'string') return fail(`weight_map[${describeValue(name)}] must be a file name, got ${describeValue(file)}`);
      const shardPath = resolve(directory, file);
      // Shards live beside their index; anything else is a malformed or malicious index.
      if (isAbsolute(file) || relative(directory, shardPath).startsWith('..')) {
        return fail(`weight_map[${describeValue(name)}] = ${describeValue(file)} points outside the index's folder`);
      }
      shardFiles.set(name, shardPath);
    }

    const opened = new Map<string, SafetensorsFile>();
    try {
      for (const shardPath of new Set(shardFiles.values())) {
        const exists = (await platform.pathKind(shardPath)) === 'file';
        if (!exists) fail(`shard ${describeValue(relative(directory, shardPath))} referenced by the weight_map does not exist`);
        opened.set(shardPath, await SafetensorsFile.open(shardPath));
      }
      const shardOf = new Map<string, SafetensorsFile>();
      for (const [name, shardPath] of shardFiles) {
        const shard = opened.get(shardPath)!;
        if (!shard.has(name)) fail(`tensor ${describeValue(name)} is mapped to ${describeValue(relative(directory, shardPath))}, which does not contain it`);
        shardOf.set(name, shard);
      }
      return new ShardedSafetensors(indexPath, metadata, shardOf, [...opened.values()]);
    } catch (error) {
      await Promise.all([...opened.values()].map((shard) => shard.close()));
      throw error;
    }
  }

  names(): string[] {
    return [...this.shardOf.keys()];
  }

  has(name: string): boolean {
    return this.shardOf.has(name);
  }

  info(name: string): TensorInfo {
    return this.shardFor(name).info(name);
  }

  async read(name: string, options: ReadOptions = {}): Promise<HostTensor> {
    return this.shardFor(name).read(name, options);
  }

  async readAll(options: ReadOptions = {}): Promise<Map<string, HostTensor>> {
    const tensors = new Map<string, HostTensor>();
    for (const name of this.names()) tensors.set(name, await this.read(name, options));
    return tensors;
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((shard) => shard.close()));
  }

  private shardFor(name: string): SafetensorsFile {
    const shard = this.shardOf.get(name);
    if (!shard) throw new Error(`${this.path}: no tensor named ${describeValue(name)} in the weight_map; ${describeAvailable(name, this.names())}`);
    return shard;
  }
}

/**
 * Opens a single `.safetensors` file, a `*.safetensors.index.json`, or a folder holding either
 * (`model.safetensors`, `diffusion_pytorch_model.safetensors`, or exactly one index file).
 */
export async function openSafetensors(pathOrDirectory: string): Promise<SafetensorsReader> {
  const kind = await platform.pathKind(pathOrDirectory);
  if (kind === null) throw Object.assign(new Error(`${pathOrDirectory}: no such file or folder (ENOENT)`), { code: 'ENOENT' });
  if (kind === 'file') {
    return pathOrDirectory.endsWith('.json') ? ShardedSafetensors.open(pathOrDirectory) : SafetensorsFile.open(pathOrDirectory);
  }
  const files = await platform.listDirectory(pathOrDirectory);
  const single = SINGLE_FILE_NAMES.find((name) => files.includes(name));
  if (single) return SafetensorsFile.open(join(pathOrDirectory, single));
  const indexes = files.filter((name) => name.endsWith(INDEX_SUFFIX)).sort();
  const preferred = SINGLE_FILE_NAMES.map((name) => `${name}.index.json`).find((name) => indexes.includes(name));
  if (preferred) return ShardedSafetensors.open(join(pathOrDirectory, preferred));
  if (indexes.length === 1) return ShardedSafetensors.open(join(pathOrDirectory, indexes[0]!));
  if (indexes.length > 1) {
    throw new Error(`${pathOrDirectory}: several safetensors indexes (${indexes.join(', ')}); open the one you mean directly`);
  }
  throw new Error(`${pathOrDirectory}: no ${SINGLE_FILE_NAMES.join(' or ')} and no *${INDEX_SUFFIX} in this folder`);
}

/** Stored bytes of a tensor under `options.dtype` (float32 as F16 halves; other types keep theirs). */
function storedBytes(tensor: HostTensor, options: WriteOptions): number {
  const elementBytes = tensor.dtype === 'float32' && options.dtype === 'F16' ? 2 : tensor.data.BYTES_PER_ELEMENT;
  return elementCount(tensor.shape) * elementBytes;
}

/**
 * Writes `tensors` into `directory` as transformers does: one `model.safetensors` when they fit
 * `maxShardBytes`, else `model-0000k-of-0000n.safetensors` shards (tensors in key order, a new
 * shard when the next would pass the limit) and `model.safetensors.index.json`.
 */
export async function writeSafetensorsShards(directory: string, tensors: Record<string, HostTensor>, options: WriteOptions & { maxShardBytes: number }): Promise<void> {
  const names = Object.keys(tensors).sort();
  const total = names.reduce((bytes, name) => bytes + storedBytes(tensors[name]!, options), 0);
  if (total <= options.maxShardBytes) return writeSafetensors(join(directory, SINGLE_FILE_NAMES[0]!), tensors, options);
  const shards: string[][] = [[]];
  let used = 0;
  for (const name of names) {
    const bytes = storedBytes(tensors[name]!, options);
    if (used > 0 && used + bytes > options.maxShardBytes) {
      shards.push([]);
      used = 0;
    }
    shards.at(-1)!.push(name);
    used += bytes;
  }
  const pad = (n: number) => String(n).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  for (const [index, shard] of shards.entries()) {
    const file = `model-${pad(index + 1)}-of-${pad(shards.length)}.safetensors`;
    await writeSafetensors(join(directory, file), Object.fromEntries(shard.map((name) => [name, tensors[name]!])), options);
    for (const name of shard) weightMap[name] = file;
  }
  await writeFileAtomic(join(directory, `${SINGLE_FILE_NAMES[0]}.index.json`), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
}
