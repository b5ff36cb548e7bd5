import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { float16BitsToFloat32, float32ToFloat16Bits, hostTensor, type HostTensor } from '../../src/onnx/dtype.js';
import {
  encodeSafetensors,
  MAX_HEADER_BYTES,
  readSafetensors,
  SafetensorsFile,
  writeSafetensors,
  type SafetensorsDType,
} from '../../src/io/safetensors.js';
import { openSafetensors, ShardedSafetensors, writeSafetensorsShards } from '../../src/io/safetensors-index.js';

// The compiled test lives in dist/test/io/, three levels below the repository root.
const fixtures = fileURLToPath(new URL('../../../../shared/fixtures/', import.meta.url));
const noFixtures = existsSync(fixtures) ? false : 'reference fixtures (../shared/fixtures) are not present';

const scratch = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
after(() => rm(scratch, { recursive: true, force: true }));
let scratchCount = 0;
async function scratchDir(): Promise<string> {
  const dir = join(scratch, `case-${scratchCount++}`);
  await mkdir(dir);
  return dir;
}

function bytesOf(tensor: HostTensor): Buffer {
  return Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
}

/** A safetensors file assembled by hand, so tests control the exact header and byte layout. */
function handBuilt(header: unknown, data: Uint8Array = new Uint8Array(0), headerText: string | Buffer = JSON.stringify(header)): Buffer {
  const json = Buffer.from(headerText);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

function sampleTensors(): Record<string, HostTensor> {
  return {
    'f32': hostTensor('float32', [2, 3], Float32Array.from([0, -1.5, 3.25, 1e-30, Infinity, NaN])),
    'f16': hostTensor('float16', [3], Uint16Array.from([0x3c00, 0xc000, 0x7e00])),
    'f64': hostTensor('float64', [2], Float64Array.from([Math.PI, -1e300])),
    'i64': hostTensor('int64', [3], BigInt64Array.from([0n, -(2n ** 62n), 2n ** 63n - 1n])),
    'i32': hostTensor('int32', [2, 2], Int32Array.from([1, -2, 2 ** 31 - 1, -(2 ** 31)])),
    'i8': hostTensor('int8', [3], Int8Array.from([-128, 0, 127])),
    'u8': hostTensor('uint8', [1, 3], Uint8Array.from([0, 128, 255])),
    'mask': hostTensor('bool', [4], Uint8Array.from([1, 0, 0, 1])),
    'scalar': hostTensor('float32', [], Float32Array.from([7])),
    'empty': hostTensor('int64', [0, 5], new BigInt64Array(0)),
  };
}

const storedAs: Record<string, SafetensorsDType> = {
  f32: 'F32', f16: 'F16', f64: 'F64', i64: 'I64', i32: 'I32', i8: 'I8', u8: 'U8', mask: 'BOOL', scalar: 'F32', empty: 'I64',
};

describe('writing and reading back', () => {
  test('every dtype round-trips bit-exactly through a file', async () => {
    const path = join(await scratchDir(), 'all.safetensors');
    const tensors = sampleTensors();
    await writeSafetensors(path, tensors, { metadata: { note: 'round trip' } });
    const file = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(file.names(), Object.keys(tensors).sort());
      assert.deepEqual(file.metadata, { format: 'pt', note: 'round trip' });
      for (const [name, expected] of Object.entries(tensors)) {
        assert.equal(file.info(name).dtype, storedAs[name]);
        const actual = await file.read(name);
        assert.equal(actual.dtype, expected.dtype, name);
        assert.deepEqual(actual.shape, expected.shape, name);
        assert.ok(bytesOf(actual).equals(bytesOf(expected)), `${name} bytes differ`);
      }
    } finally {
      await file.close();
    }
  });

  test('the header is padded with spaces so the data buffer starts 8-byte aligned', () => {
    const encoded = Buffer.from(encodeSafetensors(sampleTensors()));
    const headerLength = Number(encoded.readBigUInt64LE(0));
    assert.equal(headerLength % 8, 0);
    const headerText = encoded.subarray(8, 8 + headerLength).toString('utf8');
    assert.match(headerText, /^\{"__metadata__":\{"format":"pt"\}/);
    assert.match(headerText, /\} *$/);
  });

  test('encodeSafetensors and readSafetensors agree in memory', async () => {
    const tensors = sampleTensors();
    const decoded = await readSafetensors(encodeSafetensors(new Map(Object.entries(tensors))));
    for (const [name, expected] of Object.entries(tensors)) {
      assert.ok(bytesOf(decoded.get(name)!).equals(bytesOf(expected)), name);
    }
  });

  test('float32 stored as F16 stays within half precision, and F16 reads as float32 on request', async () => {
    const values = Float32Array.from([0, 1, -2.5, 0.1, 1000.3, 6e-5, 65504, -1e-8]);
    const encoded = encodeSafetensors({ w: hostTensor('float32', [8], values) }, { dtype: 'F16' });
    const file = SafetensorsFile.fromBuffer(encoded);
    assert.equal(file.info('w').dtype, 'F16');
    assert.equal(file.info('w').byteLength, 16);
    const raw = await file.read('w');
    assert.equal(raw.dtype, 'float16');
    assert.deepEqual([...raw.data], [...values].map(float32ToFloat16Bits));
    const widened = await file.read('w', { asFloat32: true });
    assert.equal(widened.dtype, 'float32');
    [...values].forEach((value, i) => {
      const got = (widened.data as Float32Array)[i]!;
      assert.ok(Math.abs(got - value) <= Math.max(Math.abs(value) * 2 ** -11, 2 ** -24), `${value} became ${got}`);
      assert.equal(got, float16BitsToFloat32(float32ToFloat16Bits(value)));
    });
  });

  test('BF16 bytes decode to the float32 values they truncate', async () => {
    // bfloat16 bits of 1.0, -2.0, 3.140625, +Infinity, little-endian.
    const data = Buffer.from([0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0x80, 0x7f]);
    const encoded = handBuilt({ b: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 8] } }, data);
    const tensor = (await readSafetensors(encoded)).get('b')!;
    assert.equal(tensor.dtype, 'float32');
    assert.deepEqual(tensor.shape, [2, 2]);
    assert.deepEqual([...tensor.data], [1, -2, 3.140625, Infinity]);
  });

  test('tensors at odd byte offsets are copied out, not viewed misaligned', async () => {
    const f32 = Float32Array.from([1.5, -2, 1e-7]);
    const i64 = BigInt64Array.from([-5n, 2n ** 40n]);
    const data = Buffer.concat([Buffer.from([0xaa]), bytesOf(hostTensor('float32', [3], f32)), bytesOf(hostTensor('int64', [2], i64))]);
    // The header is padded so the buffer starts 8-aligned; the relative offsets 1 and 13 then make
    // both tensors start at odd absolute positions.
    const header = { a: { dtype: 'F32', shape: [3], data_offsets: [1, 13] }, b: { dtype: 'I64', shape: [2], data_offsets: [13, 29] } };
    const json = JSON.stringify(header);
    const path = join(await scratchDir(), 'odd.safetensors');
    await writeFile(path, handBuilt(header, data, json.padEnd(Math.ceil(json.length / 8) * 8)));
    const file = await SafetensorsFile.open(path);
    try {
      assert.equal(file.info('a').byteOffset % 2, 1);
      assert.equal(file.info('b').byteOffset % 2, 1);
      assert.deepEqual([...(await file.read('a')).data], [...f32]);
      assert.deepEqual([...(await file.read('b')).data], [...i64]);
    } finally {
      await file.close();
    }
  });

  test('a single tensor is read lazily without touching the rest of the file', async () => {
    const path = join(await scratchDir(), 'large.safetensors');
    const big = new Float32Array(4 << 20).map((_, i) => i);
    await writeSafetensors(path, {
      'a.small': hostTensor('int32', [4], Int32Array.from([1, 2, 3, 4])),
      'z.big': hostTensor('float32', [big.length], big),
    });
    const file = await SafetensorsFile.open(path);
    try {
      assert.equal(file.info('z.big').byteLength, 16 << 20);
      // Cut the big tensor off the disk: only a reader that fetches byte ranges on demand still works.
      await truncate(path, file.info('z.big').byteOffset + 4);
      assert.deepEqual([...(await file.read('a.small')).data], [1, 2, 3, 4]);
      await assert.rejects(file.read('z.big'), /large\.safetensors: file ended at byte .* truncated/);
    } finally {
      await file.close();
    }
  });

  test('reading an unknown name lists close matches', async () => {
    const file = SafetensorsFile.fromBuffer(encodeSafetensors(sampleTensors()), 'weights.bin');
    await assert.rejects(file.read('f33'), /weights\.bin: no tensor named "f33"; available: "f32", "f16", "f64", "empty", "i32", \.\.\. \(10 in total\)/);
  });
});

