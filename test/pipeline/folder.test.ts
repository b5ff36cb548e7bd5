// Pipeline folders: model_index.json validation, one error naming every missing file, the
// components each pipeline requires, and init-random's folder.
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { clipTokenizerComponent, readPipelineFolder, requireComponents } from '../../src/pipeline/folder.js';
import { SD15_SCHEDULER_CONFIG } from '../../src/pipeline/random_pipeline.js';
import { KosmosGPipeline } from '../../src/pipeline/kosmos_g_pipeline.js';
import { TextToImagePipeline } from '../../src/pipeline/text_to_image.js';
import { scratch, tinyPipeline } from './tiny.js';

test('init-random writes every component with consistent widths and the SD 1.5 scheduler config', async () => {
  const directory = await tinyPipeline();
  const folder = await readPipelineFolder(directory);
  assert.equal(folder.className, 'KosmosGPipeline');
  assert.deepEqual([...folder.components.keys()].sort(), ['aligner', 'clip_tokenizer', 'connector', 'mllm', 'scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae', 'vision']);
  const config = async (name: string) => JSON.parse(await readFile(join(directory, name, 'config.json'), 'utf8')) as Record<string, number>;
  const [vision, connector, mllm, aligner, unet, text] = await Promise.all(['vision', 'connector', 'mllm', 'aligner', 'unet', 'text_encoder'].map(config));
  assert.equal(connector!['input_dim'], (vision as unknown as { vision_cfg: { width: number } }).vision_cfg.width);
  assert.equal(connector!['output_dim'], mllm!['decoder_embed_dim']);
  assert.equal(aligner!['input_dim'], mllm!['decoder_embed_dim']);
  assert.equal(aligner!['decoder_embed_dim'], unet!['cross_attention_dim']);
  assert.equal(text!['hidden_size'], unet!['cross_attention_dim']);
  assert.equal(aligner!['num_queries'], 77);
  assert.deepEqual(JSON.parse(await readFile(join(directory, 'scheduler', 'scheduler_config.json'), 'utf8')), SD15_SCHEDULER_CONFIG);
  assert.equal(clipTokenizerComponent(folder)?.name, 'clip_tokenizer');
});

test('model_index.json problems are reported in one line', async () => {
  const directory = join(scratch, 'index-errors');
  await mkdir(directory, { recursive: true });
  await assert.rejects(readPipelineFolder(join(scratch, 'nowhere')), /^Error: model folder .*nowhere does not exist$/);
  await assert.rejects(readPipelineFolder(directory), /index-errors is not a pipeline folder: model_index\.json is missing$/);
  await writeFile(join(directory, 'model_index.json'), '{"_class_name": "KosmosGPipeline", "unet": [');
  await assert.rejects(readPipelineFolder(directory), (error: Error) => /model_index\.json: .*invalid JSON/.test(error.message) && !error.message.includes('\n'));
  await writeFile(join(directory, 'model_index.json'), JSON.stringify({ unet: ['diffusers', 'UNet2DConditionModel'] }));
  await assert.rejects(readPipelineFolder(directory), /_class_name is missing/);
  await writeFile(join(directory, 'model_index.json'), JSON.stringify({ _class_name: 'KosmosGPipeline', unet: ['diffusers', 'UNet2DModel'], vae: 'AutoencoderKL', safety_checker: [null, null] }));
  await assert.rejects(
    readPipelineFolder(directory),
    /unet: class UNet2DModel is not supported \(expected UNet2DConditionModel\); vae: expected \[library, class\], got "AutoencoderKL"$/,
  );
});

test('an incomplete folder names every missing file; pipelines name the components they lack', async () => {
  const directory = join(scratch, 'incomplete');
  await cp(await tinyPipeline(), directory, { recursive: true });
  await rm(join(directory, 'vae', 'model.safetensors'));
  await rm(join(directory, 'text_encoder', 'config.json'));
  await rm(join(directory, 'clip_tokenizer', 'merges.txt'));
  await rm(join(directory, 'mllm'), { recursive: true });
  await assert.rejects(
    readPipelineFolder(directory),
    /incomplete is incomplete: missing mllm\/, vae\/model\.safetensors or diffusion_pytorch_model\.safetensors, text_encoder\/config\.json, clip_tokenizer\/merges\.txt$/,
  );

  const textOnly = join(scratch, 'text-only');
  await cp(await tinyPipeline(), textOnly, { recursive: true });
  const index = JSON.parse(await readFile(join(textOnly, 'model_index.json'), 'utf8')) as Record<string, unknown>;
  delete index['aligner'];
  delete index['text_encoder'];
  await writeFile(join(textOnly, 'model_index.json'), JSON.stringify(index));
  const folder = await readPipelineFolder(textOnly);
  assert.throws(() => requireComponents(folder, ['unet', 'aligner'], 'Kosmos-G generation'), /cannot be used for Kosmos-G generation: model_index\.json lists no aligner$/);
  await assert.rejects(KosmosGPipeline.fromPretrained(textOnly), /lists no aligner$/);
  await assert.rejects(TextToImagePipeline.fromPretrained(textOnly), /cannot be used for CLIP-text generation: model_index\.json lists no text_encoder$/);
});

test('weights that do not fit their config are refused at load time, naming the component', async () => {
  const directory = join(scratch, 'mismatch');
  await cp(await tinyPipeline(), directory, { recursive: true });
  const path = join(directory, 'unet', 'config.json');
  const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  await writeFile(path, JSON.stringify({ ...config, cross_attention_dim: 24 }));
  await assert.rejects(TextToImagePipeline.fromPretrained(directory), /^Error: unet: .*attn2\.to_k\.weight: checkpoint shape \[8, 32\] does not match model shape \[8, 24\]$/);
});
