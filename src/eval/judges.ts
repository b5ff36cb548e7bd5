// The DreamBench judges and their preprocessing (Kosmos-G's eval/clip_score.py and dino_score.py):
//   CLIP-I  cos(image_embeds(generated), image_embeds(reference))   projected, L2-normalised
//   CLIP-T  cos(image_embeds(generated), text_embeds(prompt))       the prompt keeps the class word
//   DINO    cos(CLS(generated), CLS(reference))                     ViT last_hidden_state[:, 0]
//   score   max(100 · mean cosine, 0) over the pairs (torchmetrics CLIPScore's floor)
// A judges folder holds `clip/` — transformers' CLIPModel layout (config.json with text_config and
// vision_config, one model.safetensors with text_model.*, vision_model.*, text_projection,
// visual_projection; vocab.json + merges.txt), e.g. openai/clip-vit-base-patch32 — and `dino/` —
// transformers' ViTModel layout, e.g. facebook/dino-vits16. The weights are read in place as ONNX
// external data, so a 600 MB CLIP is never copied into a graph.
//
// Preprocessing (images decoded and resized by sharp, whose cubic is PIL's bicubic, see
// pipeline/images.ts):
//   CLIP  CLIPImageProcessor: Resize(short side S, bicubic) → CenterCrop(S) with floor offsets → CLIP mean/std
//   DINO  torchvision: Resize(R, bicubic) → CenterCrop(S) with rounded offsets → ImageNet mean/std,
//         R = round(S · 256/224): 256 → 224 for ViT-S/16 as the protocol says, scaled alike for small judges.
// The DINO folder's own preprocessor_config.json (a plain 224 resize on the Hub) is not used: the
// protocol's transform is torch.hub DINO's.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Device } from '../graph/devices.js';
import { Graph } from '../graph/graph.js';
import { Runtime } from '../graph/runtime.js';
import { CLIPTextModel, parseClipTextConfig } from '../models/clip_text.js';
import { CLIPVisionModel, parseClipVisionConfig } from '../models/clip_vision.js';
import { ViTModel, parseViTConfig, vitCheckpointLayout } from '../models/vit.js';
import { checkpointInitialized } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { externalBindings } from '../nn/weights.js';
import type { HostTensor } from '../onnx/dtype.js';
import { IMAGENET_MEAN, IMAGENET_STD, type ImageSource, type Preprocessing, clipPreprocessing, dinoPreprocessing, readImageBytes, resizeCropBox } from '../pipeline/images.js';
import { BoundModel } from '../pipeline/weights.js';
import { ClipTokenizer } from '../tokenizers/clip_bpe.js';

export { IMAGENET_MEAN, IMAGENET_STD, clipPreprocessing, dinoPreprocessing, resizeCropBox, type Preprocessing };

// ---- preprocessing (geometry in pipeline/images.ts) ------------------------------------------------

/** One image → channel-first normalised floats (3·crop·crop) at `offset` of `out`. */
export async function preprocessInto(source: ImageSource, p: Preprocessing, out: Float32Array, offset: number, name = typeof source === 'string' ? source : 'image'): Promise<void> {
  const bytes = await readImageBytes(source, name);
  let rgb: Buffer;
  try {
    const { width, height } = await sharp(bytes).metadata();
    if (!width || !height) throw new Error('the image has no size');
    const box = resizeCropBox(width, height, p);
    const { data, info } = await sharp(bytes, { failOn: 'warning' })
      .removeAlpha()
      .toColourspace('srgb')
      .resize(box.width, box.height, { kernel: 'cubic', fit: 'fill', fastShrinkOnLoad: false })
      .extract({ left: box.left, top: box.top, width: p.crop, height: p.crop })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    rgb = data;
  } catch (error) {
    throw new Error(`${name}: cannot read the image (${(error as Error).message.replace(/\s+/g, ' ')})`);
  }
  const plane = p.crop * p.crop;
  for (let c = 0; c < 3; c++) {
    const [mean, std] = [p.mean[c]!, p.std[c]!];
    for (let i = 0; i < plane; i++) out[offset + c * plane + i] = (rgb[i * 3 + c]! / 255 - mean) / std;
  }
}

/** Images → (N, 3, crop, crop) float32 pixel values, in order. */
export async function preprocessImages(sources: readonly ImageSource[], p: Preprocessing): Promise<HostTensor<'float32'>> {
  const size = 3 * p.crop * p.crop;
  const data = new Float32Array(sources.length * size);
  for (const [index, source] of sources.entries()) await preprocessInto(source, p, data, index * size);
  return { dtype: 'float32', shape: [sources.length, 3, p.crop, p.crop], data };
}