describe('atomic writes', () => {
  test('a successful write leaves only the target file behind', async () => {
    const dir = await scratchDir();
    await writeSafetensors(join(dir, 'model.safetensors'), sampleTensors());
    await writeSafetensors(join(dir, 'model.safetensors'), { x: hostTensor('float32', [1], Float32Array.from([2])) });
    assert.deepEqual(await readdir(dir), ['model.safetensors']);
    assert.deepEqual([...(await readSafetensors(join(dir, 'model.safetensors'))).keys()], ['x']);
  });

  test('a failing write leaves the previous file untouched and no temporary file', async () => {
    const dir = await scratchDir();
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, sampleTensors());
    const before = await readFile(path);
    const inconsistent = { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) } as HostTensor;
    await assert.rejects(
      writeSafetensors(path, { a: hostTensor('float32', [1]), b: inconsistent }),
      /tensor "b" has 3 elements but shape \[2, 2\] needs 4/,
    );
    const mistyped = { dtype: 'int64', shape: [1], data: new Float64Array(1) } as unknown as HostTensor;
    await assert.rejects(writeSafetensors(path, { m: mistyped }), /tensor "m" is int64 but its data is a Float64Array/);
    await assert.rejects(writeSafetensors(path, {}, { metadata: { n: 1 as unknown as string } }), /metadata "n" must be a string/);
    assert.ok((await readFile(path)).equals(before));
    assert.deepEqual(await readdir(dir), ['model.safetensors']);
  });

  test('a write that fails after the data is out removes its temporary file', async () => {
    const dir = await scratchDir();
    // A non-empty folder in the target's place makes the final rename fail.
    await mkdir(join(dir, 'occupied', 'inside'), { recursive: true });
    await assert.rejects(writeSafetensors(join(dir, 'occupied'), sampleTensors()), /occupied/);
    assert.deepEqual(await readdir(dir), ['occupied']);
  });
});

