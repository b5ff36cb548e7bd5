// Position twins: pairs of samples that differ only in where their subjects stand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CaptionedSceneStream } from '../../src/train/captioned-scenes.js';
import { testWorld } from '../world/fixture.js';

const world = await testWorld();

test('position twins share background, subjects, sizes and phrasing, and move every subject', () => {
  const stream = new CaptionedSceneStream(world, 7, ['train'], 0, { singleSubjectFraction: 0.5, shortCaptionFraction: 0.5, positionTwinFraction: 1 });
  let twinPairs = 0;
  for (let pair = 0; pair < 12; pair++) {
    const [first, second] = [stream.sample(2 * pair), stream.sample(2 * pair + 1)];
    if (JSON.stringify(first.spec.background) !== JSON.stringify(second.spec.background)) continue; // no free positions: plain samples
    twinPairs++;
    const layout = (subjects: typeof first.spec.subjects) => subjects.map((s) => `${s.subject}/${s.size}`);
    assert.deepEqual(layout(second.spec.subjects), layout(first.spec.subjects));
    first.spec.subjects.forEach((subject, i) => assert.notEqual(second.spec.subjects[i]!.position, subject.position));
    assert.notEqual(second.caption, first.caption);
    // Same phrasing: the captions differ only where the position words are.
    assert.equal(second.caption.split(' ')[0], first.caption.split(' ')[0]);
    assert.notDeepEqual(second.image.data, first.image.data);
    assert.deepEqual(stream.sample(2 * pair + 1), second, 'a twin is a pure function of its index');
  }
  assert.ok(twinPairs >= 10, `${twinPairs} of 12 pairs are twins`);
});

test('without positionTwinFraction the stream is unchanged', () => {
  const plain = new CaptionedSceneStream(world, 7, ['train'], 0, { singleSubjectFraction: 0.5, shortCaptionFraction: 0.5 });
  const zero = new CaptionedSceneStream(world, 7, ['train'], 0, { singleSubjectFraction: 0.5, shortCaptionFraction: 0.5, positionTwinFraction: 0 });
  for (let index = 0; index < 6; index++) assert.deepEqual(zero.sample(index), plain.sample(index));
});

test('position twins are single-subject scenes in the proportion singleSubjectFraction sets', () => {
  const count = (singleSubjectFraction: number) => {
    const stream = new CaptionedSceneStream(world, 11, ['train'], 0, { singleSubjectFraction, shortCaptionFraction: 0, positionTwinFraction: 1 });
    let single = 0;
    for (let pair = 0; pair < 16; pair++) {
      const [first, second] = [stream.sample(2 * pair), stream.sample(2 * pair + 1)];
      assert.equal(second.spec.subjects.length, first.spec.subjects.length);
      if (first.spec.subjects.length === 1) single++;
    }
    return single;
  };
  assert.equal(count(1), 16);
  const none = count(0);
  assert.ok(none < 8, `${none} of 16 twin pairs have one subject when every scene may hold up to three`);
});
