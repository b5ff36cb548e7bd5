import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FairseqDictionary } from '../../src/tokenizers/fairseq_dictionary.js';
import { SentencePieceKosmosTokenizer, loadKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';
import { PieceType, SentencePieceBpe, applyNormalizationRule, parseSentencePieceModel } from '../../src/tokenizers/sentencepiece.js';
import { type TestModelOptions, type TestPiece, encodeSentencePieceModel, standardPieces, wearingModelPieces } from './sentencepiece-model.js';
import { assertParity, fixturesDirectory } from '../parity/fixtures.js';

function model(pieces: TestPiece[], options: TestModelOptions = {}): SentencePieceBpe {
  return new SentencePieceBpe(parseSentencePieceModel(encodeSentencePieceModel(pieces, options)));
}

const letters = (text: string, score = -100): TestPiece[] => [...new Set(text)].map((piece) => ({ piece, score }));

test('ModelProto fields are read back as written', () => {
  const parsed = parseSentencePieceModel(
    encodeSentencePieceModel(standardPieces([{ piece: 'ab', score: -1.5 }, { piece: '<0x41>', type: PieceType.Byte }]), {
      byteFallback: true,
      normalizer: { name: 'nfkc', addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: true },
    }),
  );
  assert.equal(parsed.modelType, 2);
  assert.equal(parsed.byteFallback, true);
  assert.deepEqual(parsed.normalizer, { name: 'nfkc', addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: true });
  assert.deepEqual(parsed.pieces.slice(3), [{ piece: 'ab', score: -1.5, type: PieceType.Normal }, { piece: '<0x41>', score: 0, type: PieceType.Byte }]);
  assert.equal(parsed.pieces[0]!.type, PieceType.Unknown);
});

test('the pair whose merged piece scores highest is merged first', () => {
  const pieces = standardPieces([{ piece: 'ab', score: -1 }, { piece: 'bc', score: -0.5 }, ...letters('▁abc')]);
  // ▁ a b c: "bc" (−0.5) beats "ab" (−1); then no piece spans "a"+"bc".
  assert.deepEqual(model(pieces).encodePieces('abc'), ['▁', 'a', 'bc']);
  const abFirst = standardPieces([{ piece: 'ab', score: -0.5 }, { piece: 'bc', score: -1 }, { piece: 'abc', score: -2 }, ...letters('▁abc')]);
  assert.deepEqual(model(abFirst).encodePieces('abc'), ['▁', 'abc']);
});

test('ties between equal scores go to the leftmost pair', () => {
  const pieces = standardPieces([{ piece: 'aa', score: -1 }, ...letters('▁a')]);
  assert.deepEqual(model(pieces).encodePieces('aaa'), ['▁', 'aa', 'a']);
  assert.deepEqual(model(pieces).encodePieces('aaaaa'), ['▁', 'aa', 'aa', 'a']);
});

test('the official example " wearing " is one piece and maps to id 1679', async () => {
  const sentencePiece = model(wearingModelPieces());
  assert.deepEqual(sentencePiece.encodePieces(' wearing '), ['▁wearing']);
  assert.deepEqual(sentencePiece.encodePieces(' on the beach'), ['▁on', '▁the', '▁beach']);
  // "▁wearing" on line 1675 of dict.txt (0-based) gets id 1675 + 4, as in the official dictionary.
  const lines = Array.from({ length: 1675 }, (_, i) => `filler${i} 1`);
  const dictionary = FairseqDictionary.parse([...lines, '▁wearing 100', '▁on 5'].join('\n'));
  const tokenizer = new SentencePieceKosmosTokenizer(sentencePiece, dictionary);
  assert.deepEqual(tokenizer.encodeSegment(' wearing '), [1679]);
  assert.deepEqual(tokenizer.encodeSegment(' on the beach'), [1680, 3, 3]);
  assert.deepEqual(tokenizer.encodeSegment('   '), []);
  // Typed "<image>" is text, not the special id.
  assert.ok(!tokenizer.encodeSegment('<image>').includes(tokenizer.imageStart));
});

test('unknown characters stay single pieces, or become <0xNN> byte pieces with byte fallback', () => {
  const base = [{ piece: '▁a', score: -1 }, ...letters('▁a')];
  assert.deepEqual(model(standardPieces(base)).encodePieces('a✓a'), ['▁a', '✓', 'a']);
  assert.deepEqual(model(standardPieces(base)).encodeIds('a✓'), [3, 0]);
  const bytes = Array.from({ length: 256 }, (_, b) => ({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, type: PieceType.Byte }));
  const fallback = model(standardPieces([...bytes, ...base]), { byteFallback: true });
  // ✓ is U+2713 = E2 9C 93 in UTF-8.
  assert.deepEqual(fallback.encodePieces('a✓'), ['▁a', '<0xE2>', '<0x9C>', '<0x93>']);
  assert.deepEqual(fallback.encodeIds('a✓').slice(1), [3 + 0xe2, 3 + 0x9c, 3 + 0x93]);
});

test('a run of adjacent unknown characters is one piece (id unk); byte fallback keeps every byte', () => {
  const base = [{ piece: '▁a', score: -1 }, ...letters('▁a')];
  const plain = model(standardPieces(base));
  assert.deepEqual(plain.encodePieces('a✓✗a ✓'), ['▁a', '✓✗', 'a', '▁', '✓']);
  assert.deepEqual(plain.encodeIds('a✓✗a ✓'), [3, 0, 5, 4, 0]);
  const bytes = Array.from({ length: 256 }, (_, b) => ({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, type: PieceType.Byte }));
  const fallback = model(standardPieces([...bytes, ...base]), { byteFallback: true });
  // ✓ = E2 9C 93, ✗ = E2 9C 97: one byte piece per byte, nothing joined.
  assert.deepEqual(fallback.encodePieces('✓✗'), ['▁', '<0xE2>', '<0x9C>', '<0x93>', '<0xE2>', '<0x9C>', '<0x97>']);
});

test('merged UNUSED pieces are split back into their halves', () => {
  const pieces = standardPieces([{ piece: 'ab', score: 0, type: PieceType.Unused }, { piece: 'abc', score: -1 }, ...letters('▁abc')]);
  assert.deepEqual(model(pieces).encodePieces('ab'), ['▁', 'a', 'b']);
  assert.deepEqual(model(pieces).encodePieces('abc'), ['▁', 'abc']);
});

test('user-defined pieces are matched whole and never merged further', () => {
  const pieces = standardPieces([{ piece: '<i>', type: PieceType.UserDefined }, { piece: 'i>', score: -1 }, ...letters('▁i<>')]);
  assert.deepEqual(model(pieces).encodePieces('<i>i>'), ['▁', '<i>', 'i>']);
});

test('nmt_nfkc normalisation, dummy prefix and whitespace handling', () => {
  const sentencePiece = model(standardPieces(letters('▁ab')));
  // Leading/trailing spaces dropped, tab and runs of spaces collapse, control characters removed, NFKC (ﬁ, full-width A).
  assert.equal(sentencePiece.normalize('  a\tb \u0007 ﬁ  Ａ  '), '▁a▁b▁fi▁A');
  assert.equal(sentencePiece.normalize('   '), '');
  assert.equal(applyNormalizationRule('\uff5e\u2581\u200b\u00a0x', 'nmt_nfkc'), '\uff5e   x');
  assert.equal(applyNormalizationRule('\uff5e', 'nfkc'), '\uff5e');
  const plain = model(standardPieces(letters('▁ab')), { normalizer: { name: 'identity', addDummyPrefix: false, removeExtraWhitespaces: false } });
  assert.equal(plain.normalize(' a  b'), '▁a▁▁b');
});

test('bad models give clear errors', () => {
  assert.throws(() => model(standardPieces(letters('ab')), { modelType: 1 }), /model_type is UNIGRAM; only BPE/);
  assert.throws(() => model(letters('ab')), /no UNKNOWN piece/);
  assert.throws(() => model(standardPieces([{ piece: '<0x41>', type: PieceType.Byte }])), /byte_fallback is off/);
  assert.throws(() => model(standardPieces(letters('ab')), { normalizer: { name: 'nfkc_cf' } }), /normalizer "nfkc_cf" is not supported/);
  const bytes = encodeSentencePieceModel(standardPieces(letters('ab')));
  assert.throws(() => parseSentencePieceModel(bytes.subarray(0, bytes.length - 3)), /runs past the end|truncated/);
});

test('the fairseq dictionary: official ids for a 63,997-line dict.txt', () => {
  const text = Array.from({ length: 63997 }, (_, i) => `p${i} ${1000 - (i % 7)}`).join('\n');
  const dictionary = FairseqDictionary.parse(text);
  assert.deepEqual([dictionary.index('<s>'), dictionary.index('<pad>'), dictionary.index('</s>'), dictionary.index('<unk>')], [0, 1, 2, 3]);
  assert.equal(dictionary.index('p0'), 4);
  assert.equal(dictionary.index('p63996'), 64000);
  assert.deepEqual(['<mask>', '</doc>', '<image>', '</image>', '</chunk>', '</line>'].map((s) => dictionary.index(s)), [64001, 64002, 64003, 64004, 64005, 64006]);
  assert.equal(dictionary.size, 64007);
  assert.equal(dictionary.index('never-seen'), 3);
  assert.equal(dictionary.symbol(64003), '<image>');
});

test('dict.txt errors and #fairseq:overwrite', () => {
  assert.throws(() => FairseqDictionary.parse('a 1\na 2'), /dict.txt:2: duplicate piece "a"/);
  assert.throws(() => FairseqDictionary.parse('a 1\nb'), /dict.txt:2: expected "<piece> <count>"/);
  const overwritten = FairseqDictionary.parse('a 1\na 2 #fairseq:overwrite\nb 3');
  assert.equal(overwritten.index('a'), 5);
  assert.equal(overwritten.index('b'), 6);
  // A piece may contain spaces before the count (fairseq splits on the last one).
  assert.equal(FairseqDictionary.parse('x y 1').index('x y'), 4);
});

test('loadKosmosTokenizer reads sentencepiece.bpe.model + dict.txt and reports missing files', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-tokenizer-'));
  try {
    await assert.rejects(loadKosmosTokenizer(directory), /holds no Kosmos-G tokenizer/);
    await writeFile(join(directory, 'sentencepiece.bpe.model'), encodeSentencePieceModel(wearingModelPieces()));
    await assert.rejects(loadKosmosTokenizer(directory), /no dict.txt/);
    await writeFile(join(directory, 'dict.txt'), '▁wearing 9\n▁on 8\n▁the 7\n▁beach 6\n');
    const tokenizer = await loadKosmosTokenizer(directory);
    assert.deepEqual(tokenizer.encodeSegment(' wearing on the beach'), [4, 5, 6, 7]);
    assert.deepEqual([tokenizer.bos, tokenizer.pad, tokenizer.eos, tokenizer.unk, tokenizer.imageStart, tokenizer.imageEnd, tokenizer.vocabularySize], [0, 1, 2, 3, 10, 11, 14]);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

interface FixtureString {
  text: string;
  pieces: string[];
  spm_ids: number[];
  fairseq_ids: number[];
}

test('fixture 13: a real sentencepiece.bpe.model + dict.txt give the library\'s pieces and ids for all 40 strings', async () => {
  const directory = join(fixturesDirectory, '13_sentencepiece');
  const strings = (JSON.parse(await readFile(join(directory, 'case.json'), 'utf8')) as { cases: FixtureString[] }).cases;
  assert.equal(strings.length, 40);
  const tokenizer = await loadKosmosTokenizer(directory);
  assert.ok(tokenizer instanceof SentencePieceKosmosTokenizer);
  for (const reference of strings) {
    const label = JSON.stringify(reference.text);
    assert.deepEqual(tokenizer.sentencePiece.encodePieces(reference.text), reference.pieces, `pieces of ${label}`);
    assert.deepEqual(tokenizer.sentencePiece.encodeIds(reference.text), reference.spm_ids, `sentencepiece ids of ${label}`);
    assert.deepEqual(tokenizer.encodeSegment(reference.text), reference.fairseq_ids, `fairseq ids of ${label}`);
  }
  // 4 fairseq specials + 3,997 dict.txt lines + 6 appended symbols.
  assert.equal(tokenizer.vocabularySize, 4007);
  await assertParity('13_sentencepiece');
});