describe('sharded checkpoints', () => {
  async function writeShardedCheckpoint(dir: string, weightMap?: Record<string, string>): Promise<void> {
    await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), {
      'layer.0.weight': hostTensor('float32', [2, 2], Float32Array.from([1, 2, 3, 4])),
      'layer.0.bias': hostTensor('float32', [2], Float32Array.from([5, 6])),
    });
    await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), {
      'layer.1.weight': hostTensor('float16', [2], Uint16Array.from([0x3c00, 0x4000])),
    });
    const index = {
      metadata: { total_size: 28 },
      weight_map: weightMap ?? {
        'layer.0.bias': 'model-00001-of-00002.safetensors',
        'layer.0.weight': 'model-00001-of-00002.safetensors',
        'layer.1.weight': 'model-00002-of-00002.safetensors',
      },
    };
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  }

  test('a folder with an index opens as one lazy set of tensors', async () => {
    const dir = await scratchDir();
    await writeShardedCheckpoint(dir);
    const model = await openSafetensors(dir);
    try {
      assert.ok(model instanceof ShardedSafetensors);
      assert.deepEqual(model.names().sort(), ['layer.0.bias', 'layer.0.weight', 'layer.1.weight']);
      assert.deepEqual(model.metadata, { total_size: 28 });
      const info = model.info('layer.1.weight');
      assert.equal(info.file, join(dir, 'model-00002-of-00002.safetensors'));
      assert.equal(info.dtype, 'F16');
      assert.deepEqual([...(await model.read('layer.0.weight')).data], [1, 2, 3, 4]);
      assert.deepEqual([...(await model.read('layer.1.weight', { asFloat32: true })).data], [1, 2]);
      assert.equal((await model.readAll()).size, 3);
      await assert.rejects(model.read('layer.2.weight'), /model\.safetensors\.index\.json: no tensor named "layer\.2\.weight"/);
    } finally {
      await model.close();
    }
  });

  test('an index path or a plain file opens directly; a folder prefers the single file', async () => {
    const dir = await scratchDir();
    await writeShardedCheckpoint(dir);
    const viaIndex = await openSafetensors(join(dir, 'model.safetensors.index.json'));
    assert.equal(viaIndex.names().length, 3);
    await viaIndex.close();
    await writeSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), { only: hostTensor('uint8', [1]) });
    const single = await openSafetensors(dir);
    assert.ok(single instanceof SafetensorsFile);
    assert.deepEqual(single.names(), ['only']);
    await single.close();
    await assert.rejects(openSafetensors(await scratchDir()), /no model\.safetensors or diffusion_pytorch_model\.safetensors/);
  });

  test('missing shards and tensors absent from their shard are reported', async () => {
    const missing = await scratchDir();
    await writeShardedCheckpoint(missing, { 'layer.0.bias': 'model-00003-of-00002.safetensors' });
    await assert.rejects(openSafetensors(missing), /index\.json: .*shard "model-00003-of-00002\.safetensors" .* does not exist/);
    const misplaced = await scratchDir();
    await writeShardedCheckpoint(misplaced, { 'layer.1.weight': 'model-00001-of-00002.safetensors' });
    await assert.rejects(openSafetensors(misplaced), /tensor "layer\.1\.weight" is mapped to "model-00001-of-00002\.safetensors", which does not contain it/);
    const escaping = await scratchDir();
    await writeShardedCheckpoint(escaping, { 'layer.0.bias': '../elsewhere.safetensors' });
    await assert.rejects(openSafetensors(escaping), /points outside the index's folder/);
    const broken = await scratchDir();
    await writeFile(join(broken, 'model.safetensors.index.json'), '{"weight_map": [');
    await assert.rejects(openSafetensors(broken), /invalid safetensors index: not valid JSON/);
  });
});

