// SentencePiece BPE (google/sentencepiece `bpe_model.cc`, `normalizer.cc`) read from a `.model`
// file, as Kosmos-G's `sentencepiece.bpe.model` is used: text → normalised string → pieces.
//
// The `.model` file is a protobuf ModelProto; the fields read here are
//   pieces = 1 { piece = 1, score = 2 (float), type = 3 (NORMAL 1, UNKNOWN 2, CONTROL 3,
//                USER_DEFINED 4, UNUSED 5, BYTE 6) }
//   trainer_spec = 2 { model_type = 3 (must be BPE = 2), treat_whitespace_as_suffix = 24,
//                      byte_fallback = 35 }
//   normalizer_spec = 3 { name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4,
//                         escape_whitespaces = 5 }
// Every other field (the precompiled charsmap among them) is skipped.
//
// Normalisation. The charsmap is not interpreted; the rule named by `normalizer_spec.name` is
// implemented instead:
//   `nmt_nfkc` — exactly the rules of sentencepiece's Builder::BuildNmtNFKCMap applied per code
//     point: U+0001–U+0008, U+000B, U+000E–U+001F, U+007F, U+008F, U+009F are removed; U+0009,
//     U+000A, U+000C, U+000D, U+1680, U+200B, U+200C, U+200E, U+200F, U+2028, U+2029, U+2581,
//     U+FEFF, U+FFFD become a space; then Unicode NFKC (String.prototype.normalize) on the rest,
//     except that U+FF5E FULLWIDTH TILDE is kept. The compiled map is a longest-match table built
//     from single-character NFKC plus decomposed sequences, so it can differ from whole-string NFKC
//     for unusual combining-mark orders.
//   `nfkc` — NFKC with the U+FF5E exception, without the NMT rules.
//   `identity` — no change.
// Then, as normalizer.cc does: leading spaces are dropped, a "▁" dummy prefix is added (unless the
// text is empty), runs of spaces collapse to one, spaces become "▁", trailing "▁" are dropped
// (each step as the spec's flags say).
//
// Encoding (bpe_model.cc Model::Encode): the string is split into characters (user-defined pieces
// as whole, frozen symbols); then, repeatedly, the adjacent pair whose concatenation is a piece
// (NORMAL, USER_DEFINED or UNUSED) with the highest score is merged, ties to the leftmost pair.
// UNUSED pieces produced by a merge are split back into the pieces they were merged from. A symbol
// that is no piece is unknown: with byte fallback it becomes its UTF-8 bytes as `<0xNN>` pieces;
// otherwise (sentencepiece_processor.cc PopulateSentencePieceText) a run of adjacent unknown
// symbols becomes ONE piece, their surface strings joined (its id is unk), so "▁東京の猫" with only
// "▁" and "猫" known gives "▁", "東京の", "猫".
import { platform } from '#platform';
import { describeValue } from '../io/describe-value.js';
import { ProtoReader, WIRE_LENGTH_DELIMITED, expectWire, protoFloat, protoInt, protoString } from './protobuf_reader.js';

export const SPACE_SYMBOL = '\u2581';

export enum PieceType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export interface SentencePieceEntry {
  piece: string;
  score: number;
  type: PieceType;
}

export interface NormalizerSpec {
  name: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SentencePieceModelProto {
  pieces: SentencePieceEntry[];
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  normalizer: NormalizerSpec;
}

const MODEL_TYPE_NAMES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };
const BPE_MODEL_TYPE = 2;

function parsePiece(bytes: Uint8Array, where: string): SentencePieceEntry {
  const entry: SentencePieceEntry = { piece: '', score: 0, type: PieceType.Normal };
  for (const field of new ProtoReader(bytes, where).fields()) {
    if (field.field === 1) entry.piece = protoString(field, `${where}.piece`);
    else if (field.field === 2) entry.score = protoFloat(field, `${where}.score`);
    else if (field.field === 3) {
      const type = protoInt(field, `${where}.type`);
      if (!(type in PieceType) || typeof PieceType[type] !== 'string') throw new Error(`${where}.type: unknown piece type ${type}`);
      entry.type = type;
    }
  }
  return entry;
}

