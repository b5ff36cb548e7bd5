import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SampleGenerator } from '../../src/world/generate.js';
import { batches, GeneratedSource, openSource, ShardSource } from '../../src/world/loader.js';
import { readShardManifest, writeShards } from '../../src/world/shards.js';
import { datasetStats } from '../../src/world/stats.js';
import { testWorld } from './fixture.js';

const world = await testWorld();

test('shards read back exactly what the generator makes, with manifest, attribution and stats', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'kosmos-g-shards-')), 'compose');
  const generator = new SampleGenerator(world, { kind: 'compose', split: 'train', seed: 12 });
  const manifest = await writeShards(generator, { count: 25, out, shardSize: 10 });
  assert.deepEqual(manifest.shards.map((s) => s.count), [10, 10, 5]);
  assert.deepEqual(readShardManifest(out), manifest);
  assert.match(readFileSync(join(out, 'ATTRIBUTION.md'), 'utf8'), /CC-BY-4\.0/);
  const source = await ShardSource.open(out);
  assert.equal(source.count, 25);
  for (const index of [0, 9, 10, 24]) {
    const fromDisk = await source.get(index);
    const live = generator.sample(index);
    assert.equal(fromDisk.text, live.text);
    assert.deepEqual(fromDisk.slots, live.slots);
    assert.deepEqual(fromDisk.target.data, live.target.data);
    assert.deepEqual(fromDisk.images.map((im) => im.data), live.images.map((im) => im.data));
  }
  const stats = await datasetStats(out);
  assert.equal(stats.samples, 25);
  assert.equal(stats.byKind['compose'], 25);
  assert.equal(stats.inputImages, stats.slots);
  assert.ok(stats.entityWordDropRate !== null && stats.entityWordDropRate > 0 && stats.entityWordDropRate < 1);
  await assert.rejects(writeShards(generator, { count: 1, out }), /already holds a dataset/);
});

test('the same seed writes the same bytes', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kosmos-g-bytes-'));
  for (const name of ['a', 'b']) {
    await writeShards(new SampleGenerator(world, { kind: 'edit', split: 'train', seed: 3 }), { count: 6, out: join(root, name) });
  }
  const files = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).sort();
  assert.deepEqual(files(join(root, 'a')), files(join(root, 'b')));
  for (const file of files(join(root, 'a')).filter((f) => f.includes('.'))) {
    assert.deepEqual(readFileSync(join(root, 'a', file)), readFileSync(join(root, 'b', file)), file);
  }
});

test('loaders batch shards and live generation through one interface', async () => {
  const live = await openSource({ world, generate: { kind: 't2i', split: 'train', seed: 2 }, count: 10 });
  assert.ok(live instanceof GeneratedSource);
  const seen: string[] = [];
  for await (const batch of batches(live, { batchSize: 4, shuffleSeed: 1 })) {
    assert.ok(batch.length === 4);
    seen.push(...batch.map((s) => s.text));
  }
  assert.equal(seen.length, 12);
  assert.equal(new Set(seen.slice(0, 10)).size, 10, 'one epoch visits every sample once');
  const endless = await openSource({ world, generate: { kind: 't2i', split: 'train', seed: 2 } });
  await assert.rejects(async () => {
    for await (const batch of batches(endless, { batchSize: 2 })) void batch;
  }, /needs maxBatches/);
  let count = 0;
  for await (const batch of batches(endless, { batchSize: 2, maxBatches: 3 })) count += batch.length;
  assert.equal(count, 6);
});
