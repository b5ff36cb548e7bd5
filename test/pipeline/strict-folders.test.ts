// Strict pipeline folders: weights that hold unexpected tensors in the checkpoint, configs whose numbers
// cannot go together, unreadable configs and model_index.json entries without a folder are refused
// in one line, by the library, by `generate` and by `info` alike; the shipped models still load.
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { openSafetensors } from '../../src/io/safetensors-index.js';
import { AlignerNet, parseAlignerConfig } from '../../src/models/aligner.js';
import { UNet2DConditionModel, parseUNetConfig } from '../../src/models/unet_2d_condition.js';
import { readPipelineFolder } from '../../src/pipeline/folder.js';
import { describePipeline } from '../../src/pipeline/info.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { Random } from '../../src/util/random.js';
import { scratch, tinyPipeline } from './tiny.js';
import { runCli } from '../cli/run-cli.js';

const cli = (...args: string[]) => runCli(args);

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** A copy of the tiny pipeline whose `component/config.json` is changed by `edit`. */
async function tinyCopy(name: string, component?: string, edit: (config: Record<string, unknown>) => Record<string, unknown> = (config) => config): Promise<string> {
  const directory = join(scratch, name);
  await cp(await tinyPipeline(), directory, { recursive: true });
  if (component) {
    const path = join(directory, component, 'config.json');
    await writeFile(path, JSON.stringify(edit(JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>)));
  }
  return directory;
}

const oneLine = (pattern: RegExp) => (error: Error) => !error.message.includes('\n') && pattern.test(error.message);

let outFolders = 0;

/** `generate` and `info` on `model` both exit non-zero with one stderr line matching `message`, and generate writes nothing. */
async function assertCliRefuses(model: string, message: RegExp): Promise<void> {
  const outFolder = join(scratch, `strict-out-${++outFolders}`);
  await mkdir(outFolder);
  const commands = [
    ['generate', '--model', model, '--prompt', 'a cat', '--steps', '2', '--out', join(outFolder, 'out.png')],
    ['info', model],
  ];
  for (const args of commands) {
    const { code, stdout, stderr } = await cli(...args);
    assert.notEqual(code, 0, args.join(' '));
    assert.equal(stdout, '', args.join(' '));
    assert.match(stderr, /^kosmos-g: [^\n]+\n$/, args.join(' '));
    assert.match(stderr, message, args.join(' '));
  }
  assert.deepEqual(await readdir(outFolder), []);
}

test('an MLLM checkpoint with more layers than its config is refused, naming the unread tensors', async () => {
  const directory = await tinyCopy('mllm-fewer-layers', 'mllm', (config) => ({ ...config, decoder_layers: 1 }));
  const refused = /mllm.*unexpected tensors in the checkpoint: gpt_model\.decoder\.layers\.1\.[\w.]+, .*… \(\d+ in all\)$/;
  await assert.rejects(KosmosGPipeline.fromPretrained(directory), oneLine(refused));
  await assert.rejects(describePipeline(directory), oneLine(refused));
  await assertCliRefuses(directory, /unexpected tensors in the checkpoint: gpt_model\.decoder\.layers\.1\./);
});

test('a U-Net checkpoint with 2 resnets per block under a 1-resnet config is refused with every extra tensor counted', async () => {
  const directory = await tinyCopy('unet-fewer-layers');
  const unet = join(directory, 'unet');
  const configText = await readFile(join(unet, 'config.json'), 'utf8');
  const config = JSON.parse(configText) as Record<string, unknown>;
  const deeper = new UNet2DConditionModel(parseUNetConfig({ ...config, layers_per_block: 2 }), new Random(7));
  await deeper.save(unet);
  await writeFile(join(unet, 'config.json'), configText);
  const used = new Set(new UNet2DConditionModel(parseUNetConfig(config), new Random(7)).namedParameters().map(([key]) => key));
  const reader = await openSafetensors(unet);
  const extra = reader.names().filter((name) => !used.has(name));
  await reader.close();
  assert.ok(extra.length > 8 && extra.some((name) => name.startsWith('down_blocks.0.resnets.1.')), 'the checkpoint holds the second resnets');
  const refused = new RegExp(`^unet: .*unexpected tensors in the checkpoint: (\\S+, ){8}… \\(${extra.length} in all\\)$`);
  await assert.rejects(TextToImagePipeline.fromPretrained(directory), oneLine(refused));
  await assert.rejects(KosmosGPipeline.fromPretrained(directory), oneLine(refused));
  await assertCliRefuses(directory, new RegExp(`unet: .*\\(${extra.length} in all\\)`));
});