/** Parses the ModelProto fields listed at the top of this file; proto2 defaults where a field is absent. */
export function parseSentencePieceModel(bytes: Uint8Array, source = 'SentencePiece model'): SentencePieceModelProto {
  const model: SentencePieceModelProto = {
    pieces: [],
    modelType: 1,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    normalizer: { name: 'nmt_nfkc', addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
  };
  for (const field of new ProtoReader(bytes, source).fields()) {
    if (field.field === 1) {
      model.pieces.push(parsePiece(expectWire(field, WIRE_LENGTH_DELIMITED, `${source}: pieces`), `${source}: pieces[${model.pieces.length}]`));
    } else if (field.field === 2) {
      for (const spec of new ProtoReader(expectWire(field, WIRE_LENGTH_DELIMITED, `${source}: trainer_spec`), `${source}: trainer_spec`).fields()) {
        if (spec.field === 3) model.modelType = protoInt(spec, `${source}: trainer_spec.model_type`);
        else if (spec.field === 24) model.treatWhitespaceAsSuffix = protoInt(spec, `${source}: trainer_spec.treat_whitespace_as_suffix`) !== 0;
        else if (spec.field === 35) model.byteFallback = protoInt(spec, `${source}: trainer_spec.byte_fallback`) !== 0;
      }
    } else if (field.field === 3) {
      const where = `${source}: normalizer_spec`;
      for (const spec of new ProtoReader(expectWire(field, WIRE_LENGTH_DELIMITED, where), where).fields()) {
        if (spec.field === 1) model.normalizer.name = protoString(spec, `${where}.name`);
        else if (spec.field === 3) model.normalizer.addDummyPrefix = protoInt(spec, `${where}.add_dummy_prefix`) !== 0;
        else if (spec.field === 4) model.normalizer.removeExtraWhitespaces = protoInt(spec, `${where}.remove_extra_whitespaces`) !== 0;
        else if (spec.field === 5) model.normalizer.escapeWhitespaces = protoInt(spec, `${where}.escape_whitespaces`) !== 0;
      }
    }
  }
  return model;
}

// ---- normalisation ------------------------------------------------------------------------------

const NMT_REMOVED = new Set([
  0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0b, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
  0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x7f, 0x8f, 0x9f,
]);
const NMT_SPACES = new Set([0x09, 0x0a, 0x0c, 0x0d, 0x1680, 0x200b, 0x200c, 0x200e, 0x200f, 0x2028, 0x2029, 0x2581, 0xfeff, 0xfffd]);
const FULLWIDTH_TILDE = '\uff5e';

/** NFKC that leaves U+FF5E alone, as sentencepiece's NFKC maps do. */
function nfkcKeepingFullwidthTilde(text: string): string {
  return text.split(FULLWIDTH_TILDE).map((part) => part.normalize('NFKC')).join(FULLWIDTH_TILDE);
}

/** The character rule named by `normalizer_spec.name` (see the top of this file). */
export function applyNormalizationRule(text: string, rule: string): string {
  switch (rule) {
    case 'identity':
      return text;
    case 'nfkc':
      return nfkcKeepingFullwidthTilde(text);
    case 'nmt_nfkc': {
      let mapped = '';
      for (const character of text) {
        const code = character.codePointAt(0)!;
        if (NMT_REMOVED.has(code)) continue;
        mapped += NMT_SPACES.has(code) ? ' ' : character;
      }
      return nfkcKeepingFullwidthTilde(mapped);
    }
    default:
      throw new Error(`SentencePiece normalizer ${describeValue(rule)} is not supported (nmt_nfkc, nfkc or identity)`);
  }
}

function trimTrailingSpaces(text: string): string {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0x20) end--;
  return text.slice(0, end);
}

