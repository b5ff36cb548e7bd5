// Prompts, as generation takes them: a Kosmos-G interleaved prompt (text with `<i>` placeholders,
// as many images as placeholders) laid out by buildInterleavedPrompt with kosmos-g-mini's tokenizer
// or an official-layout SentencePiece one, also as a negative prompt; a Stable Diffusion prompt
// through the CLIP tokenizer with transformers' cleaning (as generation does) and with openai/CLIP's
// ftfy cleaning. Inputs are UTF-16LE, so that any JavaScript string, lone surrogates included, can
// be one; mutations insert placeholders, tokens, unusual code points and long repeats.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildInterleavedPrompt, buildUnconditionalPrompt, countPlaceholders } from '../../src/pipeline/prompt.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { DICTIONARY_FILE, type KosmosTokenizer, SENTENCEPIECE_MODEL_FILE, loadKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';
import { mutateBytes, mutateText } from '../mutate.js';
import { MODELS } from './configs.js';
import { sentencePieceFiles } from './tokenizers.js';
import type { Seed, Target } from './target.js';

/** kosmos-g-mini's XConnector queries per image. */
const QUERIES = 16;
/** The CLIP text encoder's context. */
const CONTEXT_LENGTH = 77;
/** Longest prompt made, in UTF-16 units: far past any context, short enough to tokenize within the time cap. */
const MAX_PROMPT_LENGTH = 200_000;

const SEED_PROMPTS = [
  'a cat <i> wearing a red hat on the beach',
  '<i> and <i> in the style of <i>',
  'a photo of a dog',
  'caf\u00e9 na\u00efve \u6771\u4eac\u306e\u732b \ud83d\udc31 &amp; "quotes" 123',
  '',
];

const tokenizers = new Map<string, Promise<KosmosTokenizer | ClipTokenizer>>();

/** The tokenizer a variant uses, loaded once per worker. */
function tokenizerFor(variant: string, scratch: string): Promise<KosmosTokenizer | ClipTokenizer> {
  let loaded = tokenizers.get(variant);
  if (!loaded) {
    loaded = (async () => {
      if (variant.startsWith('clip')) return ClipTokenizer.fromPretrained(join(MODELS, 'world-sd-mini', 'clip_tokenizer'));
      if (variant === 'kosmos-mini') return loadKosmosTokenizer(join(MODELS, 'kosmos-g-mini', 'tokenizer'));
      const { model, dictionary } = sentencePieceFiles();
      await writeFile(join(scratch, SENTENCEPIECE_MODEL_FILE), model);
      await writeFile(join(scratch, DICTIONARY_FILE), dictionary);
      return loadKosmosTokenizer(scratch);
    })();
    tokenizers.set(variant, loaded);
  }
  return loaded;
}

const VARIANTS = ['kosmos-mini', 'kosmos-sentencepiece', 'clip', 'clip-ftfy'];

export const promptsTarget: Target = {
  name: 'prompts',
  description: 'interleaved prompts and negative prompts through buildInterleavedPrompt with both Kosmos-G tokenizers, and CLIP prompts through ClipTokenizer.encode',
  async seeds(): Promise<Seed[]> {
    return VARIANTS.flatMap((variant) => SEED_PROMPTS.map((prompt) => ({ variant, bytes: Buffer.from(prompt, 'utf16le') })));
  },
  mutate(seed, random) {
    if (random.chance(0.1)) return mutateBytes(seed.bytes, random, 2);
    return Buffer.from(mutateText(Buffer.from(seed.bytes).toString('utf16le'), random, MAX_PROMPT_LENGTH), 'utf16le');
  },
  async run(variant, input, scratch) {
    const prompt = Buffer.from(input).toString('utf16le');
    const tokenizer = await tokenizerFor(variant, scratch);
    if (tokenizer instanceof ClipTokenizer) {
      tokenizer.encode(prompt, { contextLength: CONTEXT_LENGTH, ...(variant === 'clip' ? { cleaning: 'basic' } : {}) });
      return;
    }
    buildInterleavedPrompt(prompt, countPlaceholders(prompt), tokenizer, QUERIES);
    buildUnconditionalPrompt(tokenizer, prompt);
  },
};
