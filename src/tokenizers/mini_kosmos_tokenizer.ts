// kosmos-g-mini's MLLM tokenizer: the CLIP-style byte-level BPE trained on the emoji world's
// captions, with fairseq's layout of special ids so the MLLM code path is the official one:
//   <s> = 0, <pad> = 1, </s> = 2, <unk> = 3, the BPE tokens from 4, then <image>, </image> last.
// Stored as a tokenizer.json whose vocab holds every id and whose added_tokens are the six specials.
import { ClipTokenizer } from './clip_bpe.js';
import type { KosmosTokenizer } from './kosmos_tokenizer.js';
import { type BpeDefinition, readTokenizerJson } from './tokenizer_json.js';

export const MINI_SPECIAL_TOKENS = { bos: '<s>', pad: '<pad>', eos: '</s>', unk: '<unk>', imageStart: '<image>', imageEnd: '</image>' } as const;
/** The fairseq ids the first four specials must have. */
const FAIRSEQ_IDS = { bos: 0, pad: 1, eos: 2, unk: 3 } as const;

export class MiniKosmosTokenizer implements KosmosTokenizer {
  readonly bos: number;
  readonly pad: number;
  readonly eos: number;
  readonly unk: number;
  readonly imageStart: number;
  readonly imageEnd: number;
  readonly vocabularySize: number;
  private readonly bpe: ClipTokenizer;

  constructor(definition: BpeDefinition, source = 'tokenizer.json') {
    const special = (name: keyof typeof MINI_SPECIAL_TOKENS): number => {
      const content = MINI_SPECIAL_TOKENS[name];
      const token = definition.addedTokens.find((added) => added.content === content);
      if (!token) throw new Error(`${source}: no added token ${content} (a Kosmos-G tokenizer needs ${Object.values(MINI_SPECIAL_TOKENS).join(', ')})`);
      return token.id;
    };
    this.bos = special('bos');
    this.pad = special('pad');
    this.eos = special('eos');
    this.unk = special('unk');
    this.imageStart = special('imageStart');
    this.imageEnd = special('imageEnd');
    for (const name of Object.keys(FAIRSEQ_IDS) as (keyof typeof FAIRSEQ_IDS)[]) {
      if (this[name] !== FAIRSEQ_IDS[name]) throw new Error(`${source}: ${MINI_SPECIAL_TOKENS[name]} has id ${this[name]}, fairseq's layout needs ${FAIRSEQ_IDS[name]}`);
    }
    // A loop, not Math.max(...ids): a vocabulary can have more entries than a call has arguments.
    let largest = -1;
    for (const id of definition.vocab.values()) largest = Math.max(largest, id);
    this.vocabularySize = largest + 1;
    if (definition.vocab.size !== this.vocabularySize) throw new Error(`${source}: ids are not contiguous (${definition.vocab.size} tokens, largest id ${this.vocabularySize - 1})`);
    this.bpe = ClipTokenizer.fromBpe(definition.vocab, definition.merges);
  }

  static async fromFile(path: string): Promise<MiniKosmosTokenizer> {
    return new MiniKosmosTokenizer(await readTokenizerJson(path), path);
  }

  /** CLIP cleaning (lower-case, whitespace collapsed) and byte-level BPE; no start/end tokens. */
  encodeSegment(text: string): number[] {
    return this.bpe.tokenize(text);
  }
}
