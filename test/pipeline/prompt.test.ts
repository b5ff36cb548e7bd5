import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildInterleavedPrompt, buildUnconditionalPrompt, countPlaceholders } from '../../src/pipeline/prompt.js';
import { FairseqDictionary } from '../../src/tokenizers/fairseq_dictionary.js';
import { SentencePieceKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';
import { SentencePieceBpe, parseSentencePieceModel } from '../../src/tokenizers/sentencepiece.js';
import { encodeSentencePieceModel, wearingModelPieces } from '../tokenizers/sentencepiece-model.js';

// dict.txt: ▁wearing = 4, ▁on = 5, ▁the = 6, ▁beach = 7; <image> = 10, </image> = 11 (after <mask>, </doc>).
const tokenizer = new SentencePieceKosmosTokenizer(
  new SentencePieceBpe(parseSentencePieceModel(encodeSentencePieceModel(wearingModelPieces()))),
  FairseqDictionary.parse('▁wearing 9\n▁on 8\n▁the 7\n▁beach 6\n'),
);
const [WEARING, ON, THE, BEACH, IMAGE, IMAGE_END] = [4, 5, 6, 7, 10, 11];

test('"<i> wearing <i> on the beach" with two images: the documented layout, position by position', () => {
  const queries = 3;
  const layout = buildInterleavedPrompt('<i> wearing <i> on the beach', 2, tokenizer, queries);
  const expected: [number, boolean][] = [
    [0, false], // <s>
    [IMAGE, false], [IMAGE, true], [IMAGE, true], [IMAGE, true], [IMAGE_END, false], // image 1: Q + 1 <image>, the last Q masked, </image>
    [WEARING, false],
    [IMAGE, false], [IMAGE, true], [IMAGE, true], [IMAGE, true], [IMAGE_END, false], // image 2
    [ON, false], [THE, false], [BEACH, false], // tail, no </s>
  ];
  assert.equal(layout.tokens.length, expected.length);
  expected.forEach(([token, masked], position) => {
    assert.equal(layout.tokens[position], token, `token at position ${position}`);
    assert.equal(layout.imageMask[position], masked, `mask at position ${position}`);
  });
  assert.deepEqual(layout.images, [
    { blockStart: 1, featureStart: 2, featureEnd: 5, imageEnd: 5 },
    { blockStart: 7, featureStart: 8, featureEnd: 11, imageEnd: 11 },
  ]);
});

test('"<i> wearing <i>" with the paper\'s 64 queries is 134 positions (reference example)', () => {
  const layout = buildInterleavedPrompt('<i> wearing <i>', 2, tokenizer, 64);
  assert.equal(layout.tokens.length, 134);
  assert.equal(layout.imageMask.filter(Boolean).length, 128);
  assert.equal(layout.tokens.filter((t) => t === IMAGE).length, 130);
  assert.equal(layout.tokens[layout.tokens.length - 1], IMAGE_END);
  assert.equal(layout.tokens[67], WEARING);
});

test('placeholder and image counts must match, and the error names both counts', () => {
  assert.throws(() => buildInterleavedPrompt('<i> wearing <i>', 1, tokenizer, 4), /the prompt has 2 <i> placeholders but 1 image was given/);
  assert.throws(() => buildInterleavedPrompt('a beach', 2, tokenizer, 4), /the prompt has 0 <i> placeholders but 2 images were given/);
  assert.throws(() => buildInterleavedPrompt('<i>', 0, tokenizer, 4), /the prompt has 1 <i> placeholder but 0 images were given/);
});

test('malformed placeholders are text', () => {
  for (const prompt of ['<i wearing', '< i> wearing', '<I> wearing', '<image> wearing']) {
    assert.equal(countPlaceholders(prompt), 0, prompt);
    const layout = buildInterleavedPrompt(prompt, 0, tokenizer, 4);
    assert.ok(!layout.tokens.includes(IMAGE), `${prompt} must not open an image block`);
    assert.equal(layout.tokens.at(-1), WEARING);
    assert.ok(layout.tokens.length > 2, `${prompt} keeps its characters as (unknown) text tokens`);
  }
  // "<i>" right next to text still counts; "<i>>" is a placeholder followed by ">".
  assert.equal(countPlaceholders('x<i>y<i>>'), 2);
});

test('the text-only and unconditional sequences', () => {
  assert.deepEqual(buildInterleavedPrompt('', 0, tokenizer, 4).tokens, [0]);
  assert.deepEqual(buildUnconditionalPrompt(tokenizer), [0]);
  assert.deepEqual(buildUnconditionalPrompt(tokenizer, 'on the beach'), [0, ON, THE, BEACH]);
  assert.throws(() => buildUnconditionalPrompt(tokenizer, '<i> on the beach'), /negative prompt cannot contain <i>/);
});
