// CLIP-mini: a CLIPTextModel (transformers layout, the Stable Diffusion text encoder) and an
// open_clip vision tower (Kosmos-G's image encoder) joined by two projections into one embedding
// space and a learned temperature, trained contrastively. The towers keep their own layouts so each
// exports as the component a pipeline loads: the text projection as transformers'
// `text_projection.weight` (CLIPTextModelWithProjection), the image projection as open_clip's
// `visual.proj`, applied to the class token after ln_post (Kosmos-G itself reads every token).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Value } from '../graph/graph.js';
import { add, clip, exp, logSoftmax, matmul, mul, sum } from '../graph/ops/elementwise.js';
import { crossEntropy, l2Normalize } from '../graph/ops/nn.js';
import { reshape, slice, transpose } from '../graph/ops/shape.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { CLIPTextModel, parseClipTextConfig, type CLIPTextConfig } from '../models/clip_text.js';
import { CLIPVisionModel, parseClipVisionConfig, type CLIPVisionConfig } from '../models/clip_vision.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig, type OpenClipVisionConfig } from '../models/openclip_vision.js';
import { CLIP_MEAN, CLIP_STD } from '../pipeline/images.js';
import { Linear, normalTensor, constantTensor, type UniformSource, checkpointInitialized } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import type { RgbaImage } from '../world/image.js';
import { POSITIONS } from '../world/vocabulary.js';

/** CLIP's cap on the logit scale: exp(scale) ≤ 100. */
const MAX_LOGIT_SCALE = Math.log(100);

/**
 * Samples 2k and 2k + 1 as their own 2×2 contrastive problem, weighted by `pairWeights` (P = B/2):
 * −Σₖ wₖ · ¼ (the log-probabilities of each image's caption and each caption's image within the
 * pair) / P. Position twins (one scene, its subjects moved) are told apart only by where things
 * stand; in the batch loss a twin is one negative among B − 1, and while both towers still map the
 * two to nearly one point its gradient is nearly zero — this term amplifies exactly that gradient.
 */
export function twinPairLoss(imageEmbeds: Value, textEmbeds: Value, scale: Value, pairWeights: Value): Value {
  const [batch, dim] = imageEmbeds.shape as [number, number];
  const pairs = batch / 2;
  if (!Number.isInteger(pairs) || pairWeights.shape.join() !== String(pairs)) throw new Error(`twinPairLoss: pair weights ${pairWeights.shape.join('×')} for a batch of ${batch}`);
  const images = reshape(imageEmbeds, [pairs, 2, dim]); // (P, 2, E)
  const texts = reshape(textEmbeds, [pairs, 2, dim]); // (P, 2, E)
  const logits = mul(matmul(images, transpose(texts, [0, 2, 1])), scale); // (P, 2 images, 2 captions)
  const matching = imageEmbeds.graph.constant({ dtype: 'float32', shape: [1, 2, 2], data: Float32Array.of(1, 0, 0, 1) }, 'twin_matching');
  // Image → caption (softmax over captions, axis 2) plus caption → image (over images, axis 1).
  const logProbabilities = add(logSoftmax(logits, 2), logSoftmax(logits, 1)); // (P, 2, 2)
  const perPair = sum(mul(logProbabilities, matching), [1, 2]); // (P)
  return mul(sum(mul(perPair, pairWeights)), -1 / (4 * pairs));
}

/** The graph inputs of one contrastive step. */
export interface ContrastiveBatch {
  /** (B, 3, S, S) CLIP-normalised pixels. */
  pixelValues: Value;
  /** (B, T) int64 caption ids. */
  inputIds: Value;
  /** (B) int64 0 … B − 1. */
  labels: Value;
  /** (B/2) float: weight of each pair (2k, 2k + 1) in `twinPairLoss`. */
  twinPairWeights?: Value;
  /** (B) int64 index in POSITIONS of the image's single subject, −100 where the image has several. */
  imagePositions?: Value;
  /** (B) int64 index in POSITIONS of the position the caption names for its single subject, −100 where it names none. */
  captionPositions?: Value;
}