// ---- scores ----------------------------------------------------------------------------------------

/** Cosine similarity in float64. */
export function cosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`cannot compare a ${a.length}- and a ${b.length}-dimensional feature`);
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(aa * bb);
}

/** DreamBench's score of a set of pairs: max(100 · mean cosine, 0); null for no pairs. */
export function dreamBenchScore(cosines: readonly number[]): number | null {
  if (!cosines.length) return null;
  return Math.max((100 * cosines.reduce((sum, value) => sum + value, 0)) / cosines.length, 0);
}

function normalized(vector: Float32Array): Float32Array {
  let norm = 0;
  for (const value of vector) norm += value * value;
  norm = Math.sqrt(norm);
  return vector.map((value) => value / norm);
}

// ---- the judges ------------------------------------------------------------------------------------

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() ?? false;
}

/** Runs `run` over `items` in batches of exactly `batchSize` (the last padded with its first item, so one graph serves every batch). */
async function batched<T>(items: readonly T[], batchSize: number, run: (chunk: readonly T[]) => Promise<Float32Array>): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let start = 0; start < items.length; start += batchSize) {
    const chunk = items.slice(start, start + batchSize);
    const data = await run([...chunk, ...Array.from({ length: batchSize - chunk.length }, () => chunk[0]!)]);
    const width = data.length / batchSize;
    for (let k = 0; k < chunk.length; k++) out.push(data.slice(k * width, (k + 1) * width));
  }
  return out;
}

/** Tensors a checkpoint holds that the model reads neither, minus those transformers drops as well. */
function unexpectedTensors(names: readonly string[], model: Module, prefix: string, ignore: (name: string) => boolean): string[] {
  const expected = new Set(model.namedParameters().map(([key]) => prefix + key));
  return names.filter((name) => !expected.has(name) && !ignore(name));
}

/** transformers' CLIPTextConfig / CLIPVisionConfig defaults, for the keys a CLIPModel config.json may leave out. */
const CLIP_TEXT_DEFAULTS = { vocab_size: 49408, hidden_size: 512, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 8, max_position_embeddings: 77, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, eos_token_id: 49407 };
const CLIP_VISION_DEFAULTS = { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_channels: 3, image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 };

