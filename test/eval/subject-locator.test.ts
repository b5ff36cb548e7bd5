// The background-difference locator: a subject drawn over a flat colour, a gradient or a tiled
// pattern is found at its position; a bare background gives the centre.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nearestPosition, positionFollowing, subjectCentre } from '../../src/eval/subject-locator.js';
import type { RgbaImage } from '../../src/world/image.js';

const side = 64;

function canvas(background: (x: number, y: number) => [number, number, number]): RgbaImage {
  const data = new Uint8Array(side * side * 4);
  for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) data.set([...background(x, y), 255], (y * side + x) * 4);
  return { width: side, height: side, data };
}

function drawDisc(image: RgbaImage, cx: number, cy: number, radius: number, rgb: [number, number, number]): void {
  for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2) image.data.set(rgb, (y * side + x) * 4);
}

const backgrounds: Record<string, (x: number, y: number) => [number, number, number]> = {
  flat: () => [90, 140, 220],
  gradient: (_, y) => [40 + 3 * y, 120, 200 - 2 * y],
  checkerboard: (x, y) => ((x >> 3) + (y >> 3)) % 2 ? [240, 240, 240] : [200, 210, 190],
};

for (const [name, background] of Object.entries(backgrounds)) {
  test(`a subject on a ${name} background is found where it was drawn`, () => {
    for (const [position, cx, cy] of [['top left', 16, 16], ['right', 48, 32], ['bottom', 32, 48], ['centre', 32, 32]] as const) {
      const image = canvas(background);
      drawDisc(image, cx, cy, 9, [220, 40, 30]);
      drawDisc(image, cx + 2, cy - 2, 3, [20, 20, 20]);
      const centre = subjectCentre(image);
      assert.equal(nearestPosition(centre.x, centre.y), position, `${name}: centre (${centre.x.toFixed(2)}, ${centre.y.toFixed(2)})`);
    }
  });
}

test('a bare background has no subject: the centre is returned', () => {
  assert.deepEqual(subjectCentre(canvas(backgrounds['flat']!)), { x: 0.5, y: 0.5 });
});

test('position following: slope 1 when centres sit at the prompted positions, 0 when they ignore them', () => {
  const prompted = ['left', 'right', 'top left', 'bottom right', 'centre'] as const;
  const exact = positionFollowing(prompted, [{ x: 0.25, y: 0.5 }, { x: 0.75, y: 0.5 }, { x: 0.25, y: 0.25 }, { x: 0.75, y: 0.75 }, { x: 0.5, y: 0.5 }]);
  assert.ok(Math.abs(exact.x - 1) < 1e-12 && Math.abs(exact.y - 1) < 1e-12, JSON.stringify(exact));
  // Half-way towards the prompted position on x, always the middle on y.
  const promptedX = { left: 0.25, right: 0.75, 'top left': 0.25, 'bottom right': 0.75, centre: 0.5 } as const;
  const half = positionFollowing(prompted, prompted.map((position) => ({ x: 0.5 + (promptedX[position] - 0.5) / 2, y: 0.5 })));
  assert.ok(Math.abs(half.x - 0.5) < 1e-12 && half.y === 0, JSON.stringify(half));
});