export interface ClipMiniEmbeddings {
  /** L2-normalised, (B, E). */
  imageEmbeds: Value;
  /** L2-normalised, (B, E). */
  textEmbeds: Value;
}

export class ClipMini extends Module {
  readonly text: CLIPTextModel;
  readonly vision: OpenClipVisionModel;
  readonly text_projection: Linear;
  /** open_clip's `visual.proj`: (width, E), applied as x @ proj. */
  readonly visual_projection: Parameter;
  /** log of the inverse temperature, (1). */
  readonly logit_scale: Parameter;
  /**
   * Training-only auxiliary position classifier shared by both towers: one learned prototype per
   * position (9, E), scored like captions — exp(scale) · cosine — so that its gradient reaches the
   * towers at the contrastive loss's scale (a plain linear head on unit-length embeddings has
   * logits and gradients ~100× smaller and does not move them). Not exported; null unless the
   * model is built with `positionHead`.
   */
  readonly position_prototypes: Parameter | null;

  constructor(
    readonly textConfig: CLIPTextConfig,
    readonly visionConfig: OpenClipVisionConfig,
    readonly embedDim: number,
    options: { random: UniformSource; initialTemperature?: number; positionHead?: boolean },
  ) {
    super();
    this.text = new CLIPTextModel(textConfig, { random: options.random });
    this.vision = new OpenClipVisionModel(visionConfig, { random: options.random });
    const textWidth = textConfig.hidden_size;
    const visionWidth = visionConfig.vision_cfg.width;
    this.text_projection = new Linear(textWidth, embedDim, { random: options.random, bias: false });
    this.visual_projection = new Parameter(normalTensor(options.random, [visionWidth, embedDim], visionWidth ** -0.5));
    this.logit_scale = new Parameter(constantTensor([1], Math.log(1 / (options.initialTemperature ?? 0.07))));
    this.position_prototypes = options.positionHead ? new Parameter(normalTensor(options.random, [POSITIONS.length, embedDim], embedDim ** -0.5)) : null;
  }

  embedImages(context: TraceContext, pixelValues: Value): Value {
    const { featuresBeforeNormalize } = this.vision.forward(context, pixelValues); // (B, T, W), ln_post applied
    const batch = featuresBeforeNormalize.shape[0]!;
    const width = this.visionConfig.vision_cfg.width;
    const classToken = reshape(slice(featuresBeforeNormalize, { starts: [0], ends: [1], axes: [1] }), [batch, width], [pixelValues]); // (B, W)
    return l2Normalize(matmul(classToken, context.value(this.visual_projection))); // (B, E)
  }

  embedTexts(context: TraceContext, inputIds: Value): Value {
    const { poolerOutput } = this.text.forward(context, inputIds); // (B, D) at the end token
    return l2Normalize(this.text_projection.forward(context, poolerOutput)); // (B, E)
  }

  embed(context: TraceContext, pixelValues: Value, inputIds: Value): ClipMiniEmbeddings {
    return { imageEmbeds: this.embedImages(context, pixelValues), textEmbeds: this.embedTexts(context, inputIds) };
  }

