// `convert` for diffusers folders, end to end through the CLI. A Stable Diffusion folder in the
// diffusers layout is built from the tiny random pipeline: model_index.json with safety_checker,
// feature_extractor, a disabled image_encoder and requires_safety_checker; the U-Net sharded with an
// index plus an fp16 variant; the VAE with pre-0.14 attention names; the text encoder as a torch
// `pytorch_model.bin` (with the position_ids buffer of older transformers); the CLIP tokenizer as
// tokenizer/ (vocab.json + merges.txt); an EulerAncestralDiscreteScheduler config. Converted, it
// generates exactly the source pipeline's pixels; its decoder substituted into a Kosmos-G folder
// loads with the substituted U-Net; every bad input is a one-line error and leaves no --out.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { SD15_SCHEDULER_CONFIG, createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { ClipTokenizer } from '../../src/tokenizers/clip_bpe.js';
import { assertOneLineError, runCli } from '../cli/run-cli.js';
import { sameBytes } from '../pipeline/tiny.js';

let scratch = '';
/** The tiny random pipeline (seed 0), the source of the diffusers folder. */
let tiny = '';
/** The diffusers-layout Stable Diffusion folder made from it. */
let sd = '';
/** A tiny Kosmos-G folder with other weights (seed 1), the target of decoder substitution. */
let kosmos = '';

// ---- a torch.save zip archive, written as torch writes it (stored entries, protocol-2 pickle) ----

/** Pickle bytes: `op` for opcodes and GLOBAL lines; BINUNICODE ('X') and BININT ('J') with 4-byte little-endian operands. */
const op = (text: string) => Buffer.from(text, 'latin1');
const binUnicode = (text: string) => Buffer.concat([op('X'), u32(Buffer.byteLength(text)), Buffer.from(text)]);
const binInt = (value: number) => Buffer.concat([op('J'), u32(value)]);
function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value);
  return bytes;
}

/**
 * data.pkl of an OrderedDict of `_rebuild_tensor_v2` tensors, tensor i on storage "i": PROTO 2,
 * OrderedDict() and MARK; per tensor its key, then _rebuild_tensor_v2(persistent id ('storage',
 * type, key, 'cpu', numel), offset 0, shape, row-major strides, False, OrderedDict()); SETITEMS, STOP.
 */
function stateDictPickle(tensors: readonly [name: string, storage: string, shape: number[]][]): Buffer {
  const parts = [op('\x80\x02ccollections\nOrderedDict\n)R(')];
  tensors.forEach(([name, storage, shape], index) => {
    const strides = shape.map((_, axis) => shape.slice(axis + 1).reduce((product, size) => product * size, 1));
    const numel = shape.reduce((product, size) => product * size, 1);
    parts.push(binUnicode(name), op('ctorch._utils\n_rebuild_tensor_v2\n(('), binUnicode('storage'), op(`ctorch\n${storage}\n`), binUnicode(String(index)));
    parts.push(binUnicode('cpu'), binInt(numel), op('tQ'), binInt(0), op('('), ...shape.map(binInt), op('t('), ...strides.map(binInt));
    parts.push(op('t\x89ccollections\nOrderedDict\n)RtR'));
  });
  parts.push(op('u.'));
  return Buffer.concat(parts);
}

/** A stored (uncompressed) zip archive of `entries`. */
function zipArchive(entries: readonly [name: string, data: Buffer][]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const STORAGE_OF: Partial<Record<HostTensor['dtype'], string>> = { float32: 'FloatStorage', float16: 'HalfStorage', int64: 'LongStorage' };

/** `torch.save(state_dict)` of float32, float16 and int64 tensors. */
function torchSave(tensors: ReadonlyMap<string, HostTensor>): Buffer {
  const entries = [...tensors];
  const pickle = stateDictPickle(entries.map(([name, tensor]) => [name, STORAGE_OF[tensor.dtype]!, tensor.shape]));
  const storages = entries.map(([, tensor], index): [string, Buffer] => [`archive/data/${index}`, Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength)]);
  return zipArchive([['archive/data.pkl', pickle], ['archive/byteorder', Buffer.from('little')], ...storages, ['archive/version', Buffer.from('3\n')]]);
}