test('a stray tensor under a name the model does not have is refused, in a U-Net file and under the MLLM\'s prefix', async () => {
  for (const [component, fileName, stray, refused] of [
    ['unet', 'diffusion_pytorch_model.safetensors', 'foo.weight', /^unet: .*unexpected tensors in the checkpoint: foo\.weight$/],
    ['mllm', 'model.safetensors', 'gpt_model.decoder.stray.weight', /mllm\/model\.safetensors: unexpected tensors in the checkpoint: gpt_model\.decoder\.stray\.weight$/],
  ] as const) {
    const directory = await tinyCopy(`stray-${component}`);
    const file = join(directory, component, fileName);
    const tensors = await readSafetensors(file);
    tensors.set(stray, { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) });
    await writeSafetensors(file, tensors);
    await assert.rejects(KosmosGPipeline.fromPretrained(directory), oneLine(refused), component);
    await assertCliRefuses(directory, new RegExp(stray.replace(/\./g, '\\.')));
  }
});

test('tensors of parts a model is built without are not unexpected: an aligner folder that keeps the reconstruction decoder N', async () => {
  const directory = await tinyCopy('aligner-with-n');
  const aligner = join(directory, 'aligner');
  const config = parseAlignerConfig(JSON.parse(await readFile(join(aligner, 'config.json'), 'utf8')));
  await new AlignerNet(config, { init: new Random(8), reconstruction: true }).save(aligner);
  const reader = await openSafetensors(aligner);
  assert.ok(reader.has('aligner.decoder_query'), 'the folder holds N');
  await reader.close();
  await (await KosmosGPipeline.fromPretrained(directory)).dispose();
});

test('configs whose heads do not divide the width or whose GroupNorm groups do not divide the channels are refused', async () => {
  const heads = await tinyCopy('mllm-heads', 'mllm', (config) => ({ ...config, decoder_attention_heads: 5 }));
  await assert.rejects(readPipelineFolder(heads), oneLine(/mllm\/config\.json: .*decoder_embed_dim 48 does not split into 5 heads/));
  await assertCliRefuses(heads, /mllm\/config\.json: .*does not split into 5 heads/);
  const textHeads = await tinyCopy('text-heads', 'text_encoder', (config) => ({ ...config, num_attention_heads: 5 }));
  await assert.rejects(TextToImagePipeline.fromPretrained(textHeads), oneLine(/text_encoder\/config\.json: invalid CLIP text config: .*multiple of num_attention_heads/));
  const unetGroups = await tinyCopy('unet-groups', 'unet', (config) => ({ ...config, norm_num_groups: 3 }));
  await assert.rejects(KosmosGPipeline.fromPretrained(unetGroups), oneLine(/unet\/config\.json: .*block_out_channels\[0\] = 8 does not split into norm_num_groups = 3/));
  const vaeGroups = await tinyCopy('vae-groups', 'vae', (config) => ({ ...config, norm_num_groups: 3 }));
  await assert.rejects(describePipeline(vaeGroups), oneLine(/vae\/config\.json: invalid AutoencoderKL config: .*do not split into norm_num_groups = 3/));
  await assertCliRefuses(vaeGroups, /vae\/config\.json: .*norm_num_groups = 3/);
});

test('info refuses a folder whose unet/config.json is not JSON, naming the file', async () => {
  const directory = await tinyCopy('unet-not-json');
  await writeFile(join(directory, 'unet', 'config.json'), 'this is\nnot JSON');
  await assert.rejects(describePipeline(directory), oneLine(/unet\/config\.json: invalid JSON/));
  await assertCliRefuses(directory, /unet\/config\.json: invalid JSON/);
});

test('a model_index.json entry that names no folder is an error', async () => {
  const directory = await tinyCopy('entry-without-folder');
  const indexPath = join(directory, 'model_index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as Record<string, unknown>;
  await writeFile(indexPath, JSON.stringify({ ...index, safety_checker: ['stable_diffusion', 'StableDiffusionSafetyChecker'] }));
  await assert.rejects(readPipelineFolder(directory), oneLine(/entry-without-folder is incomplete: missing safety_checker\/$/));
  await assertCliRefuses(directory, /missing safety_checker\//);
  // A disabled entry needs no folder; a name that leaves the folder is no component name.
  await writeFile(indexPath, JSON.stringify({ ...index, safety_checker: [null, null] }));
  await readPipelineFolder(directory);
  await writeFile(indexPath, JSON.stringify({ ...index, '../unet': ['diffusers', 'UNet2DConditionModel'] }));
  await assert.rejects(readPipelineFolder(directory), oneLine(/model_index\.json: "\.\.\/unet" is not a component folder name$/));
});

test('the shipped models still load, through the library and through info', async () => {
  const kosmosG = join(root, 'models', 'kosmos-g-mini');
  const worldSd = join(root, 'models', 'world-sd-mini');
  await (await KosmosGPipeline.fromPretrained(kosmosG)).dispose();
  await (await TextToImagePipeline.fromPretrained(worldSd)).dispose();
  for (const model of [kosmosG, worldSd]) {
    const { code, stdout, stderr } = await cli('info', model);
    assert.equal(code, 0, stderr);
    assert.match(stdout.trim().split('\n').at(-1)!, /^total: [\d.]+ M parameters, [\d.]+ MiB on disk$/);
  }
});
