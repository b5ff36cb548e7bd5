// Kosmos-G's trainable networks as one module tree whose property paths are the official
// checkpoint keys (`img_model.visual.*`, `img_connector.*`, `gpt_model.decoder.*`, `aligner.*`), so
// a training checkpoint of any stage has the layout of the released `checkpoint_*.pt` files. The
// stages share the pieces here: the image path (vision tower → XConnector → Q latents per image),
// the token sequences with their image slots, CLIP-normalised pixels of world images, and the
// export of components into a pipeline folder (fp16, official key names).
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Value } from '../graph/graph.js';
import { reshape } from '../graph/ops/shape.js';
import { writeSafetensorsShards } from '../io/safetensors-index.js';
import { ALIGNER_PREFIX, AlignerNet, type AlignerConfig } from '../models/aligner.js';
import { KOSMOS_MLLM_PREFIX, KosmosGMllm, PAD_INDEX, type KosmosMllmConfig } from '../models/kosmos_mllm.js';
import { KOSMOS_G_PREFIX, OpenClipVisionModel, type OpenClipVisionConfig } from '../models/openclip_vision.js';
import { imagesToClipPixels } from './clip-model.js';
import { XCONNECTOR_PREFIX, XConnector, type XConnectorConfig } from '../models/xconnector.js';
import type { UniformSource } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { buildInterleavedPrompt } from '../pipeline/prompt.js';
import type { KosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { resizeImage, type RgbaImage } from '../world/image.js';

/** `gpt_model` of the official model: the MLLM sits under `decoder`. */
class GptModel extends Module {
  constructor(readonly decoder: KosmosGMllm) {
    super();
  }
}

export interface KosmosGNetworkConfigs {
  vision: OpenClipVisionConfig;
  connector: XConnectorConfig;
  mllm: KosmosMllmConfig;
  /** Absent in stage 1, which has no aligner. */
  aligner?: AlignerConfig;
}

export class KosmosGNetworks extends Module {
  readonly img_model: OpenClipVisionModel;
  readonly img_connector: XConnector;
  readonly gpt_model: GptModel;
  /** Aligner M (stage 3); null before stage 2 has made one. */
  readonly aligner: AlignerNet | null;

  constructor(readonly configs: KosmosGNetworkConfigs, random: UniformSource) {
    super();
    const { vision, connector, mllm, aligner } = configs;
    if (connector.input_dim !== vision.vision_cfg.width) throw new Error(`connector input_dim ${connector.input_dim} does not match the vision width ${vision.vision_cfg.width}`);
    if (connector.output_dim !== mllm.decoder_embed_dim) throw new Error(`connector output_dim ${connector.output_dim} does not match the MLLM width ${mllm.decoder_embed_dim}`);
    if (aligner && aligner.input_dim !== mllm.decoder_embed_dim) throw new Error(`aligner input_dim ${aligner.input_dim} does not match the MLLM width ${mllm.decoder_embed_dim}`);
    this.img_model = new OpenClipVisionModel(vision, { random });
    this.img_connector = new XConnector(connector, { random });
    this.gpt_model = new GptModel(new KosmosGMllm(mllm, { init: random }));
    this.aligner = aligner ? new AlignerNet(aligner, { init: random, reconstruction: false }) : null;
  }

  get mllm(): KosmosGMllm {
    return this.gpt_model.decoder;
  }

  /** Q: vectors each image becomes. */
  get queries(): number {
    return this.configs.connector.latent_query_num;
  }

  /**
   * Keys Kosmos-G trains: the MLLM, the connector, the vision tower's last block and ln_post
   * (`--no-freeze-layer` names `resblocks.{last}` and `ln_post`), and aligner M when present.
   */
  trainableKeys(): string[] {
    const lastBlock = `img_model.visual.transformer.resblocks.${this.configs.vision.vision_cfg.layers - 1}.`;
    return this.namedParameters()
      .map(([key]) => key)
      .filter((key) => !key.startsWith('img_model.') || key.startsWith(lastBlock) || key.startsWith('img_model.visual.ln_post.'));
  }

  /** get_image_representation: pixel values (N, 3, S, S) → latents (N·Q, D) in image order. */
  imageLatents(context: TraceContext, pixels: Value): Value {
    const graph = context.graph;
    const features = graph.scope('img_model', () => this.img_model.forward(context, pixels).features); // (N, T, W)
    const latents = graph.scope('img_connector', () => this.img_connector.forward(context, features)); // (N, Q, D)
    return reshape(latents, [pixels.size(0) * this.queries, this.configs.mllm.decoder_embed_dim]); // (N·Q, D)
  }

  /** MLLM final-LN states (B, L, D) of token rows (B, L) with the images' latents in the mask slots. */
  hiddenStates(context: TraceContext, batch: SequenceValues): Value {
    const latents = this.imageLatents(context, batch.pixels);
    return context.graph.scope('gpt_model', () => this.mllm.forward(context, batch.tokens, batch.imageMask, latents));
  }
}

export interface SequenceValues {
  /** (B, L) int64, right-padded with `<pad>`. */
  tokens: Value;
  /** (B, L) bool: the image-feature slots. */
  imageMask: Value;
  /** (N, 3, S, S) float32: the batch's images in slot order, the unused ones zero. */
  pixels: Value;
}

/** One MLLM sequence of a batch before packing. */
export interface TokenSequence {
  tokens: number[];
  imageMask: boolean[];
  /** Next-token targets (stage 1): `<pad>` where the next position is not text. */
  targets: number[];
}

/**
 * The sequence of an interleaved text (`<i>` per image): the inference layout
 * `<s> text <image>×(Q+1) </image> text`, plus the stage-1 targets of `<s> … </s>` shifted by one
 * (fairseq's full_tokens[:-1] → full_tokens[1:]), ignored where the next token is an image token.
 */
export function encodeSequence(text: string, imageCount: number, tokenizer: KosmosTokenizer, queries: number): TokenSequence {
  const prompt = buildInterleavedPrompt(text, imageCount, tokenizer, queries);
  const next = [...prompt.tokens.slice(1), tokenizer.eos];
  const imageTokens = new Set([tokenizer.imageStart, tokenizer.imageEnd]);
  return { tokens: prompt.tokens, imageMask: prompt.imageMask, targets: next.map((id) => (imageTokens.has(id) ? PAD_INDEX : id)) };
}

/** Sequences right-padded with `<pad>` to `length`: tokens and targets (B, L) int64, the mask (B, L) bool. */
export function packSequences(sequences: readonly TokenSequence[], length: number): { tokens: HostTensor<'int64'>; targets: HostTensor<'int64'>; image_mask: HostTensor<'bool'> } {
  const count = sequences.length;
  const tokens = new BigInt64Array(count * length).fill(BigInt(PAD_INDEX));
  const targets = new BigInt64Array(count * length).fill(BigInt(PAD_INDEX));
  const mask = new Uint8Array(count * length);
  sequences.forEach((sequence, row) => {
    if (sequence.tokens.length > length) throw new Error(`a sequence of ${sequence.tokens.length} tokens does not fit the batch length ${length}`);
    sequence.tokens.forEach((id, t) => {
      tokens[row * length + t] = BigInt(id);
      targets[row * length + t] = BigInt(sequence.targets[t]!);
      mask[row * length + t] = sequence.imageMask[t] ? 1 : 0;
    });
  });
  return {
    tokens: { dtype: 'int64', shape: [count, length], data: tokens },
    targets: { dtype: 'int64', shape: [count, length], data: targets },
    image_mask: { dtype: 'bool', shape: [count, length], data: mask },
  };
}

/**
 * World images (RGBA) in slot order → CLIP-normalised float32 (slots, 3, S, S), resized to the
 * vision tower's side S when they differ (as the official loaders resize to 224); unused slots stay zero.
 */
export function clipPixels(images: readonly RgbaImage[], slots: number, size: number): HostTensor<'float32'> {
  if (images.length > slots) throw new Error(`${images.length} images do not fit ${slots} image slots`);
  const data = new Float32Array(slots * 3 * size * size);
  if (images.length) data.set(imagesToClipPixels(images.map((image) => (image.width === size && image.height === size ? image : resizeImage(image, size, size)))).data);
  return { dtype: 'float32', shape: [slots, 3, size, size], data };
}

/** Largest weight file a component is written as; bigger ones are split (as transformers shards). */
const MAX_SHARD_BYTES = 16 * 1024 * 1024;

/** A component folder: config.json and fp16 safetensors with the tensors' keys as given, sharded above 16 MiB. */
export async function writeComponent(directory: string, config: unknown, tensors: Readonly<Record<string, HostTensor>>): Promise<void> {
  await mkdir(directory, { recursive: true });
  await writeFile(join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeSafetensorsShards(directory, { ...tensors }, { dtype: 'F16', maxShardBytes: MAX_SHARD_BYTES });
}

/**
 * Writes `vision/`, `connector/`, `mllm/` (and `aligner/` when given) of a pipeline folder from
 * parameters under the official keys, fp16; the tokenizer folder is copied to `tokenizer/`.
 */
export async function exportKosmosGComponents(
  directory: string,
  configs: KosmosGNetworkConfigs,
  parameters: Readonly<Record<string, HostTensor>>,
  tokenizerDirectory: string,
): Promise<void> {
  const pick = (prefix: string) => Object.fromEntries(Object.entries(parameters).filter(([key]) => key.startsWith(prefix)));
  await writeComponent(join(directory, 'vision'), configs.vision, pick(KOSMOS_G_PREFIX));
  await writeComponent(join(directory, 'connector'), configs.connector, pick(XCONNECTOR_PREFIX));
  await writeComponent(join(directory, 'mllm'), configs.mllm, pick(KOSMOS_MLLM_PREFIX));
  if (configs.aligner) await writeComponent(join(directory, 'aligner'), configs.aligner, pick(ALIGNER_PREFIX));
  await cp(tokenizerDirectory, join(directory, 'tokenizer'), { recursive: true });
}
