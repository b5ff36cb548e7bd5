// Layout placement (src/eval/layout-placement.ts): a subject is placed when half of its layout-map
// pixels are foreground in the image, foreground judged against the image's frame colours.
import test from 'node:test';
import assert from 'node:assert/strict';
import { subjectsPlaced, PLACED_FRACTION } from '../../src/eval/layout-placement.js';
import { layoutColour } from '../../src/pipeline/control-maps.js';
import type { RgbaImage } from '../../src/world/image.js';

/** A size × size image of `background` with the given squares [x, y, side, colour] drawn on it. */
function picture(size: number, background: [number, number, number], squares: [number, number, number, [number, number, number]][]): RgbaImage {
  const data = new Uint8Array(size * size * 4);
  for (let p = 0; p < size * size; p++) data.set([...background, 255], p * 4);
  for (const [x0, y0, side, colour] of squares) {
    for (let y = y0; y < y0 + side; y++) for (let x = x0; x < x0 + side; x++) data.set([...colour, 255], (y * size + x) * 4);
  }
  return { width: size, height: size, data };
}

const white: [number, number, number] = [255, 255, 255];
const black: [number, number, number] = [0, 0, 0];
const red: [number, number, number] = [220, 30, 30];

test('a subject drawn inside its mask is placed; one drawn elsewhere is not; a concept absent from the map is not measured', () => {
  const map = picture(32, black, [[4, 4, 8, layoutColour('cat')], [20, 20, 8, layoutColour('dog')]]);
  const image = picture(32, white, [[4, 4, 8, red], [2, 22, 8, red]]);
  assert.deepEqual(subjectsPlaced(image, map, ['cat', 'dog', 'rocket']), [true, false, null]);
});

test('placed means at least half of the mask is foreground, and the map is read at the image size', () => {
  const map = picture(16, black, [[2, 4, 8, layoutColour('cat')]]);
  // At 32 px the cat's mask is x 4–19, y 8–23 (256 pixels); a 16 × 8 band covers exactly half of it.
  const half = picture(32, white, [[4, 8, 8, red], [12, 8, 8, red]]);
  assert.equal(PLACED_FRACTION, 0.5);
  assert.deepEqual(subjectsPlaced(half, map, ['cat']), [true]);
  const less = picture(32, white, [[4, 8, 8, red], [12, 8, 7, red]]);
  assert.deepEqual(subjectsPlaced(less, map, ['cat']), [false]);
});
