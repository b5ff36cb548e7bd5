// The pure-TypeScript bicubic resize is byte-identical to real Pillow (/usr/bin/python3, Debian's
// python3-pil) on seeded images: downscaling by integer and non-integer ratios, upscaling, one
// dimension only, mixed, and identity. Also argument errors and cropRgb.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { cropRgb, resizeBicubicRgb } from '../../src/pipeline/resample.js';
import { Random } from '../../src/util/random.js';

const run = promisify(execFile);

interface Case {
  width: number;
  height: number;
  outWidth: number;
  outHeight: number;
  rgb: Uint8Array;
}

/**
 * Gradients plus noise, with saturated 0/255 stripes so the negative lobes of the cubic
 * overshoot and the clipping path is exercised; `noise` = 1 gives pure noise.
 */
function image(width: number, height: number, seed: number, noise: number): Uint8Array {
  const generator = new Random(seed);
  const random = () => generator.next();
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const smooth = c === 0 ? (255 * x) / width : c === 1 ? (255 * y) / height : ((x + y) * 7) % 256;
        let value = (1 - noise) * smooth + noise * random() * 255;
        if (x % 11 === 3) value = c === 1 ? 0 : 255;
        rgb[(y * width + x) * 3 + c] = Math.round(value);
      }
    }
  }
  return rgb;
}

/** Resizes every case with Pillow in one Python run (inputs via a temp file: too big for argv). */
async function pillowResize(cases: Case[]): Promise<Uint8Array[]> {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-resample-'));
  try {
    const path = join(directory, 'cases.json');
    const json = cases.map(({ width, height, outWidth, outHeight, rgb }) => ({ width, height, outWidth, outHeight, hex: Buffer.from(rgb).toString('hex') }));
    await writeFile(path, JSON.stringify(json));
    const script = `
import json, sys
from PIL import Image
out = []
for c in json.load(open(sys.argv[1])):
    im = Image.frombytes('RGB', (c['width'], c['height']), bytes.fromhex(c['hex']))
    out.append(im.resize((c['outWidth'], c['outHeight']), Image.BICUBIC).tobytes().hex())
print(json.dumps(out))`;
    const { stdout } = await run('/usr/bin/python3', ['-W', 'ignore', '-c', script, path], { maxBuffer: 64 << 20 });
    return (JSON.parse(stdout) as string[]).map((hex) => Uint8Array.from(Buffer.from(hex, 'hex')));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

test('bicubic resize is byte-identical to Pillow', async () => {
  const big = image(300, 200, 1, 0.3);
  const noisy = image(64, 48, 2, 1);
  const small = image(37, 23, 3, 0.5);
  const square = image(17, 17, 4, 1);
  const cases: Case[] = [
    { width: 300, height: 200, outWidth: 224, outHeight: 149, rgb: big }, // non-integer downscale
    { width: 300, height: 200, outWidth: 37, outHeight: 29, rgb: big }, // strong downscale
    { width: 64, height: 48, outWidth: 8, outHeight: 6, rgb: noisy }, // integer 8×
    { width: 64, height: 48, outWidth: 45, outHeight: 31, rgb: noisy },
    { width: 64, height: 48, outWidth: 100, outHeight: 20, rgb: noisy }, // up in x, down in y
    { width: 17, height: 17, outWidth: 40, outHeight: 33, rgb: square }, // upscale
    { width: 17, height: 17, outWidth: 1, outHeight: 1, rgb: square },
    { width: 37, height: 23, outWidth: 37, outHeight: 11, rgb: small }, // vertical pass only
    { width: 37, height: 23, outWidth: 50, outHeight: 23, rgb: small }, // horizontal pass only
    { width: 37, height: 23, outWidth: 37, outHeight: 23, rgb: small }, // identity
  ];
  const expected = await pillowResize(cases);
  cases.forEach(({ width, height, outWidth, outHeight, rgb }, i) => {
    const actual = resizeBicubicRgb(rgb, width, height, outWidth, outHeight);
    const label = `${width}×${height} → ${outWidth}×${outHeight}`;
    assert.equal(actual.length, outWidth * outHeight * 3, label);
    const mismatch = actual.findIndex((value, j) => value !== expected[i]![j]);
    assert.equal(mismatch, -1, `${label}: first difference at byte ${mismatch}: ${actual[mismatch]} vs Pillow's ${expected[i]![mismatch]}`);
  });
});

test('identity returns a copy, not the input array', () => {
  const rgb = image(5, 4, 9, 1);
  const out = resizeBicubicRgb(rgb, 5, 4, 5, 4);
  assert.deepEqual(out, rgb);
  assert.notEqual(out, rgb);
});

test('bad arguments give single-line errors', () => {
  const rgb = new Uint8Array(4 * 3 * 3);
  const cases: [() => unknown, RegExp][] = [
    [() => resizeBicubicRgb(rgb, 0, 3, 2, 2), /^resizeBicubicRgb: width must be a positive integer \(got 0\)$/],
    [() => resizeBicubicRgb(rgb, 4, 1.5, 2, 2), /height must be a positive integer \(got 1\.5\)/],
    [() => resizeBicubicRgb(rgb, 4, 3, NaN, 2), /outWidth must be a positive integer \(got NaN\)/],
    [() => resizeBicubicRgb(rgb, 4, 3, 2, -1), /outHeight must be a positive integer \(got -1\)/],
    [() => resizeBicubicRgb(rgb, 5, 3, 2, 2), /rgb has 36 bytes, expected 5×3×3 = 45/],
    [() => resizeBicubicRgb([1, 2, 3] as unknown as Uint8Array, 1, 1, 2, 2), /rgb must be a Uint8Array/],
    [() => cropRgb(rgb, 4, 3, -1, 0, 2, 2), /^cropRgb: left must be a non-negative integer \(got -1\)$/],
    [() => cropRgb(rgb, 4, 3, 0, 0, 0, 2), /cropWidth must be a positive integer/],
    [() => cropRgb(rgb, 4, 3, 3, 0, 2, 2), /crop 2×2 at \(3, 0\) does not fit in the 4×3 image/],
    [() => cropRgb(rgb, 4, 3, 0, 2, 4, 2), /does not fit/],
  ];
  for (const [call, pattern] of cases) {
    assert.throws(call, (error: Error) => pattern.test(error.message) && !error.message.includes('\n'), String(pattern));
  }
});

test('cropRgb cuts out the rectangle, row by row', () => {
  // Pixel (x, y) of a 5×4 image holds [x, y, 10x + y].
  const width = 5;
  const height = 4;
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rgb.set([x, y, 10 * x + y], (y * width + x) * 3);
  const crop = cropRgb(rgb, width, height, 1, 2, 3, 2);
  assert.deepEqual([...crop], [1, 2, 12, 2, 2, 22, 3, 2, 32, 1, 3, 13, 2, 3, 23, 3, 3, 33]);
  assert.deepEqual(cropRgb(rgb, width, height, 0, 0, width, height), rgb);
});
