// What counts as a finding (fuzz/verdict.ts), and how untrusted values are quoted in the readers'
// messages (src/io/describe-value.ts): one short line, whatever the value.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findingSignature, judgeThrown, withLinesJoined } from '../../fuzz/verdict.js';
import { describeName, describeNumbers, describeValue, escapeControlCharacters, oneLine } from '../../src/io/describe-value.js';
import { PickleTruncatedError } from '../../src/io/pickle.js';

test('an Error of our own with a one-line message is a clean refusal; runtime errors, non-errors and multi-line messages are findings', () => {
  assert.deepEqual(judgeThrown(new Error('file.bin: header length 9 goes beyond the end')), { outcome: 'refused', message: 'file.bin: header length 9 goes beyond the end' });
  assert.equal(judgeThrown(new PickleTruncatedError('x: truncated')).outcome, 'refused');
  const kinds = (thrown: unknown) => {
    const verdict = judgeThrown(thrown);
    return verdict.outcome === 'finding' ? [verdict.kind, verdict.errorClass] : [verdict.outcome];
  };
  assert.deepEqual(kinds(new TypeError("Cannot read properties of undefined (reading 'length')")), ['internal-error', 'TypeError']);
  assert.deepEqual(kinds(new RangeError('Invalid typed array length: -1')), ['internal-error', 'RangeError']);
  assert.deepEqual(kinds(new SyntaxError('Cannot convert x to a BigInt')), ['internal-error', 'SyntaxError']);
  assert.deepEqual(kinds('a string'), ['non-error-throw', 'string']);
  assert.deepEqual(kinds(undefined), ['non-error-throw', 'undefined']);
  assert.deepEqual(kinds({ message: 'not an Error' }), ['non-error-throw', 'Object']);
  assert.deepEqual(kinds(new Error('first\nsecond')), ['message', 'Error']);
  assert.deepEqual(kinds(new Error('  ')), ['message', 'Error']);
});

test('joining lines, as the config loaders do, cleans a multi-line schema report but never a runtime error', () => {
  assert.deepEqual(judgeThrown(withLinesJoined(new Error('unet config:\n✖ Invalid input\n  → at sample_size'))), { outcome: 'refused', message: 'unet config: ✖ Invalid input → at sample_size' });
  const typeError = new TypeError('x is undefined');
  assert.equal(withLinesJoined(typeError), typeError);
});

test('findings thrown from the same place are one finding; hangs are one per variant', () => {
  const at = (line: number) => ({ outcome: 'finding' as const, kind: 'internal-error' as const, errorClass: 'TypeError', message: `m${line}`, stack: `TypeError: m\n    at parse (file:///a/b.js:${line}:7)\n    at run (file:///c.js:1:1)` });
  assert.equal(findingSignature('t', 'v1', at(10)), findingSignature('t', 'v2', at(10)));
  assert.notEqual(findingSignature('t', 'v1', at(10)), findingSignature('t', 'v1', at(11)));
  const hang = { outcome: 'finding' as const, kind: 'hang' as const, message: 'still running' };
  assert.notEqual(findingSignature('t', 'v1', hang), findingSignature('t', 'v2', hang));
});

test('untrusted values are quoted as compact JSON, bounded in depth and length, bigints as digits', () => {
  assert.equal(describeValue([4, 2]), '[4,2]');
  assert.equal(describeValue({ a: [1, 'x'], b: null }), '{"a":[1,"x"],"b":null}');
  assert.equal(describeValue(2n ** 70n), '1180591620717411303424');
  assert.equal(describeValue([Number.NaN, -Infinity]), '[NaN,-Infinity]');
  assert.equal(describeValue(new Map([['k', new Set([1])]])), '{"k":[1]}');
  assert.equal(describeValue('a\nb'), '"a\\nb"');
  let deep: unknown = 0;
  for (let depth = 0; depth < 100_000; depth++) deep = [deep];
  assert.equal(describeValue(deep), '[[[[[[[[[…]]]]]]]]]');
  const long = describeValue(Array.from({ length: 100_000 }, (_, i) => i));
  assert.ok(long.length <= 121 && long.endsWith('…'), long);
  assert.equal(describeNumbers([2, 3]), '[2, 3]');
  assert.equal(describeNumbers(Array.from({ length: 20 }, () => 1)), '[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, … (20 in all)]');
  assert.equal(describeName('posix.system'), 'posix.system');
  assert.equal(describeName('collecti\u0015\r\nons'), '"collecti\\u0015\\r\\nons"');
  assert.equal(escapeControlCharacters('photos/a\nb\u2028c é.png'), 'photos/a\\u000ab\\u2028c é.png');
  assert.equal(oneLine(' Unexpected token,\n  "{\n" is not valid JSON '), 'Unexpected token, "{ " is not valid JSON');
});
