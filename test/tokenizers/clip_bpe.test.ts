import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { assertParity, fixturesDirectory } from '../parity/fixtures.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { cleanForClip, fixText } from '../../src/tokenizers/text_cleaning.js';

const mergeList = join(fixturesDirectory, 'clip-bpe', 'bpe_simple_vocab_16e6.txt.gz');

test('CLIP BPE reproduces openai/CLIP and transformers token ids on the 30 reference strings (fixture 10)', async () => {
  await assertParity('10_clip_tokenizer');
});

test('a transformers tokenizer folder (vocab.json + merges.txt) tokenizes like the merge list', async () => {
  const reference = await ClipTokenizer.fromMergeList(mergeList);
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-clip-'));
  try {
    await writeFile(join(directory, 'vocab.json'), JSON.stringify(Object.fromEntries(reference.vocabulary)));
    const merges = gunzipSync(readFileSync(mergeList)).toString('utf8').split('\n').slice(1, 49152 - 256 - 2 + 1);
    await writeFile(join(directory, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
    const folder = await ClipTokenizer.fromPretrained(directory);
    assert.equal(folder.vocabularySize, 49408);
    for (const text of ['a noto-style cat on the left', 'Two 🐱 and a red apple!', '']) assert.deepEqual(folder.encode(text).ids, reference.encode(text).ids);
    await writeFile(join(directory, 'merges.txt'), '#version: 0.2\na b c\n');
    await assert.rejects(ClipTokenizer.fromPretrained(directory), /merges\.txt: merge 1 is not two symbols/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test('long prompts are truncated to 75 BPE tokens between start and end', async () => {
  const tokenizer = await ClipTokenizer.fromMergeList(mergeList);
  const encoding = tokenizer.encode('cat '.repeat(100));
  assert.equal(encoding.ids.length, 77);
  assert.equal(encoding.truncated, true);
  assert.equal(encoding.ids[0], tokenizer.startId);
  assert.equal(encoding.ids[76], tokenizer.endId);
  assert.equal(encoding.length, 77);
});

test('text cleaning: mojibake, curly quotes, ligatures, full width and entities are repaired; plain accents are kept', () => {
  assert.equal(fixText('cafÃ© mojibake'), 'café mojibake');
  assert.equal(fixText('café naïve'), 'café naïve');
  assert.equal(fixText('‘a’ “b”'), `'a' "b"`);
  assert.equal(fixText('ﬁne ＡＢＣ'), 'fine ABC');
  assert.equal(cleanForClip('  &amp;lt;b&amp;gt;  Bold '), '<b> bold');
});
