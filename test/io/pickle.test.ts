// The safe unpickler: Python's own pickles of every value kind at protocols 0–5 (made by
// /usr/bin/python3 at test time) read back to the same values; globals off the allow-list refused
// by name before anything runs; length, integer, nesting and object-count bombs refused before
// anything is allocated for them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { DATA_GLOBALS, InertObject, PickleTruncatedError, plainValue, unpickle } from '../../src/io/pickle.js';

const run = promisify(execFile);

/** Runs Python code that prints a JSON object of hex-encoded pickles; returns them as bytes. */
async function pythonPickles(code: string): Promise<Record<string, Uint8Array>> {
  const { stdout } = await run('/usr/bin/python3', ['-c', `import json, pickle\n${code}\nprint(json.dumps({k: v.hex() for k, v in out.items()}))`]);
  return Object.fromEntries(Object.entries(JSON.parse(stdout) as Record<string, string>).map(([key, hex]) => [key, Uint8Array.from(Buffer.from(hex, 'hex'))]));
}

const read = (bytes: Uint8Array, limits = {}) => unpickle(bytes, { label: 'test', globals: DATA_GLOBALS, limits }).value;
const refusal = (bytes: Uint8Array, limits = {}) => {
  try {
    read(bytes, limits);
  } catch (error) {
    return error as Error;
  }
  return assert.fail('the pickle was accepted');
};

test('values pickled by Python at protocols 0–5 read back unchanged', async () => {
  const pickles = await pythonPickles(`
from collections import OrderedDict
shared = [1, 2]
value = {
  'none': None, 'flags': (True, False), 'small': [0, 1, -1, 255, 65535, -2**31, 2**31 - 1],
  'big': [2**53 - 1, 2**63, -2**70], 'float': [0.5, -1e300, 3.141592653589793],
  'text': ['', 'ascii', 'ünïcödé ✓', 'line\\nbreak \\\\ quote\\''], 'bytes': b'\\x00\\xffraw', 'bytearray': bytearray(b'ab'),
  'nested': [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)], 'set': {1, 2}, 'frozen': frozenset([3]),
  'ordered': OrderedDict([('b', 1), ('a', 2)]), 3: 'int key', 'shared': (shared, shared),
}
out = {str(p): pickle.dumps(value, protocol=p) for p in range(6)}`);
  for (const [protocol, bytes] of Object.entries(pickles)) {
    const value = read(bytes) as Map<unknown, unknown>;
    assert.ok(value instanceof Map, `protocol ${protocol}`);
    assert.equal(value.get('none'), null);
    assert.deepEqual(value.get('flags'), [true, false]);
    assert.deepEqual(value.get('small'), [0, 1, -1, 255, 65535, -(2 ** 31), 2 ** 31 - 1]);
    assert.deepEqual(value.get('big'), [2 ** 53 - 1, 2n ** 63n, -(2n ** 70n)], `protocol ${protocol}`);
    assert.deepEqual(value.get('float'), [0.5, -1e300, Math.PI]);
    assert.deepEqual(value.get('text'), ['', 'ascii', 'ünïcödé ✓', "line\nbreak \\ quote'"], `protocol ${protocol}`);
    assert.deepEqual(value.get('bytes'), Uint8Array.from([0, 255, ...Buffer.from('raw')]), `protocol ${protocol}`);
    assert.deepEqual(value.get('bytearray'), Uint8Array.from(Buffer.from('ab')), `protocol ${protocol}`);
    assert.deepEqual(value.get('nested'), [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]);
    assert.deepEqual(value.get('set'), new Set([1, 2]));
    assert.deepEqual(value.get('frozen'), new Set([3]));
    assert.deepEqual([...(value.get('ordered') as Map<unknown, unknown>)], [['b', 1], ['a', 2]]);
    assert.equal(value.get(3), 'int key');
    const [first, second] = value.get('shared') as unknown[];
    assert.equal(first, second, `protocol ${protocol}: the memo keeps one shared list`);
  }
});

test('placeholders record argparse.Namespace state and plainValue unwraps it', async () => {
  const { namespace } = await pythonPickles(`
import argparse
out = {'namespace': pickle.dumps({'args': argparse.Namespace(arch='kosmosg_xl', decoder_layers=24, dropout=0.1)}, protocol=2)}`);
  const value = read(namespace!) as Map<unknown, unknown>;
  const args = value.get('args');
  assert.ok(args instanceof InertObject);
  assert.equal(args.className, 'argparse.Namespace');
  assert.deepEqual(plainValue(value), { args: { arch: 'kosmosg_xl', decoder_layers: 24, dropout: 0.1 } });
});

