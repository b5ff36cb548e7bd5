import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildCatalog } from '../../src/world/catalog.js';
import { alphaBounds } from '../../src/world/image.js';
import { buildSpriteCache, SpriteStore } from '../../src/world/sprites.js';

test('sprites render non-empty, trimmed to their alpha box, and are cached', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'kosmos-g-sprites-'));
  const catalog = buildCatalog({ concepts: ['cat', 'teapot', 'rocket'] });
  const first = await buildSpriteCache(catalog, { size: 48, cacheDir });
  assert.equal(first.cached, 0);
  assert.ok(first.rendered >= catalog.subjects.length);
  const store = new SpriteStore(catalog, 48, cacheDir);
  for (const subject of catalog.subjects) {
    const sprite = store.sprite(subject.id);
    assert.ok(Math.max(sprite.width, sprite.height) <= 48 && Math.max(sprite.width, sprite.height) >= 28, `${subject.id} ${sprite.width}x${sprite.height}`);
    const box = alphaBounds(sprite, 8);
    assert.deepEqual(box, { x: 0, y: 0, w: sprite.width, h: sprite.height }, `${subject.id} is trimmed`);
    const fitted = store.fitted(subject.id, 20);
    assert.equal(Math.max(fitted.width, fitted.height), 20);
  }
  const again = await buildSpriteCache(catalog, { size: 48, cacheDir });
  assert.equal(again.rendered, 0);
  assert.throws(() => new SpriteStore(catalog, 32, cacheDir).sprite('noto:cat'), /not in the cache.*data sprites --size 32/);
});

test('an icon that aborts resvg is rendered by sharp and the caller survives', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'kosmos-g-crash-'));
  const catalog = buildCatalog({ concepts: ['package', 'cat'], styles: ['noto'] });
  const report = await buildSpriteCache(catalog, { size: 32, cacheDir, tryKnownCrashers: true, workers: 1 });
  assert.match(report.fallbacks.get('noto:package') ?? '', /resvg exited/);
  assert.equal(report.fallbacks.has('noto:cat'), false);
  const store = new SpriteStore(catalog, 32, cacheDir);
  assert.ok(store.sprite('noto:package').width > 16);
  assert.ok(store.sprite('noto:cat').width > 16);
});
