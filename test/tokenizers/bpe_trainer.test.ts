import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInterleavedPrompt } from '../../src/pipeline/prompt.js';
import { clipBpeDefinition, countWords, saveClipTokenizer, saveMiniKosmosTokenizer, trainBpe } from '../../src/tokenizers/bpe_trainer.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { loadKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';
import { parseTokenizerJson } from '../../src/tokenizers/tokenizer_json.js';

const captions = [
  'a small noto cat on the left, a grassy background',
  'a picture of a large twemoji dog in the middle and a cat on the right, a sunny beach',
  'an emoji scene with a cat drawn in fluent style at the top on a beach',
  'a cat on the left and a dog on the right, a beach at night',
];

test('merges are chosen by pair frequency with ties to the smaller (left, right) pair', () => {
  // Words: "ab" ×3 → [a, b</w>], "abc" ×1 → [a, b, c</w>]. (a, b</w>) occurs 3 times and merges first;
  // then (a, b) and (b, c</w>) tie at 1 and (a, b) sorts first; then (ab, c</w>).
  const trained = trainBpe(['ab ab AB', 'abc'], { vocabularySize: 600, minFrequency: 1 });
  assert.deepEqual(trained.merges, [['a', 'b</w>'], ['a', 'b'], ['ab', 'c</w>']]);
  assert.equal(trained.tokens.length, 512 + 3 + 2);
  assert.deepEqual(trained.tokens.slice(512), ['ab</w>', 'ab', 'abc</w>', '<|startoftext|>', '<|endoftext|>']);
  // minFrequency 2 stops after the first merge; vocabularySize caps the merges.
  assert.deepEqual(trainBpe(['ab ab AB', 'abc'], { vocabularySize: 600 }).merges, [['a', 'b</w>']]);
  assert.equal(trainBpe(['ab ab AB', 'abc'], { vocabularySize: 515, minFrequency: 1 }).merges.length, 1);
  assert.throws(() => trainBpe([], { vocabularySize: 100 }), /vocabularySize must be an integer ≥ 514/);
});

test('words are split and cleaned as ClipTokenizer does', () => {
  assert.deepEqual([...countWords(["A  cat's CAT!!"])], [['a', 1], ['cat', 2], ["'s", 1], ['!!', 1]]);
});

test('training is deterministic and the trained tokenizer reproduces whole training words', () => {
  const first = trainBpe(captions, { vocabularySize: 700 });
  assert.deepEqual(trainBpe(captions, { vocabularySize: 700 }), first);
  const tokenizer = ClipTokenizer.fromBpe(clipBpeDefinition(first).vocab, first.merges);
  // "cat" occurs 4 times and "beach" 3 times: each is one token.
  assert.equal(tokenizer.tokenize('cat').length, 1);
  assert.equal(tokenizer.tokenize('beach').length, 1);
  // Any text still encodes (bytes are always in the vocabulary).
  assert.ok(tokenizer.tokenize('zebra ✓').length > 2);
});

test('tokenizer.json and vocab.json + merges.txt round-trip into ClipTokenizer with identical ids', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-bpe-'));
  try {
    const trained = trainBpe(captions, { vocabularySize: 700 });
    await saveClipTokenizer(directory, trained);
    const document = JSON.parse(await readFile(join(directory, 'tokenizer.json'), 'utf8'));
    assert.equal(document.model.type, 'BPE');
    assert.equal(document.model.end_of_word_suffix, '</w>');
    assert.deepEqual(document.added_tokens.map((t: { content: string; id: number }) => [t.content, t.id]), [['<|startoftext|>', trained.tokens.length - 2], ['<|endoftext|>', trained.tokens.length - 1]]);
    const inMemory = ClipTokenizer.fromBpe(clipBpeDefinition(trained).vocab, trained.merges);
    const fromJson = await ClipTokenizer.fromTokenizerJson(join(directory, 'tokenizer.json'));
    const fromFiles = await ClipTokenizer.fromPretrained(directory);
    for (const text of [...captions, 'A DOG wearing a hat, on the beach!']) {
      const ids = inMemory.encode(text).ids;
      assert.deepEqual(fromJson.encode(text).ids, ids);
      assert.deepEqual(fromFiles.encode(text).ids, ids);
    }
    assert.equal(fromJson.endId, trained.tokens.length - 1);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('the mini Kosmos-G tokenizer: fairseq special ids, BPE ids shifted by 4, <image> and </image> last', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-mini-tokenizer-'));
  try {
    const trained = trainBpe(captions, { vocabularySize: 700 });
    await saveMiniKosmosTokenizer(directory, trained);
    const tokenizer = await loadKosmosTokenizer(directory);
    const clip = ClipTokenizer.fromBpe(clipBpeDefinition(trained).vocab, trained.merges);
    const size = trained.tokens.length + 6;
    assert.deepEqual([tokenizer.bos, tokenizer.pad, tokenizer.eos, tokenizer.unk, tokenizer.imageStart, tokenizer.imageEnd, tokenizer.vocabularySize], [0, 1, 2, 3, size - 2, size - 1, size]);
    assert.deepEqual(tokenizer.encodeSegment(' wearing a cat '), clip.tokenize(' wearing a cat ').map((id) => id + 4));
    assert.deepEqual(tokenizer.encodeSegment('  '), []);
    const layout = buildInterleavedPrompt('<i> on the beach', 1, tokenizer, 2);
    assert.deepEqual(layout.tokens.slice(0, 5), [0, size - 2, size - 2, size - 2, size - 1]);
    assert.deepEqual(layout.tokens.slice(5), clip.tokenize(' on the beach').map((id) => id + 4));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('malformed tokenizer.json is refused with the reason', () => {
  const good = { model: { type: 'BPE', end_of_word_suffix: '</w>', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] }, added_tokens: [] };
  assert.equal(parseTokenizerJson(good).merges.length, 1);
  assert.throws(() => parseTokenizerJson({ model: { ...good.model, type: 'WordPiece' } }), /model type "WordPiece" is not supported/);
  assert.throws(() => parseTokenizerJson({ model: { ...good.model, end_of_word_suffix: null } }), /end_of_word_suffix must be "<\/w>"/);
  assert.throws(() => parseTokenizerJson({ model: { ...good.model, merges: ['a c'] } }), /merge 1 produces "ac", which is not in the vocab/);
  assert.throws(() => parseTokenizerJson({ model: { ...good.model, vocab: { a: 0, b: 0, ab: 2 } } }), /id 0 is used twice/);
  assert.throws(() => parseTokenizerJson({ ...good, added_tokens: [{ id: 1, content: '<s>' }] }), /reuses id 1/);
});
