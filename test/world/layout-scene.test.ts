import assert from 'node:assert/strict';
import { test } from 'node:test';
import { layoutColour, layoutMap } from '../../src/pipeline/control-maps.js';
import { Random } from '../../src/util/random.js';
import { layoutSceneMap, layoutSceneSpec, parseLayoutScene } from '../../src/world/layout-scene.js';
import { fittedSprite, placeBox, renderScene, type SceneSpec } from '../../src/world/scene.js';
import { POSITION_CENTRES, POSITIONS, type Position, type SizeWord } from '../../src/world/vocabulary.js';
import { testWorld } from './fixture.js';

const world = await testWorld();
const description = {
  subjects: [
    { concept: 'cat', style: 'noto', position: 'left', size: 'medium' },
    { concept: 'dog', style: 'twemoji', position: 'right' },
    { concept: 'red-apple', style: 'fluent', position: 'top', size: 'small' },
  ],
};

test('a description is normalised: sizes filled in, nothing else changed', () => {
  const scene = parseLayoutScene(world, description);
  assert.deepEqual(scene.subjects.map((subject) => subject.size), ['medium', 'medium', 'small']);
  assert.deepEqual(scene.subjects.map(({ concept, style, position }) => `${style}:${concept}@${position}`), ['noto:cat@left', 'twemoji:dog@right', 'fluent:red-apple@top']);
});

test('the map is the layout map of the scene with every subject exactly at its position centre, in the world\'s scene size', () => {
  const scene = parseLayoutScene(world, description);
  const canvas = world.sceneSize;
  // The un-jittered placement, written out: the sprite's centre at the position's centre, kept inside the canvas.
  const spec: SceneSpec = {
    size: canvas,
    background: { kind: 'gradient', top: 'white', bottom: 'blue' },
    subjects: scene.subjects.map(({ concept, style, position, size }) => {
      const sprite = fittedSprite(world, `${style}:${concept}`, size, canvas);
      const [fx, fy] = POSITION_CENTRES[position];
      const x = Math.min(canvas - sprite.width, Math.max(0, Math.round(fx * canvas - sprite.width / 2)));
      const y = Math.min(canvas - sprite.height, Math.max(0, Math.round(fy * canvas - sprite.height / 2)));
      return { subject: `${style}:${concept}`, concept, style, position, size, box: { x, y, w: sprite.width, h: sprite.height } };
    }),
  };
  assert.deepEqual(layoutSceneSpec(world, scene).subjects, spec.subjects);
  const map = layoutSceneMap(world, scene);
  assert.deepEqual([map.width, map.height], [canvas, canvas]);
  assert.deepEqual(map.rgb, layoutMap(renderScene(world, spec)), 'the background does not matter');
  for (const subject of spec.subjects) {
    const centre = (Math.round(subject.box.y + subject.box.h / 2) * canvas + Math.round(subject.box.x + subject.box.w / 2)) * 3;
    assert.deepEqual([...map.rgb.subarray(centre, centre + 3)], layoutColour(subject.concept), subject.subject);
  }
  assert.deepEqual([...map.rgb.subarray(0, 3)], [0, 0, 0], 'black where no subject is');
  assert.deepEqual(layoutSceneMap(world, parseLayoutScene(world, description)).rgb, map.rgb, 'deterministic');
});

test('later subjects are in front', () => {
  const scene = parseLayoutScene(world, { subjects: [{ concept: 'cat', style: 'noto', position: 'centre', size: 'large' }, { concept: 'dog', style: 'noto', position: 'top left', size: 'large' }] });
  const map = layoutSceneMap(world, scene);
  const { box } = layoutSceneSpec(world, scene).subjects[1]!;
  const inside = (Math.round(box.y + box.h / 2) * map.width + Math.round(box.x + box.w / 2)) * 3;
  assert.deepEqual([...map.rgb.subarray(inside, inside + 3)], layoutColour('dog'));
});

test('placeBox with an rng jitters exactly as before and draws twice; without one it is the position centre', () => {
  const canvas = 64;
  const original = (width: number, height: number, position: Position, rng: Random) => {
    const [fx, fy] = POSITION_CENTRES[position];
    const cx = (fx + (rng.next() * 2 - 1) * 0.04) * canvas;
    const cy = (fy + (rng.next() * 2 - 1) * 0.04) * canvas;
    return { x: Math.min(canvas - width, Math.max(0, Math.round(cx - width / 2))), y: Math.min(canvas - height, Math.max(0, Math.round(cy - height / 2))), w: width, h: height };
  };
  const a = new Random(7);
  const b = new Random(7);
  for (let i = 0; i < 500; i++) {
    const position = POSITIONS[i % POSITIONS.length]!;
    const [width, height] = [8 + (i % 30), 6 + ((i * 7) % 33)];
    assert.deepEqual(placeBox(canvas, width, height, position, a), original(width, height, position, b));
  }
  assert.equal(a.next(), b.next(), 'the same number of draws');
  assert.deepEqual(placeBox(canvas, 20, 10, 'bottom right', null), { x: 38, y: 43, w: 20, h: 10 });
});

test('every bad description is refused in one line that says what to choose', () => {
  const one = (subject: Record<string, unknown>) => ({ subjects: [subject] });
  const cat = { concept: 'cat', style: 'noto', position: 'left', size: 'large' as SizeWord };
  const cases: [unknown, RegExp][] = [
    [null, /^scene: /],
    [{}, /^subjects: /],
    [{ subjects: [] }, /^subjects: a layout scene has 1 to 3 subjects$/],
    [{ subjects: [cat, { ...cat, concept: 'dog', position: 'right' }, { ...cat, concept: 'rocket', position: 'top' }, { ...cat, concept: 'guitar', position: 'bottom' }] }, /^subjects: a layout scene has 1 to 3 subjects$/],
    [{ ...one(cat), background: 'beach' }, /^scene: Unrecognized key: "background"$/],
    [one({ ...cat, colour: 'red' }), /^subjects\.0: Unrecognized key: "colour"$/],
    [one({ ...cat, position: 'middle' }), /^subjects\.0\.position: position must be one of left, right, top, bottom, centre, top left, top right, bottom left, bottom right, got "middle"$/],
    [one({ ...cat, size: 'huge' }), /^subjects\.0\.size: size must be one of small, medium, large, got "huge"$/],
    [one({ ...cat, concept: 42 }), /^subjects\.0\.concept: /],
    [one({ ...cat, concept: 'unicorn' }), /^subject 1: unknown concept "unicorn" \(this world has .*\bcat\b.*\bdog\b/],
    [one({ ...cat, style: 'crayon' }), /^subject 1: no cat in style "crayon" \(cat comes in noto, twemoji, .*openmoji\)$/],
    [{ subjects: [cat, { ...cat, position: 'right' }] }, /^subject 2: cat is subject 1 already; a scene has each concept once$/],
    [{ subjects: [cat, { ...cat, concept: 'dog' }] }, /^subject 2: subject 1 is at left already; a scene has each position once$/],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => parseLayoutScene(world, value), (error: Error) => {
      assert.doesNotMatch(error.message, /\n/, JSON.stringify(value));
      assert.match(error.message, message, JSON.stringify(value));
      return true;
    });
  }
});