function subConfig(config: Record<string, unknown>, name: 'text_config' | 'vision_config', source: string): Record<string, unknown> {
  // Configs written by older transformers keep the sub-configs under *_config_dict.
  const value = config[name] ?? config[`${name}_dict`];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${source} is not a transformers CLIPModel config: it has no ${name}`);
  }
  const projection = config['projection_dim'] ?? 512; // CLIPModel's projections are config.projection_dim wide
  return { ...(name === 'text_config' ? CLIP_TEXT_DEFAULTS : CLIP_VISION_DEFAULTS), ...(value as Record<string, unknown>), projection_dim: projection };
}

/** CLIP-I and CLIP-T: a transformers CLIPModel folder's projected, normalised embeddings. */
export class ClipJudge {
  private constructor(
    readonly directory: string,
    private readonly runtime: Runtime,
    readonly text: BoundModel<CLIPTextModel>,
    readonly vision: BoundModel<CLIPVisionModel>,
    readonly tokenizer: ClipTokenizer,
    readonly batchSize: number,
  ) {}

  static async load(directory: string, runtime: Runtime, batchSize = 8): Promise<ClipJudge> {
    const where = `CLIP judge ${directory}`;
    for (const file of ['config.json', 'vocab.json', 'merges.txt']) {
      if (!(await isFile(join(directory, file)))) throw new Error(`${where}: ${file} is missing (a transformers CLIPModel folder with its tokenizer)`);
    }
    const source = join(directory, 'config.json');
    // BoundModel.open names the component in its errors; the sources below name the folder.
    // Each tower is bound from the one CLIPModel file; the other tower's tensors are checked below.
    const text = await BoundModel.open(
      'CLIP judge text_model',
      directory,
      (config) => new CLIPTextModel(parseClipTextConfig(subConfig(config, 'text_config', source), `${source} text_config`), { random: checkpointInitialized, withProjection: true }),
      (graph, model, reader) => externalBindings(graph, model, reader, { otherModels: ['vision_model.', 'visual_projection.weight', 'logit_scale'] }),
    );
    try {
      const vision = await BoundModel.open(
        'CLIP judge vision_model',
        directory,
        (config) => new CLIPVisionModel(parseClipVisionConfig(subConfig(config, 'vision_config', source), `${source} vision_config`), { random: checkpointInitialized, withProjection: true }),
        (graph, model, reader) => externalBindings(graph, model, reader, { otherModels: ['text_model.', 'text_projection.weight', 'logit_scale'] }),
      );
      try {
        // Strict, as transformers' CLIPModel: besides the two towers only logit_scale and the position_ids buffers of older checkpoints.
        const names = text.reader.names();
        const unexpected = unexpectedTensors(unexpectedTensors(names, text.model, '', () => false), vision.model, '', (name) => name === 'logit_scale' || name.endsWith('.embeddings.position_ids'));
        if (unexpected.length) throw new Error(`${where}: unexpected tensors in the checkpoint: ${unexpected.slice(0, 8).join(', ')}${unexpected.length > 8 ? ', …' : ''}`);
        const tokenizer = await ClipTokenizer.fromPretrained(directory);
        if (tokenizer.vocabularySize > text.model.config.vocab_size) throw new Error(`${where}: the tokenizer has ${tokenizer.vocabularySize} ids, the text model ${text.model.config.vocab_size} embeddings`);
        return new ClipJudge(directory, runtime, text, vision, tokenizer, batchSize);
      } catch (error) {
        await vision.close();
        throw error;
      }
    } catch (error) {
      await text.close();
      throw error;
    }
  }

  get preprocessing(): Preprocessing {
    return clipPreprocessing(this.vision.model.config.image_size);
  }

  /** Normalised image_embeds of images (paths or encoded bytes). */
  async embedImages(sources: readonly ImageSource[]): Promise<Float32Array[]> {
    const p = this.preprocessing;
    return batched(sources, this.batchSize, async (chunk) => (await this.embedPixels(await preprocessImages(chunk, p))).data as Float32Array).then((rows) => rows.map(normalized));
  }

  /** image_embeds (B, projection_dim) of preprocessed pixel values (B, 3, S, S), not normalised. */
  async embedPixels(pixels: HostTensor<'float32'>): Promise<HostTensor> {
    const session = await this.runtime.compile(
      `judge-clip-vision:${this.directory}`,
      { pixel_values: pixels.shape },
      () => {
        const graph = new Graph('clip_judge_vision');
        const input = graph.input('pixel_values', 'float32', pixels.shape);
        return graph.toModel({ image_embeds: this.vision.model.forward(this.vision.bind(graph), input).imageEmbeds! });
      },
      { externalData: this.vision.externalData },
    );
    return (await session.run({ pixel_values: pixels }))['image_embeds']!;
  }

  /** Normalised text_embeds; prompts are padded with the end token to max_position_embeddings (the pooled token is causal, so padding never changes it). */
  async embedTexts(texts: readonly string[]): Promise<Float32Array[]> {
    const length = this.text.model.config.max_position_embeddings;
    return batched(texts, this.batchSize, async (chunk) => {
      const ids = BigInt64Array.from(chunk.flatMap((text) => this.tokenizer.encode(text, { contextLength: length, cleaning: 'basic' }).ids.map(BigInt)));
      const shape = [chunk.length, length];
      const session = await this.runtime.compile(
        `judge-clip-text:${this.directory}`,
        { input_ids: shape },
        () => {
          const graph = new Graph('clip_judge_text');
          const input = graph.input('input_ids', 'int64', shape);
          return graph.toModel({ text_embeds: this.text.model.forward(this.text.bind(graph), input).textEmbeds! });
        },
        { externalData: this.text.externalData },
      );
      return (await session.run({ input_ids: { dtype: 'int64', shape, data: ids } }))['text_embeds']!.data as Float32Array;
    }).then((rows) => rows.map(normalized));
  }

  async close(): Promise<void> {
    await Promise.all([this.text.close(), this.vision.close()]);
  }
}

/** DINO: the CLS feature of a transformers ViTModel folder. */
export class DinoJudge {
  private constructor(
    readonly directory: string,
    private readonly runtime: Runtime,
    readonly vit: BoundModel<ViTModel>,
    readonly batchSize: number,
  ) {}

  static async load(directory: string, runtime: Runtime, batchSize = 8): Promise<DinoJudge> {
    const where = `DINO judge ${directory}`;
    if (!(await isFile(join(directory, 'config.json')))) throw new Error(`${where}: config.json is missing (a transformers ViTModel folder)`);
    let prefix = '';
    const vit = await BoundModel.open(
      'DINO judge',
      directory,
      (config) => new ViTModel(parseViTConfig(config, join(directory, 'config.json')), { random: checkpointInitialized }),
      (graph, model, reader) => externalBindings(graph, model, reader, { prefix: (prefix = vitCheckpointLayout(reader.names()).prefix) }),
    );
    const names = vit.reader.names();
    const layout = vitCheckpointLayout(names);
    const unexpected = unexpectedTensors(names, vit.model, prefix, (name) => layout.ignored.includes(name) || name.startsWith(`${prefix}pooler.`));
    if (unexpected.length) {
      await vit.close();
      throw new Error(`${where}: unexpected tensors in the checkpoint: ${unexpected.slice(0, 8).join(', ')}${unexpected.length > 8 ? ', …' : ''}`);
    }
    return new DinoJudge(directory, runtime, vit, batchSize);
  }

  get preprocessing(): Preprocessing {
    return dinoPreprocessing(this.vit.model.config.image_size);
  }

  /** CLS features (not normalised; the cosine normalises) of images. */
  async features(sources: readonly ImageSource[]): Promise<Float32Array[]> {
    const p = this.preprocessing;
    return batched(sources, this.batchSize, async (chunk) => (await this.featuresOfPixels(await preprocessImages(chunk, p))).data as Float32Array);
  }

  /** last_hidden_state[:, 0], (B, D), of preprocessed pixel values (B, 3, S, S). */
  async featuresOfPixels(pixels: HostTensor<'float32'>): Promise<HostTensor> {
    const session = await this.runtime.compile(
      `judge-dino:${this.directory}`,
      { pixel_values: pixels.shape },
      () => {
        const graph = new Graph('dino_judge');
        const input = graph.input('pixel_values', 'float32', pixels.shape);
        return graph.toModel({ cls: this.vit.model.forward(this.vit.bind(graph), input).clsFeature });
      },
      { externalData: this.vit.externalData },
    );
    return (await session.run({ pixel_values: pixels }))['cls']!;
  }

  async close(): Promise<void> {
    await this.vit.close();
  }
}

export interface JudgeOptions {
  device?: Device;
  threads?: number;
  /** Images (or prompts) per judge graph run; default 8. */
  batchSize?: number;
}

export interface Judges {
  directory: string;
  clip: ClipJudge;
  dino: DinoJudge;
  close(): Promise<void>;
}

/** Checks that a judges folder has clip/ and dino/ model folders, without loading them (before a long generation). */
export async function checkJudgesFolder(directory: string): Promise<void> {
  if (!(await stat(directory).catch(() => null))?.isDirectory()) throw new Error(`judges folder ${directory} does not exist`);
  const problems: string[] = [];
  for (const [sub, what, files] of [['clip', 'a transformers CLIPModel folder', ['config.json', 'vocab.json', 'merges.txt']], ['dino', 'a transformers ViTModel folder', ['config.json']]] as const) {
    const folder = join(directory, sub);
    const entries = await readdir(folder).catch(() => null);
    if (!entries) {
      problems.push(`${sub}/ (${what}) is missing`);
      continue;
    }
    const absent: string[] = files.filter((file) => !entries.includes(file));
    if (!entries.some((file) => file === 'model.safetensors' || file.endsWith('.safetensors.index.json'))) absent.push('model.safetensors');
    if (absent.length) problems.push(`${sub}/ lacks ${absent.join(', ')}`);
  }
  if (problems.length) throw new Error(`judges folder ${directory}: ${problems.join('; ')}`);
}

/** Loads `clip/` and `dino/` of a judges folder on one runtime. */
export async function loadJudges(directory: string, options: JudgeOptions = {}): Promise<Judges> {
  await checkJudgesFolder(directory);
  const runtime = await Runtime.create({ device: options.device, threads: options.threads });
  try {
    const clip = await ClipJudge.load(join(directory, 'clip'), runtime, options.batchSize);
    try {
      const dino = await DinoJudge.load(join(directory, 'dino'), runtime, options.batchSize);
      return {
        directory,
        clip,
        dino,
        async close() {
          await Promise.all([clip.close(), dino.close()]);
          await runtime.dispose();
        },
      };
    } catch (error) {
      await clip.close();
      throw error;
    }
  } catch (error) {
    await runtime.dispose();
    throw error;
  }
}
