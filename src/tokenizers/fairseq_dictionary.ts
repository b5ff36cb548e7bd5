// fairseq's Dictionary as Kosmos-G builds it (`fairseq/data/dictionary.py`, `unilm/tasks/gpt_base.py`,
// `unilm/data/utils.py`): `<s>` = 0, `<pad>` = 1, `</s>` = 2, `<unk>` = 3; line k of dict.txt
// ("piece count") gets id k + 4; then `<mask>` and the SPECIAL_SYMBOLS `</doc>`, `<image>`,
// `</image>`, `</chunk>`, `</line>` are appended (64001–64006 for the official 63,997-line dict.txt,
// vocabulary 64,007). No padding to a multiple is added (`--required-batch-size-multiple 1`).
// Pieces not in the dictionary map to `<unk>`.
import { platform } from '#platform';
import { describeValue } from '../io/describe-value.js';

export const FAIRSEQ_SPECIALS = ['<s>', '<pad>', '</s>', '<unk>'] as const;
/** Appended after dict.txt, in this order. */
export const KOSMOS_APPENDED_SYMBOLS = ['<mask>', '</doc>', '<image>', '</image>', '</chunk>', '</line>'] as const;

const OVERWRITE_FLAG = '#fairseq:overwrite';

export class FairseqDictionary {
  private readonly indices = new Map<string, number>();
  readonly symbols: string[] = [];
  readonly bos = 0;
  readonly pad = 1;
  readonly eos = 2;
  readonly unk = 3;

  /** `lines`: the dict.txt entries in order (pieces only); the appended symbols follow them. */
  constructor(lines: readonly string[], appended: readonly string[] = KOSMOS_APPENDED_SYMBOLS) {
    for (const symbol of FAIRSEQ_SPECIALS) this.addSymbol(symbol);
    // A dict.txt line always takes the next id; a piece repeated with #fairseq:overwrite moves to it.
    for (const line of lines) {
      this.indices.set(line, this.symbols.length);
      this.symbols.push(line);
    }
    for (const symbol of appended) this.addSymbol(symbol);
  }

  /** fairseq add_symbol: an existing symbol keeps its id. */
  private addSymbol(symbol: string): void {
    if (this.indices.has(symbol)) return;
    this.indices.set(symbol, this.symbols.length);
    this.symbols.push(symbol);
  }

  get size(): number {
    return this.symbols.length;
  }

  /** The id of a piece, `<unk>` (3) if it is not in the dictionary. */
  index(piece: string): number {
    return this.indices.get(piece) ?? this.unk;
  }

  has(piece: string): boolean {
    return this.indices.has(piece);
  }

  symbol(id: number): string {
    const symbol = this.symbols[id];
    if (symbol === undefined) throw new Error(`id ${id} is outside the dictionary (size ${this.size})`);
    return symbol;
  }

  /**
   * Parses dict.txt as fairseq's add_from_file: "<piece> <count>" per line, optionally followed by
   * "#fairseq:overwrite" (which allows a piece that is already present, e.g. a special symbol).
   * A duplicate without the flag is an error, as in fairseq.
   */
  static parse(text: string, source = 'dict.txt'): FairseqDictionary {
    const pieces: string[] = [];
    const seen = new Set<string>(FAIRSEQ_SPECIALS);
    text.split('\n').forEach((raw, index) => {
      const line = raw.trimEnd();
      if (!line) return;
      let entry = line;
      let overwrite = false;
      if (entry.endsWith(` ${OVERWRITE_FLAG}`)) {
        overwrite = true;
        entry = entry.slice(0, -OVERWRITE_FLAG.length - 1);
      }
      const split = entry.lastIndexOf(' ');
      const [piece, count] = split > 0 ? [entry.slice(0, split), entry.slice(split + 1)] : ['', ''];
      if (!piece || !/^-?\d+$/.test(count)) throw new Error(`${source}:${index + 1}: expected "<piece> <count>", got ${describeValue(raw)}`);
      if (seen.has(piece) && !overwrite) throw new Error(`${source}:${index + 1}: duplicate piece ${describeValue(piece)} (fairseq requires ${OVERWRITE_FLAG})`);
      seen.add(piece);
      pieces.push(piece);
    });
    return new FairseqDictionary(pieces);
  }

  static async fromFile(path: string): Promise<FairseqDictionary> {
    let text: string;
    try {
      text = await platform.readText(path);
    } catch (error) {
      throw new Error(`cannot read dictionary ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    return FairseqDictionary.parse(text, path);
  }
}
