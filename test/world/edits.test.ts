import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyEdit, EDIT_KINDS, type Edit } from '../../src/world/edits.js';
import type { Box } from '../../src/world/image.js';
import { Random } from '../../src/util/random.js';
import { renderScene, sampleScene } from '../../src/world/scene.js';
import { makeSplits, splitPool } from '../../src/world/splits.js';
import { testWorld } from './fixture.js';

const world = await testWorld();
const pool = splitPool(world.catalog, makeSplits(world.catalog), 'train');
const pools = { subjects: pool.subjects, backgroundStyles: pool.backgroundStyles, maxOverlap: 0.2 };

function edits(kind: (typeof EDIT_KINDS)[number], n: number): Edit[] {
  const rng = new Random(1000 + EDIT_KINDS.indexOf(kind));
  const out: Edit[] = [];
  for (let i = 0; out.length < n && i < n * 10; i++) {
    const spec = sampleScene(world, rng, { subjects: pool.subjects, backgroundStyles: pool.backgroundStyles });
    const edit = applyEdit(world, spec, kind, rng, pools);
    if (edit) out.push(edit);
  }
  assert.equal(out.length, n, `${kind} edits could be made`);
  return out;
}

function inside(box: Box, x: number, y: number): boolean {
  return x >= box.x && x < box.x + box.w && y >= box.y && y < box.y + box.h;
}

/** Pixels outside `boxes` are identical in the two renders. */
function unchangedOutside(edit: Edit, boxes: Box[]): void {
  const before = renderScene(world, edit.before).image;
  const after = renderScene(world, edit.after).image;
  const size = edit.before.size;
  let changed = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const o = (y * size + x) * 4;
      const same = before.data.subarray(o, o + 4).every((v, c) => v === after.data[o + c]);
      if (!same) {
        changed++;
        assert.ok(boxes.some((b) => inside(b, x, y)), `${edit.kind} "${edit.instruction}" changed pixel ${x},${y} outside the edited subject`);
      }
    }
  }
  assert.ok(changed > 0, `${edit.kind} "${edit.instruction}" changed something`);
}

test('replace, add, remove and move change only the edited subject', () => {
  for (const edit of edits('replace', 25)) {
    const i = edit.subject as number;
    assert.notEqual(edit.after.subjects[i]!.concept, edit.before.subjects[i]!.concept);
    assert.equal(edit.after.subjects[i]!.position, edit.before.subjects[i]!.position);
    assert.match(edit.instruction, new RegExp(world.catalog.styleById.get(edit.after.subjects[i]!.style)!.word));
    unchangedOutside(edit, [edit.before.subjects[i]!.box, edit.after.subjects[i]!.box]);
  }
  for (const edit of edits('add', 25)) {
    assert.equal(edit.after.subjects.length, edit.before.subjects.length + 1);
    unchangedOutside(edit, [edit.after.subjects.at(-1)!.box]);
  }
  for (const edit of edits('remove', 25)) {
    assert.equal(edit.after.subjects.length, edit.before.subjects.length - 1);
    const removed = edit.before.subjects[edit.subject as number]!;
    assert.ok(!edit.after.subjects.some((s) => s.subject === removed.subject));
    unchangedOutside(edit, [removed.box]);
  }
  for (const edit of edits('move', 25)) {
    const i = edit.subject as number;
    assert.equal(edit.after.subjects[i]!.subject, edit.before.subjects[i]!.subject);
    assert.notEqual(edit.after.subjects[i]!.position, edit.before.subjects[i]!.position);
    unchangedOutside(edit, [edit.before.subjects[i]!.box, edit.after.subjects[i]!.box]);
  }
});

test('a background change keeps every subject and its opaque pixels', () => {
  for (const edit of edits('background', 25)) {
    assert.deepEqual(edit.after.subjects, edit.before.subjects);
    assert.notDeepEqual(edit.after.background, edit.before.background);
    assert.ok(edit.instruction.includes(world.backgrounds.phrase(edit.after.background)));
    const before = renderScene(world, edit.before);
    const after = renderScene(world, edit.after);
    let opaque = 0;
    for (const mask of before.visibleMasks) {
      for (let p = 0; p < mask.length; p++) {
        if (mask[p] !== 255) continue;
        opaque++;
        assert.deepEqual(before.image.data.subarray(p * 4, p * 4 + 4), after.image.data.subarray(p * 4, p * 4 + 4));
      }
    }
    assert.ok(opaque > 0);
  }
});

test('instructions name the edited subject', () => {
  for (const kind of ['remove', 'move'] as const) {
    for (const edit of edits(kind, 10)) {
      const concept = edit.before.subjects[edit.subject as number]!.concept;
      assert.deepEqual(world.lexicon.find(edit.instruction).map((m) => m.concept), [concept], edit.instruction);
    }
  }
});
