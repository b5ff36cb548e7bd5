// `kosmos-g train-tokenizer --out DIR`: trains kosmos-g-mini's byte-level BPE on the emoji world's
// text — scene captions and edit instructions of the training split, the text the mini models are
// trained on — and writes a CLIP tokenizer folder (`DIR/clip_tokenizer`: tokenizer.json,
// vocab.json + merges.txt) and the Kosmos-G tokenizer of the same BPE (`DIR/tokenizer`:
// tokenizer.json with fairseq's special ids).
import { join } from 'node:path';
import type { Command } from 'commander';
import { saveClipTokenizer, saveMiniKosmosTokenizer, trainBpe } from '../tokenizers/bpe_trainer.js';
import { deriveSeed, Random } from '../util/random.js';
import { captionScene } from '../world/caption.js';
import { applyEdit, EDIT_KINDS } from '../world/edits.js';
import { DEFAULT_MAX_OVERLAP, sampleScene } from '../world/scene.js';
import { makeSplits, splitPool } from '../world/splits.js';
import { World } from '../world/world.js';

/**
 * `count` texts of the world's training split: scene i gives its caption and, for every other
 * scene, the instruction of a random edit. Text i is a pure function of (seed, i).
 */
export function* worldTextCorpus(world: World, count: number, seed: number): Generator<string> {
  const pool = splitPool(world.catalog, makeSplits(world.catalog), 'train');
  const pools = { subjects: pool.subjects, backgroundStyles: pool.backgroundStyles, maxOverlap: DEFAULT_MAX_OVERLAP };
  for (let index = 0; index < count; index++) {
    const rng = new Random(deriveSeed(seed, index));
    const spec = sampleScene(world, rng, pools);
    yield captionScene(world, spec, rng).text;
    if (index % 2 === 1) {
      const edit = applyEdit(world, spec, rng.pick(EDIT_KINDS), rng, pools);
      if (edit) yield edit.instruction;
    }
  }
}

function positiveInteger(value: string, what: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got '${value}'`);
  return n;
}

export function registerTrainTokenizerCommand(program: Command): void {
  program
    .command('train-tokenizer')
    .description("train the mini models' byte-level BPE on the emoji world's captions and edit instructions")
    .option('--out <dir>', 'folder that receives clip_tokenizer/ and tokenizer/')
    .option('--scenes <n>', 'scenes whose captions (and every other one an edit instruction) form the corpus', '20000')
    .option('--vocab-size <n>', 'CLIP vocabulary size: 512 byte entries + merges + 2 special tokens', '4096')
    .option('--min-frequency <n>', 'least occurrences of a merged pair', '2')
    .option('--seed <n>', 'corpus seed', '0')
    .option('--cache <dir>', 'sprite cache folder (default $KOSMOS_G_CACHE or ~/.cache/kosmos-g)')
    .action(async (flags: { out?: string; scenes: string; vocabSize: string; minFrequency: string; seed: string; cache?: string }) => {
      if (!flags.out) throw new Error('--out is required');
      const scenes = positiveInteger(flags.scenes, '--scenes');
      const vocabularySize = positiveInteger(flags.vocabSize, '--vocab-size');
      const minFrequency = positiveInteger(flags.minFrequency, '--min-frequency');
      const seed = Number(flags.seed);
      if (!/^\d+$/.test(flags.seed) || !Number.isSafeInteger(seed)) throw new Error(`--seed must be a non-negative integer, got '${flags.seed}'`);
      const world = await World.open(flags.cache !== undefined ? { cacheDir: flags.cache } : {});
      const trained = trainBpe(worldTextCorpus(world, scenes, seed), { vocabularySize, minFrequency });
      await saveClipTokenizer(join(flags.out, 'clip_tokenizer'), trained);
      await saveMiniKosmosTokenizer(join(flags.out, 'tokenizer'), trained);
      process.stdout.write(`trained ${trained.merges.length} merges (${trained.tokens.length} CLIP tokens, ${trained.tokens.length + 6} Kosmos-G ids) into ${flags.out}\n`);
    });
}
