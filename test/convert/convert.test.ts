// `convert` end to end on the official-format fixture (../shared/fixtures/12_kosmosg_checkpoint):
// the CLI writes a pipeline folder that KosmosGPipeline loads and generates with (the tiny random
// decoder as --sd, since the fixture holds no U-Net); --out is never overwritten without --force
// and is untouched by failures; float16 checkpoints stay float16; a safetensors checkpoint that
// holds the U-Net and VAE (legacy VAE attention names) converts without --sd; what cannot be
// converted is refused with what to do.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type ConvertOptions, convertKosmosG } from '../../src/convert/kosmos_g.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { float32ToFloat16Bits, type HostTensor } from '../../src/onnx/dtype.js';
import { loadFixture } from '../../src/parity/compare.js';
import { conversionInputs } from '../../src/parity/cases/12_kosmosg_checkpoint.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { TINY_CONFIGS } from '../../src/pipeline/random_pipeline.js';
import { assertParity, fixturesDirectory } from '../parity/fixtures.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const run = promisify(execFile);
const checkpoints = join(fixturesDirectory, '12_kosmosg_checkpoint');
const skip = existsSync(checkpoints) ? false : 'the reference fixtures (../shared/fixtures) are not present';

let scratch = '';
let inputs: Omit<ConvertOptions, 'from' | 'out'>;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--no-concurrent-marking', main, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The convert flags for `inputs`, the architecture overrides written to a file. */
async function flags(): Promise<string[]> {
  const architecture = join(scratch, 'arch.json');
  await writeFile(architecture, JSON.stringify(inputs.architecture));
  return ['--sd', inputs.sd!, '--sentencepiece', inputs.sentencePiece, '--dict', inputs.dictionary, '--arch-config', architecture];
}

/** Converting never leaves a temporary folder beside --out. */
async function leftovers(): Promise<string[]> {
  return (await readdir(scratch)).filter((name) => name.endsWith('.tmp') || name.endsWith('.old'));
}

before(async () => {
  if (skip) return;
  scratch = await mkdtemp(join(tmpdir(), 'convert-test-'));
  inputs = await conversionInputs(scratch, await loadFixture(fixturesDirectory, '11_kosmosg_condition'));
});
after(() => (scratch ? rm(scratch, { recursive: true, force: true }) : undefined));

test('the CLI converts the fp32 checkpoint into a folder KosmosGPipeline generates with', { skip }, async () => {
  const out = join(scratch, 'fp32');
  const converted = await cli('convert', '--from', join(checkpoints, 'checkpoint_fp32.pt'), '--out', out, ...(await flags()));
  assert.equal(converted.code, 0, converted.stderr);
  assert.match(converted.stdout, /mllm +43 tensors from checkpoint_fp32\.pt/);
  assert.match(converted.stdout, /unet +copied from --sd/);
  assert.match(converted.stdout, /left out 3 checkpoint tensor\(s\).*output_projection\.weight/);
  const pipeline = await KosmosGPipeline.fromPretrained(out, { threads: 2 });
  try {
    assert.deepEqual(pipeline.encoder.conditionShape, [77, 32]);
    const { images } = await pipeline.generate({ prompt: 'a cat in the snow', steps: 2, seed: 1, width: 32, height: 32 });
    assert.deepEqual([images.length, images[0]!.width, images[0]!.height], [1, 32, 32]);
  } finally {
    await pipeline.dispose();
  }

  const again = await cli('convert', '--from', join(checkpoints, 'checkpoint_legacy.pt'), '--out', out, ...(await flags()));
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /^kosmos-g: .*fp32 already exists \(use --force to replace it\)\n$/);
  const forced = await cli('convert', '--from', join(checkpoints, 'checkpoint_legacy.pt'), '--out', out, '--force', ...(await flags()));
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /\(torch legacy\)/);
  assert.deepEqual(await leftovers(), []);
});