// ---- the model ----------------------------------------------------------------------------------

interface MergePair {
  left: number;
  right: number;
  score: number;
  /** Length of the merged piece when the pair was queued; a stale pair no longer matches it. */
  length: number;
}

/** Max-heap of candidate merges: highest score first, then the leftmost. */
class MergeQueue {
  private readonly heap: MergePair[] = [];

  private before(a: MergePair, b: MergePair): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }

  push(pair: MergePair): void {
    const heap = this.heap;
    heap.push(pair);
    for (let i = heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  pop(): MergePair | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const [l, r] = [2 * i + 1, 2 * i + 2];
        let best = i;
        if (l < heap.length && this.before(heap[l]!, heap[best]!)) best = l;
        if (r < heap.length && this.before(heap[r]!, heap[best]!)) best = r;
        if (best === i) break;
        [heap[i], heap[best]] = [heap[best]!, heap[i]!];
        i = best;
      }
    }
    return top;
  }
}

export class SentencePieceBpe {
  /** NORMAL, USER_DEFINED and UNUSED pieces: what merges may produce. */
  private readonly mergeable = new Map<string, number>();
  /** Every piece's id. */
  private readonly ids = new Map<string, number>();
  private readonly userDefined: string[];
  readonly unkId: number;

  constructor(readonly model: SentencePieceModelProto, source = 'SentencePiece model') {
    if (model.modelType !== BPE_MODEL_TYPE) {
      throw new Error(`${source}: model_type is ${MODEL_TYPE_NAMES[model.modelType] ?? model.modelType}; only BPE models are supported`);
    }
    if (model.treatWhitespaceAsSuffix) throw new Error(`${source}: treat_whitespace_as_suffix is not supported`);
    applyNormalizationRule('', model.normalizer.name);
    let unk = -1;
    model.pieces.forEach(({ piece, type }, id) => {
      if (!piece) throw new Error(`${source}: piece ${id} is empty`);
      if (this.ids.has(piece)) throw new Error(`${source}: piece ${describeValue(piece)} is defined twice (ids ${this.ids.get(piece)} and ${id})`);
      this.ids.set(piece, id);
      if (type === PieceType.Normal || type === PieceType.UserDefined || type === PieceType.Unused) this.mergeable.set(piece, id);
      if (type === PieceType.Unknown) {
        if (unk >= 0) throw new Error(`${source}: more than one UNKNOWN piece`);
        unk = id;
      }
      if (type === PieceType.Byte && !model.byteFallback) throw new Error(`${source}: byte piece ${describeValue(piece)} found although byte_fallback is off`);
    });
    if (unk < 0) throw new Error(`${source}: no UNKNOWN piece`);
    this.unkId = unk;
    // Longest first, so the prefix match takes the longest user-defined piece.
    this.userDefined = model.pieces.filter((entry) => entry.type === PieceType.UserDefined).map((entry) => entry.piece).sort((a, b) => b.length - a.length);
  }

