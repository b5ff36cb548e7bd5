// safetensors files and sharded indexes, read as `convert --from` reads them (openCheckpointSource:
// header, then every tensor) and as the trainer and parity checks do (readSafetensors, float16
// widened). Mutations know the layout: the 8-byte header length, the header's tensor entries
// (dtype, shape, data_offsets against the data buffer and each other), __metadata__, the padding
// and the data buffer; an index's weight_map pointing at missing, foreign or escaping shards.
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { openCheckpointSource } from '../../src/convert/source.js';
import { encodeSafetensors, readSafetensors } from '../../src/io/safetensors.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { type Json, mutateJson, oddValue, pythonJson } from '../json-mutate.js';
import { boundaryInteger, mutateBytes, writeInteger } from '../mutate.js';
import type { Random } from '../random.js';
import type { Seed, Target } from './target.js';

const seedTensors = (offset: number): Record<string, HostTensor> => ({
  [`layer.${offset}.weight`]: { dtype: 'float32', shape: [2, 3], data: Float32Array.from({ length: 6 }, (_, i) => i / 4 - offset) },
  [`layer.${offset}.bias`]: { dtype: 'float16', shape: [3], data: Uint16Array.from([0x3c00, 0xbc00, 0x7c00]) },
  [`layer.${offset}.scale`]: { dtype: 'bfloat16', shape: [2], data: Uint16Array.from([0x3f80, 0x4000]) },
  [`ids.${offset}`]: { dtype: 'int64', shape: [2], data: BigInt64Array.from([-1n, 2n ** 40n]) },
  [`mask.${offset}`]: { dtype: 'bool', shape: [1, 4], data: Uint8Array.from([1, 0, 1, 1]) },
  [`empty.${offset}`]: { dtype: 'int32', shape: [0, 5], data: new Int32Array(0) },
  [`scalar.${offset}`]: { dtype: 'float64', shape: [], data: Float64Array.from([Math.PI]) },
});

/** The two shards an index seed refers to, written beside it in the worker. */
const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
const INDEX_FILE = 'model.safetensors.index.json';
/** Scratch folders that already hold the shards (they never change, so they are written once). */
const shardsWritten = new Set<string>();

function indexSeed(): string {
  const weightMap: Record<string, string> = {};
  SHARDS.forEach((file, shard) => Object.keys(seedTensors(shard)).forEach((name) => (weightMap[name] = file)));
  return JSON.stringify({ metadata: { total_size: 192 }, weight_map: weightMap }, null, 2);
}

interface Layout {
  /** The header's JSON text, without its padding. */
  header: string;
  data: Uint8Array;
}

function parseLayout(bytes: Uint8Array): Layout {
  const length = Number(Buffer.from(bytes).readBigUInt64LE(0));
  return { header: Buffer.from(bytes.subarray(8, 8 + length)).toString('utf8').trimEnd(), data: bytes.subarray(8 + length) };
}

/** The header padded with spaces (or, sometimes, NULs or nothing) and its length written in front. */
function encodeLayout(layout: Layout, random: Random): Uint8Array {
  const text = Buffer.from(layout.header, 'utf8');
  const padding = random.pick([(8 - (text.length % 8)) % 8, 0, random.int(16)]);
  const header = Buffer.concat([text, Buffer.alloc(padding, random.chance(0.9) ? ' ' : '\0')]);
  const out = Buffer.concat([Buffer.alloc(8), header, layout.data]);
  out.writeBigUInt64LE(BigInt(header.length), 0);
  return Uint8Array.from(out);
}

const DTYPES: Json[] = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I8', 'U8', 'BOOL', 'U16', 'F8_E4M3', 'f32', '', 'F32 ', 32, null];

/** One field of one tensor entry set to something that disagrees with the data or the other entries. */
function mutateEntry(header: Record<string, Json>, size: number, random: Random): void {
  const names = Object.keys(header).filter((name) => name !== '__metadata__');
  const entry = header[random.pick(names)] as Record<string, Json>;
  const [begin, end] = Array.isArray(entry['data_offsets']) ? (entry['data_offsets'] as number[]) : [0, 0];
  const other = header[random.pick(names)] as Record<string, Json>;
  switch (random.int(4)) {
    case 0:
      entry['dtype'] = random.pick(DTYPES);
      break;
    case 1: {
      const shape = Array.isArray(entry['shape']) ? (entry['shape'] as Json[]) : [];
      entry['shape'] = random.pick<Json>([
        [], [0], [size], [2 ** 53], [2 ** 31, 2 ** 31], [2 ** 32, 2 ** 32, 2 ** 32], [-1], [1.5], ['2'], [[2]], null,
        Array.from({ length: random.size(8) }, () => 1), [...shape, 1], shape.slice(1), shape.map(() => boundaryInteger(random)),
      ]);
      break;
    }
    case 2:
      entry['data_offsets'] = random.pick<Json>([
        [0, 0], [0, size], [size, size], [size, size + 1], [end, begin], [begin, end + 1], [begin - 1, end], [begin + 1, end + 1],
        other['data_offsets'] ?? null, [begin, 2 ** 53], [2 ** 53, 2 ** 53 + 4], [0, 2 ** 64], [-1, end], [begin], [begin, end, end], [begin + 0.5, end],
        [boundaryInteger(random), boundaryInteger(random)],
      ]);
      break;
    default:
      header[random.pick(names)] = oddValue(random, entry);
  }
}