describe('hostile files are rejected with the file and the problem named', () => {
  const tensor = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const hostile: Array<[string, Buffer, RegExp]> = [
    ['shorter than 8 bytes', Buffer.from([1, 2, 3]), /truncated safetensors file: 3 bytes/],
    ['header length beyond the file', (() => { const b = handBuilt({}); b.writeBigUInt64LE(1000n); return b; })(), /header length 1000 goes beyond the end of the 10-byte file/],
    ['absurd header length', (() => { const b = handBuilt({}); b.writeBigUInt64LE(2n ** 63n); return b; })(), new RegExp(`header length ${2n ** 63n} is absurdly large \\(limit ${MAX_HEADER_BYTES}`)],
    ['non-JSON header', handBuilt(null, undefined, '{"a": '), /not valid UTF-8 JSON/],
    ['non-object header', handBuilt([1, 2]), /expected a JSON object, got an array/],
    ['unknown dtype', handBuilt({ t: tensor('F8_E4M3', [1], [0, 1]) }, Buffer.alloc(1)), /tensor "t" has unknown dtype "F8_E4M3"/],
    ['negative shape', handBuilt({ t: tensor('U8', [-1], [0, 0]) }), /tensor "t" has shape \[-1\], expected an array of non-negative integers/],
    ['fractional shape', handBuilt({ t: tensor('U8', [1.5], [0, 0]) }), /tensor "t" has shape \[1.5\]/],
    ['unordered offsets', handBuilt({ t: tensor('U8', [0], [4, 2]) }, Buffer.alloc(4)), /data_offsets \[4,2\], expected two ordered non-negative integers/],
    ['three offsets', handBuilt({ t: tensor('U8', [0], [0, 0, 0]) }), /data_offsets \[0,0,0\]/],
    ['byte count mismatch', handBuilt({ t: tensor('F32', [2, 3], [0, 20]) }, Buffer.alloc(24)), /tensor "t" is F32 \[2, 3\], which needs 24 bytes, but data_offsets \[0, 20\] span 20/],
    ['element count beyond safe integers', handBuilt({ t: tensor('F64', [2 ** 40, 2 ** 40], [0, 8]) }, Buffer.alloc(8)), /needs 9671406556917033397649408 bytes/],
    ['out-of-range offsets', handBuilt({ t: tensor('I32', [4], [8, 24]) }, Buffer.alloc(16)), /data_offsets \[8, 24\] are out of range of the 16-byte data buffer/],
    ['overlapping tensors', handBuilt({ a: tensor('F32', [2], [0, 8]), b: tensor('F32', [2], [4, 12]) }, Buffer.alloc(12)), /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/],
    ['non-string metadata', handBuilt({ __metadata__: { epoch: 3 } }), /__metadata__\["epoch"\] must be a string, got 3/],
    ['invalid UTF-8', handBuilt(null, undefined, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), /not valid UTF-8 JSON/],
  ];

  for (const [problem, bytes, message] of hostile) {
    test(problem, async () => {
      const path = join(await scratchDir(), 'hostile.safetensors');
      await writeFile(path, bytes);
      await assert.rejects(SafetensorsFile.open(path), (error: Error) => {
        assert.ok(error.message.startsWith(`${path}: `), error.message);
        assert.match(error.message, message);
        return true;
      });
      assert.throws(() => SafetensorsFile.fromBuffer(bytes, 'upload'), (error: Error) => error.message.startsWith('upload: ') && message.test(error.message));
    });
  }

  test('gaps between tensors and zero-size tensors sharing an offset are accepted', async () => {
    const header = { a: tensor('U8', [2], [0, 2]), b: tensor('U8', [2], [6, 8]), e: tensor('F32', [0], [1, 1]), f: tensor('I64', [0, 3], [1, 1]) };
    const decoded = await readSafetensors(handBuilt(header, Buffer.from([1, 2, 9, 9, 9, 9, 3, 4])));
    assert.deepEqual([...decoded.get('a')!.data], [1, 2]);
    assert.deepEqual([...decoded.get('b')!.data], [3, 4]);
    assert.deepEqual(decoded.get('f')!.shape, [0, 3]);
  });
});

