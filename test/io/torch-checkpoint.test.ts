// torch.save files read without PyTorch: checkpoints written at test time by /usr/bin/python3
// (torch) in the zip format at pickle protocols 2 and 4 and in the legacy format, holding every
// storage type, a tied pair, transposed and offset views, a broadcast view, a scalar, an empty
// tensor and a Parameter; then the refusals (code-running pickles, size bombs, truncation, limits)
// and the official-format fixture (../shared/fixtures/12_kosmosg_checkpoint).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openFileSource } from '../../src/io/byte-source.js';
import { TorchCheckpoint, TorchTensor, stateDictOf } from '../../src/io/torch-checkpoint.js';
import { ZipArchive } from '../../src/io/zip.js';
import { float16BitsToFloat32 } from '../../src/onnx/dtype.js';

const run = promisify(execFile);
const fixture = fileURLToPath(new URL('../../../../shared/fixtures/12_kosmosg_checkpoint/', import.meta.url));
const noFixture = existsSync(fixture) ? false : 'the reference fixtures (../shared/fixtures) are not present';

// argv: output folder. Writes the checkpoints and prints each tensor's dtype, shape and values
// (contiguous, as torch reads them; int64 as strings so JSON keeps every digit).
const WRITER = String.raw`
import collections, json, os, sys
import torch
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
base = torch.randn(4, 6, generator=g)
tied = torch.randn(5, 3, generator=g)
state = collections.OrderedDict()
state['f32'] = base
state['f16'] = torch.randn(3, 4, generator=g).half()
state['bf16'] = torch.randn(7, generator=g).bfloat16()
state['f64'] = torch.randn(2, 2, generator=g).double()
state['i64'] = torch.tensor([0, -1, 2**62, -2**63], dtype=torch.int64)
state['i32'] = torch.tensor([[1, -2], [2**31 - 1, -2**31]], dtype=torch.int32)
state['i16'] = torch.tensor([-32768, 7, 32767], dtype=torch.int16)
state['i8'] = torch.tensor([-128, 0, 127], dtype=torch.int8)
state['u8'] = torch.tensor([0, 128, 255], dtype=torch.uint8)
state['bool'] = torch.tensor([True, False, True])
state['embed'] = tied
state['head'] = tied  # the tied LM head: one storage, two keys
state['transposed'] = base.t()  # (6, 4), strides (1, 6)
state['offset_view'] = base[1:, ::2]  # storage offset 6, strides (6, 2)
state['broadcast'] = torch.randn(3, 1, generator=g).expand(3, 5)  # stride 0
state['scalar'] = torch.tensor(2.5)
state['empty'] = torch.zeros(0, 4)
state['param'] = torch.nn.Parameter(torch.randn(2, 3, generator=g))
checkpoint = {'model': state, 'args': None, 'extra_state': {'epoch': 3}}
torch.save(checkpoint, os.path.join(out, 'zip2.pt'))
torch.save(checkpoint, os.path.join(out, 'zip4.pt'), pickle_protocol=4)
torch.save(checkpoint, os.path.join(out, 'legacy.pt'), _use_new_zipfile_serialization=False)

class Evil:
    def __reduce__(self):
        return (os.system, ('touch ' + os.path.join(out, 'PICKLE_RAN'),))
torch.save({'model': {'w': torch.zeros(2)}, 'payload': Evil()}, os.path.join(out, 'evil.pt'))

# Tensors whose shapes claim far more than their storages hold, built with torch's own rebuild function.
class Claim:
    def __init__(self, storage, size, stride):
        self.args = (storage, 0, size, stride, False, collections.OrderedDict())
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)
four = torch.zeros(4).storage()
torch.save({'w': Claim(four, (10**6, 10**6), (10**6, 1))}, os.path.join(out, 'oversized.pt'))
torch.save({'w': Claim(torch.zeros(1).storage(), (2**20, 2**20), (0, 0))}, os.path.join(out, 'broadcast_bomb.pt'))

def values(t):
    t = t.detach().contiguous()
    if t.dtype == torch.int64:
        return [str(v) for v in t.flatten().tolist()]
    return t.float().flatten().tolist() if t.is_floating_point() else [int(v) for v in t.flatten().tolist()]
print(json.dumps({k: {'dtype': str(v.dtype), 'shape': list(v.shape), 'values': values(v)} for k, v in state.items()}))
`;

