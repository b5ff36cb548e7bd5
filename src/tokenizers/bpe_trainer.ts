// Training a CLIP-style byte-level BPE from a corpus of captions (kosmos-g-mini's vocabulary comes
// from the emoji world's captions). Words are found exactly as ClipTokenizer finds them (CLIP
// cleaning: lower case, whitespace collapsed; CLIP's split pattern), mapped byte by byte to GPT-2's
// printable characters, and the last character carries "</w>". Starting from the 256 bytes and the
// 256 bytes with "</w>", the most frequent adjacent pair (counted over word occurrences) is merged
// until the vocabulary is full or no pair occurs `minFrequency` times. Ties go to the pair that
// sorts first by (left, right) in code-unit order, so training is deterministic.
//
// Vocabulary order, as openai/CLIP's: bytes, bytes + "</w>", one entry per merge, then the special
// tokens (`<|startoftext|>`, `<|endoftext|>`). The Kosmos-G tokenizer of the same BPE puts fairseq's
// `<s>`, `<pad>`, `</s>`, `<unk>` at ids 0–3, the BPE at 4…, and `<image>`, `</image>` last.
import { join } from 'node:path';
import { END_OF_TEXT, START_OF_TEXT, bytesToUnicode, splitPattern } from './clip_bpe.js';
import { MINI_SPECIAL_TOKENS } from './mini_kosmos_tokenizer.js';
import { cleanBasic, cleanForClip } from './text_cleaning.js';
import { type BpeDefinition, END_OF_WORD_SUFFIX, writeTokenizerJson, writeVocabAndMerges } from './tokenizer_json.js';
import { writeFileAtomic } from '../io/atomic-file.js';

export interface BpeTrainingOptions {
  /** Total vocabulary: 512 byte entries + merges + special tokens. */
  vocabularySize: number;
  /** A pair must occur at least this often to be merged (default 2). */
  minFrequency?: number;
  /** Appended after the merges (default CLIP's `<|startoftext|>`, `<|endoftext|>`). */
  specialTokens?: readonly string[];
  /** Text cleaning as ClipTokenizer's: 'ftfy' (default, openai/CLIP) or 'basic' (transformers). */
  cleaning?: 'ftfy' | 'basic';
}

export interface TrainedBpe {
  /** Merges in rank order. */
  merges: [string, string][];
  /** Bytes, bytes + "</w>", merged symbols, special tokens: the position is the CLIP id. */
  tokens: string[];
  specialTokens: string[];
}

const byteCharacters = bytesToUnicode().map(([, character]) => character);
const byteTable = Object.fromEntries(bytesToUnicode()) as Record<number, string>;
const textEncoder = new TextEncoder();

/** The symbol sequence BPE starts from for one word. */
function wordSymbols(word: string): string[] {
  const characters = [...textEncoder.encode(word)].map((byte) => byteTable[byte]!);
  characters[characters.length - 1] += END_OF_WORD_SUFFIX;
  return characters;
}

