// Case 12: the official checkpoint format. Case 11's weights saved as fairseq checkpoints by
// torch.save: the zip and legacy fp32 files must give case 11's tensors bit for bit (the tied LM
// head as one shared storage, the transposed q_proj made contiguous), the fp16 file each tensor
// rounded to float16; converted into pipeline folders (case 11's tiny U-Net width matches the
// random `tiny` decoder used as --sd) and loaded by KosmosGPipeline, the fp32 and legacy files
// reproduce case 11's outputs. Every file in hostile/ must be refused by convert with a message
// naming its problem, leave no output folder, and exec.pt must run nothing.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type ArchitectureOverrides } from '../../convert/architecture.js';
import { type ConvertOptions, convertKosmosG } from '../../convert/kosmos_g.js';
import { readSafetensors } from '../../io/safetensors.js';
import { TorchCheckpoint, stateDictOf } from '../../io/torch-checkpoint.js';
import { type HostTensor, float16BitsToFloat32, float32ToFloat16Bits } from '../../onnx/dtype.js';
import { KosmosGPipeline } from '../../pipeline/kosmos_g_pipeline.js';
import { createRandomPipeline } from '../../pipeline/random_pipeline.js';
import { type FixtureCase, type ParityRow, compareOutputs, loadFixture } from '../compare.js';
import { conditionOutputs } from './11_kosmosg_condition.js';

const TIED = ['gpt_model.decoder.output_projection.weight', 'gpt_model.decoder.embed_tokens.weight'] as const;
const STRIDED = 'img_connector.x_attn.q_proj.weight';

/** What each hostile file's refusal must name. */
const HOSTILE: Record<string, RegExp> = {
  'exec.pt': /refusing the global __builtin__\.exec \(builtins\.exec\)/,
  'truncated.pt': /truncated/,
  'not_a_checkpoint.pt': /not a zip archive|not a torch checkpoint/,
  'short_storage.pt': /holds 6 bytes where its \d+ elements need 16/,
};
const EXEC_MARKER = 'KOSMOS_G_PICKLE_EXECUTED';

function row(fixture: FixtureCase, output: string, pass: boolean, note: string, compared = 1, maxAbsError = 0): ParityRow {
  return { case: fixture.name, output, compared, maxAbsError, tolerance: 'exact', pass, note };
}

/** Every tensor of `file`'s state dict against case 11's (rounded to float16 for the fp16 file), bit for bit. */
async function tensorRows(fixture: FixtureCase, file: string, reference: Map<string, HostTensor>): Promise<ParityRow[]> {
  const checkpoint = await TorchCheckpoint.open(join(fixture.directory, file));
  try {
    const tensors = stateDictOf(checkpoint.root, file);
    const half = file.includes('fp16');
    let compared = 0;
    let maxAbsError = 0;
    const wrong: string[] = [];
    for (const [key, expected] of reference) {
      const tensor = tensors.get(key);
      const actual = tensor && (await tensor.read());
      if (!actual || actual.shape.join() !== expected.shape.join() || actual.dtype !== (half ? 'float16' : 'float32')) {
        wrong.push(key);
        continue;
      }
      const want = expected.data as Float32Array;
      for (let i = 0; i < want.length; i++) {
        const got = half ? float16BitsToFloat32(actual.data[i] as number) : (actual.data[i] as number);
        const target = half ? float16BitsToFloat32(float32ToFloat16Bits(want[i]!)) : want[i]!;
        if (!Object.is(got, target)) wrong.push(key);
        maxAbsError = Math.max(maxAbsError, Math.abs(got - target));
      }
      compared += want.length;
    }
    const extra = [...tensors.keys()].filter((key) => !reference.has(key));
    const problems = [...new Set(wrong), ...extra.map((key) => `unexpected ${key}`)];
    const [head, embedding] = TIED.map((key) => tensors.get(key));
    const shared = head !== undefined && head.storage === embedding?.storage;
    const strided = tensors.get(STRIDED)?.isContiguous === false;
    return [
      row(fixture, `${file} tensors`, problems.length === 0, problems.length ? problems.slice(0, 4).join(', ') : `${reference.size} tensors${half ? ' = float16(case 11)' : ' = case 11'}`, compared, maxAbsError),
      row(fixture, `${file} storages`, shared && strided, `tied head ${shared ? 'shares' : 'does NOT share'} one storage; q_proj ${strided ? 'read from a transposed view' : 'NOT strided'}`),
    ];
  } finally {
    await checkpoint.close();
  }
}

