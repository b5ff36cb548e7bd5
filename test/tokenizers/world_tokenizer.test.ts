import { test } from 'node:test';
import assert from 'node:assert/strict';
import { worldTextCorpus } from '../../src/cli/train-tokenizer.js';
import { trainBpe, clipBpeDefinition } from '../../src/tokenizers/bpe_trainer.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { testWorld } from '../world/fixture.js';

test("a BPE trained on the world's captions encodes its frequent words as single tokens", async () => {
  const world = await testWorld();
  const corpus = [...worldTextCorpus(world, 200, 7)];
  assert.deepEqual([...worldTextCorpus(world, 200, 7)], corpus);
  assert.ok(corpus.length >= 200 && corpus.length < 300, `${corpus.length} texts`);
  const trained = trainBpe(corpus, { vocabularySize: 1200 });
  const tokenizer = ClipTokenizer.fromBpe(clipBpeDefinition(trained).vocab, trained.merges);
  // Each of these occurs in dozens of the 200 scenes' texts.
  for (const word of ['background', 'left', 'right', 'style']) {
    assert.ok(corpus.filter((text) => text.includes(word)).length >= 20, `${word} is frequent`);
    assert.equal(tokenizer.tokenize(word).length, 1, word);
  }
  // Captions compress well below one token per character.
  const caption = corpus[0]!;
  assert.ok(tokenizer.tokenize(caption).length < caption.length / 3, caption);
});