  /**
   * Symmetric InfoNCE: pair i (image i, caption i) is the positive of row i and of column i of the
   * (B, B) logit matrix exp(scale)·I·Tᵀ. Optional terms: the weighted position-twin pairs of
   * `twinPairLoss`, and `positionLossWeight` × the mean cross-entropy of the position prototypes on
   * the image and caption embeddings against the positions the batch gives.
   */
  contrastiveLoss(context: TraceContext, batch: ContrastiveBatch, positionLossWeight = 0): Value {
    const { imageEmbeds, textEmbeds } = this.embed(context, batch.pixelValues, batch.inputIds);
    const scale = exp(clip(context.value(this.logit_scale), undefined, MAX_LOGIT_SCALE));
    const logits = mul(matmul(imageEmbeds, transpose(textEmbeds, [1, 0])), scale); // (B images, B captions)
    const imageToText = crossEntropy(logits, batch.labels);
    const textToImage = crossEntropy(transpose(logits, [1, 0]), batch.labels);
    let loss = mul(add(imageToText, textToImage), 0.5);
    if (batch.twinPairWeights) loss = add(loss, twinPairLoss(imageEmbeds, textEmbeds, scale, batch.twinPairWeights));
    if (positionLossWeight > 0) {
      if (!this.position_prototypes || !batch.imagePositions || !batch.captionPositions) throw new Error('contrastiveLoss: a position loss needs position_prototypes and the image and caption positions');
      const prototypes = transpose(l2Normalize(context.value(this.position_prototypes)), [1, 0]); // (E, 9)
      const positionLogits = (embeds: Value) => mul(matmul(embeds, prototypes), scale); // (B, 9)
      const imageTerm = crossEntropy(positionLogits(imageEmbeds), batch.imagePositions);
      const captionTerm = crossEntropy(positionLogits(textEmbeds), batch.captionPositions);
      loss = add(loss, mul(add(imageTerm, captionTerm), positionLossWeight / 2));
    }
    return loss;
  }

  /**
   * Writes the text encoder (`textDirectory`: CLIPTextModelWithProjection config.json and weights)
   * and the vision tower (`visionDirectory`: open_clip config.json, `visual.*` with `visual.proj`),
   * both as float16 safetensors.
   */
  async export(textDirectory: string, visionDirectory: string): Promise<void> {
    const state = this.stateDict();
    const under = (prefix: string) => Object.fromEntries(Object.entries(state).filter(([key]) => key.startsWith(prefix)).map(([key, tensor]) => [key.slice(prefix.length), tensor]));
    await mkdir(textDirectory, { recursive: true });
    const textConfig = { ...this.textConfig, projection_dim: this.embedDim, architectures: ['CLIPTextModelWithProjection'], model_type: 'clip_text_model' };
    await writeFile(join(textDirectory, 'config.json'), `${JSON.stringify(textConfig, null, 2)}\n`);
    await writeSafetensors(join(textDirectory, 'model.safetensors'), { ...under('text.'), 'text_projection.weight': state['text_projection.weight']! }, { dtype: 'F16' });
    await mkdir(visionDirectory, { recursive: true });
    await writeFile(join(visionDirectory, 'config.json'), `${JSON.stringify({ ...this.visionConfig, embed_dim: this.embedDim }, null, 2)}\n`);
    await writeSafetensors(join(visionDirectory, 'model.safetensors'), { ...under('vision.'), 'visual.proj': state['visual_projection']! }, { dtype: 'F16' });
  }

  /** Reads what `export` wrote (the logit scale is not exported; it stays at 1/0.07 here). */
  static async load(textDirectory: string, visionDirectory: string): Promise<ClipMini> {
    const textConfigPath = join(textDirectory, 'config.json');
    const textJson = JSON.parse(await readFile(textConfigPath, 'utf8')) as Record<string, unknown>;
    const textConfig = parseClipTextConfig(textJson, textConfigPath);
    const visionConfigPath = join(visionDirectory, 'config.json');
    const visionJson = JSON.parse(await readFile(visionConfigPath, 'utf8')) as Record<string, unknown>;
    const visionConfig = parseOpenClipVisionConfig(visionJson, visionConfigPath);
    const embedDim = textConfig.projection_dim;
    if (embedDim === undefined) throw new Error(`${textConfigPath}: projection_dim is missing; CLIP-mini needs the text projection`);
    const model = new ClipMini(textConfig, visionConfig, embedDim, { random: checkpointInitialized });
    const text = await CLIPTextModel.fromPretrained(textDirectory, { withProjection: true });
    const vision = await OpenClipVisionModel.fromPretrained(visionDirectory);
    const reader = await openSafetensors(visionDirectory);
    let projection: HostTensor;
    try {
      projection = (await reader.readAll({ asFloat32: true })).get('visual.proj') ?? missing(visionDirectory);
    } finally {
      await reader.close();
    }
    const textState = text.stateDict();
    const { 'text_projection.weight': textProjection, ...textModel } = textState;
    model.loadStateDict({
      ...prefixed('text.', textModel),
      ...prefixed('vision.', vision.stateDict()),
      'text_projection.weight': textProjection!,
      visual_projection: projection,
      logit_scale: model.logit_scale.data,
    });
    return model;
  }
}

