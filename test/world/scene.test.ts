import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captionScene } from '../../src/world/caption.js';
import { buildCatalog } from '../../src/world/catalog.js';
import { Lexicon } from '../../src/world/lexicon.js';
import { Random } from '../../src/util/random.js';
import { overlapFraction, renderScene, sampleScene, type SceneSpec } from '../../src/world/scene.js';
import { makeSplits, splitPool } from '../../src/world/splits.js';
import { POSITION_PHRASES, SCENE_PHRASES } from '../../src/world/vocabulary.js';
import { testWorld } from './fixture.js';

const world = await testWorld();
const pool = splitPool(world.catalog, makeSplits(world.catalog), 'train');
const options = { subjects: pool.subjects, backgroundStyles: pool.backgroundStyles, maxOverlap: 0.2 };

test('layouts stay inside the canvas, keep overlap limited and use distinct concepts and positions', () => {
  const rng = new Random(11);
  const counts = [0, 0, 0];
  for (let i = 0; i < 300; i++) {
    const spec = sampleScene(world, rng, options);
    counts[spec.subjects.length - 1]! += 1;
    assert.equal(spec.size, world.sceneSize);
    for (const s of spec.subjects) {
      assert.ok(s.box.x >= 0 && s.box.y >= 0 && s.box.x + s.box.w <= spec.size && s.box.y + s.box.h <= spec.size, JSON.stringify(s.box));
      assert.ok(pool.subjects.includes(s.subject));
    }
    assert.equal(new Set(spec.subjects.map((s) => s.concept)).size, spec.subjects.length);
    assert.equal(new Set(spec.subjects.map((s) => s.position)).size, spec.subjects.length);
    for (let a = 0; a < spec.subjects.length; a++) {
      for (let b = a + 1; b < spec.subjects.length; b++) {
        assert.ok(overlapFraction(spec.subjects[a]!.box, spec.subjects[b]!.box) <= 0.2);
      }
    }
  }
  assert.ok(counts.every((n) => n > 30), `subject counts ${counts.join('/')}`);
});

test('masks cover exactly the subject boxes, and visible masks lose what is covered', () => {
  const rng = new Random(5);
  for (let i = 0; i < 50; i++) {
    const scene = renderScene(world, sampleScene(world, rng, options));
    const size = scene.spec.size;
    scene.spec.subjects.forEach((s, k) => {
      const mask = scene.masks[k]!;
      let inside = 0;
      for (let p = 0; p < mask.length; p++) {
        if (mask[p] === 0) continue;
        const x = p % size;
        const y = Math.floor(p / size);
        assert.ok(x >= s.box.x && x < s.box.x + s.box.w && y >= s.box.y && y < s.box.y + s.box.h);
        inside++;
        assert.ok(scene.visibleMasks[k]![p]! <= mask[p]!);
      }
      assert.ok(inside > (s.box.w * s.box.h) / 8, `${s.subject} mask is not empty`);
    });
  }
});

function positionPhrasePresent(text: string, spec: SceneSpec, index: number): boolean {
  return POSITION_PHRASES[spec.subjects[index]!.position].some((p) => text.includes(p));
}

test('captions name exactly the placed subjects, their styles and positions', () => {
  const rng = new Random(9);
  for (let i = 0; i < 300; i++) {
    const spec = sampleScene(world, rng, options);
    const caption = captionScene(world, spec, rng);
    const found = world.lexicon.find(caption.text).map((m) => m.concept).sort();
    assert.deepEqual(found, spec.subjects.map((s) => s.concept).sort(), caption.text);
    assert.equal(caption.mentions.length, spec.subjects.length);
    for (const mention of caption.mentions) {
      assert.equal(caption.text.slice(mention.start, mention.end), mention.name);
      assert.equal(world.lexicon.conceptOf(mention.name), spec.subjects[mention.subject]!.concept);
    }
    spec.subjects.forEach((s, k) => {
      assert.ok(positionPhrasePresent(caption.text, spec, k), `${s.position} in "${caption.text}"`);
      assert.ok(caption.text.includes(world.catalog.styleById.get(s.style)!.word), caption.text);
    });
    assert.ok(caption.text.includes(world.backgrounds.phrase(spec.background)), caption.text);
  }
});

test('no background phrase can be mistaken for any catalog subject name', () => {
  const phrases = new Set<string>(Object.values(SCENE_PHRASES));
  for (const pattern of world.backgrounds.patterns()) {
    phrases.add(world.backgrounds.phrase({ kind: 'pattern', pattern: pattern.id, zoom: 1, dx: 0, dy: 0 }));
  }
  for (const scene of world.catalog.scenes) phrases.add(world.backgrounds.phrase({ kind: 'scene', scene: scene.id, style: 'noto' }));
  const full = new Lexicon(buildCatalog().concepts);
  for (const phrase of phrases) assert.deepEqual(full.find(phrase), [], phrase);
  assert.ok(phrases.size > 20);
});

test('the same seed gives the same scene bytes', () => {
  const a = renderScene(world, sampleScene(world, new Random(77), options));
  const b = renderScene(world, sampleScene(world, new Random(77), options));
  const c = renderScene(world, sampleScene(world, new Random(78), options));
  assert.deepEqual(a.spec, b.spec);
  assert.deepEqual(a.image.data, b.image.data);
  assert.notDeepEqual(a.image.data, c.image.data);
});

test('two-subject scenes are found even when most of the pool repeats one concept', () => {
  // Every style of one concept plus a single subject of another: most draws repeat the first
  // concept, so a scene needing two concepts must keep drawing until the lone one comes up.
  const [common, rare] = ['cat', 'dog'].map((concept) => world.catalog.subjects.filter((s) => s.concept === concept).map((s) => s.id));
  const subjects = [...common!, rare![0]!];
  assert.ok(common!.length >= 4, `cat has ${common!.length} styles in the test world`);
  const rng = new Random(3);
  for (let i = 0; i < 200; i++) {
    const spec = sampleScene(world, rng, { subjects, backgroundStyles: pool.backgroundStyles, minSubjects: 2, maxSubjects: 2 });
    assert.deepEqual(spec.subjects.map((s) => s.concept).sort(), ['cat', 'dog']);
  }
});