describe('reference fixtures written by PyTorch safetensors', { skip: noFixtures }, () => {
  async function checkAgainstHeader(path: string): Promise<Set<string>> {
    const raw = await readFile(path);
    const headerLength = Number(raw.readBigUInt64LE(0));
    const header = JSON.parse(raw.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const file = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(file.metadata, header['__metadata__']);
      const expectedNames = Object.keys(header).filter((name) => name !== '__metadata__');
      assert.deepEqual(file.names().sort(), expectedNames.sort());
      const dtypes = new Set<string>();
      for (const name of expectedNames) {
        const { dtype, shape, data_offsets: [begin, end] } = header[name]!;
        const info = file.info(name);
        assert.equal(info.dtype, dtype, name);
        assert.deepEqual(info.shape, shape, name);
        assert.equal(info.byteOffset, 8 + headerLength + begin, name);
        assert.equal(info.byteLength, end - begin, name);
        const tensor = await file.read(name);
        assert.ok(bytesOf(tensor).equals(raw.subarray(info.byteOffset, info.byteOffset + info.byteLength)), name);
        if (tensor.dtype === 'float32' || tensor.dtype === 'float64') {
          assert.ok((tensor.data as Float32Array | Float64Array).every(Number.isFinite), `${name} has non-finite values`);
        }
        dtypes.add(dtype);
      }
      return dtypes;
    } finally {
      await file.close();
    }
  }

  test('01_clip_text/model.safetensors', async () => {
    const dtypes = await checkAgainstHeader(join(fixtures, '01_clip_text', 'model.safetensors'));
    assert.deepEqual([...dtypes], ['F32']);
    const model = await openSafetensors(join(fixtures, '01_clip_text'));
    try {
      assert.deepEqual(model.info('text_model.embeddings.token_embedding.weight').shape, [1000, 32]);
    } finally {
      await model.close();
    }
  });

  test('06_schedulers inputs and outputs, with F64 and I64', async () => {
    const dir = join(fixtures, '06_schedulers');
    const files = (await readdir(dir)).filter((name) => name.endsWith('.safetensors'));
    assert.ok(files.length >= 2);
    const dtypes = new Set<string>();
    for (const name of files) for (const dtype of await checkAgainstHeader(join(dir, name))) dtypes.add(dtype);
    assert.ok(dtypes.has('F64') && dtypes.has('I64'), [...dtypes].join(','));
    const outputs = await readSafetensors(join(dir, 'outputs.safetensors'));
    const timesteps = outputs.get('ddim.n10.timesteps')!;
    assert.equal(timesteps.dtype, 'int64');
    assert.ok((timesteps.data as BigInt64Array).every((t) => t >= 0n && t < 1000n));
    assert.equal(outputs.get('ddim.n10.init_noise_sigma')!.dtype, 'float64');
  });
});

test('writeSafetensorsShards splits above the shard limit and reads back through the index', async () => {
  const tensors = Object.fromEntries(['a', 'b', 'c'].map((name, i) => [name, hostTensor('float32', [4, 8], Float32Array.from({ length: 32 }, (_, k) => i * 32 + k))]));
  const sharded = await scratchDir();
  // Each tensor is 64 bytes in F16: a 100-byte limit puts one per shard.
  await writeSafetensorsShards(sharded, tensors, { dtype: 'F16', maxShardBytes: 100 });
  assert.deepEqual((await readdir(sharded)).sort(), ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']);
  const single = await scratchDir();
  await writeSafetensorsShards(single, tensors, { dtype: 'F16', maxShardBytes: 1000 });
  assert.deepEqual(await readdir(single), ['model.safetensors']);
  for (const directory of [sharded, single]) {
    const reader = await openSafetensors(directory);
    for (const [name, tensor] of Object.entries(tensors)) assert.deepEqual((await reader.read(name, { asFloat32: true })).data, tensor.data);
    await reader.close();
  }
});
