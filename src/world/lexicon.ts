// The catalog's names (labels and distinctive tags) as a phrase dictionary, matched in text as whole
// words, longest phrase first. This is the default entity extractor's vocabulary.
import type { Concept } from './catalog.js';

export interface NameMatch {
  /** Character offsets of the matched phrase in the text. */
  start: number;
  end: number;
  text: string;
  concept: string;
}

const WORD = /[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu;

export function normaliseName(text: string): string {
  return text.toLowerCase().replace(/’/g, "'").trim().split(/\s+/).join(' ');
}

export class Lexicon {
  private readonly phrases = new Map<string, string>();
  private readonly longest: number;

  constructor(concepts: readonly Concept[]) {
    let longest = 1;
    for (const concept of concepts) {
      for (const name of concept.names) {
        const key = normaliseName(name);
        if (!this.phrases.has(key)) this.phrases.set(key, concept.id);
        longest = Math.max(longest, key.split(' ').length);
      }
    }
    this.longest = longest;
  }

  conceptOf(name: string): string | undefined {
    return this.phrases.get(normaliseName(name));
  }

  /** Non-overlapping whole-word matches in text order, preferring the longest phrase at each word. */
  find(text: string): NameMatch[] {
    const words: { start: number; end: number; word: string }[] = [];
    for (const m of text.matchAll(WORD)) {
      words.push({ start: m.index, end: m.index + m[0].length, word: normaliseName(m[0]) });
    }
    const matches: NameMatch[] = [];
    let i = 0;
    while (i < words.length) {
      let found: NameMatch | null = null;
      let span = 0;
      for (let n = Math.min(this.longest, words.length - i); n >= 1 && !found; n--) {
        const first = words[i] as { start: number };
        const last = words[i + n - 1] as { end: number };
        const phrase = words.slice(i, i + n).map((w) => w.word).join(' ');
        const concept = this.phrases.get(phrase);
        // Words must be separated by single spaces in the text for a multi-word phrase to count.
        if (concept && normaliseName(text.slice(first.start, last.end)) === phrase) {
          found = { start: first.start, end: last.end, text: text.slice(first.start, last.end), concept };
          span = n;
        }
      }
      if (found) {
        matches.push(found);
        i += span;
      } else {
        i++;
      }
    }
    return matches;
  }
}