/** What every conversion here is given: the tiny random decoder as --sd, a tokenizer that fits the 100-row embedding, case 11's head counts. */
export async function conversionInputs(scratch: string, case11: FixtureCase): Promise<Omit<ConvertOptions, 'from' | 'out'>> {
  const sd = join(scratch, 'sd');
  await createRandomPipeline(sd, { config: 'tiny' });
  // Case 13's real SentencePiece model with the first 90 dictionary lines: 4 + 90 + 6 appended symbols = 100 ids.
  const tokenizerFixture = join(dirname(case11.directory), '13_sentencepiece');
  const dictionary = join(scratch, 'dict.txt');
  await writeFile(dictionary, `${(await readFile(join(tokenizerFixture, 'dict.txt'), 'utf8')).split('\n').slice(0, 90).join('\n')}\n`);
  // The checkpoint's args name kosmosg_xl, whose 64-wide heads the tiny widths do not have; case 11's config gives them.
  const sizes = JSON.parse(await readFile(join(case11.directory, 'config.json'), 'utf8')) as {
    vision: Record<string, unknown>;
    xconnector: { heads: number };
    mllm: { decoder_attention_heads: number };
    aligner: { heads: number };
  };
  const architecture: ArchitectureOverrides = {
    vision: sizes.vision,
    connector: { decoder_attention_heads: sizes.xconnector.heads },
    mllm: { decoder_attention_heads: sizes.mllm.decoder_attention_heads },
    aligner: { encoder_attention_heads: sizes.aligner.heads, decoder_attention_heads: sizes.aligner.heads },
  };
  return { sd, sentencePiece: join(tokenizerFixture, 'sentencepiece.bpe.model'), dictionary, architecture };
}

/** Converts `file`, loads the folder as `generate` does and compares case 11's outputs. */
async function conversionRows(fixture: FixtureCase, case11: FixtureCase, file: string, options: Omit<ConvertOptions, 'from' | 'out'>, scratch: string): Promise<ParityRow[]> {
  const out = join(scratch, file.replace(/\.pt$/, ''));
  await convertKosmosG({ ...options, from: join(fixture.directory, file), out });
  const pipeline = await KosmosGPipeline.fromPretrained(out, { device: 'cpu' });
  try {
    const rows = compareOutputs(case11, await conditionOutputs(pipeline.encoder.model, case11));
    return rows.map((compared) => ({ ...compared, case: fixture.name, output: `${file} → ${compared.output}` }));
  } finally {
    await pipeline.dispose();
  }
}

async function hostileRows(fixture: FixtureCase, options: Omit<ConvertOptions, 'from' | 'out'>, scratch: string): Promise<ParityRow[]> {
  const rows: ParityRow[] = [];
  for (const [file, expected] of Object.entries(HOSTILE)) {
    const from = join(fixture.directory, 'hostile', file);
    const out = join(scratch, `hostile-${file}`);
    let message = '';
    try {
      await convertKosmosG({ ...options, from, out });
    } catch (error) {
      message = (error as Error).message.split(from).join(file);
    }
    const refused = expected.test(message) && !existsSync(out);
    rows.push(row(fixture, `hostile/${file} refused`, refused, message || 'converted without an error'));
  }
  const ran = [process.cwd(), scratch, fixture.directory].filter((directory) => existsSync(join(directory, EXEC_MARKER)));
  rows.push(row(fixture, 'hostile/exec.pt ran nothing', ran.length === 0, ran.length ? `${EXEC_MARKER} found in ${ran.join(', ')}` : `no ${EXEC_MARKER} file`));
  return rows;
}

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const case11 = await loadFixture(dirname(fixture.directory), '11_kosmosg_condition');
  const reference = await readSafetensors(join(case11.directory, 'model.safetensors'));
  const scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-case12-'));
  try {
    const rows: ParityRow[] = [];
    for (const file of ['checkpoint_fp32.pt', 'checkpoint_legacy.pt', 'checkpoint_fp16.pt']) rows.push(...(await tensorRows(fixture, file, reference)));
    const options = await conversionInputs(scratch, case11);
    for (const file of ['checkpoint_fp32.pt', 'checkpoint_legacy.pt']) rows.push(...(await conversionRows(fixture, case11, file, options, scratch)));
    rows.push(...(await hostileRows(fixture, options, scratch)));
    return rows;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
