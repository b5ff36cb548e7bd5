// `kosmos-g generate`: an interleaved prompt and its images → a PNG (a grid for --num > 1) and a
// JSON sidecar beside it recording every setting. Every argument, the output folder's writability
// and the generation's estimated memory are checked before any image is sampled; an existing image
// or sidecar is replaced only with --force; both files are written to temporary names and renamed
// at the end, so a failure never leaves anything at --out.
import { readFile, unlink } from 'node:fs/promises';
import { basename, extname, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { Device } from '../graph/devices.js';
import { MAX_GUIDANCE, SCHEDULER_CHOICES, type SchedulerChoice, type StepInfo } from '../pipeline/diffusion.js';
import { DEFAULT_MODEL } from '../pipeline/default_model.js';
import { readPipelineFolder } from '../pipeline/folder.js';
import { encodePng, generationParameters, gridLayout, imageGrid } from '../pipeline/image_output.js';
import { KosmosGPipeline, type KosmosGGenerateOptions } from '../pipeline/kosmos_g_pipeline.js';
import { defaultMemoryLimit, formatBytes, parseByteSize } from '../pipeline/memory.js';
import { TextToImagePipeline, type GenerationResult } from '../pipeline/text_to_image.js';
import { checkImageCount } from '../pipeline/prompt.js';
import { DTYPE_HELP, quantizationOf } from './arguments.js';
import { checkOutputFile } from './output.js';
import { writeFileNamed } from '../io/file-errors.js';
import { layoutControl, noWorldMessage, openModelWorld } from '../server/layout-world.js';

interface GenerateFlags {
  model?: string;
  prompt?: string;
  image: string[];
  negative: string;
  steps: string;
  guidance: string;
  scheduler: string;
  seed?: string;
  num: string;
  size?: string;
  width?: string;
  height?: string;
  device: string;
  threads?: string;
  dtype: string;
  lowMemory?: boolean;
  pipeline?: string;
  controlnet?: string;
  control?: string;
  controlImage?: string;
  controlMap?: string;
  controlScene?: string;
  cache?: string;
  cannyLow: string;
  cannyHigh: string;
  controlScale: string;
  controlStart: string;
  controlEnd: string;
  lora?: string;
  loraScale: string;
  maxMemory?: string;
  out?: string;
  force?: boolean;
}

function integer(value: string, flag: string, minimum: number): number {
  const n = Number(value);
  if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < minimum) throw new Error(`${flag} must be an integer ≥ ${minimum}, got '${value}'`);
  return n;
}

function decimal(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} must be a number, got '${value}'`);
  return n;
}

/** The sidecar's path: out.png → out.json. */
export function sidecarPath(out: string): string {
  return out.slice(0, out.length - extname(out).length) + '.json';
}

/** Refuses an --out that could not be written, or whose image or sidecar exists (without --force). */
async function checkOutput(out: string, force: boolean): Promise<void> {
  await checkOutputFile(out, { extension: '.png', force });
  await checkOutputFile(sidecarPath(out), { flag: '--out (its .json sidecar)', force });
}

/**
 * Checks that the control flags name one way to the control map: a ready map, Canny edges of an
 * image, or the layout of a world scene. Returns the map's or the image's file (none for a layout).
 */
function checkControlFlags(flags: GenerateFlags): string | undefined {
  const { control, controlImage, controlMap, controlScene } = flags;
  if (control !== undefined && control !== 'canny' && control !== 'layout') throw new Error(`unknown --control '${control}' (canny or layout; give any other map with --control-map)`);
  if (controlImage && control !== 'canny') throw new Error('--control-image needs --control canny; a ready control map goes in --control-map');
  if (controlScene !== undefined && control !== 'layout') throw new Error('--control-scene needs --control layout');
  if (control === 'canny' && !controlImage) throw new Error('--control canny needs a --control-image to make the map from');
  if (control === 'layout' && controlScene === undefined) throw new Error('--control layout needs a --control-scene FILE.json, the world scene to draw the map of');
  if (control && controlMap) throw new Error(`--control ${control} makes the control map; give --control-map without --control`);
  const source = controlImage ? '--control-image' : controlMap ? '--control-map' : controlScene !== undefined ? '--control-scene' : undefined;
  if (source && !flags.controlnet) throw new Error(`${source} needs --controlnet`);
  if (flags.controlnet && !source) throw new Error('--controlnet needs a --control-map, --control canny with a --control-image, or --control layout with a --control-scene');
  return controlImage ?? controlMap;
}

/** The JSON of a --control-scene file; its values are checked against the world later. */
async function readSceneFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`--control-scene ${file}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new Error(`--control-scene ${file}: not valid JSON (${(error as Error).message.replace(/\s+/g, ' ')})`);
  }
}

