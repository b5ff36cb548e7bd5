import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodePattern, loadPatterns, patternPhrase } from '../../src/world/patterns.js';

function patFile(width: number, height: number, depth: number, name: string, pixels: number[]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header = Buffer.alloc(24);
  header.writeUInt32BE(24 + nameBytes.length, 0);
  header.writeUInt32BE(1, 4);
  header.writeUInt32BE(width, 8);
  header.writeUInt32BE(height, 12);
  header.writeUInt32BE(depth, 16);
  header.write('GPAT', 20, 'latin1');
  return Buffer.concat([header, nameBytes, Buffer.from(pixels)]);
}

test('decodes RGB, grey and grey-alpha patterns', () => {
  const rgb = decodePattern(patFile(2, 1, 3, 'Two', [1, 2, 3, 4, 5, 6]));
  assert.equal(rgb.name, 'Two');
  assert.deepEqual([...rgb.image.data], [1, 2, 3, 255, 4, 5, 6, 255]);
  assert.deepEqual([...decodePattern(patFile(1, 1, 1, 'g', [9])).image.data], [9, 9, 9, 255]);
  assert.deepEqual([...decodePattern(patFile(1, 1, 2, 'ga', [9, 7])).image.data], [9, 9, 9, 7]);
  assert.throws(() => decodePattern(patFile(2, 2, 3, 'short', [1, 2, 3])), /truncated/);
  const bad = patFile(1, 1, 3, 'x', [0, 0, 0]);
  bad.write('XXXX', 20, 'latin1');
  assert.throws(() => decodePattern(bad), /bad magic/);
});

test('a corrupt file is skipped with a warning; a missing folder says what to install', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kosmos-g-pat-'));
  mkdirSync(join(dir, 'Wood'));
  writeFileSync(join(dir, 'Wood', 'pine.pat'), patFile(1, 1, 3, 'Pine', [10, 20, 30]));
  writeFileSync(join(dir, 'broken.pat'), Buffer.from('not a pattern at all, just text'));
  const warnings: string[] = [];
  const patterns = loadPatterns({ directory: dir, onWarning: (m) => warnings.push(m) });
  assert.deepEqual(patterns.map((p) => p.id), ['Wood/pine']);
  assert.equal(patterns[0]?.folder, 'Wood');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] as string, /skipping corrupt GIMP pattern .*broken\.pat/);
  assert.equal(patternPhrase(patterns[0]!), 'on wooden boards');
  assert.throws(() => loadPatterns({ directory: join(dir, 'absent') }), /apt-get install gimp-data gimp-data-extras/);
});

test('the Debian GIMP patterns load', () => {
  const patterns = loadPatterns();
  assert.ok(patterns.length >= 150, `${patterns.length} patterns`);
  assert.ok(patterns.some((p) => p.id === 'Stone/marble1'));
});