/**
 * open_clip vision keys (below ClipMini's `vision.`) → transformers CLIPVisionModel keys. The two
 * towers compute the same function: bias-free patch convolution, class token, learned positions,
 * pre-LN, pre-norm blocks with scaled dot-product attention and QuickGELU MLPs, LayerNorm on the
 * class token (ln_post is per token, so normalising every token and taking the first is the same).
 */
const OPEN_CLIP_TO_TRANSFORMERS: readonly [RegExp, string][] = [
  [/^visual\.conv1\.weight$/, 'vision_model.embeddings.patch_embedding.weight'],
  [/^visual\.class_embedding$/, 'vision_model.embeddings.class_embedding'],
  [/^visual\.positional_embedding$/, 'vision_model.embeddings.position_embedding.weight'],
  [/^visual\.ln_pre\.(weight|bias)$/, 'vision_model.pre_layrnorm.$1'],
  [/^visual\.ln_post\.(weight|bias)$/, 'vision_model.post_layernorm.$1'],
  [/^visual\.transformer\.resblocks\.(\d+)\.ln_1\.(weight|bias)$/, 'vision_model.encoder.layers.$1.layer_norm1.$2'],
  [/^visual\.transformer\.resblocks\.(\d+)\.ln_2\.(weight|bias)$/, 'vision_model.encoder.layers.$1.layer_norm2.$2'],
  [/^visual\.transformer\.resblocks\.(\d+)\.ts_attn\.(q|k|v|out)_proj\.(weight|bias)$/, 'vision_model.encoder.layers.$1.self_attn.$2_proj.$3'],
  [/^visual\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)$/, 'vision_model.encoder.layers.$1.mlp.fc1.$2'],
  [/^visual\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)$/, 'vision_model.encoder.layers.$1.mlp.fc2.$2'],
];

/** The transformers CLIPVisionConfig of an open_clip vision config, with `projection_dim`. */
export function transformersVisionConfig(config: OpenClipVisionConfig, projectionDim: number): CLIPVisionConfig {
  const { image_size, patch_size, width, layers, head_width, mlp_ratio } = config.vision_cfg;
  return parseClipVisionConfig({
    hidden_size: width,
    intermediate_size: Math.round(width * mlp_ratio),
    num_hidden_layers: layers,
    num_attention_heads: width / head_width,
    num_channels: 3,
    image_size,
    patch_size,
    hidden_act: config.quick_gelu ? 'quick_gelu' : 'gelu',
    layer_norm_eps: 1e-5,
    projection_dim: projectionDim,
  });
}

/** (rows, cols) → (cols, rows). */
function transposed(tensor: HostTensor): HostTensor<'float32'> {
  const [rows, cols] = tensor.shape as [number, number];
  const source = tensor.data as Float32Array;
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[c * rows + r] = source[r * cols + c]!;
  return { dtype: 'float32', shape: [cols, rows], data };
}