function progressReporter(): { onStep: (info: StepInfo) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { onStep: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { format: 'sampling [{bar}] {value}/{total} steps | {speed} steps/s | ETA {eta_formatted}', stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = 0;
  return {
    onStep(info) {
      if (!started) {
        started = performance.now();
        bar.start(info.steps, 0, { speed: '-' });
      }
      const seconds = (performance.now() - started) / 1000;
      bar.update(info.step + 1, { speed: seconds > 0 ? ((info.step + 1) / seconds).toFixed(2) : '-' });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('generate images from an interleaved prompt ("<i> in the snow" + --image cat.png)')
    .showHelpAfterError(false)
    .option('--model <dir>', 'pipeline folder (model_index.json + components); default: the embedded kosmos-g-mini')
    .option('--prompt <text>', 'prompt; one <i> placeholder per --image, in order')
    .option('--image <file>', 'input image for the next <i> (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--negative <text>', 'negative prompt', '')
    .option('--steps <n>', 'denoising steps', '50')
    .option('--guidance <g>', `classifier-free guidance scale, 0 to ${MAX_GUIDANCE} (≤ 1: conditional branch only)`, '6')
    .option('--scheduler <name>', `sampler: ${SCHEDULER_CHOICES.join(', ')}`, 'dpm++')
    .option('--seed <n>', 'seed of the initial noise (image i uses seed + i); random when left out')
    .option('--num <n>', 'images to generate (tiled into one grid)', '1')
    .option('--size <px>', 'width and height in pixels (default: the model\'s)')
    .option('--width <px>', 'width in pixels (overrides --size)')
    .option('--height <px>', 'height in pixels (overrides --size)')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'CPU threads per graph (default: one per core)')
    .option('--dtype <dtype>', DTYPE_HELP, 'float32')
    .option('--low-memory', "Kosmos-G: one network's weights in memory at a time, each released after its phase (for the paper-size model; graphs are compiled again on every run)")
    .option('--pipeline <kind>', 'kosmos-g, or clip-text for the plain Stable Diffusion path (default: from model_index.json)')
    .option('--controlnet <dir>', 'ControlNet folder')
    .option('--control <kind>', 'make the control map: canny (edges of --control-image, as cv2.Canny) or layout (the world scene of --control-scene, drawn in the world of --model)')
    .option('--control-image <file>', 'the image --control canny makes the control map from; the output size follows it unless --width/--height are given')
    .option('--control-scene <file>', 'for --control layout: a JSON world scene, {"subjects": [{"concept": "cat", "style": "noto", "position": "left", "size": "large"}, …]}')
    .option('--control-map <file>', 'a ready control map for --controlnet (instead of --control)')
    .option('--cache <dir>', 'sprite cache of --control layout (default $KOSMOS_G_CACHE or ~/.cache/kosmos-g)')
    .option('--canny-low <t>', 'Canny low threshold', '100')
    .option('--canny-high <t>', 'Canny high threshold', '200')
    .option('--control-scale <s>', 'ControlNet conditioning scale', '1')
    .option('--control-start <f>', 'fraction of the steps where ControlNet starts', '0')
    .option('--control-end <f>', 'fraction of the steps where ControlNet ends', '1')
    .option('--lora <file>', 'LoRA safetensors for the U-Net (PEFT or kohya layout)')
    .option('--lora-scale <s>', 'LoRA strength', '1')
    .option('--max-memory <bytes>', `refuse a generation whose estimated peak memory is over this, e.g. 4G (default: half of this machine's memory, ${formatBytes(defaultMemoryLimit())})`)
    .option('--out <file>', 'output PNG; a JSON sidecar with every setting goes beside it')
    .option('--force', 'replace an existing --out image and its .json sidecar')
    .action(async (flags: GenerateFlags) => {
      if (flags.prompt === undefined) throw new Error('--prompt is required');
      if (!flags.out) throw new Error('--out is required');
      await checkOutput(flags.out, flags.force ?? false);
      const steps = integer(flags.steps, '--steps', 1);
      const guidanceScale = decimal(flags.guidance, '--guidance');
      if (guidanceScale < 0 || guidanceScale > MAX_GUIDANCE) throw new Error(`--guidance must be from 0 to ${MAX_GUIDANCE} (≤ 1: conditional branch only), got '${flags.guidance}'`);
      const maxMemory = flags.maxMemory === undefined ? undefined : parseByteSize(flags.maxMemory, '--max-memory');
      if (!(SCHEDULER_CHOICES as string[]).includes(flags.scheduler)) throw new Error(`unknown scheduler '${flags.scheduler}' (choose ${SCHEDULER_CHOICES.join(', ')})`);
      const seed = flags.seed === undefined ? undefined : integer(flags.seed, '--seed', 0);
      const numImages = integer(flags.num, '--num', 1);
      const size = flags.size === undefined ? undefined : integer(flags.size, '--size', 1);
      const width = flags.width === undefined ? size : integer(flags.width, '--width', 1);
      const height = flags.height === undefined ? size : integer(flags.height, '--height', 1);
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device '${flags.device}' (cpu, webgpu or auto)`);
      const threads = flags.threads === undefined ? undefined : integer(flags.threads, '--threads', 1);
      const quantize = quantizationOf(flags.dtype);
      const controlFile = checkControlFlags(flags);
      const canny = flags.control === 'canny' ? { preprocess: { kind: 'canny' as const, low: decimal(flags.cannyLow, '--canny-low'), high: decimal(flags.cannyHigh, '--canny-high') } } : {};
      const controlScene = flags.controlScene === undefined ? undefined : await readSceneFile(flags.controlScene);
      const controlRun = {
        conditioningScale: decimal(flags.controlScale, '--control-scale'),
        guidanceStart: decimal(flags.controlStart, '--control-start'),
        guidanceEnd: decimal(flags.controlEnd, '--control-end'),
      };
      const lora = flags.lora ? { file: flags.lora, scale: decimal(flags.loraScale, '--lora-scale') } : undefined;

      const model = flags.model ?? DEFAULT_MODEL;
      const folder = await readPipelineFolder(model);
      const kind = flags.pipeline ?? (folder.className === 'KosmosGPipeline' ? 'kosmos-g' : 'clip-text');
      if (kind !== 'kosmos-g' && kind !== 'clip-text') throw new Error(`unknown pipeline '${kind}' (kosmos-g or clip-text)`);
      if (kind === 'kosmos-g') checkImageCount(flags.prompt, flags.image.length);
      else if (flags.image.length) throw new Error('--image needs the kosmos-g pipeline; the clip-text pipeline takes text only');
      let controlnet: KosmosGGenerateOptions['controlnet'];
      if (flags.controlnet && controlScene !== undefined) {
        // The map is drawn in the world the base model was trained on.
        const world = await openModelWorld(model, flags.cache);
        if (!world) throw new Error(noWorldMessage(flags.model ?? 'kosmos-g-mini'));
        const layout = await layoutControl(world, controlScene).catch((error: unknown) => {
          throw new Error(`--control-scene ${flags.controlScene}: ${(error as Error).message}`);
        });
        controlnet = { model: flags.controlnet, ...layout, ...controlRun };
      } else if (flags.controlnet) {
        controlnet = { model: flags.controlnet, image: controlFile!, ...canny, ...controlRun };
      }

      const device = flags.device as Device;
      const options: KosmosGGenerateOptions = {
        prompt: flags.prompt,
        images: flags.image,
        negativePrompt: flags.negative,
        steps,
        guidanceScale,
        scheduler: flags.scheduler as SchedulerChoice,
        seed,
        numImages,
        width,
        height,
        controlnet,
        lora,
        maxMemory,
      };
      const loadStart = performance.now();
      const load = { device, threads, ...(quantize ? { quantize } : {}) };
      if (flags.lowMemory && kind !== 'kosmos-g') throw new Error('--low-memory needs the kosmos-g pipeline');
      const pipeline = kind === 'kosmos-g' ? await KosmosGPipeline.fromPretrained(model, { ...load, lowMemory: flags.lowMemory ?? false }) : await TextToImagePipeline.fromPretrained(model, load);
      const loadMs = performance.now() - loadStart;
      const progress = progressReporter();
      let result: GenerationResult;
      const generateStart = performance.now();
      try {
        result = await pipeline.generate({ ...options, onStep: progress.onStep });
      } finally {
        progress.stop();
        await pipeline.dispose();
      }
      const generateMs = performance.now() - generateStart;
      const layout = gridLayout(result.images.length);
      const { settings } = result;
      // The settings also travel inside the PNG, as AUTOMATIC1111 writes them (a grid: its first image's seed).
      const parameters = generationParameters({ ...settings, model: flags.model ? basename(resolve(flags.model)) : 'kosmos-g-mini', images: flags.image.length });
      const png = await encodePng(result.images.length > 1 ? imageGrid(result.images, layout) : result.images[0]!, { parameters });
      const sidecar = {
        model: flags.model ?? 'kosmos-g-mini',
        pipeline: kind,
        ...settings,
        images: flags.image,
        seeds: Array.from({ length: settings.numImages }, (_, index) => settings.seed + index),
        grid: layout,
        device: pipeline.runtime.device,
        threads: pipeline.runtime.threads,
        dtype: flags.dtype,
        timings: { loadMs: Math.round(loadMs), generateMs: Math.round(generateMs) },
        warnings: result.warnings,
        output: flags.out,
      };
      for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
      const sidecarFile = sidecarPath(flags.out);
      await writeFileNamed(flags.out, png);
      try {
        await writeFileNamed(sidecarFile, `${JSON.stringify(sidecar, null, 2)}\n`);
      } catch (error) {
        // The image without its settings is not a result: take it back.
        await unlink(flags.out).catch(() => {});
        throw error;
      }
      process.stdout.write(`wrote ${flags.out} (${result.images.length} image${result.images.length === 1 ? '' : 's'}, ${settings.width}×${settings.height}, seed ${settings.seed}) and ${sidecarFile}\n`);
    });
}

