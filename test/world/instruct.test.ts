import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SampleGenerator } from '../../src/world/generate.js';
import { createImage } from '../../src/world/image.js';
import { cropEntity, IMAGE_TOKEN, selectEntities } from '../../src/world/instruct.js';
import { testWorld } from './fixture.js';

const world = await testWorld();

test('tag rules: colour words dropped, whole words only, overlaps dropped, caption order', () => {
  const caption = 'a red cat on the left and a catapult with a top hat near the door';
  const picked = selectEntities(caption, [
    { text: 'top hat', start: 0, end: 0 },
    { text: 'red', start: 0, end: 0 },
    { text: 'cat', start: 0, end: 0 },
    { text: 'pult', start: 0, end: 0 },
  ]);
  assert.deepEqual(picked.map((e) => [e.text, e.start]), [['cat', 6], ['top hat', 44]]);
  const ambiguous = selectEntities(caption, [{ text: 'top hat', start: 44, end: 51 }, { text: 'hat', start: 48, end: 51 }]);
  assert.deepEqual(ambiguous, []);
});

test('masked crops are white outside the mask, raw crops keep the background', () => {
  const image = createImage(8, 8, [0, 0, 255, 255]);
  const mask = new Uint8Array(64);
  for (const p of [18, 19, 26, 27]) {
    mask[p] = 255;
    image.data.set([255, 0, 0, 255], p * 4);
  }
  mask[19] = 0;
  const crops = cropEntity(image, mask, 2)!;
  assert.deepEqual(crops.box, { x: 2, y: 2, w: 2, h: 2 });
  assert.deepEqual([...crops.masked.data.subarray(4, 8)], [255, 255, 255, 255]);
  assert.deepEqual([...crops.raw.data.subarray(4, 8)], [255, 0, 0, 255]);
  assert.deepEqual([...crops.masked.data.subarray(0, 4)], [255, 0, 0, 255]);
  assert.equal(cropEntity(image, new Uint8Array(64), 4), null);
});

test('compose samples follow the loader: one slot per entity in order, word dropped and crop masked half the time', () => {
  const generator = new SampleGenerator(world, { kind: 'compose', split: 'train', seed: 3 });
  let slots = 0, dropped = 0, masked = 0;
  for (let i = 0; i < 400; i++) {
    const sample = generator.sample(i);
    const info = sample.slots!;
    assert.equal(sample.images.length, info.length);
    assert.equal(sample.text.split(IMAGE_TOKEN).length - 1, info.length);
    const entities = world.lexicon.find(sample.caption);
    assert.deepEqual(info.map((s) => s.concept), entities.map((e) => e.concept), 'slots follow caption order');
    // Put dropped words back and remove the image tokens: the caption comes back.
    let rebuilt = sample.text;
    for (const slot of info) {
      rebuilt = rebuilt.replace(` ${IMAGE_TOKEN}`, slot.dropped ? ` ${slot.entity}` : '');
    }
    assert.equal(rebuilt, sample.caption, sample.text);
    info.forEach((slot, k) => {
      const image = sample.images[k]!;
      assert.equal(image.width, world.sceneSize);
      slots++;
      if (slot.dropped) dropped++;
      if (slot.masked) masked++;
    });
  }
  assert.ok(slots > 600);
  assert.ok(Math.abs(dropped / slots - 0.5) < 0.05, `drop rate ${dropped / slots}`);
  assert.ok(Math.abs(masked / slots - 0.5) < 0.05, `masked rate ${masked / slots}`);
});

test('edit samples put the source image before the instruction and drop the caption half the time', () => {
  const generator = new SampleGenerator(world, { kind: 'edit', split: 'train', seed: 4 });
  let kept = 0;
  const kinds = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const sample = generator.sample(i);
    assert.equal(sample.images.length, 1);
    assert.ok(sample.text.endsWith(`${IMAGE_TOKEN} ${sample.instruction}`));
    if (sample.text.startsWith(sample.caption)) kept++;
    else assert.equal(sample.text, `${IMAGE_TOKEN} ${sample.instruction}`);
    kinds.add(sample.edit!);
  }
  assert.ok(Math.abs(kept / 200 - 0.5) < 0.1, `caption kept ${kept}/200`);
  assert.deepEqual([...kinds].sort(), ['add', 'background', 'move', 'remove', 'replace']);
});

test('text-to-image samples are the caption and the image; mix follows 1:2:2', () => {
  const t2i = new SampleGenerator(world, { kind: 't2i', split: 'train', seed: 5 }).sample(0);
  assert.equal(t2i.text, t2i.caption);
  assert.equal(t2i.images.length, 0);
  const mix = new SampleGenerator(world, { kind: 'mix', split: 'train', seed: 6 });
  const counts: Record<string, number> = { t2i: 0, edit: 0, compose: 0 };
  for (let i = 0; i < 2000; i++) counts[mix.kindOf(i)]! += 1;
  assert.ok(Math.abs(counts['t2i']! / 2000 - 0.2) < 0.03 && Math.abs(counts['edit']! / 2000 - 0.4) < 0.04, JSON.stringify(counts));
});

test('the same seed and index give the same sample bytes', () => {
  const a = new SampleGenerator(world, { kind: 'compose', split: 'train', seed: 8 }).sample(17);
  const b = new SampleGenerator(world, { kind: 'compose', split: 'train', seed: 8 }).sample(17);
  assert.equal(a.text, b.text);
  assert.deepEqual(a.target.data, b.target.data);
  assert.deepEqual(a.images.map((im) => im.data), b.images.map((im) => im.data));
});
