// Edge agreement (src/eval/edge-agreement.ts): precision, recall and F1 of edge maps with a
// Chebyshev tolerance, on maps small enough to count by hand, and on image files through Canny.
import test from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { edgeF1OfFiles, edgeMatch } from '../../src/eval/edge-agreement.js';
import { cannyEdges } from '../../src/pipeline/control-maps.js';

/** A width × height map with edges at the listed [x, y] pixels. */
function map(width: number, height: number, points: [number, number][]): Uint8Array {
  const edges = new Uint8Array(width * height);
  for (const [x, y] of points) edges[y * width + x] = 255;
  return edges;
}

const column = (x: number, height: number): [number, number][] => Array.from({ length: height }, (_, y) => [x, y]);

test('identical maps match fully; a line moved by one pixel matches within tolerance 1 and not within 0', () => {
  const line = map(8, 8, column(3, 8));
  assert.deepEqual(edgeMatch(line, line, 8, 8), { precision: 1, recall: 1, f1: 1 });
  const moved = map(8, 8, column(4, 8));
  assert.deepEqual(edgeMatch(line, moved, 8, 8, 1), { precision: 1, recall: 1, f1: 1 });
  assert.deepEqual(edgeMatch(line, moved, 8, 8, 0), { precision: 0, recall: 0, f1: 0 });
  assert.deepEqual(edgeMatch(line, map(8, 8, column(5, 8)), 8, 8, 1).f1, 0, 'two pixels away is outside the tolerance');
});

test('precision counts generated edges near the reference, recall reference edges near the generated ones', () => {
  // Reference: a full column of 8 pixels; generated: 4 of them plus 4 pixels far away.
  const reference = map(8, 8, column(1, 8));
  const generated = map(8, 8, [[1, 0], [1, 1], [1, 2], [1, 3], [6, 0], [6, 1], [6, 2], [6, 3]]);
  const { precision, recall, f1 } = edgeMatch(reference, generated, 8, 8, 0);
  assert.equal(precision, 4 / 8);
  assert.equal(recall, 4 / 8);
  assert.equal(f1, 0.5);
  // With tolerance 1 the reference pixel (1, 4) is next to the generated (1, 3): recall 5/8.
  assert.deepEqual(edgeMatch(reference, generated, 8, 8, 1), { precision: 0.5, recall: 5 / 8, f1: (2 * 0.5 * 0.625) / 1.125 });
});

test('two empty maps agree; an empty map against edges scores 0; bad sizes and tolerances are refused', () => {
  const empty = map(4, 4, []);
  assert.deepEqual(edgeMatch(empty, empty, 4, 4), { precision: 1, recall: 1, f1: 1 });
  assert.deepEqual(edgeMatch(map(4, 4, [[1, 1]]), empty, 4, 4), { precision: 0, recall: 0, f1: 0 });
  assert.throws(() => edgeMatch(empty, new Uint8Array(15), 4, 4), /both maps must be 4×4/);
  assert.throws(() => edgeMatch(empty, empty, 4, 4, -1), /tolerance must be a non-negative integer/);
});

test("on files: the Canny edges of the reference are taken at the generated image's size", async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'edge-agreement-test-'));
  try {
    // A white square on black, at 32 px and drawn again at 16 px.
    const square = (side: number) => {
      const pixels = Buffer.alloc(side * side * 3);
      for (let y = side / 4; y < (3 * side) / 4; y++) pixels.fill(255, (y * side + side / 4) * 3, (y * side + (3 * side) / 4) * 3);
      return sharp(pixels, { raw: { width: side, height: side, channels: 3 } }).png();
    };
    await square(32).toFile(join(scratch, 'big.png'));
    await square(16).toFile(join(scratch, 'small.png'));
    await sharp({ create: { width: 16, height: 16, channels: 3, background: '#000' } }).png().toFile(join(scratch, 'black.png'));
    assert.equal(await edgeF1OfFiles(join(scratch, 'small.png'), join(scratch, 'small.png')), 1);
    assert.ok((await edgeF1OfFiles(join(scratch, 'big.png'), join(scratch, 'small.png'))) > 0.9, 'the same square at another size');
    assert.equal(await edgeF1OfFiles(join(scratch, 'small.png'), join(scratch, 'black.png')), 0);
    const raw = Uint8Array.from(await sharp(join(scratch, 'small.png')).raw().toBuffer());
    assert.ok(cannyEdges(raw, 16, 16, { low: 100, high: 200 }).some((value) => value === 255), 'the square has edges');
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