// ---- the diffusers folder ----

const LEGACY_ATTENTION: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
const legacyName = (key: string) => key.replace(/(attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\./, (_, prefix: string, name: string) => `${prefix}${LEGACY_ATTENTION[name]}.`);
const json = (path: string, value: unknown) => writeFile(path, JSON.stringify(value, null, 2));

async function writeDiffusersFolder(from: string, to: string): Promise<void> {
  for (const name of ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler', 'safety_checker', 'feature_extractor']) await mkdir(join(to, name), { recursive: true });
  await json(join(to, 'model_index.json'), {
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.21.4',
    feature_extractor: ['transformers', 'CLIPImageProcessor'],
    image_encoder: [null, null],
    requires_safety_checker: true,
    safety_checker: ['stable_diffusion', 'StableDiffusionSafetyChecker'],
    scheduler: ['diffusers', 'EulerAncestralDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
  });
  // The model card and the VAE's weights as links into a blob store, as in a Hugging Face cache snapshot.
  const blobs = join(to, '..', 'blobs');
  await mkdir(blobs, { recursive: true });
  await writeFile(join(blobs, 'readme'), 'license: creativeml-openrail-m\n');
  await symlink(join(blobs, 'readme'), join(to, 'README.md'));
  // U-Net: the fp32 weights in two shards with an index, and an fp16 variant.
  await cp(join(from, 'unet', 'config.json'), join(to, 'unet', 'config.json'));
  const unet = await readSafetensors(join(from, 'unet', 'diffusion_pytorch_model.safetensors'));
  const names = [...unet.keys()].sort();
  const weightMap: Record<string, string> = {};
  for (const [shard, part] of [names.slice(0, names.length / 2), names.slice(names.length / 2)].entries()) {
    const file = `diffusion_pytorch_model-0000${shard + 1}-of-00002.safetensors`;
    await writeSafetensors(join(to, 'unet', file), new Map(part.map((name) => [name, unet.get(name)!])));
    for (const name of part) weightMap[name] = file;
  }
  await json(join(to, 'unet', 'diffusion_pytorch_model.safetensors.index.json'), { metadata: {}, weight_map: weightMap });
  await writeSafetensors(join(to, 'unet', 'diffusion_pytorch_model.fp16.safetensors'), unet, { dtype: 'F16' });
  // VAE under diffusers' file name and the legacy attention names.
  await cp(join(from, 'vae', 'config.json'), join(to, 'vae', 'config.json'));
  const vae = await readSafetensors(join(from, 'vae', 'model.safetensors'));
  await writeSafetensors(join(blobs, 'vae'), new Map([...vae].map(([key, tensor]) => [legacyName(key), tensor])));
  await symlink(join(blobs, 'vae'), join(to, 'vae', 'diffusion_pytorch_model.safetensors'));
  // Text encoder as a torch pickle, with the buffer older transformers saved.
  await cp(join(from, 'text_encoder', 'config.json'), join(to, 'text_encoder', 'config.json'));
  const text = await readSafetensors(join(from, 'text_encoder', 'model.safetensors'));
  text.set('text_model.embeddings.position_ids', { dtype: 'int64', shape: [1, 77], data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)) });
  await writeFile(join(to, 'text_encoder', 'pytorch_model.bin'), torchSave(text));
  for (const file of ['vocab.json', 'merges.txt']) await cp(join(from, 'clip_tokenizer', file), join(to, 'tokenizer', file));
  await json(join(to, 'tokenizer', 'special_tokens_map.json'), { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>' });
  await json(join(to, 'scheduler', 'scheduler_config.json'), { ...SD15_SCHEDULER_CONFIG, _class_name: 'EulerAncestralDiscreteScheduler', skip_prk_steps: undefined, beta_end: 0.013 });
  await json(join(to, 'safety_checker', 'config.json'), { architectures: ['StableDiffusionSafetyChecker'] });
  await writeSafetensors(join(to, 'safety_checker', 'model.safetensors'), { 'concept_embeds': { dtype: 'float32', shape: [1], data: Float32Array.of(1) } });
  await json(join(to, 'feature_extractor', 'preprocessor_config.json'), { crop_size: 224 });
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'convert-diffusers-test-'));
  tiny = join(scratch, 'tiny');
  await createRandomPipeline(tiny, { config: 'tiny', seed: 0 });
  sd = join(scratch, 'sd');
  await writeDiffusersFolder(tiny, sd);
  kosmos = join(scratch, 'kosmos');
  const made = await runCli(['init-random', '--config', 'tiny', '--seed', '1', '--out', kosmos]);
  assert.equal(made.code, 0, made.stderr);
});
after(() => rm(scratch, { recursive: true, force: true }));