/** Word → occurrences over the corpus, words split as ClipTokenizer splits them (special-token text skipped). */
export function countWords(corpus: Iterable<string>, cleaning: 'ftfy' | 'basic' = 'ftfy'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of corpus) {
    const cleaned = cleaning === 'ftfy' ? cleanForClip(text) : cleanBasic(text);
    for (const [word] of cleaned.matchAll(splitPattern)) {
      if (word === START_OF_TEXT || word === END_OF_TEXT) continue;
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  return counts;
}

const pairKey = (left: string, right: string) => `${left} ${right}`;

export function trainBpe(corpus: Iterable<string>, options: BpeTrainingOptions): TrainedBpe {
  const specialTokens = [...(options.specialTokens ?? [START_OF_TEXT, END_OF_TEXT])];
  const minFrequency = options.minFrequency ?? 2;
  const base = 2 * byteCharacters.length;
  if (!Number.isInteger(options.vocabularySize) || options.vocabularySize < base + specialTokens.length) {
    throw new Error(`vocabularySize must be an integer ≥ ${base + specialTokens.length} (512 byte entries + ${specialTokens.length} special tokens), got ${options.vocabularySize}`);
  }
  if (!Number.isInteger(minFrequency) || minFrequency < 1) throw new Error(`minFrequency must be a positive integer, got ${minFrequency}`);
  const maxMerges = options.vocabularySize - base - specialTokens.length;

  const counted = [...countWords(corpus, options.cleaning)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const words = counted.map(([word]) => wordSymbols(word));
  const frequency = counted.map(([, count]) => count);
  // Pair → total occurrences, and pair → the words that contain it.
  const pairCounts = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const addPairs = (index: number, sign: 1 | -1) => {
    const symbols = words[index]!;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = pairKey(symbols[i]!, symbols[i + 1]!);
      const count = (pairCounts.get(key) ?? 0) + sign * frequency[index]!;
      if (count > 0) pairCounts.set(key, count);
      else pairCounts.delete(key);
      if (sign > 0) {
        let set = pairWords.get(key);
        if (!set) pairWords.set(key, (set = new Set()));
        set.add(index);
      }
    }
  };
  words.forEach((_, index) => addPairs(index, 1));

  const merges: [string, string][] = [];
  const known = new Set([...byteCharacters, ...byteCharacters.map((c) => c + END_OF_WORD_SUFFIX)]);
  while (merges.length < maxMerges) {
    let best: string | null = null;
    let bestCount = 0;
    for (const [key, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && count > 0 && best !== null && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === null || bestCount < minFrequency) break;
    const [left, right] = best.split(' ') as [string, string];
    const merged = left + right;
    merges.push([left, right]);
    known.add(merged);
    for (const index of pairWords.get(best) ?? []) {
      addPairs(index, -1);
      // Left to right, non-overlapping: as ClipTokenizer applies a merge.
      const symbols = words[index]!;
      const next: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          next.push(merged);
          i++;
        } else next.push(symbols[i]!);
      }
      words[index] = next;
      addPairs(index, 1);
    }
    pairCounts.delete(best);
    pairWords.delete(best);
  }
  for (const token of specialTokens) {
    if (known.has(token)) throw new Error(`special token ${JSON.stringify(token)} collides with a BPE symbol`);
  }
  const tokens = [...byteCharacters, ...byteCharacters.map((c) => c + END_OF_WORD_SUFFIX), ...merges.map(([l, r]) => l + r), ...specialTokens];
  return { merges, tokens, specialTokens };
}

/** The BPE as CLIP's tokenizer: ids as in `tokens`, the special tokens as added tokens. */
export function clipBpeDefinition(trained: TrainedBpe): BpeDefinition {
  const vocab = new Map(trained.tokens.map((token, id) => [token, id]));
  return {
    vocab,
    merges: trained.merges,
    addedTokens: trained.specialTokens.map((content) => ({ id: vocab.get(content)!, content, special: true })),
    unkToken: null,
  };
}

/** The same BPE with fairseq's special ids, for the mini MLLM (see the top of this file). */
export function miniKosmosBpeDefinition(trained: TrainedBpe): BpeDefinition {
  const front = [MINI_SPECIAL_TOKENS.bos, MINI_SPECIAL_TOKENS.pad, MINI_SPECIAL_TOKENS.eos, MINI_SPECIAL_TOKENS.unk];
  const back = [MINI_SPECIAL_TOKENS.imageStart, MINI_SPECIAL_TOKENS.imageEnd];
  const ordered = [...front, ...trained.tokens, ...back];
  const vocab = new Map(ordered.map((token, id) => [token, id]));
  if (vocab.size !== ordered.length) throw new Error('the trained BPE already contains one of <s>, <pad>, </s>, <unk>, <image>, </image>');
  return {
    vocab,
    merges: trained.merges,
    addedTokens: [...front, ...back].map((content) => ({ id: vocab.get(content)!, content, special: true })),
    unkToken: null,
  };
}

/** A CLIP tokenizer folder: tokenizer.json, vocab.json + merges.txt, tokenizer_config.json. */
export async function saveClipTokenizer(directory: string, trained: TrainedBpe): Promise<void> {
  const definition = clipBpeDefinition(trained);
  await writeTokenizerJson(join(directory, 'tokenizer.json'), definition);
  await writeVocabAndMerges(directory, definition);
  const config = { tokenizer_class: 'CLIPTokenizer', model_max_length: 77, bos_token: START_OF_TEXT, eos_token: END_OF_TEXT, pad_token: END_OF_TEXT, unk_token: END_OF_TEXT };
  await writeFileAtomic(join(directory, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/** A Kosmos-G tokenizer folder for the mini MLLM: tokenizer.json with fairseq's special ids. */
export async function saveMiniKosmosTokenizer(directory: string, trained: TrainedBpe): Promise<void> {
  await writeTokenizerJson(join(directory, 'tokenizer.json'), miniKosmosBpeDefinition(trained));
}