  static async fromFile(path: string): Promise<SentencePieceBpe> {
    let bytes: Uint8Array;
    try {
      bytes = await platform.readBytes(path);
    } catch (error) {
      throw new Error(`cannot read SentencePiece model ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    return new SentencePieceBpe(parseSentencePieceModel(bytes, path), path);
  }

  get size(): number {
    return this.model.pieces.length;
  }

  /** The id of a piece; unknown pieces give the unk id. */
  pieceToId(piece: string): number {
    return this.ids.get(piece) ?? this.unkId;
  }

  /** normalizer.cc Normalize with this model's spec (see the top of this file). */
  normalize(text: string): string {
    const spec = this.model.normalizer;
    let normalized = applyNormalizationRule(text, spec.name);
    // Trailing spaces are cut by hand: / +$/ retries from every space of a long run that is not at
    // the end, which is quadratic in the run's length.
    if (spec.removeExtraWhitespaces) normalized = trimTrailingSpaces(normalized.replace(/^ +/, '')).replace(/ {2,}/g, ' ');
    if (!normalized) return '';
    if (spec.addDummyPrefix) normalized = ` ${normalized}`;
    return spec.escapeWhitespaces ? normalized.replaceAll(' ', SPACE_SYMBOL) : normalized;
  }

  /** Pieces of `text` (its normalised form, merged by score; unknown symbols as described above). */
  encodePieces(text: string): string[] {
    const normalized = this.normalize(text);
    if (!normalized) return [];
    const symbols = this.initialSymbols(normalized);
    const merged = this.merge(symbols);
    const pieces: string[] = [];
    let previousUnknown = false;
    for (const symbol of merged) {
      const unknown = this.pieceToId(symbol) === this.unkId;
      if (!unknown) pieces.push(symbol);
      else if (this.model.byteFallback) {
        for (const byte of new TextEncoder().encode(symbol)) pieces.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
      } else if (previousUnknown) pieces[pieces.length - 1] += symbol;
      else pieces.push(symbol);
      previousUnknown = unknown;
    }
    return pieces;
  }

  /** Ids of `text` in this model's own numbering. */
  encodeIds(text: string): number[] {
    return this.encodePieces(text).map((piece) => this.pieceToId(piece));
  }

  /** Characters, except user-defined pieces, which are whole and never merged. */
  private initialSymbols(text: string): { piece: string; frozen: boolean }[] {
    const symbols: { piece: string; frozen: boolean }[] = [];
    for (let i = 0; i < text.length; ) {
      const defined = this.userDefined.find((piece) => text.startsWith(piece, i));
      if (defined) {
        symbols.push({ piece: defined, frozen: true });
        i += defined.length;
        continue;
      }
      const character = String.fromCodePoint(text.codePointAt(i)!);
      symbols.push({ piece: character, frozen: false });
      i += character.length;
    }
    return symbols;
  }

  private merge(initial: { piece: string; frozen: boolean }[]): string[] {
    const pieces = initial.map((symbol) => symbol.piece);
    const frozen = initial.map((symbol) => symbol.frozen);
    const previous = pieces.map((_, i) => i - 1);
    const next = pieces.map((_, i) => (i + 1 < pieces.length ? i + 1 : -1));
    // Merged UNUSED pieces remember their halves, to be split back afterwards.
    const unusedHalves = new Map<string, [string, string]>();
    const queue = new MergeQueue();
    const consider = (left: number, right: number) => {
      if (left < 0 || right < 0 || frozen[left] || frozen[right]) return;
      const candidate = pieces[left]! + pieces[right]!;
      const id = this.mergeable.get(candidate);
      if (id === undefined) return;
      const entry = this.model.pieces[id]!;
      queue.push({ left, right, score: entry.score, length: candidate.length });
      if (entry.type === PieceType.Unused) unusedHalves.set(candidate, [pieces[left]!, pieces[right]!]);
    };
    for (let i = 1; i < pieces.length; i++) consider(i - 1, i);
    for (let pair = queue.pop(); pair; pair = queue.pop()) {
      const { left, right } = pair;
      // A pair is stale once either side was merged into something else.
      if (!pieces[left] || !pieces[right] || next[left] !== right || pieces[left]!.length + pieces[right]!.length !== pair.length) continue;
      pieces[left] = pieces[left]! + pieces[right]!;
      pieces[right] = '';
      next[left] = next[right]!;
      if (next[right]! >= 0) previous[next[right]!] = left;
      consider(previous[left]!, left);
      consider(left, next[left]!);
    }
    const result: string[] = [];
    const resegment = (piece: string) => {
      const halves = unusedHalves.get(piece);
      if (halves && this.model.pieces[this.mergeable.get(piece)!]!.type === PieceType.Unused) {
        resegment(halves[0]);
        resegment(halves[1]);
      } else result.push(piece);
    };
    for (let i = 0; i >= 0 && i < pieces.length; i = next[i]!) resegment(pieces[i]!);
    return result;
  }
}
