import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alphaBounds, createImage, cropImage, decodeImage, drawOver, encodePng, resizeImage, trimToAlpha } from '../../src/world/image.js';

test('trimming keeps exactly the alpha bounding box', () => {
  const image = createImage(10, 8);
  for (const [x, y] of [[2, 3], [6, 5]] as const) image.data[(y * 10 + x) * 4 + 3] = 255;
  const trimmed = trimToAlpha(image);
  assert.equal(trimmed.width, 5);
  assert.equal(trimmed.height, 3);
  assert.deepEqual(alphaBounds(trimmed), { x: 0, y: 0, w: 5, h: 3 });
  assert.throws(() => trimToAlpha(createImage(4, 4)), /transparent/);
});

test('resizing a flat colour keeps the colour and does not darken transparent edges', () => {
  const image = createImage(16, 16, [200, 100, 50, 255]);
  const small = resizeImage(image, 5, 7);
  assert.equal(small.width, 5);
  for (let i = 0; i < small.data.length; i += 4) assert.deepEqual([...small.data.subarray(i, i + 4)], [200, 100, 50, 255]);
  const half = createImage(8, 8);
  for (let i = 0; i < 32; i++) half.data.set([255, 0, 0, 255], i * 4);
  const shrunk = resizeImage(half, 4, 4);
  for (let i = 0; i < shrunk.data.length; i += 4) if ((shrunk.data[i + 3] as number) > 0) assert.equal(shrunk.data[i], 255);
});

test('drawing over blends by alpha and clips to the canvas', () => {
  const canvas = createImage(4, 4, [0, 0, 255, 255]);
  const sprite = createImage(3, 3, [255, 0, 0, 128]);
  drawOver(canvas, sprite, 2, 2);
  assert.deepEqual([...canvas.data.subarray(0, 4)], [0, 0, 255, 255]);
  const p = (3 * 4 + 3) * 4;
  assert.deepEqual([...canvas.data.subarray(p, p + 4)], [128, 0, 127, 255]);
});

test('crops pad outside the image and PNG round-trips exactly', async () => {
  const image = createImage(3, 3, [10, 20, 30, 255]);
  const crop = cropImage(image, { x: -1, y: 1, w: 3, h: 3 }, [1, 2, 3, 4]);
  assert.deepEqual([...crop.data.subarray(0, 4)], [1, 2, 3, 4]);
  assert.deepEqual([...crop.data.subarray(4, 8)], [10, 20, 30, 255]);
  const back = await decodeImage(await encodePng(crop));
  assert.deepEqual(back.data, crop.data);
});