interface Expected {
  dtype: string;
  shape: number[];
  values: (number | string)[];
}

const readAs: Record<string, string> = {
  'torch.float32': 'float32', 'torch.float16': 'float16', 'torch.bfloat16': 'float32', 'torch.float64': 'float64', 'torch.int64': 'int64',
  'torch.int32': 'int32', 'torch.int16': 'int32', 'torch.int8': 'int8', 'torch.uint8': 'uint8', 'torch.bool': 'bool',
};

let scratch = '';
let expected: Record<string, Expected> = {};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'torch-checkpoint-test-'));
  await writeFile(join(scratch, 'writer.py'), WRITER);
  const { stdout } = await run('/usr/bin/python3', [join(scratch, 'writer.py'), scratch], { maxBuffer: 16 * 2 ** 20 });
  expected = JSON.parse(stdout) as Record<string, Expected>;
});
after(() => rm(scratch, { recursive: true, force: true }));

async function refusal(path: string): Promise<string> {
  try {
    const checkpoint = await TorchCheckpoint.open(path);
    const tensors = stateDictOf(checkpoint.root, path);
    try {
      for (const tensor of tensors.values()) await tensor.read();
    } finally {
      await checkpoint.close();
    }
  } catch (error) {
    return (error as Error).message;
  }
  return assert.fail(`${path} was read without an error`);
}

for (const file of ['zip2.pt', 'zip4.pt', 'legacy.pt']) {
  test(`${file}: every tensor equals torch's, views made contiguous, the tied pair on one storage`, async () => {
    const checkpoint = await TorchCheckpoint.open(join(scratch, file));
    try {
      assert.equal(checkpoint.format, file.startsWith('legacy') ? 'legacy' : 'zip');
      const tensors = stateDictOf(checkpoint.root, file);
      assert.deepEqual([...tensors.keys()], Object.keys(expected));
      for (const [key, want] of Object.entries(expected)) {
        const tensor = await tensors.get(key)!.read({ asFloat32: true });
        assert.equal(tensor.dtype, want.dtype === 'torch.float16' ? 'float32' : readAs[want.dtype], key);
        assert.deepEqual(tensor.shape, want.shape, key);
        const values = Array.from(tensor.data as ArrayLike<number | bigint>, (value) => (typeof value === 'bigint' ? value.toString() : Number(value)));
        assert.deepEqual(values, want.values, key);
      }
      const halfBits = await tensors.get('f16')!.read();
      assert.equal(halfBits.dtype, 'float16');
      assert.deepEqual(Array.from(halfBits.data as Uint16Array, float16BitsToFloat32), expected['f16']!.values);
      assert.equal(tensors.get('head')!.storage, tensors.get('embed')!.storage);
      assert.equal(tensors.get('transposed')!.isContiguous, false);
      assert.equal(tensors.get('f32')!.isContiguous, true);
      assert.deepEqual((checkpoint.root as Map<string, unknown>).get('extra_state'), new Map([['epoch', 3]]));
    } finally {
      await checkpoint.close();
    }
  });
}

test('a pickle that would run a command is refused by name and runs nothing', async () => {
  assert.match(await refusal(join(scratch, 'evil.pt')), /refusing the global posix\.system/);
  assert.equal(existsSync(join(scratch, 'PICKLE_RAN')), false);
});

test('size bombs are refused before allocation', async () => {
  // 10^12 elements on a 4-element storage: refused while the pickle is read.
  assert.match(await refusal(join(scratch, 'oversized.pt')), /reaches element 999999999999 of storage .*, which has 4/);
  // 2^40 elements broadcast from one: inside its storage, but refused against maxTensorBytes when read.
  assert.match(await refusal(join(scratch, 'broadcast_bomb.pt')), /needs 4398046511104 bytes, over the limit/);
  // A data.pkl over the pickle limit is never read.
  await assert.rejects(TorchCheckpoint.open(join(scratch, 'zip2.pt'), { maxPickleBytes: 100 }), /data\.pkl is \d+ bytes, over the limit of 100/);
});

