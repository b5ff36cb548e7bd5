// The CLIP byte-level BPE tokenizer (openai/CLIP simple_tokenizer.py; SD 1.5's CLIPTokenizer):
// text is cleaned, split by CLIP's pattern, mapped byte-by-byte to printable characters, merged
// by rank with a "</w>" end-of-word marker, and framed as <|startoftext|> … <|endoftext|> padded
// to the context length (77).
import { platform, join } from '#platform';
import { describeValue, oneLine } from '../io/describe-value.js';
import { cleanBasic, cleanForClip } from './text_cleaning.js';
import { parseVocabulary, readTokenizerJson } from './tokenizer_json.js';

export const START_OF_TEXT = '<|startoftext|>';
export const END_OF_TEXT = '<|endoftext|>';

/**
 * GPT-2's reversible byte → printable-character table, in the reference's order: the printable
 * bytes first (mapped to themselves), then the others mapped to U+0100 onwards. The vocabulary
 * starts with the characters in exactly this order.
 */
export function bytesToUnicode(): [byte: number, character: string][] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const pairs: [number, string][] = printable.map((b) => [b, String.fromCodePoint(b)]);
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) pairs.push([b, String.fromCodePoint(256 + extra++)]);
  return pairs;
}

export const splitPattern = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

export interface ClipEncodeOptions {
  /** Total length including start and end tokens (77 for CLIP). */
  contextLength?: number;
  /** Pad id: the end token for SD/transformers (default), 0 for open_clip. */
  padding?: 'end-token' | 'zero';
  /** 'ftfy' as openai/CLIP (default), 'basic' as transformers' fast tokenizer. */
  cleaning?: 'ftfy' | 'basic';
}

export interface ClipEncoding {
  /** contextLength ids: start, BPE ids (truncated), end, padding. */
  ids: number[];
  /** Non-pad tokens including start and end. */
  length: number;
  truncated: boolean;
}

export class ClipTokenizer {
  readonly startId: number;
  readonly endId: number;
  private readonly byteTable = Object.fromEntries(bytesToUnicode()) as Record<number, string>;
  private readonly cache = new Map<string, number[]>();
  private readonly mergeRanks: Map<string, number>;

  private constructor(readonly vocabulary: Map<string, number>, merges: readonly [string, string][]) {
    this.mergeRanks = new Map(merges.map(([left, right], rank) => [`${left} ${right}`, rank]));
    const start = vocabulary.get(START_OF_TEXT);
    const end = vocabulary.get(END_OF_TEXT);
    if (start === undefined || end === undefined) throw new Error('CLIP vocabulary lacks <|startoftext|> or <|endoftext|>');
    this.startId = start;
    this.endId = end;
  }

  /** From openai/CLIP's merge list (`bpe_simple_vocab_16e6.txt[.gz]`); the vocabulary is derived from it. */
  static async fromMergeList(path: string): Promise<ClipTokenizer> {
    const raw = await platform.readBytes(path);
    const text = new TextDecoder().decode(path.endsWith('.gz') ? await platform.gunzip(raw) : raw);
    const lines = text.split('\n');
    // openai/CLIP uses lines[1 : 49152 − 256 − 2 + 1]: 48,894 merges for a 49,408-entry vocabulary.
    const merges = lines.slice(1, 49152 - 256 - 2 + 1).map(parseMerge(path));
    const byteCharacters = bytesToUnicode().map(([, character]) => character);
    const entries = [...byteCharacters, ...byteCharacters.map((c) => `${c}</w>`), ...merges.map(([l, r]) => l + r), START_OF_TEXT, END_OF_TEXT];
    return new ClipTokenizer(new Map(entries.map((token, id) => [token, id])), merges);
  }

  /** From a transformers/diffusers tokenizer folder (`vocab.json` + `merges.txt`). */
  static async fromPretrained(directory: string): Promise<ClipTokenizer> {
    const vocabularyPath = join(directory, 'vocab.json');
    const mergesPath = join(directory, 'merges.txt');
    let vocabularyJson: unknown;
    try {
      vocabularyJson = JSON.parse(await platform.readText(vocabularyPath));
    } catch (error) {
      throw new Error(`cannot read CLIP vocabulary ${vocabularyPath}: ${oneLine((error as Error).message)}`);
    }
    const vocabulary = parseVocabulary(vocabularyJson, vocabularyPath, 'the vocabulary');
    const mergeLines = (await platform.readText(mergesPath)).split('\n').filter((line) => line && !line.startsWith('#version'));
    return new ClipTokenizer(vocabulary, mergeLines.map(parseMerge(mergesPath)));
  }

  /** From a vocabulary and merge list in memory (e.g. a BPE trained by bpe_trainer.ts). */
  static fromBpe(vocabulary: ReadonlyMap<string, number>, merges: readonly [string, string][]): ClipTokenizer {
    return new ClipTokenizer(new Map(vocabulary), merges);
  }

  /** From a Hugging Face `tokenizer.json` whose model is CLIP-style BPE (vocab, merges, "</w>" suffix). */
  static async fromTokenizerJson(path: string): Promise<ClipTokenizer> {
    const { vocab, merges } = await readTokenizerJson(path);
    return new ClipTokenizer(vocab, merges);
  }

  get vocabularySize(): number {
    return this.vocabulary.size;
  }

  /** BPE ids of `text` without start/end tokens or padding. */
  tokenize(text: string, cleaning: 'ftfy' | 'basic' = 'ftfy'): number[] {
    const cleaned = cleaning === 'ftfy' ? cleanForClip(text) : cleanBasic(text);
    const ids: number[] = [];
    for (const match of cleaned.matchAll(splitPattern)) {
      const word = match[0];
      if (word === START_OF_TEXT || word === END_OF_TEXT) {
        ids.push(word === START_OF_TEXT ? this.startId : this.endId);
        continue;
      }
      const mapped = [...new TextEncoder().encode(word)].map((byte) => this.byteTable[byte]!).join('');
      // One by one: a word of a few hundred thousand characters gives as many ids, more than a
      // spread's arguments may be.
      for (const id of this.bytePairEncode(mapped)) ids.push(id);
    }
    return ids;
  }

  encode(text: string, options: ClipEncodeOptions = {}): ClipEncoding {
    const contextLength = options.contextLength ?? 77;
    const body = this.tokenize(text, options.cleaning);
    const kept = body.slice(0, contextLength - 2);
    const ids = [this.startId, ...kept, this.endId];
    const length = ids.length;
    const pad = options.padding === 'zero' ? 0 : this.endId;
    while (ids.length < contextLength) ids.push(pad);
    return { ids, length, truncated: kept.length < body.length };
  }

  private bytePairEncode(token: string): number[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const characters = [...token];
    let word = [...characters.slice(0, -1), `${characters.at(-1)}</w>`];
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.mergeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      // Merge every occurrence of the best pair, left to right, as the reference does.
      const [left, right] = [word[best]!, word[best + 1]!];
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i < word.length - 1 && word[i] === left && word[i + 1] === right) {
          merged.push(left + right);
          i++;
        } else merged.push(word[i]!);
      }
      word = merged;
    }
    const ids = word.map((piece) => {
      const id = this.vocabulary.get(piece);
      if (id === undefined) throw new Error(`CLIP BPE produced ${describeValue(piece)}, which is not in the vocabulary`);
      return id;
    });
    this.cache.set(token, ids);
    return ids;
  }
}

function parseMerge(source: string) {
  return (line: string, index: number): [string, string] => {
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`${source}: merge ${index + 1} is not two symbols: ${describeValue(line)}`);
    return [parts[0], parts[1]];
  };
}
