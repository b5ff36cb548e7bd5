import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attributionMarkdown } from '../../src/world/attribution.js';
import { buildCatalog, HELD_OUT_STYLE, STYLE_DEFINITIONS } from '../../src/world/catalog.js';
import { loadIconSet } from '../../src/world/iconify.js';
import { Lexicon } from '../../src/world/lexicon.js';

const catalog = buildCatalog();

test('the catalog joins about 840 object concepts over eight styles', () => {
  assert.equal(catalog.styles.length, STYLE_DEFINITIONS.length);
  assert.ok(catalog.concepts.length >= 820 && catalog.concepts.length <= 870, `${catalog.concepts.length} concepts`);
  for (const style of ['noto', 'twemoji', HELD_OUT_STYLE]) {
    assert.equal(catalog.subjects.filter((s) => s.style === style).length, catalog.concepts.length, `${style} covers every concept`);
  }
  for (const concept of catalog.concepts) {
    assert.ok(catalog.subjects.filter((s) => s.concept === concept.id).length >= 3, `${concept.id} has at least three styles`);
  }
});

test('known DreamBench-like concepts are present in at least three styles with labels and tags', () => {
  for (const id of ['cat', 'dog', 'top-hat', 'teapot', 'backpack', 'teddy-bear', 'sunglasses', 'candle', 'duck', 'wolf']) {
    const concept = catalog.conceptById.get(id);
    assert.ok(concept, `${id} is in the catalog`);
    assert.ok(concept.tags.length > 0);
    assert.equal(concept.names[0], concept.label);
    const styles = catalog.subjects.filter((s) => s.concept === id).map((s) => s.style);
    assert.ok(styles.length >= 3, `${id}: ${styles.join(', ')}`);
  }
  assert.equal(catalog.conceptById.get('cat')?.category, 'animals-nature');
  assert.equal(catalog.conceptById.get('top-hat')?.subcategory, 'clothing');
});

test('vendor name quirks map to the right drawings', () => {
  assert.equal(catalog.subjectById.get('fxemoji:cat')?.icon, 'catside');
  assert.equal(catalog.subjectById.get('fxemoji:cat-face')?.icon, 'cat');
  assert.equal(catalog.subjectById.get('fxemoji:top-hat')?.icon, 'tophat');
  assert.equal(catalog.subjectById.get('streamline:sunglasses'), undefined);
  const icons = new Set<string>();
  for (const s of catalog.subjects) {
    const key = `${s.style}:${s.icon}`;
    assert.ok(!icons.has(key), `${key} is used by one concept only`);
    icons.add(key);
  }
});

test('no name of one concept is a name of another, and scene backgrounds are not subjects', () => {
  const lexicon = new Lexicon(catalog.concepts);
  for (const concept of catalog.concepts) for (const name of concept.names) assert.equal(lexicon.conceptOf(name), concept.id, name);
  for (const scene of catalog.scenes) assert.equal(catalog.conceptById.get(scene.id), undefined);
  assert.ok(catalog.scenes.length >= 15);
});

test('a catalog filter keeps only the asked concepts and rejects unknown ids', () => {
  const small = buildCatalog({ concepts: ['cat', 'dog'], styles: ['noto', 'openmoji'] });
  assert.deepEqual(small.concepts.map((c) => c.id).sort(), ['cat', 'dog']);
  assert.equal(small.subjects.length, 4);
  assert.throws(() => buildCatalog({ concepts: ['no-such-thing'] }), /unknown or unrenderable concept ids: no-such-thing/);
  assert.throws(() => buildCatalog({ styles: ['apple'] }), /unknown style 'apple'/);
});

test('the attribution names every set, its licence and the share-alike duty', () => {
  const text = attributionMarkdown(catalog);
  for (const style of catalog.styles) {
    assert.ok(text.includes(`${style.packageName}@${style.version}`));
    assert.ok(text.includes(style.license));
  }
  assert.match(text, /Share-alike: material containing openmoji/);
  assert.match(text, /emojibase-data@17/);
  assert.doesNotMatch(attributionMarkdown(catalog, { styles: ['noto'] }), /Share-alike/);
});

test('a missing icon package says what to install', () => {
  assert.throws(() => loadIconSet('@iconify-json/not-a-set'), /package @iconify-json\/not-a-set is not installed \(npm install @iconify-json\/not-a-set\)/);
});
