// Hugging Face `tokenizer.json` (tokenizers library format, version 1.0) for CLIP-style byte-level
// BPE — model type BPE with `vocab`, `merges` and `end_of_word_suffix: "</w>"`, plus
// `added_tokens` — and the older `vocab.json` + `merges.txt` pair. Only the BPE model section and
// the added tokens are read back; the normalizer, pre-tokenizer and decoder sections are written as
// CLIP's (NFC, whitespace collapsed, lower-cased, CLIP's split pattern, byte-level; "</w>" decoder)
// so that transformers can load the files, but encoding here follows ClipTokenizer. No
// post-processor is written: start/end tokens are added by the caller (ClipTokenizer.encode for
// CLIP, the prompt processor for Kosmos-G).
import { platform, dirname, join } from '#platform';
import { writeFileAtomic } from '../io/atomic-file.js';
import { describeValue, oneLine } from '../io/describe-value.js';

export const END_OF_WORD_SUFFIX = '</w>';

export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens are never split and are skipped when decoding. */
  special: boolean;
}

/** A CLIP-style BPE: token → id, merges in rank order, tokens added on top of the BPE. */
export interface BpeDefinition {
  vocab: Map<string, number>;
  merges: [string, string][];
  addedTokens: AddedToken[];
  /** The token used for unknown input, if any (`model.unk_token`). */
  unkToken: string | null;
}

// CLIP's pre-tokenizer pattern as transformers writes it for CLIPTokenizerFast.
const CLIP_SPLIT_PATTERN = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/** The tokenizer.json document for a BPE definition. */
export function tokenizerJsonDocument(bpe: BpeDefinition): Record<string, unknown> {
  const vocab = Object.fromEntries([...bpe.vocab].sort((a, b) => a[1] - b[1]));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: bpe.addedTokens.map((token) => ({
      id: token.id, content: token.content, single_word: false, lstrip: false, rstrip: false, normalized: !token.special, special: token.special,
    })),
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'BPEDecoder', suffix: END_OF_WORD_SUFFIX },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: bpe.unkToken,
      continuing_subword_prefix: '',
      end_of_word_suffix: END_OF_WORD_SUFFIX,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: bpe.merges.map(([left, right]) => [left, right]),
    },
  };
}

export async function writeTokenizerJson(path: string, bpe: BpeDefinition): Promise<void> {
  await platform.makeDirectory(dirname(path));
  await writeFileAtomic(path, `${JSON.stringify(tokenizerJsonDocument(bpe), null, 2)}\n`);
}

/** transformers' slow-tokenizer files: `vocab.json` (including added tokens) and `merges.txt`. */
export async function writeVocabAndMerges(directory: string, bpe: BpeDefinition): Promise<void> {
  const vocab = Object.fromEntries([...bpe.vocab].sort((a, b) => a[1] - b[1]));
  await platform.makeDirectory(directory);
  await writeFileAtomic(join(directory, 'vocab.json'), `${JSON.stringify(vocab)}\n`);
  await writeFileAtomic(join(directory, 'merges.txt'), `#version: 0.2\n${bpe.merges.map(([l, r]) => `${l} ${r}`).join('\n')}\n`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A vocabulary object (token → id, each a distinct non-negative integer); `what` names it in errors. */
export function parseVocabulary(value: unknown, source: string, what: string): Map<string, number> {
  if (!isRecord(value)) throw new Error(`${source}: ${what} must be an object`);
  const vocab = new Map<string, number>();
  const ids = new Set<number>();
  for (const [token, id] of Object.entries(value)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${source}: vocab entry ${describeValue(token)} has id ${describeValue(id)}`);
    if (ids.has(id as number)) throw new Error(`${source}: id ${id} is used twice in the vocab`);
    ids.add(id as number);
    vocab.set(token, id as number);
  }
  return vocab;
}

/** Parses the BPE model and added tokens of a tokenizer.json document (merges as "a b" strings or pairs). */
export function parseTokenizerJson(document: unknown, source = 'tokenizer.json'): BpeDefinition {
  if (!isRecord(document) || !isRecord(document['model'])) throw new Error(`${source}: no "model" object`);
  const model = document['model'];
  if (model['type'] !== 'BPE') throw new Error(`${source}: model type ${describeValue(model['type'])} is not supported (BPE only)`);
  const suffix = model['end_of_word_suffix'];
  if (suffix !== END_OF_WORD_SUFFIX) throw new Error(`${source}: end_of_word_suffix must be "${END_OF_WORD_SUFFIX}" (CLIP-style BPE), got ${describeValue(suffix)}`);
  const vocab = parseVocabulary(model['vocab'], source, 'model.vocab');
  const ids = new Set(vocab.values());
  if (!Array.isArray(model['merges'])) throw new Error(`${source}: model.merges must be an array`);
  const merges = model['merges'].map((entry: unknown, index: number): [string, string] => {
    const pair = typeof entry === 'string' ? entry.split(' ') : entry;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string' || !pair[0] || !pair[1]) {
      throw new Error(`${source}: merge ${index + 1} is not two symbols: ${describeValue(entry)}`);
    }
    if (!vocab.has(pair[0] + pair[1])) throw new Error(`${source}: merge ${index + 1} produces ${describeValue(pair[0] + pair[1])}, which is not in the vocab`);
    return [pair[0], pair[1]];
  });
  const addedTokens: AddedToken[] = [];
  for (const [index, entry] of ((document['added_tokens'] as unknown[] | undefined) ?? []).entries()) {
    if (!isRecord(entry) || !Number.isInteger(entry['id']) || typeof entry['content'] !== 'string') {
      throw new Error(`${source}: added_tokens[${index}] needs an integer id and a string content`);
    }
    const token = { id: entry['id'] as number, content: entry['content'], special: entry['special'] === true };
    const existing = vocab.get(token.content);
    if (existing !== undefined && existing !== token.id) throw new Error(`${source}: added token ${describeValue(token.content)} has id ${token.id} but ${existing} in the vocab`);
    if (existing === undefined && ids.has(token.id)) throw new Error(`${source}: added token ${describeValue(token.content)} reuses id ${token.id}`);
    vocab.set(token.content, token.id);
    ids.add(token.id);
    addedTokens.push(token);
  }
  const unk = model['unk_token'];
  return { vocab, merges, addedTokens, unkToken: typeof unk === 'string' ? unk : null };
}

export async function readTokenizerJson(path: string): Promise<BpeDefinition> {
  let text: string;
  try {
    text = await platform.readText(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: invalid JSON (${oneLine((error as Error).message)})`);
  }
  return parseTokenizerJson(document, path);
}
