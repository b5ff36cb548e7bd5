// The tokenizer contract of Kosmos-G's MLLM. The official model reads SentencePiece pieces through
// the fairseq dictionary (`<s>` = 0, `<pad>` = 1, `</s>` = 2, `<unk>` = 3, dict.txt from 4, then
// `<mask>`, `</doc>`, `<image>`, `</image>`, …); kosmos-g-mini uses a byte-level BPE trained on the
// emoji world's captions with the same special ids at the front and `<image>`, `</image>` at the
// end. Both implement this interface, so the prompt processor and the MLLM code path are the same.
import { platform, join } from '#platform';
import { FairseqDictionary } from './fairseq_dictionary.js';
import { SentencePieceBpe } from './sentencepiece.js';
import { MiniKosmosTokenizer } from './mini_kosmos_tokenizer.js';

export interface KosmosTokenizer {
  /** `<s>`, the first token of every MLLM sequence. */
  readonly bos: number;
  /** `<pad>`: positions with this id are skipped by the MLLM's positions and masked in the aligner. */
  readonly pad: number;
  /** `</s>`: never appended at inference (training sequences end with it). */
  readonly eos: number;
  readonly unk: number;
  /** `<image>`: Q + 1 of them open each image block. */
  readonly imageStart: number;
  /** `</image>`: closes each image block. */
  readonly imageEnd: number;
  /** Number of ids (the MLLM's embedding must have at least this many rows). */
  readonly vocabularySize: number;
  /** Ids of one text segment (no `<s>`, no `</s>`); whitespace-only text gives none. */
  encodeSegment(text: string): number[];
}

/** The official file names inside a pipeline's `tokenizer/` folder. */
export const SENTENCEPIECE_MODEL_FILE = 'sentencepiece.bpe.model';
export const DICTIONARY_FILE = 'dict.txt';
export const TOKENIZER_JSON_FILE = 'tokenizer.json';

/** SentencePiece pieces mapped through a fairseq dictionary: the official Kosmos-G tokenizer. */
export class SentencePieceKosmosTokenizer implements KosmosTokenizer {
  constructor(
    readonly sentencePiece: SentencePieceBpe,
    readonly dictionary: FairseqDictionary,
  ) {}

  get bos(): number {
    return this.dictionary.bos;
  }
  get pad(): number {
    return this.dictionary.pad;
  }
  get eos(): number {
    return this.dictionary.eos;
  }
  get unk(): number {
    return this.dictionary.unk;
  }
  get imageStart(): number {
    return this.dictionary.index('<image>');
  }
  get imageEnd(): number {
    return this.dictionary.index('</image>');
  }
  get vocabularySize(): number {
    return this.dictionary.size;
  }

  encodeSegment(text: string): number[] {
    return this.sentencePiece.encodePieces(text).map((piece) => this.dictionary.index(piece));
  }

  static async fromFiles(modelPath: string, dictionaryPath: string): Promise<SentencePieceKosmosTokenizer> {
    return new SentencePieceKosmosTokenizer(await SentencePieceBpe.fromFile(modelPath), await FairseqDictionary.fromFile(dictionaryPath));
  }
}

async function exists(path: string): Promise<boolean> {
  return (await platform.pathKind(path)) !== null;
}

/**
 * The tokenizer in a pipeline's `tokenizer/` folder: `sentencepiece.bpe.model` + `dict.txt`
 * (official), or `tokenizer.json` (kosmos-g-mini).
 */
export async function loadKosmosTokenizer(directory: string): Promise<KosmosTokenizer> {
  const modelPath = join(directory, SENTENCEPIECE_MODEL_FILE);
  const dictionaryPath = join(directory, DICTIONARY_FILE);
  const jsonPath = join(directory, TOKENIZER_JSON_FILE);
  if (await exists(modelPath)) {
    if (!(await exists(dictionaryPath))) throw new Error(`${directory} has ${SENTENCEPIECE_MODEL_FILE} but no ${DICTIONARY_FILE}`);
    return SentencePieceKosmosTokenizer.fromFiles(modelPath, dictionaryPath);
  }
  if (await exists(jsonPath)) return MiniKosmosTokenizer.fromFile(jsonPath);
  throw new Error(`${directory} holds no Kosmos-G tokenizer (${SENTENCEPIECE_MODEL_FILE} + ${DICTIONARY_FILE}, or ${TOKENIZER_JSON_FILE})`);
}
