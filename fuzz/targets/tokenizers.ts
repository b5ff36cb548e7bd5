// Tokenizer files, loaded as the pipelines load them and then used on a few prompts:
//   clip-vocab, clip-merges   vocab.json / merges.txt of a CLIP tokenizer folder (the shipped
//                             world-sd-mini's), through ClipTokenizer.fromPretrained and encode
//   tokenizer-json            kosmos-g-mini's tokenizer.json, through loadKosmosTokenizer
//   sentencepiece, dict       sentencepiece.bpe.model (protobuf) / dict.txt of an official-layout
//                             tokenizer folder built here, through loadKosmosTokenizer
// In each, one file is the mutated input and the others stay valid.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { DICTIONARY_FILE, SENTENCEPIECE_MODEL_FILE, TOKENIZER_JSON_FILE, loadKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';
import { encodeSentencePieceModel, wearingModelPieces } from '../../test/tokenizers/sentencepiece-model.js';
import { parseTree, mutateTree, writeTree } from '../formats/protobuf-tree.js';
import { mutateJson } from '../json-mutate.js';
import { mutateBytes, mutateText } from '../mutate.js';
import type { Random } from '../random.js';
import { MODELS } from './configs.js';
import type { Seed, Target } from './target.js';

const CLIP_FOLDER = join(MODELS, 'world-sd-mini', 'clip_tokenizer');
const MINI_TOKENIZER = join(MODELS, 'kosmos-g-mini', 'tokenizer', TOKENIZER_JSON_FILE);

/** What the loaded tokenizer is asked to encode: plain words, merges' material, special tokens, unusual code points. */
export const SAMPLE_PROMPTS = ['a cat wearing a red hat on the beach', 'wearing  the   beach\u3000東京の猫 🇫🇷 café', '<|startoftext|><s><image></image> &amp; \u0000\ufffd'];

/** The official layout's files: the SentencePiece model and a dict.txt of its pieces. */
export function sentencePieceFiles(): { model: Uint8Array; dictionary: string } {
  const pieces = wearingModelPieces();
  const dictionary = pieces.slice(3).map(({ piece }, index) => `${piece} ${1000 - index}`).join('\n');
  return { model: encodeSentencePieceModel(pieces), dictionary: `${dictionary}\n` };
}

/** The file each variant mutates, inside its folder. */
const MUTATED_FILE: Record<string, string> = {
  'clip-vocab': 'vocab.json',
  'clip-merges': 'merges.txt',
  'tokenizer-json': TOKENIZER_JSON_FILE,
  sentencepiece: SENTENCEPIECE_MODEL_FILE,
  dict: DICTIONARY_FILE,
};

/** Folders already holding the variant's unmutated files. */
const prepared = new Set<string>();

async function prepare(variant: string, folder: string): Promise<void> {
  if (prepared.has(folder)) return;
  if (variant.startsWith('clip-')) {
    for (const file of ['vocab.json', 'merges.txt']) await writeFile(join(folder, file), await readFile(join(CLIP_FOLDER, file)));
  } else if (variant === 'sentencepiece' || variant === 'dict') {
    const { model, dictionary } = sentencePieceFiles();
    await writeFile(join(folder, SENTENCEPIECE_MODEL_FILE), model);
    await writeFile(join(folder, DICTIONARY_FILE), dictionary);
  }
  prepared.add(folder);
}

/** A line-based file (merges.txt, dict.txt): lines dropped, repeated, swapped, split wrongly, or damaged as text. */
function mutateLines(text: string, random: Random): string {
  const lines = text.split('\n');
  const index = random.int(lines.length);
  switch (random.int(6)) {
    case 0:
      lines.splice(index, 1);
      break;
    case 1:
      lines.splice(random.int(lines.length + 1), 0, ...Array.from({ length: random.size(10) + 1 }, () => lines[index]!));
      break;
    case 2:
      lines[index] = random.pick(['', ' ', 'a', 'a b c', 'a  b', ' a', 'a ', '#version: 0.2', 'x y', '\u0120 \u0120', 'a 1 #fairseq:overwrite', '<s> 1 #fairseq:overwrite', '<image> 5', 'a -1', 'a 1e9', 'a 99999999999999999999', 'a\tb', 'a\rb']);
      break;
    case 3: {
      const other = random.int(lines.length);
      [lines[index], lines[other]] = [lines[other]!, lines[index]!];
      break;
    }
    case 4:
      return lines.join(random.pick(['\r\n', '\n\n', '\r']));
    default:
      lines[index] = mutateText(lines[index]!, random, 4096, 2);
  }
  return lines.join('\n');
}

export const tokenizersTarget: Target = {
  name: 'tokenizers',
  description: 'CLIP vocab.json and merges.txt, Kosmos-G tokenizer.json, sentencepiece.bpe.model and dict.txt, loaded as the pipelines load them and encoding sample prompts',
  async seeds(): Promise<Seed[]> {
    const { model, dictionary } = sentencePieceFiles();
    return [
      { variant: 'clip-vocab', bytes: Uint8Array.from(await readFile(join(CLIP_FOLDER, 'vocab.json'))) },
      { variant: 'clip-merges', bytes: Uint8Array.from(await readFile(join(CLIP_FOLDER, 'merges.txt'))) },
      { variant: 'tokenizer-json', bytes: Uint8Array.from(await readFile(MINI_TOKENIZER)) },
      { variant: 'sentencepiece', bytes: model },
      { variant: 'dict', bytes: Buffer.from(dictionary) },
    ];
  },
  mutate(seed, random) {
    const text = () => Buffer.from(seed.bytes).toString('utf8');
    switch (seed.variant) {
      case 'clip-vocab':
      case 'tokenizer-json':
        return Buffer.from(mutateJson(text(), random));
      case 'sentencepiece': {
        if (random.chance(0.15)) return mutateBytes(seed.bytes, random);
        const tree = parseTree(seed.bytes);
        for (let round = random.range(1, 3); round > 0; round--) mutateTree(tree, random);
        return writeTree(tree);
      }
      default:
        return random.chance(0.15) ? mutateBytes(seed.bytes, random) : Buffer.from(mutateLines(text(), random));
    }
  },
  async run(variant, input, scratch) {
    await prepare(variant, scratch);
    await writeFile(join(scratch, MUTATED_FILE[variant]!), input);
    if (variant.startsWith('clip-')) {
      const tokenizer = await ClipTokenizer.fromPretrained(scratch);
      for (const prompt of SAMPLE_PROMPTS) tokenizer.encode(prompt, { cleaning: 'basic' });
      return;
    }
    const tokenizer = await loadKosmosTokenizer(scratch);
    for (const prompt of SAMPLE_PROMPTS) tokenizer.encodeSegment(prompt);
  },
};
