// Control maps: Canny edges pixel-identical to real OpenCV (/usr/bin/python3 with Debian's
// python3-opencv, cv2.Canny) on synthetic shapes with noise, in 1 and 3 channels, and on the world
// scene and sprites of examples/; the thresholds act as OpenCV's (strict >, hysteresis, swapped
// when reversed); layout maps colour each subject's visible pixels by concept.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { cannyEdges, controlTensor, layoutColour, layoutMap } from '../../src/pipeline/control-maps.js';
import { Random } from '../../src/util/random.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));

interface CannyCase {
  label: string;
  width: number;
  height: number;
  channels: 1 | 3;
  image: Uint8Array;
  low: number;
  high: number;
}

/** A disc, a rectangle whose channels differ, a stripe pattern on one channel, and ±`noise`/2 noise. */
function shapes(width: number, height: number, channels: 1 | 3, seed: number, noise: number): Uint8Array {
  const generator = new Random(seed);
  const random = () => generator.next();
  const image = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        let value = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (width / 4) ** 2 ? 200 : 40;
        if (x > width * 0.6 && y < height / 3) value = 120 + c * 40;
        if (c === channels - 1 && x % 7 === 0) value = 255 - value;
        value += Math.round((random() - 0.5) * noise);
        image[(y * width + x) * channels + c] = Math.max(0, Math.min(255, value));
      }
    }
  }
  return image;
}