test('globals off the allow-list are refused by name, before anything is called', async () => {
  const pickles = await pythonPickles(`
import os
class Evil:
    def __reduce__(self):
        return (os.system, ('touch /tmp/kosmos-g-pickle-test-ran',))
class Plain:
    pass
out = {'system': pickle.dumps(Evil(), protocol=2), 'class': pickle.dumps(Plain(), protocol=4), 'eval0': b"cbuiltins\\neval\\n(S'1'\\ntR."}`);
  assert.match(refusal(pickles['system']!).message, /refusing the global posix\.system/);
  assert.match(refusal(pickles['class']!).message, /refusing the global __main__\.Plain/);
  assert.match(refusal(pickles['eval0']!).message, /refusing the global builtins\.eval/);
  // getattr would reach any attribute of an allowed object; it is not on the list either.
  assert.match(refusal(Uint8Array.from(Buffer.from('c__builtin__\ngetattr\n.', 'latin1'))).message, /__builtin__\.getattr \(builtins\.getattr\)/);
});

test('persistent ids are refused without a handler, and extension opcodes always', () => {
  assert.match(refusal(Uint8Array.from(Buffer.from('\x80\x02K\x01Q.', 'latin1'))).message, /persistent id/);
  assert.match(refusal(Uint8Array.from([0x80, 0x02, 0x82, 0x01, 0x2e])).message, /unsupported pickle opcode 0x82/);
});

test('length, integer, nesting and object-count bombs are refused before allocation', () => {
  const header = [0x80, 0x04];
  // BINBYTES8 claiming 1 TiB or 2^62 bytes, BINUNICODE claiming 4 GiB: refused against the bytes that remain.
  const bytes8 = (length: bigint) => Uint8Array.from([...header, 0x8e, ...new Uint8Array(new BigUint64Array([length]).buffer), 0x2e]);
  assert.ok(refusal(bytes8(2n ** 40n)) instanceof PickleTruncatedError);
  assert.match(refusal(bytes8(2n ** 62n)).message, /out of range/);
  assert.match(refusal(Uint8Array.from([...header, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e])).message, /needs 4294967295 bytes/);
  // LONG4 of 2^31 − 1 bytes and a 10,000-digit text integer: over the integer limit.
  assert.match(refusal(Uint8Array.from([...header, 0x8b, 0xff, 0xff, 0xff, 0x7f, 0x2e])).message, /integer exceeds the limit/);
  assert.match(refusal(Uint8Array.from(Buffer.from(`I${'9'.repeat(10_000)}\n.`, 'latin1'))).message, /10000 digits exceeds the limit/);
  // 100,000 nested MARKs: refused at the depth limit, not by a stack overflow.
  assert.match(refusal(Uint8Array.from([...header, ...new Array(100_000).fill(0x28), 0x2e])).message, /MARK groups nested deeper than 1000/);
  // A million empty dicts against a limit of 1,000 objects.
  assert.match(refusal(Uint8Array.from([...header, ...new Array(1_000_000).fill(0x7d), 0x2e]), { maxObjects: 1000 }).message, /more than 1000 objects/);
});

test('plainValue bounds nesting: a 100,000-deep list and a list containing itself are refused', () => {
  const depth = 100_000;
  // EMPTY_LIST × n then APPEND × (n − 1): each list appended into the one before it.
  const nested = read(Uint8Array.from([0x80, 0x02, ...new Array(depth).fill(0x5d), ...new Array(depth - 1).fill(0x61), 0x2e]), { maxObjects: 2 * depth });
  assert.throws(() => plainValue(nested), /nested deeper than 1000 levels/);
  // EMPTY_LIST, BINPUT 0, BINGET 0, APPEND: the list holds itself.
  const cycle = read(Uint8Array.from([0x80, 0x02, 0x5d, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2e]));
  assert.throws(() => plainValue(cycle), /refers to itself/);
});

test('a pickle cut short is reported as truncated', async () => {
  const { whole } = await pythonPickles(`out = {'whole': pickle.dumps({'a': list(range(100))}, protocol=2)}`);
  const error = refusal(whole!.subarray(0, whole!.length - 10));
  assert.ok(error instanceof PickleTruncatedError, error.message);
});
