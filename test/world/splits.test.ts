import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCatalog, HELD_OUT_STYLE } from '../../src/world/catalog.js';
import { SampleGenerator } from '../../src/world/generate.js';
import { isTrainSubject, makeSplits } from '../../src/world/splits.js';
import { testWorld } from './fixture.js';

test('about a tenth of the concepts are held out, deterministically from the seed', () => {
  const catalog = buildCatalog();
  const a = makeSplits(catalog, 0);
  const fraction = a.heldOutConcepts.length / catalog.concepts.length;
  assert.ok(fraction > 0.07 && fraction < 0.13, `held out ${fraction}`);
  assert.deepEqual(makeSplits(catalog, 0), a);
  assert.notDeepEqual(makeSplits(catalog, 1).heldOutConcepts, a.heldOutConcepts);
  assert.ok(!a.trainingStyles.includes(HELD_OUT_STYLE));
  assert.equal(a.trainSubjects + a.heldOutSubjects, catalog.subjects.length);
  // The decision for a concept does not depend on which other concepts are in the catalog.
  const small = buildCatalog({ concepts: [...a.heldOutConcepts.slice(0, 3), ...a.trainConcepts.slice(0, 3)] });
  assert.deepEqual(makeSplits(small, 0).heldOutConcepts, a.heldOutConcepts.slice(0, 3));
});

test('no held-out subject, concept or style leaks into stage 2-3 data of any kind', async () => {
  const world = await testWorld();
  const splits = makeSplits(world.catalog, 0);
  assert.ok(splits.heldOutConcepts.length >= 2, 'the test world contains held-out concepts');
  const seen = new Set<string>();
  for (const kind of ['t2i', 'edit', 'compose'] as const) {
    const generator = new SampleGenerator(world, { kind, split: 'train', seed: 21 });
    for (let i = 0; i < 150; i++) {
      const sample = generator.sample(i);
      for (const id of sample.subjects) {
        const subject = world.catalog.subjectById.get(id)!;
        assert.ok(isTrainSubject(splits, subject.concept, subject.style), `${id} leaked into ${kind} sample ${i}`);
        seen.add(id);
      }
      for (const background of sample.backgrounds) {
        if (background.kind === 'scene') assert.notEqual(background.style, HELD_OUT_STYLE);
      }
      for (const slot of sample.slots ?? []) assert.ok(!splits.heldOutConcepts.includes(slot.concept!));
      for (const concept of splits.heldOutConcepts) {
        for (const name of world.catalog.conceptById.get(concept)!.names) {
          assert.ok(!world.lexicon.find(sample.text).some((m) => m.text === name), `${name} named in ${sample.text}`);
        }
      }
    }
  }
  assert.ok(seen.size > 20);
  const heldout = new SampleGenerator(world, { kind: 'compose', split: 'heldout', seed: 21 });
  for (let i = 0; i < 50; i++) {
    for (const id of heldout.sample(i).subjects) {
      const subject = world.catalog.subjectById.get(id)!;
      assert.ok(!isTrainSubject(splits, subject.concept, subject.style), `${id} is a held-out subject`);
    }
  }
});
