// The command line end to end (`node dist/src/cli/main.js`): init-random, info, generate with a
// grid and its JSON sidecar, ControlNet maps (ready, Canny, a world scene's layout), and every bad
// input exiting non-zero with one line on stderr and nothing at --out (nor a temporary file beside it).
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import sharp from 'sharp';
import { encodePng, readPngText } from '../../src/pipeline/image_output.js';
import { layoutSceneMap, parseLayoutScene } from '../../src/world/layout-scene.js';
import { World } from '../../src/world/world.js';
import { scratch, tinyExtras } from './tiny.js';
import { runCli } from '../cli/run-cli.js';
import { WORLD_TEST_CACHE } from '../train/train-cli.js';

const cli = (...args: string[]) => runCli(args);

const model = join(scratch, 'cli-tiny');
const cat = join(scratch, 'cat.png');

before(async () => {
  const created = await cli('init-random', '--config', 'tiny', '--out', model);
  assert.equal(created.code, 0, created.stderr);
  const pixels = Buffer.alloc(32 * 32 * 3, 0);
  for (let i = 0; i < pixels.length; i += 3) pixels[i] = 200;
  await sharp(pixels, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(cat);
});

test('init-random refuses an existing folder and unknown configs', async () => {
  const again = await cli('init-random', '--out', model);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /^kosmos-g: .*cli-tiny already exists\n$/);
  const unknown = await cli('init-random', '--config', 'huge', '--out', join(scratch, 'x'));
  assert.match(unknown.stderr, /^kosmos-g: unknown config 'huge' \(choose tiny, mini, kosmos-g\)\n$/);
});

test('info lists every component with parameters, dtypes and sizes', async () => {
  const { code, stdout } = await cli('info', model);
  assert.equal(code, 0);
  const lines = stdout.trim().split('\n');
  assert.match(lines[0]!, /cli-tiny: KosmosGPipeline$/);
  for (const name of ['tokenizer', 'vision', 'connector', 'mllm', 'aligner', 'unet', 'vae', 'scheduler', 'text_encoder', 'clip_tokenizer']) {
    assert.ok(lines.some((line) => line.startsWith(`${name} `)), `${name} listed`);
  }
  assert.match(lines.find((line) => line.startsWith('unet '))!, /UNet2DConditionModel\s+53\.28 k\s+F32×208\s+\d+\.\d KiB/);
  assert.match(lines.at(-1)!, /^total: [\d.]+ k parameters, [\d.]+ MiB on disk$/);
  const json = JSON.parse((await cli('info', model, '--json')).stdout) as { components: { name: string; parameters: number | null }[] };
  assert.equal(json.components.find((component) => component.name === 'scheduler')!.parameters, null);
});

