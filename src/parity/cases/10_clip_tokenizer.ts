// Fixture 10: the CLIP BPE tokenizer on 30 strings (ftfy repairs, HTML entities, Unicode,
// truncation, literal special tokens), in the SD/transformers padding (end token), the open_clip
// padding (zeros), and transformers' fast-tokenizer cleaning (no ftfy, no HTML unescape).
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { HostTensor } from '../../onnx/dtype.js';
import { ClipTokenizer, type ClipEncodeOptions } from '../../tokenizers/clip_bpe.js';
import { type FixtureCase, type ParityRow, compareOutputs, compareTensors } from '../compare.js';

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const tokenizer = await ClipTokenizer.fromMergeList(resolve(fixture.directory, '..', 'clip-bpe', 'bpe_simple_vocab_16e6.txt.gz'));
  const strings = (JSON.parse(await readFile(join(fixture.directory, 'tokens.json'), 'utf8')) as { text: string }[]).map((entry) => entry.text);
  const batch = (options: ClipEncodeOptions): HostTensor => ({
    dtype: 'int64',
    shape: [strings.length, 77],
    data: BigInt64Array.from(strings.flatMap((text) => tokenizer.encode(text, options).ids), BigInt),
  });
  const rows = compareOutputs(fixture, {
    ids_sd_hf_style: batch({}),
    lengths: { dtype: 'int64', shape: [strings.length], data: BigInt64Array.from(strings, (text) => BigInt(tokenizer.encode(text).length)) },
    ids_transformers_CLIPTokenizer: batch({ cleaning: 'basic' }),
  });
  rows.push(compareTensors(fixture.name, 'ids_open_clip_style', batch({ padding: 'zero' }), fixture.inputs.get('ids_open_clip_style')!, 'exact'));
  return rows;
}
