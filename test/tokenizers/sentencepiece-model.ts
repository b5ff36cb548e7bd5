// Builds small SentencePiece `.model` files (protobuf ModelProto) for tests, field numbers as in
// sentencepiece_model.proto: pieces = 1 {piece = 1, score = 2, type = 3}, trainer_spec = 2
// {model_type = 3, byte_fallback = 35}, normalizer_spec = 3 {name = 1, add_dummy_prefix = 3,
// remove_extra_whitespaces = 4, escape_whitespaces = 5}.
import { ProtoWriter } from '../../src/onnx/proto.js';
import { PieceType } from '../../src/tokenizers/sentencepiece.js';

export interface TestPiece {
  piece: string;
  score?: number;
  type?: PieceType;
}

export interface TestModelOptions {
  /** 2 = BPE (default), 1 = UNIGRAM. */
  modelType?: number;
  byteFallback?: boolean;
  normalizer?: { name?: string; addDummyPrefix?: boolean; removeExtraWhitespaces?: boolean; escapeWhitespaces?: boolean };
}

/** `<unk>`, `<s>`, `</s>` as SentencePiece puts them first, then `pieces`. */
export function standardPieces(pieces: readonly TestPiece[]): TestPiece[] {
  return [{ piece: '<unk>', type: PieceType.Unknown }, { piece: '<s>', type: PieceType.Control }, { piece: '</s>', type: PieceType.Control }, ...pieces];
}

export function encodeSentencePieceModel(pieces: readonly TestPiece[], options: TestModelOptions = {}): Uint8Array {
  const model = new ProtoWriter();
  for (const { piece, score = 0, type = PieceType.Normal } of pieces) {
    const entry = new ProtoWriter().string(1, piece).float(2, score);
    // proto2 default NORMAL is left out, as SentencePiece writes it.
    if (type !== PieceType.Normal) entry.int(3, type);
    model.message(1, entry);
  }
  const trainer = new ProtoWriter().int(3, options.modelType ?? 2);
  if (options.byteFallback) trainer.int(35, 1);
  model.message(2, trainer);
  const spec = options.normalizer ?? {};
  const normalizer = new ProtoWriter().string(1, spec.name ?? 'nmt_nfkc');
  if (spec.addDummyPrefix !== undefined) normalizer.int(3, spec.addDummyPrefix ? 1 : 0);
  if (spec.removeExtraWhitespaces !== undefined) normalizer.int(4, spec.removeExtraWhitespaces ? 1 : 0);
  if (spec.escapeWhitespaces !== undefined) normalizer.int(5, spec.escapeWhitespaces ? 1 : 0);
  model.message(3, normalizer);
  return model.finish();
}

/**
 * A model whose merges lead to the official example " wearing " → "▁wearing" (scores decide the
 * order: ▁w, ea, ▁wea, ri, ng, ring, ▁wearing), with a few more words for prompts.
 */
export function wearingModelPieces(): TestPiece[] {
  const characters = [...new Set('▁wearingonthebchs'.split(''))].map((piece) => ({ piece, score: -100 }));
  const merges = ['▁w', 'ea', '▁wea', 'ri', 'ng', 'ring', '▁wearing', '▁o', '▁on', '▁t', 'he', '▁the', '▁b', '▁bea', 'ch', '▁beach'];
  return standardPieces([...merges.map((piece, rank) => ({ piece, score: -1 - rank })), ...characters]);
}