test('generate --num 2 writes a 2×1 grid PNG and a sidecar with every setting; reruns are byte-identical', async () => {
  const out = join(scratch, 'grid.png');
  const args = ['generate', '--model', model, '--prompt', '<i> in the snow', '--image', cat, '--steps', '4', '--num', '2', '--seed', '5', '--threads', '2', '--out', out];
  const first = await cli(...args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /wrote .*grid\.png \(2 images, 64×64, seed 5\)/);
  const metadata = await sharp(out).metadata();
  assert.deepEqual([metadata.format, metadata.width, metadata.height, metadata.channels], ['png', 128, 64, 3]);
  const sidecar = JSON.parse(await readFile(join(scratch, 'grid.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(
    { ...sidecar, model: undefined, output: undefined, timings: undefined },
    {
      model: undefined, output: undefined, timings: undefined, pipeline: 'kosmos-g', prompt: '<i> in the snow', negativePrompt: '', images: [cat], steps: 4,
      guidanceScale: 6, scheduler: 'dpm++', seed: 5, numImages: 2, width: 64, height: 64, latents: 'seeded', controlnet: null, lora: null, seeds: [5, 6],
      grid: { columns: 2, rows: 1 }, device: 'cpu', threads: 2, dtype: 'float32', warnings: [],
    },
  );
  const bytes = await readFile(out);
  assert.equal(readPngText(bytes).parameters, '<i> in the snow\nSteps: 4, Sampler: DPM++ 2M, CFG scale: 6, Seed: 5, Size: 64x64, Model: cli-tiny, Input images: 1');
  assert.equal((await cli(...args, '--force')).code, 0);
  assert.ok(bytes.equals(await readFile(out)), 'same seed, same PNG');
  const otherSeed = join(scratch, 'other.png');
  assert.equal((await cli(...args.slice(0, -1), otherSeed, '--seed', '6')).code, 0);
  assert.ok(!bytes.equals(await readFile(otherSeed)));
});

test('generate --pipeline clip-text runs the CLIP-text path', async () => {
  const out = join(scratch, 'text.png');
  const result = await cli('generate', '--model', model, '--pipeline', 'clip-text', '--prompt', 'a cat', '--steps', '3', '--scheduler', 'euler', '--size', '32', '--seed', '1', '--out', out);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual([(await sharp(out).metadata()).width, (await sharp(out).metadata()).height], [32, 32]);
  assert.equal((JSON.parse(await readFile(join(scratch, 'text.json'), 'utf8')) as { pipeline: string }).pipeline, 'clip-text');
});

test('generate with --controlnet and --lora records both in the sidecar and changes the image', async () => {
  const { controlnet, lora, controlImage } = await tinyExtras();
  const common = ['generate', '--model', model, '--prompt', '<i> on the beach', '--image', cat, '--steps', '3', '--seed', '2'];
  const plain = join(scratch, 'plain.png');
  const extra = join(scratch, 'extra.png');
  assert.equal((await cli(...common, '--out', plain)).code, 0);
  const result = await cli(...common, '--controlnet', controlnet, '--control-map', controlImage, '--control-scale', '0.5', '--control-end', '0.8', '--lora', lora, '--lora-scale', '0.7', '--out', extra);
  assert.equal(result.code, 0, result.stderr);
  const sidecar = JSON.parse(await readFile(join(scratch, 'extra.json'), 'utf8')) as { controlnet: unknown; lora: unknown };
  assert.deepEqual(sidecar.controlnet, { model: controlnet, conditioningScale: 0.5, guidanceStart: 0, guidanceEnd: 0.8, preprocess: null });
  const canny = await cli(...common, '--controlnet', controlnet, '--control', 'canny', '--control-image', controlImage, '--canny-low', '40', '--out', join(scratch, 'canny.png'));
  assert.equal(canny.code, 0, canny.stderr);
  const cannySidecar = JSON.parse(await readFile(join(scratch, 'canny.json'), 'utf8')) as { controlnet: { preprocess: unknown } };
  assert.deepEqual(cannySidecar.controlnet.preprocess, { kind: 'canny', low: 40, high: 200 });
  assert.deepEqual(sidecar.lora, { file: lora, scale: 0.7 });
  assert.ok(!(await readFile(plain)).equals(await readFile(extra)));
});

/** Each command exits non-zero with its message as the one line on stderr, and writes nothing into `folder`. */
async function assertRefused(cases: readonly [string[], RegExp][], folder: string): Promise<void> {
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await cli(...args);
    assert.notEqual(code, 0, args.join(' '));
    assert.equal(stdout, '', args.join(' '));
    assert.match(stderr, /^kosmos-g: [^\n]+\n$/, args.join(' '));
    assert.match(stderr.slice('kosmos-g: '.length, -1), message, args.join(' '));
    assert.deepEqual(await readdir(folder), [], `${args.join(' ')} left files behind`);
  }
}

test('generate --control layout draws the map of a world scene in the model\'s world and records the scene', async () => {
  const { controlnet } = await tinyExtras();
  // The tiny model has no world: this copy is a world model of two concepts, drawn from the world tests' sprite cache.
  const worldModel = join(scratch, 'cli-tiny-world');
  await cp(model, worldModel, { recursive: true });
  await writeFile(join(worldModel, 'world.json'), JSON.stringify({ sceneSize: 64, concepts: ['cat', 'dog'], splits: ['train'], splitSeed: 0 }));
  const description = { subjects: [{ concept: 'cat', style: 'noto', position: 'left', size: 'large' }, { concept: 'dog', style: 'twemoji', position: 'right' }] };
  const sceneFile = join(scratch, 'scene.json');
  await writeFile(sceneFile, JSON.stringify(description));
  const common = ['generate', '--model', worldModel, '--prompt', '<i> on the beach', '--image', cat, '--steps', '2', '--seed', '2', '--controlnet', controlnet];
  const out = join(scratch, 'layout.png');
  const result = await cli(...common, '--control', 'layout', '--control-scene', sceneFile, '--cache', WORLD_TEST_CACHE, '--out', out);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /wrote .*layout\.png \(1 image, 64×64, seed 2\)/);
  const sidecar = JSON.parse(await readFile(join(scratch, 'layout.json'), 'utf8')) as { controlnet: unknown };
  const scene = { subjects: [description.subjects[0], { ...description.subjects[1], size: 'medium' }] };
  assert.deepEqual(sidecar.controlnet, { model: controlnet, conditioningScale: 1, guidanceStart: 0, guidanceEnd: 1, preprocess: { kind: 'layout', scene } });

  // The layout map given as a ready map makes the same image.
  const world = await World.open({ sceneSize: 64, catalog: { concepts: ['cat', 'dog'] }, cacheDir: WORLD_TEST_CACHE });
  const map = layoutSceneMap(world, parseLayoutScene(world, description));
  const mapFile = join(scratch, 'layout-map.png');
  await writeFile(mapFile, await encodePng({ width: map.width, height: map.height, data: map.rgb }));
  const ready = join(scratch, 'layout-ready.png');
  assert.equal((await cli(...common, '--control-map', mapFile, '--out', ready)).code, 0);
  assert.ok((await readFile(out)).equals(await readFile(ready)));

  const folder = join(scratch, 'bad-layout');
  await mkdir(folder);
  const malformed = join(scratch, 'malformed-scene.json');
  await writeFile(malformed, '{"subjects": [\n');
  const unknown = join(scratch, 'unknown-scene.json');
  await writeFile(unknown, JSON.stringify({ subjects: [{ concept: 'unicorn', style: 'noto', position: 'left' }] }));
  const layout = (...args: string[]) => [...common, ...args, '--cache', WORLD_TEST_CACHE, '--out', join(folder, 'out.png')];
  await assertRefused(
    [
      [layout('--control', 'layout'), /^--control layout needs a --control-scene FILE\.json/],
      [layout('--control', 'canny', '--control-image', cat, '--control-scene', sceneFile), /^--control-scene needs --control layout$/],
      [layout('--control-scene', sceneFile), /^--control-scene needs --control layout$/],
      [layout('--control', 'layout', '--control-scene', sceneFile, '--control-image', cat), /^--control-image needs --control canny/],
      [layout('--control', 'layout', '--control-scene', sceneFile, '--control-map', mapFile), /^--control layout makes the control map; give --control-map without --control$/],
      [layout('--control', 'layout', '--control-scene', join(scratch, 'absent.json')), /^--control-scene .*absent\.json: cannot read the file \(ENOENT\)$/],
      [layout('--control', 'layout', '--control-scene', malformed), /^--control-scene .*malformed-scene\.json: not valid JSON \(/],
      [layout('--control', 'layout', '--control-scene', unknown), /^--control-scene .*unknown-scene\.json: subject 1: unknown concept "unicorn" \(this world has cat, dog\)$/],
      [[...layout('--control', 'layout', '--control-scene', sceneFile), '--model', model], /^layout maps need a world model \(.*cli-tiny has no world\.json\)$/],
    ],
    folder,
  );
});

test('every bad input exits non-zero with one line on stderr and leaves nothing at --out', async () => {
  const folder = join(scratch, 'bad');
  await mkdir(folder);
  const out = join(folder, 'out.png');
  const incomplete = join(scratch, 'incomplete');
  await cp(model, incomplete, { recursive: true });
  await rm(join(incomplete, 'unet', 'diffusion_pytorch_model.safetensors'));
  await rm(join(incomplete, 'scheduler'), { recursive: true });
  const corrupt = join(scratch, 'corrupt.png');
  await writeFile(corrupt, 'not an image');
  const huge = join(scratch, 'huge.svg');
  await writeFile(huge, '<svg xmlns="http://www.w3.org/2000/svg" width="30000" height="30000"/>');
  const generate = (...args: string[]) => ['generate', '--model', model, '--prompt', '<i> in the snow', '--steps', '2', ...args, '--out', out];
  const cases: [string[], RegExp][] = [
    [['generate', '--model', join(scratch, 'absent'), '--prompt', 'a cat', '--out', out], /model folder .*absent does not exist/],
    [['generate', '--model', incomplete, '--prompt', 'a cat', '--out', out], /model folder .*incomplete is incomplete: missing unet\/model\.safetensors or diffusion_pytorch_model\.safetensors, scheduler\/$/],
    [generate('--image', join(scratch, 'absent.png')), /image 1 \(.*absent\.png\): cannot read the file \(ENOENT\)/],
    [generate('--image', corrupt), /image 1 \(.*corrupt\.png\): not a readable image/],
    [generate('--image', huge), /image 1 \(.*huge\.svg\): 30000×30000 is over the \d+-pixel limit/],
    [generate('--image', cat, '--image', cat), /the prompt has 1 <i> placeholder but 2 images were given/],
    [generate(), /the prompt has 1 <i> placeholder but 0 images were given/],
    [generate('--image', cat, '--size', '60'), /width 60 is not a positive multiple of 16/],
    [generate('--image', cat, '--scheduler', 'heun'), /unknown scheduler 'heun' \(choose dpm\+\+, ddim, pndm, euler\)/],
    [generate('--image', cat, '--controlnet', join(scratch, 'controlnet')), /--controlnet needs a --control-map, --control canny with a --control-image, or --control layout with a --control-scene/],
    [generate('--image', cat, '--controlnet', join(scratch, 'controlnet'), '--control-image', cat), /--control-image needs --control canny; a ready control map goes in --control-map/],
    [generate('--image', cat, '--controlnet', join(scratch, 'controlnet'), '--control', 'depth', '--control-image', cat), /unknown --control 'depth'/],
    [generate('--image', cat, '--steps', 'many'), /--steps must be an integer ≥ 1, got 'many'/],
    [generate('--image', cat, '--device', 'tpu'), /unknown device 'tpu'/],
    [['generate', '--model', model, '--prompt', 'a cat', '--out', join(folder, 'out.jpg')], /--out must name a \.png file/],
    [['generate', '--model', model, '--prompt', 'a cat'], /--out is required/],
  ];
  await assertRefused(cases, folder);
});