test('the fp16 checkpoint converts to float16 weights equal to case 11 rounded', { skip }, async () => {
  const out = join(scratch, 'fp16');
  await convertKosmosG({ ...inputs, from: join(checkpoints, 'checkpoint_fp16.pt'), out });
  const reference = await readSafetensors(join(fixturesDirectory, '11_kosmosg_condition', 'model.safetensors'));
  const key = 'gpt_model.decoder.layers.0.self_attn.q_proj.weight';
  const reader = await openSafetensors(join(out, 'mllm'));
  try {
    assert.equal(reader.info(key).dtype, 'F16');
    const bits = (await reader.read(key)).data as Uint16Array;
    assert.deepEqual(Array.from(bits), Array.from(reference.get(key)!.data as Float32Array, float32ToFloat16Bits));
  } finally {
    await reader.close();
  }
  const pipeline = await KosmosGPipeline.fromPretrained(out, { threads: 2 });
  await pipeline.dispose();
});

test('a safetensors checkpoint holding the U-Net and VAE converts without --sd', { skip }, async () => {
  // Case 11's weights plus the tiny decoder under the official prefixes, the VAE with pre-0.14 attention names.
  const tensors = new Map<string, HostTensor>(await readSafetensors(join(fixturesDirectory, '11_kosmosg_condition', 'model.safetensors')));
  for (const [key, tensor] of await readSafetensors(join(inputs.sd!, 'unet', 'diffusion_pytorch_model.safetensors'))) tensors.set(`diffusion_unet.unet.${key}`, tensor);
  const legacy: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
  for (const [key, tensor] of await readSafetensors(join(inputs.sd!, 'vae', 'model.safetensors'))) {
    tensors.set(`vae.vae.${key.replace(/(attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\./, (_, prefix: string, name: string) => `${prefix}${legacy[name]}.`)}`, tensor);
  }
  assert.ok([...tensors.keys()].some((key) => key.includes('.proj_attn.')));
  const from = join(scratch, 'full.safetensors');
  await writeSafetensors(from, tensors);
  const out = join(scratch, 'full');
  const architecture = { ...inputs.architecture, unet: TINY_CONFIGS.unet, vae: TINY_CONFIGS.vae };
  const report = await convertKosmosG({ ...inputs, sd: undefined, architecture, from, out });
  assert.equal(report.format, 'safetensors');
  assert.deepEqual(report.components.map(({ name }) => name), ['vision', 'connector', 'mllm', 'aligner', 'unet', 'vae']);
  const vae = await openSafetensors(join(out, 'vae'));
  try {
    assert.ok(vae.has('decoder.mid_block.attentions.0.to_q.weight') && !vae.has('decoder.mid_block.attentions.0.query.weight'));
  } finally {
    await vae.close();
  }
  const pipeline = await KosmosGPipeline.fromPretrained(out, { threads: 2 });
  await pipeline.dispose();
});

test('what cannot be converted is refused with what to do, leaving nothing behind', { skip }, async () => {
  const from = join(checkpoints, 'checkpoint_fp32.pt');
  const out = join(scratch, 'refused');
  await assert.rejects(convertKosmosG({ ...inputs, sd: undefined, from, out }), /holds no diffusion_unet\.unet\.\* and vae\.vae\.\*: give --sd DIR/);
  await assert.rejects(convertKosmosG({ ...inputs, architecture: {}, from, out }), /cannot tell the attention heads of the 24-wide vision tower .*--arch-config/);
  const wrongWidth = { ...inputs.architecture, mllm: { decoder_attention_heads: 5 } };
  await assert.rejects(convertKosmosG({ ...inputs, architecture: wrongWidth, from, out }), /^Error: mllm: .*decoder_embed_dim 48 does not split into 5 heads/);
  const bigDictionary = join(fixturesDirectory, '13_sentencepiece', 'dict.txt');
  await assert.rejects(convertKosmosG({ ...inputs, dictionary: bigDictionary, from, out }), /gives 4007 ids but the MLLM's embedding has 100 rows/);
  for (const hostile of ['exec.pt', 'short_storage.pt']) await assert.rejects(convertKosmosG({ ...inputs, from: join(checkpoints, 'hostile', hostile), out }));
  const missing = await cli('convert', '--from', from, '--out', out);
  assert.match(missing.stderr, /^kosmos-g: --sentencepiece, --dict are required\n$/);
  assert.equal(existsSync(out), false);
  assert.deepEqual(await leftovers(), []);
  assert.equal(existsSync('KOSMOS_G_PICKLE_EXECUTED'), false);
});

test('parity case 12 passes: tensors exact, converted outputs within tolerance, hostile files refused', { skip }, async () => {
  await assertParity('12_kosmosg_checkpoint');
});
