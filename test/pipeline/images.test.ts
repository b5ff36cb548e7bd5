import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLIP_MEAN, CLIP_STD, preprocessImages, resizeCropGeometry } from '../../src/pipeline/images.js';
import { solidPng } from './tiny-condition-folder.js';

test('torchvision Resize(S) + CenterCrop(S) geometry', () => {
  assert.deepEqual(resizeCropGeometry(640, 480, 224), { width: 298, height: 224, left: 37, top: 0 });
  assert.deepEqual(resizeCropGeometry(480, 640, 224), { width: 224, height: 298, left: 0, top: 37 });
  assert.deepEqual(resizeCropGeometry(224, 224, 224), { width: 224, height: 224, left: 0, top: 0 });
  // (229 − 224)/2 = 2.5 rounds half to even: 2.
  assert.deepEqual(resizeCropGeometry(229, 224, 224), { width: 229, height: 224, left: 2, top: 0 });
});

test('a solid colour normalises to (c/255 − mean)/std in every pixel, (N, 3, S, S) float32', async () => {
  const colour: [number, number, number] = [200, 100, 30];
  const pixels = await preprocessImages([await solidPng(40, 30, colour)], 8);
  assert.deepEqual(pixels.shape, [1, 3, 8, 8]);
  for (let channel = 0; channel < 3; channel++) {
    const expected = (colour[channel]! / 255 - CLIP_MEAN[channel]!) / CLIP_STD[channel]!;
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(pixels.data[channel * 64 + i]! - expected) < 1e-6, `channel ${channel} pixel ${i}`);
  }
});

test('the centre crop of a wide image keeps the middle: a 2:1 image with a red left half', async () => {
  const png = await solidPng(32, 16, [0, 0, 255], [255, 0, 0]);
  const pixels = await preprocessImages([png], 16);
  const red = (x: number, y: number) => pixels.data[y * 16 + x]!;
  // Crop of columns 8…23: the left half of the crop is red, the right half blue.
  assert.ok(red(2, 8) > 1.5 && red(13, 8) < -1.5, `left ${red(2, 8)}, right ${red(13, 8)}`);
});

test('paths, data URLs and Buffers give identical tensors, in list order', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-images-'));
  try {
    const first = await solidPng(20, 20, [10, 200, 60]);
    const second = await solidPng(24, 12, [250, 250, 250], [0, 0, 0]);
    const path = join(directory, 'first.png');
    await writeFile(path, first);
    const fromPath = await preprocessImages([path, second], 12);
    const fromUrl = await preprocessImages([`data:image/png;base64,${first.toString('base64')}`, new Uint8Array(second)], 12);
    assert.deepEqual(fromPath.shape, [2, 3, 12, 12]);
    assert.deepEqual(fromUrl.data, fromPath.data);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('bad images give single-line errors naming the image', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-images-'));
  try {
    const png = await solidPng(64, 64, [1, 2, 3]);
    const cases: [unknown, RegExp, object?][] = [
      [join(directory, 'missing.png'), /image 1 \(.*missing\.png\): cannot read the file \(ENOENT\)/],
      [directory, /not a regular file/],
      [Buffer.from('this is not an image'), /image 1 \(20 bytes\): not a readable image/],
      [png.subarray(0, png.length - 40), /image 1 \(\d+ bytes\): cannot decode the image \(.*read error\)/],
      [new Uint8Array(0), /empty image/],
      ['data:image/png;base64,@@@', /base64 payload has invalid characters/],
      ['data:image/png', /malformed data URL/],
      [png, /64×64 is over the 1000-pixel limit/, { maxPixels: 1000 }],
      [png, /over the 100-byte limit/, { maxBytes: 100 }],
      [42, /image 1: expected a file path, a data URL or encoded image bytes/],
    ];
    for (const [source, pattern, limits] of cases) {
      await assert.rejects(preprocessImages([source as string], 8, limits), (error: Error) => {
        assert.match(error.message, pattern);
        assert.ok(!error.message.includes('\n'), `single line: ${error.message}`);
        return true;
      });
    }
    await assert.rejects(preprocessImages([png, Buffer.from('junk')], 8), /image 2 \(4 bytes\)/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
