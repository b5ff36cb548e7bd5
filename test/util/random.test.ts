import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deriveSeed, hashString, Random } from '../../src/util/random.js';

test('the same seed gives the same stream, different seeds differ', () => {
  const a = new Random(42);
  const b = new Random(42);
  const c = new Random(43);
  const sa = Array.from({ length: 8 }, () => a.nextUint32());
  assert.deepEqual(sa, Array.from({ length: 8 }, () => b.nextUint32()));
  assert.notDeepEqual(sa, Array.from({ length: 8 }, () => c.nextUint32()));
});

test('floats lie in [0, 1) with a mean near one half, ints stay in range', () => {
  const r = new Random(7);
  let sum = 0;
  const counts = new Array<number>(6).fill(0);
  for (let i = 0; i < 60000; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    sum += x;
    const k = r.int(6);
    counts[k] = (counts[k] as number) + 1;
  }
  assert.ok(Math.abs(sum / 60000 - 0.5) < 0.01);
  for (const n of counts) assert.ok(Math.abs(n - 10000) < 400, `bucket count ${n}`);
});

test('weighted choice follows the weights and rejects all-zero weights', () => {
  const r = new Random(3);
  const counts = [0, 0, 0];
  for (let i = 0; i < 30000; i++) counts[r.weighted([1, 2, 0])]! += 1;
  assert.equal(counts[2], 0);
  assert.ok(Math.abs((counts[1] as number) / 30000 - 2 / 3) < 0.02);
  assert.throws(() => r.weighted([0, 0]), /positive weight/);
});

test('derived seeds are stable and distinct per index', () => {
  assert.equal(deriveSeed(5, 10), deriveSeed(5, 10));
  const seeds = new Set(Array.from({ length: 1000 }, (_, i) => deriveSeed(5, i)));
  assert.equal(seeds.size, 1000);
  assert.notEqual(hashString('cat'), hashString('dog'));
  assert.throws(() => new Random(Number.NaN), /finite/);
});
