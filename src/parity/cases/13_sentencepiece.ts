// Case 13: a real SentencePiece BPE model with the official Kosmos-G settings and its fairseq
// dict.txt, read the way a pipeline's `tokenizer/` folder is read. For each of the fixture's strings
// (captions, `<i>` prompts, odd whitespace, NFKC cases, scripts the model barely knows, emoji,
// control characters) the pieces, the model's own ids and the fairseq ids must equal the
// sentencepiece library's exactly.
import { join } from 'node:path';
import { DICTIONARY_FILE, SENTENCEPIECE_MODEL_FILE, SentencePieceKosmosTokenizer } from '../../tokenizers/kosmos_tokenizer.js';
import type { FixtureCase, ParityRow } from '../compare.js';

interface TokenizerCase {
  text: string;
  pieces: string[];
  spm_ids: number[];
  fairseq_ids: number[];
}

type ComparedField = 'pieces' | 'spm_ids' | 'fairseq_ids';

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const tokenizer = await SentencePieceKosmosTokenizer.fromFiles(join(fixture.directory, SENTENCEPIECE_MODEL_FILE), join(fixture.directory, DICTIONARY_FILE));
  const cases = fixture.description['cases'] as TokenizerCase[] | undefined;
  if (!Array.isArray(cases) || cases.length === 0) throw new Error(`${fixture.name}/case.json: no "cases"`);
  const ours = cases.map(({ text }) => {
    const pieces = tokenizer.sentencePiece.encodePieces(text);
    return { pieces, spm_ids: tokenizer.sentencePiece.encodeIds(text), fairseq_ids: tokenizer.encodeSegment(text) };
  });
  const row = (field: ComparedField): ParityRow => {
    const wrong = cases.filter((reference, i) => JSON.stringify(ours[i]![field]) !== JSON.stringify(reference[field]));
    const shown = wrong.slice(0, 3).map((reference) => `${JSON.stringify(reference.text)}: ${JSON.stringify(ours[cases.indexOf(reference)]![field])} vs ${JSON.stringify(reference[field])}`);
    return {
      case: fixture.name,
      output: field,
      compared: cases.length,
      maxAbsError: wrong.length ? Infinity : 0,
      tolerance: 'exact',
      pass: wrong.length === 0,
      note: wrong.length ? `${wrong.length} string(s) differ: ${shown.join('; ')}` : `${cases.length} strings`,
    };
  };
  return [row('pieces'), row('spm_ids'), row('fairseq_ids')];
}