/** An example PNG as RGB bytes, transparent parts on white. */
async function exampleRgb(name: string): Promise<{ image: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(join(root, 'examples', name)).flatten({ background: '#ffffff' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { image: new Uint8Array(data), width: info.width, height: info.height };
}

/** cv2.Canny of every case in one Python run (inputs in a temp file: too big for argv). */
async function openCvCanny(cases: readonly CannyCase[]): Promise<Uint8Array[]> {
  try {
    await run('/usr/bin/python3', ['-c', 'import cv2']);
  } catch {
    assert.fail('this test compares with OpenCV: install python3-opencv (apt-get install -y --no-install-recommends python3-opencv)');
  }
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-canny-'));
  try {
    const path = join(directory, 'cases.json');
    await writeFile(path, JSON.stringify(cases.map(({ width, height, channels, image, low, high }) => ({ width, height, channels, low, high, hex: Buffer.from(image).toString('hex') }))));
    const script = `
import json, sys
import cv2, numpy as np
out = []
for c in json.load(open(sys.argv[1])):
    shape = (c['height'], c['width'], 3) if c['channels'] == 3 else (c['height'], c['width'])
    image = np.frombuffer(bytes.fromhex(c['hex']), np.uint8).reshape(shape)
    out.append(cv2.Canny(image, c['low'], c['high']).tobytes().hex())
print(json.dumps(out))`;
    const { stdout } = await run('/usr/bin/python3', ['-W', 'ignore', '-c', script, path], { maxBuffer: 64 << 20 });
    return (JSON.parse(stdout) as string[]).map((hex) => Uint8Array.from(Buffer.from(hex, 'hex')));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

test('Canny edges are pixel-identical to OpenCV cv2.Canny', async () => {
  const images: Omit<CannyCase, 'low' | 'high'>[] = [
    { label: 'RGB shapes 40×32', width: 40, height: 32, channels: 3, image: shapes(40, 32, 3, 1, 0) },
    { label: 'noisy RGB shapes 33×27', width: 33, height: 27, channels: 3, image: shapes(33, 27, 3, 2, 90) },
    { label: 'noisy gray shapes 64×48', width: 64, height: 48, channels: 1, image: shapes(64, 48, 1, 3, 60) },
    { label: 'gray shapes 17×50', width: 17, height: 50, channels: 1, image: shapes(17, 50, 1, 4, 0) },
  ];
  for (const name of ['scene-openmoji-cat.png', 'openmoji-dog.png', 'openmoji-rocket.png']) images.push({ label: name, channels: 3, ...(await exampleRgb(name)) });
  const thresholds = [
    [100, 200], // the annotator's defaults
    [30, 90],
    [50.7, 20.2], // reversed and fractional: OpenCV swaps and floors
  ] as const;
  const cases = images.flatMap((image) => thresholds.map(([low, high]) => ({ ...image, label: `${image.label}, ${low}/${high}`, low, high })));
  const expected = await openCvCanny(cases);
  let edgePixels = 0;
  cases.forEach((item, i) => {
    const actual = cannyEdges(item.image, item.width, item.height, { low: item.low, high: item.high });
    const differing = actual.reduce((count, value, j) => count + (value === expected[i]![j] ? 0 : 1), 0);
    assert.equal(differing, 0, `${item.label}: ${differing} of ${actual.length} pixels differ from OpenCV`);
    edgePixels += actual.filter((value) => value === 255).length;
  });
  assert.ok(edgePixels > 5000, `the cases have edges to agree on (${edgePixels})`);
});

test('Canny thresholds: strict > on the high one, hysteresis down to the low one, reversed thresholds swapped', () => {
  // A bar over x = 8…15, 60 levels high in rows 0–9 and 30 in rows 10–19, and apart from it a
  // 30-level plateau from x = 24: |dx| + |dy| = 4 · step on a step's two columns, of which NMS
  // keeps the left one (strict against the left neighbour, non-strict against the right).
  const [width, height] = [32, 20];
  const image = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) image[y * width + x] = x >= 8 && x < 16 ? (y < 10 ? 60 : 30) : x >= 24 ? 30 : 0;
  }
  const column = (edges: Uint8Array, x: number, rows: number[]) => rows.map((y) => edges[y * width + x]);
  const [upper, lower, isolated] = [[2, 3, 4], [15, 16, 17], [7, 8, 9]];
  const both = cannyEdges(image, width, height, { low: 100, high: 200 });
  assert.deepEqual(column(both, 7, upper), [255, 255, 255], 'strong step: 240 > 200');
  assert.deepEqual(column(both, 8, upper), [0, 0, 0], 'its right column is suppressed');
  assert.deepEqual(column(both, 7, lower), [255, 255, 255], 'weak step (120 > 100) joined to the strong one');
  assert.deepEqual(column(both, 23, isolated), [0, 0, 0], 'weak step with no strong neighbour');
  const highLow = cannyEdges(image, width, height, { low: 120, high: 200 });
  assert.deepEqual(column(highLow, 7, lower), [0, 0, 0], '120 is not > 120');
  assert.deepEqual(column(highLow, 7, upper), [255, 255, 255]);
  assert.deepEqual(column(cannyEdges(image, width, height, { low: 100, high: 119 }), 23, isolated), [255, 255, 255], '120 > 119 is strong');
  assert.deepEqual(column(cannyEdges(image, width, height, { low: 100, high: 120 }), 23, isolated), [0, 0, 0], '120 is not > 120');
  assert.deepEqual(cannyEdges(image, width, height, { low: 200, high: 100 }), both);
  assert.ok(cannyEdges(image, width, height, { low: 100, high: 200 }).every((value) => value === 0 || value === 255));
  assert.throws(() => cannyEdges(image, width, height - 1, { low: 1, high: 2 }), /^Error: cannyEdges: 640 bytes are neither 1 nor 3 channels of 32×19$/);
  assert.throws(() => cannyEdges(image, width, height, { low: -1, high: 2 }), /thresholds must be non-negative numbers/);
});

test('layout maps colour visible pixels by concept, the strongest visible subject on top, background black', () => {
  const size = 4;
  const spec = { size, subjects: [{ concept: 'cat' }, { concept: 'dog' }] };
  // Row-major 4×4 visible alphas: the cat on the left half, the dog in front on the right half
  // and over the cat's top-right corner, soft edges at 127/128.
  const cat = Uint8Array.from([255, 255, 40, 0, 255, 255, 0, 0, 255, 128, 0, 0, 127, 0, 0, 0]);
  const dog = Uint8Array.from([0, 0, 255, 255, 0, 90, 255, 255, 0, 0, 255, 255, 0, 0, 128, 127]);
  const map = layoutMap({ spec, visibleMasks: [cat, dog] });
  const [catColour, dogColour, black] = [layoutColour('cat'), layoutColour('dog'), [0, 0, 0]];
  const pixel = (p: number) => [...map.subarray(p * 3, p * 3 + 3)];
  const expected = [catColour, catColour, dogColour, dogColour, catColour, catColour, dogColour, dogColour, catColour, catColour, dogColour, dogColour, black, black, dogColour, black];
  assert.deepEqual(Array.from({ length: 16 }, (_, p) => pixel(p)), expected);
  assert.deepEqual(layoutColour('cat'), layoutColour('cat'));
  assert.notDeepEqual(catColour, dogColour);
  for (const concept of ['cat', 'dog', 'red-apple', 'rocket']) assert.ok(layoutColour(concept).every((level) => level >= 64 && level <= 255), concept);
  assert.throws(() => layoutMap({ spec, visibleMasks: [cat] }), /^Error: layoutMap: 1 visible masks for 2 subjects$/);
});

test('control maps become (B, 3, H, W) tensors in [0, 1]; one channel is repeated into three', () => {
  const edges = Uint8Array.from([0, 255, 255, 0]);
  const rgb = Uint8Array.from([255, 0, 51, 0, 0, 0, 10, 20, 30, 255, 255, 255]);
  const tensor = controlTensor([edges, rgb], 2, 2);
  assert.deepEqual(tensor.shape, [2, 3, 2, 2]);
  const values = Array.from(tensor.data, (value) => Math.round(value * 255));
  assert.deepEqual(values.slice(0, 12), [0, 255, 255, 0, 0, 255, 255, 0, 0, 255, 255, 0]);
  assert.deepEqual(values.slice(12), [255, 0, 10, 255, 0, 0, 20, 255, 51, 0, 30, 255]);
  assert.throws(() => controlTensor([Uint8Array.of(1, 2)], 2, 2), /map 0 has 2 bytes, neither 1 nor 3 channels of 2×2/);
});
