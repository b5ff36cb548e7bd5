// CLIP-mini stage: the text encoder and the open_clip vision tower trained together with
// symmetric InfoNCE on world scenes and their captions (and single subjects with bare-subject
// captions). Captions are tokenised as the text-to-image pipeline does (basic cleaning, end-token
// padding) but to `trainTokens` positions: the encoder is causal and pools at the first end token,
// so a caption that fits gives the same embedding at any padded length up to 77.
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parseClipTextConfig } from '../models/clip_text.js';
import { parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { contextFromValues } from '../nn/module.js';
import type { SessionOptions } from '../graph/session.js';
import type { HostTensor } from '../onnx/dtype.js';
import { ClipTokenizer } from '../tokenizers/clip_bpe.js';
import { deriveSeed, Random } from '../util/random.js';
import { attributionMarkdown } from '../world/attribution.js';
import { POSITION_PHRASES, POSITIONS } from '../world/vocabulary.js';
import { baseConfigSchema, modelConfigSchema } from './config.js';
import { CaptionedSceneStream, captionedScenesSchema, WORLD_FILE, type CaptionedScene, type WorldDescription } from './captioned-scenes.js';
import { ClipMini, clipMiniAsTransformers, clipMiniStateFromTransformers, imagesToClipPixels } from './clip-model.js';
import { saveClipModel } from '../models/clip_model.js';
import { ForwardSession } from './forward.js';
import { retrievalMatrixPng } from './images.js';
import type { StageDefinition } from './stage.js';
import { EVAL_SCENE_SEED, openWorld, worldDataSchema } from './world-data.js';

export const clipConfigSchema = baseConfigSchema.extend({
  stage: z.literal('clip'),
  /** transformers CLIPTextConfig keys (max_position_embeddings 77; eos_token_id the tokenizer's end id). */
  text: modelConfigSchema(parseClipTextConfig, 'text'),
  /** open_clip vision config (quick_gelu, vision_cfg); image_size is the scene side. */
  vision: modelConfigSchema(parseOpenClipVisionConfig, 'vision'),
  /** Width of the shared embedding space. */
  embedDim: z.number().int().positive(),
  initialTemperature: z.number().positive().default(0.07),
  /** CLIP tokenizer folder (vocab.json + merges.txt) made by `train-tokenizer`, relative to the working directory. */
  tokenizer: z.string().min(1),
  /** Token positions fed in training (start + caption + end, padded); longer captions are truncated. */
  trainTokens: z.number().int().min(4),
  /**
   * false: freeze the text transformer (`text.*`) and train the vision tower, both projections and
   * the temperature — a U-Net conditioned on the text encoder's hidden states stays valid. Default true.
   */
  trainTextEncoder: z.boolean().optional(),
  /**
   * Weight of the position-twin pair loss (`twinPairLoss` in clip-model.ts) added to the batch
   * InfoNCE for the pairs `scenes.positionTwinFraction` makes twins; absent or 0 adds nothing
   * (optional, not defaulted, so that the configs of earlier runs hash as before and resume).
   */
  twinLossWeight: z.number().min(0).optional(),
  /**
   * Weight of an auxiliary position classifier on both towers' embeddings (`position_prototypes`,
   * shared, training only): the image's single subject's position and the position its caption names.
   * Absent or 0: no head.
   */
  positionLossWeight: z.number().min(0).optional(),
  /**
   * `pipeline` (default): text_encoder/, vision/ and clip_tokenizer/ of a pipeline folder.
   * `clip-model`: one transformers CLIPModel folder with its tokenizer, the layout of a DreamBench
   * CLIP judge (`models/judges/clip`).
   */
  exportAs: z.enum(['pipeline', 'clip-model']).optional(),
  data: worldDataSchema,
  scenes: captionedScenesSchema.default({ singleSubjectFraction: 0.3, shortCaptionFraction: 0.5 }),
  /** Evaluation-seed scenes in the retrieval matrix of the sample grids. */
  previewCount: z.number().int().min(2).default(8),
});

export type ClipConfig = z.output<typeof clipConfigSchema>;

function initialModel(config: ClipConfig): ClipMini {
  const random = new Random(deriveSeed(config.seed, 0xc11f));
  return new ClipMini(config.text, config.vision, config.embedDim, { random, initialTemperature: config.initialTemperature, positionHead: (config.positionLossWeight ?? 0) > 0 });
}

async function loadTokenizer(config: ClipConfig): Promise<ClipTokenizer> {
  const tokenizer = await ClipTokenizer.fromPretrained(config.tokenizer);
  if (tokenizer.vocabularySize > config.text.vocab_size) throw new Error(`the tokenizer has ${tokenizer.vocabularySize} ids, text.vocab_size is ${config.text.vocab_size}`);
  if (tokenizer.endId !== config.text.eos_token_id) throw new Error(`text.eos_token_id is ${config.text.eos_token_id}, the tokenizer's end token is ${tokenizer.endId}`);
  if (config.trainTokens > config.text.max_position_embeddings) throw new Error(`trainTokens ${config.trainTokens} exceeds max_position_embeddings ${config.text.max_position_embeddings}`);
  return tokenizer;
}

/** (B/2) weights of the pairs (2k, 2k + 1) of a batch: `weight` where the pair is a position twin, else 0. */
export function twinPairWeights(scenes: readonly CaptionedScene[], weight: number): HostTensor<'float32'> {
  return { dtype: 'float32', shape: [scenes.length / 2], data: Float32Array.from({ length: scenes.length / 2 }, (_, k) => (scenes[2 * k]!.positionTwin ? weight : 0)) };
}

/**
 * The position labels of the position prototypes (index in POSITIONS, −100 = none): `image_positions`, where
 * a scene's single subject stands; `caption_positions`, the position its caption names (a bare
 * subject caption names none). Scenes with several subjects have no label.
 */
export function scenePositionLabels(scenes: readonly CaptionedScene[]): { image_positions: HostTensor<'int64'>; caption_positions: HostTensor<'int64'> } {
  const none = BigInt(-100);
  const positions = scenes.map((scene) => (scene.spec.subjects.length === 1 ? scene.spec.subjects[0]!.position : null));
  const label = (position: (typeof positions)[number]) => (position === null ? none : BigInt(POSITIONS.indexOf(position)));
  const named = positions.map((position, b) => (position !== null && POSITION_PHRASES[position].some((phrase) => scenes[b]!.caption.includes(phrase)) ? position : null));
  const tensor = (labels: bigint[]): HostTensor<'int64'> => ({ dtype: 'int64', shape: [scenes.length], data: BigInt64Array.from(labels) });
  return { image_positions: tensor(positions.map(label)), caption_positions: tensor(named.map(label)) };
}

/** Captions → int64 (B, length) ids as the text-to-image pipeline encodes them. */
export function encodeCaptions(tokenizer: ClipTokenizer, captions: readonly string[], length: number): HostTensor<'int64'> {
  const data = new BigInt64Array(captions.length * length);
  captions.forEach((caption, b) => {
    const { ids } = tokenizer.encode(caption, { contextLength: length, cleaning: 'basic' });
    ids.forEach((id, t) => (data[b * length + t] = BigInt(id)));
  });
  return { dtype: 'int64', shape: [captions.length, length], data };
}

/** A compiled (images, captions) → normalised embeddings graph, parameters fed per run. */
export async function createEmbedder(model: ClipMini, batchSize: number, tokens: number, session: SessionOptions = {}): Promise<ForwardSession> {
  const side = model.visionConfig.vision_cfg.image_size;
  return ForwardSession.create(
    model,
    {
      pixel_values: { dtype: 'float32', shape: [batchSize, 3, side, side] },
      input_ids: { dtype: 'int64', shape: [batchSize, tokens] },
    },
    (context, { pixel_values, input_ids }) => {
      const { imageEmbeds, textEmbeds } = model.embed(context, pixel_values!, input_ids!);
      return { image_embeds: imageEmbeds, text_embeds: textEmbeds };
    },
    session,
  );
}

/** (N, E) × (N, E) row-major embeddings → the N×N similarity matrix, rows = captions, columns = images. */
export function similarityMatrix(imageEmbeds: Float32Array, textEmbeds: Float32Array, count: number): Float32Array {
  const dim = imageEmbeds.length / count;
  const out = new Float32Array(count * count);
  for (let t = 0; t < count; t++) {
    for (let i = 0; i < count; i++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += textEmbeds[t * dim + k]! * imageEmbeds[i * dim + k]!;
      out[t * count + i] = dot;
    }
  }
  return out;
}

export const clipStage: StageDefinition<ClipConfig> = {
  name: 'clip',
  description: 'CLIP-mini: CLIPTextModel + open_clip vision tower, symmetric InfoNCE on world scenes and captions',
  schema: clipConfigSchema,

  async build(config, environment) {
    const tokenizer = await loadTokenizer(config);
    const side = config.vision.vision_cfg.image_size;
    const world = await openWorld(config.data, side, environment.report);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const preview = new CaptionedSceneStream(world, EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed, config.scenes);
    const previewScenes = Array.from({ length: config.previewCount }, (_, i) => preview.sample(i));
    environment.report(`CLIP-mini: ${stream.concepts().length} concepts, ${stream.subjects.length} subjects`);
    const model = initialModel(config);
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const labels: HostTensor<'int64'> = { dtype: 'int64', shape: [config.batchSize], data: BigInt64Array.from({ length: config.batchSize }, (_, i) => BigInt(i)) };
    const twinLossWeight = config.twinLossWeight ?? 0;
    const twinLoss = twinLossWeight > 0;
    const positionLossWeight = config.positionLossWeight ?? 0;
    // initialModel builds the prototypes exactly when the weight is positive.
    const positionLoss = model.position_prototypes !== null;
    if (twinLoss && config.batchSize % 2 !== 0) throw new Error(`twinLossWeight needs an even batchSize (twins are samples 2k and 2k + 1), got ${config.batchSize}`);
    if (twinLoss && !config.scenes.positionTwinFraction) throw new Error('twinLossWeight needs scenes.positionTwinFraction > 0: without twins the term is always zero');
    let embedder: ForwardSession | null = null;
    const parameters = model.stateDict();
    return {
      parameters,
      ...(config.trainTextEncoder === false ? { trainable: Object.keys(parameters).filter((key) => !key.startsWith('text.')) } : {}),
      // The position head is training-only, so a fine-tune of an exported CLIP-mini adds it.
      ...(positionLoss ? { addedByFineTune: ['position_prototypes'] } : {}),
      // The temperature is not exported; a fine-tune of an exported CLIP-mini starts at initialTemperature.
      trainingOnly: ['logit_scale'],
      // Biases, LayerNorms, embeddings and the temperature are not decayed (CLIP's practice).
      noWeightDecay: (key) => key.endsWith('.bias') || /norm|ln_|embedding|logit_scale/.test(key),
      batchSpec: {
        pixel_values: { dtype: 'float32', shape: [config.batchSize, 3, side, side] },
        input_ids: { dtype: 'int64', shape: [config.batchSize, config.trainTokens] },
        labels: { dtype: 'int64', shape: [config.batchSize] },
        ...(twinLoss ? { twin_pair_weights: { dtype: 'float32' as const, shape: [config.batchSize / 2] } } : {}),
        ...(positionLoss ? { image_positions: { dtype: 'int64' as const, shape: [config.batchSize] }, caption_positions: { dtype: 'int64' as const, shape: [config.batchSize] } } : {}),
      },
      loss: ({ graph, parameters, batch }) =>
        model.contrastiveLoss(
          contextFromValues(graph, model, parameters),
          {
            pixelValues: batch['pixel_values']!,
            inputIds: batch['input_ids']!,
            labels: batch['labels']!,
            ...(batch['twin_pair_weights'] ? { twinPairWeights: batch['twin_pair_weights'] } : {}),
            ...(positionLoss ? { imagePositions: batch['image_positions']!, captionPositions: batch['caption_positions']! } : {}),
          },
          positionLossWeight,
        ),
      async batch(step) {
        const scenes = stream.batch(step, config.batchSize);
        return {
          pixel_values: imagesToClipPixels(scenes.map((scene) => scene.image)),
          input_ids: encodeCaptions(tokenizer, scenes.map((scene) => scene.caption), config.trainTokens),
          labels,
          ...(twinLoss ? { twin_pair_weights: twinPairWeights(scenes, twinLossWeight) } : {}),
          ...(positionLoss ? scenePositionLabels(scenes) : {}),
        };
      },
      async sampleGrid(parameters) {
        embedder ??= await createEmbedder(model, previewScenes.length, config.trainTokens, session);
        const out = await embedder.run(parameters, {
          pixel_values: imagesToClipPixels(previewScenes.map((scene) => scene.image)),
          input_ids: encodeCaptions(tokenizer, previewScenes.map((scene) => scene.caption), config.trainTokens),
        });
        const similarity = similarityMatrix(out['image_embeds']!.data as Float32Array, out['text_embeds']!.data as Float32Array, previewScenes.length);
        return retrievalMatrixPng(previewScenes.map((scene) => scene.image), previewScenes.map((scene) => scene.image), similarity);
      },
      async release() {
        await embedder?.release();
      },
    };
  },

  /**
   * Writes `text_encoder/`, `vision/` and the tokenizer (`clip_tokenizer/`) into a pipeline folder,
   * with ATTRIBUTION.md, and `world.json`: the world the models were trained on, for evaluation.
   */
  async exportModel(config, parameters, directory) {
    await loadTokenizer(config);
    const model = initialModel(config);
    model.loadStateDict(parameters);
    const clipModel = config.exportAs === 'clip-model';
    if (clipModel) {
      const { text, vision } = clipMiniAsTransformers(model);
      const logitScale = (parameters['logit_scale']!.data as Float32Array)[0]!;
      await saveClipModel(directory, text, vision, { logitScale, dtype: 'F16' });
      for (const file of ['vocab.json', 'merges.txt']) await cp(join(config.tokenizer, file), join(directory, file));
    } else {
      await model.export(join(directory, 'text_encoder'), join(directory, 'vision'));
      const tokenizerDirectory = join(directory, 'clip_tokenizer');
      if (join(config.tokenizer) !== tokenizerDirectory) await cp(config.tokenizer, tokenizerDirectory, { recursive: true });
    }
    const world = await openWorld(config.data, config.vision.vision_cfg.image_size, () => undefined);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const attribution = attributionMarkdown(world.catalog, { styles: stream.styles(), patterns: true });
    const description: WorldDescription = { sceneSize: config.vision.vision_cfg.image_size, concepts: stream.concepts(), splits: config.data.splits, splitSeed: config.data.splitSeed };
    await writeFile(join(directory, WORLD_FILE), `${JSON.stringify(description, null, 2)}\n`);
    for (const folder of clipModel ? ['.'] : ['text_encoder', 'vision']) await writeFile(join(directory, folder, 'ATTRIBUTION.md'), attribution);
  },

  /** `text_encoder/` and `vision/` of a pipeline folder, or a CLIPModel folder; the temperature is not taken from either. */
  async importModel(config, directory) {
    const state = config.exportAs === 'clip-model' ? await clipMiniStateFromTransformers(initialModel(config), directory) : (await ClipMini.load(join(directory, 'text_encoder'), join(directory, 'vision'))).stateDict();
    const { logit_scale: _temperature, ...exported } = state;
    return exported;
  },
};