/** Temporary or backup folders a conversion left beside its --out. */
async function leftovers(): Promise<string[]> {
  return (await readdir(scratch)).filter((name) => name.endsWith('.tmp') || name.endsWith('.old'));
}

async function tensorsOf(path: string): Promise<Map<string, HostTensor>> {
  return readSafetensors(path);
}

function assertSameTensors(actual: Map<string, HostTensor>, expected: Map<string, HostTensor>): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [key, tensor] of expected) {
    const other = actual.get(key)!;
    assert.equal(other.dtype, tensor.dtype, key);
    assert.ok(sameBytes(new Uint8Array(other.data.buffer, other.data.byteOffset, other.data.byteLength), new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength)), key);
  }
}

/** `generate` through the CLI; the PNG's pixels. */
async function generatedPixels(model: string, name: string, ...extra: string[]): Promise<Buffer> {
  const image = join(scratch, `${name}.png`);
  const result = await runCli(['generate', '--model', model, '--prompt', 'a red apple on the beach', '--steps', '3', '--seed', '5', '--size', '32', '--threads', '1', '--out', image, ...extra]);
  assert.equal(result.code, 0, result.stderr);
  return sharp(image).raw().toBuffer();
}

test('a diffusers StableDiffusionPipeline folder converts into a folder that generates the same pixels', async () => {
  const out = join(scratch, 'converted');
  const converted = await runCli(['convert', '--from', sd, '--out', out]);
  assert.equal(converted.code, 0, converted.stderr);
  assert.match(converted.stdout, /unet +\d+ tensors of .*diffusion_pytorch_model\.safetensors\.index\.json/);
  assert.match(converted.stdout, /text_encoder +\d+ tensors of .*pytorch_model\.bin/);
  assert.match(converted.stdout, /text_encoder: left out 1 tensor\(s\) its model does not read: text_model\.embeddings\.position_ids/);
  assert.match(converted.stdout, /scheduler: EulerAncestralDiscreteScheduler is not implemented here; its training schedule is kept under PNDMScheduler/);
  assert.match(converted.stdout, /left out feature_extractor, safety_checker: not used by this project/);

  assert.deepEqual((await readdir(out)).sort(), ['README.md', 'clip_tokenizer', 'model_index.json', 'scheduler', 'text_encoder', 'unet', 'vae']);
  assert.deepEqual((await readdir(join(out, 'clip_tokenizer'))).sort(), ['merges.txt', 'vocab.json']);
  assert.ok((await lstat(join(out, 'README.md'))).isFile(), 'the linked model card is copied as a file');
  const index = JSON.parse(await readFile(join(out, 'model_index.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(index['clip_tokenizer'], ['transformers', 'CLIPTokenizer']);
  assert.equal(index['_class_name'], 'StableDiffusionPipeline');
  const scheduler = JSON.parse(await readFile(join(out, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual([scheduler['_class_name'], scheduler['beta_end'], scheduler['skip_prk_steps']], ['PNDMScheduler', 0.013, true]);
  // Weights are the source's, under the names the loaders read.
  assertSameTensors(await tensorsOf(join(out, 'unet', 'diffusion_pytorch_model.safetensors')), await tensorsOf(join(tiny, 'unet', 'diffusion_pytorch_model.safetensors')));
  assertSameTensors(await tensorsOf(join(out, 'vae', 'diffusion_pytorch_model.safetensors')), await tensorsOf(join(tiny, 'vae', 'model.safetensors')));
  assertSameTensors(await tensorsOf(join(out, 'text_encoder', 'model.safetensors')), await tensorsOf(join(tiny, 'text_encoder', 'model.safetensors')));

  // The source's scheduler config differs only in beta_end; the same schedule gives the same pixels.
  const tinyScheduler = join(scratch, 'tiny-beta');
  await cp(tiny, tinyScheduler, { recursive: true });
  await json(join(tinyScheduler, 'scheduler', 'scheduler_config.json'), { ...SD15_SCHEDULER_CONFIG, beta_end: 0.013 });
  const expected = await generatedPixels(tinyScheduler, 'source', '--pipeline', 'clip-text');
  const actual = await generatedPixels(out, 'converted');
  assert.equal(actual.length, 32 * 32 * 3);
  assert.ok(sameBytes(actual, expected), 'the converted folder generates the source pipeline\'s pixels');
  assert.deepEqual(await leftovers(), []);
});

test('--variant fp16 reads the fp16 weights where a component has them, the plain ones elsewhere', async () => {
  const out = join(scratch, 'fp16');
  const converted = await runCli(['convert', '--from', sd, '--out', out, '--variant', 'fp16']);
  assert.equal(converted.code, 0, converted.stderr);
  assert.match(converted.stdout, /unet +\d+ tensors of .*diffusion_pytorch_model\.fp16\.safetensors/);
  assertSameTensors(await tensorsOf(join(out, 'unet', 'diffusion_pytorch_model.safetensors')), await tensorsOf(join(sd, 'unet', 'diffusion_pytorch_model.fp16.safetensors')));
  const vae = await tensorsOf(join(out, 'vae', 'diffusion_pytorch_model.safetensors'));
  assert.equal(vae.get('decoder.mid_block.attentions.0.to_q.weight')?.dtype, 'float32');
  assert.equal((await generatedPixels(out, 'fp16')).length, 32 * 32 * 3);
});

test('a transformers CLIPTextModel folder as --text-encoder (its only variant, sharded .bin), and a tokenizer with only tokenizer.json', async () => {
  // The text encoder in float16, as two torch shards with a variant index.
  const textEncoder = join(scratch, 'clip-text-fp16');
  await mkdir(textEncoder);
  await cp(join(tiny, 'text_encoder', 'config.json'), join(textEncoder, 'config.json'));
  const halfFile = join(scratch, 'text-encoder-f16.safetensors');
  await writeSafetensors(halfFile, await tensorsOf(join(tiny, 'text_encoder', 'model.safetensors')), { dtype: 'F16' });
  const half = await tensorsOf(halfFile);
  const names = [...half.keys()];
  const weightMap: Record<string, string> = {};
  for (const [shard, part] of [names.slice(0, 10), names.slice(10)].entries()) {
    const file = `pytorch_model-0000${shard + 1}-of-00002.fp16.bin`;
    await writeFile(join(textEncoder, file), torchSave(new Map(part.map((name) => [name, half.get(name)!]))));
    for (const name of part) weightMap[name] = file;
  }
  await json(join(textEncoder, 'pytorch_model.bin.index.fp16.json'), { metadata: {}, weight_map: weightMap });
  const fast = await variantOf('fast-tokenizer', async (directory) => {
    for (const file of ['vocab.json', 'merges.txt']) await rm(join(directory, 'tokenizer', file));
    await cp(join(tiny, 'clip_tokenizer', 'tokenizer.json'), join(directory, 'tokenizer', 'tokenizer.json'));
  });
  const out = join(scratch, 'own-text-encoder');
  const converted = await runCli(['convert', '--from', fast, '--text-encoder', textEncoder, '--out', out]);
  assert.equal(converted.code, 0, converted.stderr);
  assert.match(converted.stdout, /text_encoder +\d+ tensors of .*clip-text-fp16\/pytorch_model\.bin\.index\.fp16\.json/);
  assertSameTensors(await tensorsOf(join(out, 'text_encoder', 'model.safetensors')), half);
  const [source, written] = await Promise.all([ClipTokenizer.fromPretrained(join(tiny, 'clip_tokenizer')), ClipTokenizer.fromPretrained(join(out, 'clip_tokenizer'))]);
  const prompt = 'a teddy bear wearing sunglasses, on the beach!';
  assert.deepEqual(written.encode(prompt).ids, source.encode(prompt).ids);
  const pipeline = await TextToImagePipeline.fromPretrained(out, { threads: 1 });
  await pipeline.dispose();
});

test("decoder substitution gives a Kosmos-G folder that loads, with the Stable Diffusion folder's U-Net and VAE", async () => {
  const out = join(scratch, 'substituted');
  const result = await runCli(['convert', '--decoder', sd, '--into', kosmos, '--out', out, '--decoder-scheduler']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /unet +\d+ tensors of .*sd\/unet\/diffusion_pytorch_model\.safetensors\.index\.json/);
  assertSameTensors(await tensorsOf(join(out, 'unet', 'diffusion_pytorch_model.safetensors')), await tensorsOf(join(tiny, 'unet', 'diffusion_pytorch_model.safetensors')));
  assertSameTensors(await tensorsOf(join(out, 'vae', 'diffusion_pytorch_model.safetensors')), await tensorsOf(join(tiny, 'vae', 'model.safetensors')));
  // The condition path is --into's, byte for byte; --into itself is unchanged.
  for (const file of ['mllm/model.safetensors', 'aligner/model.safetensors', 'tokenizer/tokenizer.json']) {
    assert.ok(sameBytes(await readFile(join(out, file)), await readFile(join(kosmos, file))), file);
  }
  assert.ok(existsSync(join(kosmos, 'unet', 'diffusion_pytorch_model.safetensors')) && !existsSync(join(kosmos, 'unet', 'README.md')));
  assert.ok(existsSync(join(out, 'unet', 'README.md')), "the decoder folder's licence goes with its weights");
  const index = JSON.parse(await readFile(join(out, 'model_index.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual([index['_class_name'], index['scheduler'], index['_decoder_from']], ['KosmosGPipeline', ['diffusers', 'PNDMScheduler'], 'sd']);

  const pipeline = await KosmosGPipeline.fromPretrained(out, { threads: 1 });
  try {
    const { images } = await pipeline.generate({ prompt: 'a cat in the snow', steps: 2, seed: 1, width: 32, height: 32 });
    assert.equal(images[0]!.data.length, 32 * 32 * 3);
  } finally {
    await pipeline.dispose();
  }
  assert.deepEqual(await leftovers(), []);
});

/** A copy of the diffusers folder changed by `change`. */
async function variantOf(name: string, change: (directory: string) => Promise<void>): Promise<string> {
  const directory = join(scratch, name);
  await cp(sd, directory, { recursive: true });
  await change(directory);
  return directory;
}

async function editJson(path: string, edit: (value: Record<string, unknown>) => void): Promise<void> {
  const value = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  edit(value);
  await json(path, value);
}

test('every bad input is a one-line error naming the file, and leaves no --out', async () => {
  const out = join(scratch, 'refused');
  const refuse = async (args: string[], message: RegExp) => {
    assertOneLineError(await runCli(['convert', ...args, '--out', out]), message);
    assert.equal(existsSync(out), false, args.join(' '));
  };
  await refuse(['--from', join(sd, 'unet')], /--from .*sd\/unet is a single model folder \(config\.json, no model_index\.json\)/);
  await refuse(['--decoder', join(sd, 'tokenizer'), '--into', kosmos], /--decoder .*tokenizer is not a Stable Diffusion folder in the diffusers layout: it has no unet\/ folder/);
  await refuse(['--decoder', sd, '--into', sd], /--into .*sd is a StableDiffusionPipeline folder, not a KosmosGPipeline one/);
  await refuse(['--from', sd, '--sentencepiece', 'x.model'], /^--sentencepiece does not go with a diffusers pipeline folder as --from$/);
  await refuse(['--into', kosmos], /^--decoder is required$/);

  const xl = await variantOf('xl', (directory) => editJson(join(directory, 'model_index.json'), (index) => (index['_class_name'] = 'StableDiffusionXLPipeline')));
  await refuse(['--from', xl], /xl\/model_index\.json: a StableDiffusionXLPipeline, not a StableDiffusionPipeline/);
  const noText = await variantOf('no-text', (directory) => editJson(join(directory, 'model_index.json'), (index) => delete index['text_encoder']));
  await refuse(['--from', noText], /no-text\/model_index\.json lists no text_encoder/);
  const noVae = await variantOf('no-vae', (directory) => rm(join(directory, 'vae'), { recursive: true }));
  await refuse(['--from', noVae], /no-vae\/vae is missing \(the vae folder\)/);
  const unet2d = await variantOf('unet2d', (directory) => editJson(join(directory, 'model_index.json'), (index) => (index['unet'] = ['diffusers', 'UNet2DModel'])));
  await refuse(['--from', unet2d], /unet2d\/model_index\.json: the unet is a UNet2DModel; expected UNet2DConditionModel/);
  const oddScheduler = await variantOf('odd-scheduler', (directory) => editJson(join(directory, 'scheduler', 'scheduler_config.json'), (config) => (config['_class_name'] = 'MySampler')));
  await refuse(['--from', oddScheduler], /odd-scheduler\/scheduler\/scheduler_config\.json: _class_name "MySampler" is not a diffusers scheduler/);
  const noWeights = await variantOf('no-weights', async (directory) => {
    for (const file of await readdir(join(directory, 'unet'))) if (file !== 'config.json') await rm(join(directory, 'unet', file));
  });
  await refuse(['--from', noWeights], /no-weights\/unet holds no weights/);
  const twoVariants = await variantOf('two-variants', async (directory) => {
    for (const variant of ['fp16', 'ema']) await cp(join(directory, 'vae', 'diffusion_pytorch_model.safetensors'), join(directory, 'vae', `diffusion_pytorch_model.${variant}.safetensors`));
    await rm(join(directory, 'vae', 'diffusion_pytorch_model.safetensors'));
  });
  await refuse(['--from', twoVariants, '--variant', 'bf16'], /two-variants\/vae has no bf16 and no plain weights, only the (fp16, ema|ema, fp16) variants: choose one with --variant/);
  // A pickle that would run code: refused by the safe reader, naming the file, and nothing runs.
  const evil = await variantOf('evil', async (directory) => {
    for (const file of await readdir(join(directory, 'unet'))) if (file !== 'config.json') await rm(join(directory, 'unet', file));
    const code = `open(${JSON.stringify(join(scratch, 'PICKLE_RAN'))}, "w")`;
    const pickle = Buffer.concat([op('\x80\x02c__builtin__\nexec\n('), binUnicode(code), op('tR.')]);
    await writeFile(join(directory, 'unet', 'diffusion_pytorch_model.bin'), zipArchive([['archive/data.pkl', pickle], ['archive/byteorder', Buffer.from('little')]]));
  });
  await refuse(['--from', evil], /evil\/unet\/diffusion_pytorch_model\.bin \(data\.pkl\): refusing the global __builtin__\.exec .*save the model as safetensors/);
  assert.equal(existsSync(join(scratch, 'PICKLE_RAN')), false);
  // A U-Net whose condition width is not the aligner's (and not the text encoder's).
  const wide = await variantOf('wide', (directory) => editJson(join(directory, 'unet', 'config.json'), (config) => (config['cross_attention_dim'] = 16)));
  await refuse(['--decoder', wide, '--into', kosmos], /the aligner's output \(.*kosmos\/aligner\/config\.json\) is 32 wide but the U-Net of .*wide\/unet\/config\.json cross-attends to 16/);
  await refuse(['--from', wide], /text_encoder\/config\.json: hidden_size 32 differs from the 16 that .*wide\/unet\/config\.json cross-attends to/);
  assert.deepEqual(await leftovers(), []);
});

test('an existing --out is replaced only with --force', async () => {
  const out = join(scratch, 'existing');
  await mkdir(out);
  await writeFile(join(out, 'keep.txt'), 'mine');
  assertOneLineError(await runCli(['convert', '--decoder', sd, '--into', kosmos, '--out', out]), /existing already exists \(use --force to replace it\)/);
  assert.equal(await readFile(join(out, 'keep.txt'), 'utf8'), 'mine');
  const forced = await runCli(['convert', '--decoder', sd, '--into', kosmos, '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(existsSync(join(out, 'keep.txt')), false);
  assert.ok(existsSync(join(out, 'model_index.json')));
  assert.deepEqual(await leftovers(), []);
});