test('truncated files and files that are not checkpoints are refused with what is wrong', async () => {
  const legacy = await readFile(join(scratch, 'legacy.pt'));
  const cuts = { 'legacy_storage_cut.pt': legacy.subarray(0, legacy.length - 10), 'legacy_pickle_cut.pt': legacy.subarray(0, 200) };
  for (const [name, bytes] of Object.entries(cuts)) await writeFile(join(scratch, name), bytes);
  // The cut lands in the last storage's data or, when the storages' (id-keyed, so varying) order
  // puts a tiny one last, in its size header: either message names where the file ends.
  assert.match(await refusal(join(scratch, 'legacy_storage_cut.pt')), /the file ends at (byte \d+, before storage \S+|\d+) \(truncated\)/);
  assert.match(await refusal(join(scratch, 'legacy_pickle_cut.pt')), /truncated/);
  await writeFile(join(scratch, 'text.pt'), 'hello, not a checkpoint\n');
  assert.match(await refusal(join(scratch, 'text.pt')), /not a torch checkpoint \(neither a zip archive nor a pickle\)/);
  await run('/usr/bin/python3', ['-c', `import pickle; open('${join(scratch, 'plain.pt')}', 'wb').write(pickle.dumps({'a': 1}, protocol=2))`]);
  assert.match(await refusal(join(scratch, 'plain.pt')), /without torch's magic number/);
  await run('/usr/bin/python3', ['-c', `import zipfile; z = zipfile.ZipFile('${join(scratch, 'deflated.pt')}', 'w', zipfile.ZIP_DEFLATED); z.writestr('a/data.pkl', b'x' * 100); z.close()`]);
  assert.match(await refusal(join(scratch, 'deflated.pt')), /a\/data\.pkl is compressed \(method 8\)/);
});

test('zip64 archives (more than 65,535 entries) are read through their zip64 end record', async () => {
  const path = join(scratch, 'many.zip');
  await run('/usr/bin/python3', ['-c', `import zipfile\nz = zipfile.ZipFile('${path}', 'w')\nfor i in range(70000): z.writestr(f'a/{i}', str(i))\nz.close()`]);
  const names = await openFileSource(path, async (source) => {
    const archive = await ZipArchive.open(source);
    const last = archive.entry('a/69999')!;
    assert.equal(Buffer.from(await archive.read(last)).toString(), '69999');
    await source.close();
    return archive.names();
  });
  assert.equal(names.length, 70000);
});

test('the official-format fixture: zip, legacy and fp16 files, shared and strided tensors', { skip: noFixture }, async () => {
  for (const file of ['checkpoint_fp32.pt', 'checkpoint_legacy.pt', 'checkpoint_fp16.pt']) {
    const checkpoint = await TorchCheckpoint.open(join(fixture, file));
    try {
      const tensors = stateDictOf(checkpoint.root, file);
      assert.equal(tensors.size, 204, file);
      assert.ok([...tensors.values()].every((tensor) => tensor instanceof TorchTensor));
      assert.equal(tensors.get('gpt_model.decoder.output_projection.weight')!.storage, tensors.get('gpt_model.decoder.embed_tokens.weight')!.storage);
      assert.equal(tensors.get('img_connector.x_attn.q_proj.weight')!.isContiguous, false);
    } finally {
      await checkpoint.close();
    }
  }
  const messages = await Promise.all(['exec.pt', 'truncated.pt', 'not_a_checkpoint.pt', 'short_storage.pt'].map((file) => refusal(join(fixture, 'hostile', file))));
  assert.match(messages[0]!, /__builtin__\.exec \(builtins\.exec\)/);
  assert.match(messages[1]!, /truncated/);
  assert.match(messages[2]!, /no zip end-of-central-directory record/);
  assert.match(messages[3]!, /holds 6 bytes where its 4 elements need 16/);
  assert.equal(existsSync('KOSMOS_G_PICKLE_EXECUTED'), false);
});