function mutateFile(bytes: Uint8Array, random: Random): Uint8Array {
  const layout = parseLayout(bytes);
  const header = JSON.parse(layout.header) as Record<string, Json>;
  switch (random.int(6)) {
    case 0:
    case 1:
      mutateEntry(header, layout.data.length, random);
      layout.header = pythonJson(header);
      break;
    case 2:
      layout.header = mutateJson(layout.header, random);
      break;
    case 3:
      header['__metadata__'] = random.chance(0.5) ? oddValue(random, header['__metadata__'] ?? null) : { format: 'pt', n: random.pick<Json>([1, null, {}, ['x']]) };
      layout.header = pythonJson(header);
      break;
    case 4:
      layout.data = random.chance(0.5) ? layout.data.subarray(0, random.int(layout.data.length + 1)) : Uint8Array.from(Buffer.concat([layout.data, random.bytes(random.size(8))]));
      break;
    default: {
      // The header length field itself.
      const encoded = encodeLayout(layout, random);
      const length = encoded.length - 8 - layout.data.length;
      writeInteger(encoded, 0, 8, random.pick([length + 1, length - 1, encoded.length, encoded.length - 7, 100_000_001, 2n ** 63n, 2n ** 64n - 1n, boundaryInteger(random)]), true);
      return random.chance(0.2) ? mutateBytes(encoded, random, 2) : encoded;
    }
  }
  const encoded = encodeLayout(layout, random);
  return random.chance(0.2) ? mutateBytes(encoded, random, 2) : encoded;
}

function mutateIndex(bytes: Uint8Array, random: Random): Uint8Array {
  const text = Buffer.from(bytes).toString('utf8');
  if (random.chance(0.3)) {
    const index = JSON.parse(text) as { weight_map: Record<string, Json> };
    const names = Object.keys(index.weight_map);
    const name = random.chance(0.2) ? 'not.in.any.shard' : random.pick(names);
    index.weight_map[name] = random.pick<Json>(['../escape.safetensors', '/etc/passwd', SHARDS[0]!, SHARDS[1]!, 'missing.safetensors', '.', '', 'model.safetensors.index.json', 7, null]);
    return Buffer.from(JSON.stringify(index));
  }
  return Buffer.from(mutateJson(text, random));
}

export const safetensorsTarget: Target = {
  name: 'safetensors',
  description: 'safetensors files (header length, tensor entries, metadata, data) and sharded indexes, through openCheckpointSource and readSafetensors',
  async seeds(): Promise<Seed[]> {
    return [
      { variant: 'file', bytes: encodeSafetensors(seedTensors(0), { metadata: { note: 'seed' } }) },
      { variant: 'file', bytes: encodeSafetensors({ only: { dtype: 'uint8', shape: [3], data: Uint8Array.from([1, 2, 3]) } }) },
      { variant: 'index', bytes: Buffer.from(indexSeed()) },
    ];
  },
  mutate(seed, random) {
    return seed.variant === 'file' ? mutateFile(seed.bytes, random) : mutateIndex(seed.bytes, random);
  },
  async run(variant, input, scratch) {
    let path = join(scratch, 'model.safetensors');
    if (variant === 'index') {
      if (!shardsWritten.has(scratch)) await Promise.all(SHARDS.map((file, shard) => writeFile(join(scratch, file), encodeSafetensors(seedTensors(shard)))));
      shardsWritten.add(scratch);
      path = join(scratch, INDEX_FILE);
    }
    await writeFile(path, input);
    await readEveryTensor(path);
    if (variant === 'file') await readSafetensors(path, { asFloat32: true });
  },
};

/** Opens a checkpoint (safetensors, index or torch file) as `convert` does and reads every tensor. */
export async function readEveryTensor(path: string): Promise<void> {
  const source = await openCheckpointSource(path);
  try {
    for (const tensor of source.tensors.values()) await tensor.read();
  } finally {
    await source.close();
  }
}