/** The transformers CLIPModel name of a ClipMini parameter (`visual_projection` is stored transposed there). */
export function transformersKey(key: string): string {
  if (key === 'visual_projection') return 'visual_projection.weight';
  if (key === 'text_projection.weight' || key === 'logit_scale') return key;
  if (key.startsWith('text.')) return key.slice('text.'.length);
  const openClipKey = key.slice('vision.'.length);
  const rule = key.startsWith('vision.') ? OPEN_CLIP_TO_TRANSFORMERS.find(([pattern]) => pattern.test(openClipKey)) : undefined;
  if (!rule) throw new Error(`no transformers CLIPModel name for the CLIP-mini tensor ${key}`);
  return openClipKey.replace(rule[0], rule[1]);
}

/**
 * CLIP-mini as transformers' CLIPModel towers (CLIPTextModelWithProjection and
 * CLIPVisionModelWithProjection), the layout of the DreamBench CLIP judge: the same embeddings,
 * under transformers' names.
 */
export function clipMiniAsTransformers(model: ClipMini): { text: CLIPTextModel; vision: CLIPVisionModel } {
  const text = new CLIPTextModel({ ...model.textConfig, projection_dim: model.embedDim }, { random: checkpointInitialized, withProjection: true });
  const vision = new CLIPVisionModel(transformersVisionConfig(model.visionConfig, model.embedDim), { random: checkpointInitialized, withProjection: true });
  const textState: Record<string, HostTensor> = {};
  const visionState: Record<string, HostTensor> = {};
  for (const [key, tensor] of Object.entries(model.stateDict())) {
    if (key === 'logit_scale' || key === 'position_prototypes') continue;
    const target = key.startsWith('text') ? textState : visionState;
    target[transformersKey(key)] = key === 'visual_projection' ? transposed(tensor) : tensor;
  }
  text.loadStateDict(textState);
  vision.loadStateDict(visionState);
  return { text, vision };
}

/** A CLIPModel folder written from CLIP-mini (`clipMiniAsTransformers`) read back as CLIP-mini parameters, float32. */
export async function clipMiniStateFromTransformers(model: ClipMini, directory: string): Promise<Record<string, HostTensor>> {
  const reader = await openSafetensors(directory);
  try {
    const tensors = await reader.readAll({ asFloat32: true });
    const state: Record<string, HostTensor> = {};
    for (const key of Object.keys(model.stateDict())) {
      if (key === 'position_prototypes') continue;
      const tensor = tensors.get(transformersKey(key));
      if (!tensor) throw new Error(`${directory}: ${transformersKey(key)} is missing; not a CLIPModel of this CLIP-mini's shape`);
      state[key] = key === 'visual_projection' ? transposed(tensor) : key === 'logit_scale' ? { ...tensor, shape: [1] } : tensor;
    }
    return state;
  } finally {
    await reader.close();
  }
}

function missing(directory: string): never {
  throw new Error(`${directory} has no visual.proj: not a CLIP-mini vision tower`);
}

function prefixed(prefix: string, tensors: Readonly<Record<string, HostTensor>>): Record<string, HostTensor> {
  return Object.fromEntries(Object.entries(tensors).map(([key, tensor]) => [prefix + key, tensor]));
}


/** Opaque RGBA images of the tower's size → float32 (B, 3, H, W) normalised with CLIP's mean and std. */
export function imagesToClipPixels(images: readonly RgbaImage[]): HostTensor<'float32'> {
  const { width, height } = images[0] ?? { width: 0, height: 0 };
  const plane = width * height;
  const data = new Float32Array(images.length * 3 * plane);
  images.forEach((image, b) => {
    if (image.width !== width || image.height !== height) throw new Error(`image ${b} is ${image.width}×${image.height}, expected ${width}×${height}`);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) data[(b * 3 + c) * plane + p] = (image.data[p * 4 + c]! / 255 - CLIP_MEAN[c]!) / CLIP_STD[c]!;
    }
  });
  return { dtype: 'float32', shape: [images.length, 3, height, width], data };
}
