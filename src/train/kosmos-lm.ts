// Kosmos-G stage 1, multimodal language modelling: the MLLM and the XConnector learn next-token
// prediction on world sequences — captions alone (`<s> caption </s>`), image → caption
// (`<s> <image>…</image> caption </s>`) and interleaved compositional sequences (the compose
// samples' text with one image block per entity). Cross-entropy on text positions only, through
// the LM head tied to the token embedding. The vision tower starts from the world's CLIP-mini and
// trains only its last block and ln_post, as in Kosmos-G's later stages.
//
// Every batch has B rows of L tokens and N image slots, so one graph serves every step: a sample
// whose images or tokens would not fit falls back to its caption alone.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import { cast, equal, logSoftmax, mul, not, sum, where } from '../graph/ops/elementwise.js';
import { gatherElements, reshape, unsqueeze } from '../graph/ops/shape.js';
import type { SessionOptions } from '../graph/session.js';
import { parseKosmosMllmConfig, PAD_INDEX } from '../models/kosmos_mllm.js';
import { OpenClipVisionModel } from '../models/openclip_vision.js';
import { parseXConnectorConfig } from '../models/xconnector.js';
import { contextFromValues, type TraceContext } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { loadKosmosTokenizer, type KosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { deriveSeed, Random } from '../util/random.js';
import { IMAGE_TOKEN } from '../world/instruct.js';
import { HELD_OUT_STYLE } from '../world/catalog.js';
import { createImage, drawOver, type RgbaImage } from '../world/image.js';
import type { World } from '../world/world.js';
import { baseConfigSchema, modelConfigSchema } from './config.js';
import { CaptionedSceneStream, captionedScenesSchema, subjectCaption, WORLD_FILE, type WorldDescription } from './captioned-scenes.js';
import { ForwardSession } from './forward.js';
import { imageGridPng } from './images.js';
import { clipPixels, encodeSequence, exportKosmosGComponents, KosmosGNetworks, packSequences, type SequenceValues, type TokenSequence } from './kosmos-g-networks.js';
import { readKosmosGComponents } from './kosmos-g-folder.js';
import type { StageDefinition } from './stage.js';
import { EVAL_SCENE_SEED, openWorld, worldDataSchema, WorldStream } from './world-data.js';

const weight = z.number().min(0);

export const kosmosLmConfigSchema = baseConfigSchema.extend({
  stage: z.literal('kosmos-lm'),
  /** The vision tower to start from (an open_clip folder: the world's CLIP-mini `vision/`). */
  vision: z.string().min(1),
  /** The MLLM tokenizer folder (kosmos-g-mini: the fairseq-layout BPE `tokenizer/`). */
  tokenizer: z.string().min(1),
  connector: modelConfigSchema(parseXConnectorConfig, 'connector'),
  /** MLLM config.json keys; vocab_size must equal the tokenizer's. */
  mllm: modelConfigSchema(parseKosmosMllmConfig, 'mllm'),
  /** L: tokens per row. */
  sequenceLength: z.number().int().positive(),
  /** N: image slots per batch. */
  imagesPerBatch: z.number().int().positive(),
  /**
   * Gain of the connector's `dense` at initialisation: U(±gain/√in) instead of PyTorch's U(±1/√in).
   * The vision tokens are L2-normalised, so with gain 1 `dense` gives them norm ≈ 0.7 against the
   * √D of the torch.randn latent queries they are attended with: the connector's output then
   * hardly depends on the image, and the MLLM learns to read images very slowly (measured: after
   * 150 image → caption steps, true against shuffled images lowered the caption loss by 0.03 nats
   * per token at gain 1 and by 0.46 at gain 20).
   */
  connectorDenseInitGain: z.number().positive().optional(),
  /** Relative frequency of each sequence kind per sample. */
  mixture: z.strictObject({ caption: weight, imageCaption: weight, interleaved: weight }).default({ caption: 1, imageCaption: 2, interleaved: 2 }),
  data: worldDataSchema,
  scenes: captionedScenesSchema.default({ singleSubjectFraction: 0.5, shortCaptionFraction: 0.5 }),
  /** Sample grids: held-out-style subjects with the concept the MLLM's likelihood ranks first. */
  previewCount: z.number().int().positive().default(8),
});

export type KosmosLmConfig = z.output<typeof kosmosLmConfigSchema>;

export const SEQUENCE_KINDS = ['caption', 'imageCaption', 'interleaved'] as const;
export type SequenceKind = (typeof SEQUENCE_KINDS)[number];

export interface LmSample {
  kind: SequenceKind;
  sequence: TokenSequence;
  images: RgbaImage[];
}

/** The kind of stage-1 sample `index`, drawn by the mixture weights. */
export function lmSequenceKind(config: Pick<KosmosLmConfig, 'mixture' | 'data'>, index: number): SequenceKind {
  const { mixture } = config;
  return SEQUENCE_KINDS[new Random(deriveSeed(config.data.seed ^ 0x1a4b, index)).weighted(SEQUENCE_KINDS.map((kind) => mixture[kind]))]!;
}

/** Builds stage-1 samples: sample i is a pure function of (data seed, i). */
export class LmSampleSource {
  private readonly scenes: CaptionedSceneStream;
  private readonly compose: WorldStream;

  constructor(
    world: World,
    private readonly config: KosmosLmConfig,
    private readonly tokenizer: KosmosTokenizer,
  ) {
    this.scenes = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    this.compose = new WorldStream(world, 'compose', config.data.seed ^ 0xc0de, config.data.splits, config.data.splitSeed);
  }

  get queries(): number {
    return this.config.connector.latent_query_num;
  }

  sample(index: number): LmSample {
    const kind = lmSequenceKind(this.config, index);
    if (kind === 'interleaved') {
      const sample = this.compose.sample(index);
      return { kind, sequence: encodeSequence(sample.text, sample.images.length, this.tokenizer, this.queries), images: sample.images };
    }
    const scene = this.scenes.sample(index);
    if (kind === 'imageCaption') return { kind, sequence: encodeSequence(`${IMAGE_TOKEN} ${scene.caption}`, 1, this.tokenizer, this.queries), images: [scene.image] };
    return { kind, sequence: encodeSequence(scene.caption, 0, this.tokenizer, this.queries), images: [] };
  }

  /** The caption-only form of sample `index` (the fallback when its images or tokens do not fit). */
  captionOnly(index: number): LmSample {
    const scene = this.scenes.sample(index);
    return { kind: 'caption', sequence: encodeSequence(scene.caption, 0, this.tokenizer, this.queries), images: [] };
  }

  /** The samples of 1-based `step`, within the batch's L tokens per row and N image slots. */
  batch(step: number): LmSample[] {
    const { batchSize, sequenceLength, imagesPerBatch } = this.config;
    let images = 0;
    return Array.from({ length: batchSize }, (_, k) => {
      const index = (step - 1) * batchSize + k;
      let sample = this.sample(index);
      if (images + sample.images.length > imagesPerBatch || sample.sequence.tokens.length > sequenceLength) sample = this.captionOnly(index);
      if (sample.sequence.tokens.length > sequenceLength) throw new Error(`sample ${index} has ${sample.sequence.tokens.length} caption tokens; raise sequenceLength above ${sequenceLength}`);
      images += sample.images.length;
      return sample;
    });
  }
}

/** The training-graph batch of samples: tokens, targets, image mask (B, L) and pixels (N, 3, S, S). */
export function lmBatchTensors(samples: readonly LmSample[], length: number, slots: number, imageSize: number): Record<string, HostTensor> {
  const packed = packSequences(samples.map((sample) => sample.sequence), length);
  return { ...packed, pixel_values: clipPixels(samples.flatMap((sample) => sample.images), slots, imageSize) };
}

function sequenceValues(batch: Readonly<Record<string, Value>>): SequenceValues {
  return { tokens: batch['tokens']!, imageMask: batch['image_mask']!, pixels: batch['pixel_values']! };
}

/** Mean next-token cross-entropy over the text targets (`<pad>` targets ignored). */
export function lmLoss(model: KosmosGNetworks, context: TraceContext, batch: Readonly<Record<string, Value>>): Value {
  return context.graph.scope('lm', () => {
    const values = sequenceValues(batch);
    const latents = model.imageLatents(context, values.pixels);
    return model.mllm.languageModelingLoss(context, values.tokens, batch['targets']!, { mask: values.imageMask, features: latents });
  });
}

/** Summed log-likelihood of each row's targets (B): the score captions are ranked by. */
function rowLogLikelihood(model: KosmosGNetworks, context: TraceContext, batch: Readonly<Record<string, Value>>): Value {
  const hidden = model.hiddenStates(context, sequenceValues(batch)); // (B, L, D)
  const logits = model.mllm.logits(context, hidden); // (B, L, V)
  const targets = batch['targets']!; // (B, L)
  const valid = not(equal(targets, PAD_INDEX));
  const picked = reshape(gatherElements(logSoftmax(logits, -1), unsqueeze(where(valid, targets, 0), -1), -1), targets.shape as number[]); // (B, L)
  return sum(mul(picked, cast(valid, 'float32')), [1]); // (B)
}

/** One candidate set compiled for scoring: its packed rows and the session that scores them. */
interface ScoredRows {
  session: ForwardSession;
  rows: ReturnType<typeof packSequences>;
}

async function scoringSession(model: KosmosGNetworks, sequences: TokenSequence[], images: number, session: SessionOptions): Promise<ScoredRows> {
  const length = Math.max(...sequences.map((sequence) => sequence.tokens.length));
  const size = model.configs.vision.vision_cfg.image_size;
  const forward = await ForwardSession.create(
    model,
    {
      tokens: { dtype: 'int64', shape: [sequences.length, length] },
      targets: { dtype: 'int64', shape: [sequences.length, length] },
      image_mask: { dtype: 'bool', shape: [sequences.length, length] },
      pixel_values: { dtype: 'float32', shape: [images, 3, size, size] },
    },
    (context, inputs) => ({ log_likelihood: rowLogLikelihood(model, context, inputs) }),
    session,
  );
  return { session: forward, rows: packSequences(sequences, length) };
}

export interface ConceptRankings {
  /** By the likelihood of `<s> <image> a {concept} </s>`. */
  likelihood: string[];
  /**
   * By that log-likelihood less the caption's own, `<s> a {concept} </s>` without the image
   * (pointwise mutual information): what the image adds, free of the captions' prior.
   */
  calibrated: string[];
}

/**
 * Ranks the world's concepts for images by the MLLM's likelihood of `<s> <image> a {concept} </s>`
 * (chance 1 / concepts), plain and calibrated by the caption prior: stage 1's measure of what the
 * MLLM reads from an image.
 */
export class CaptionRanker {
  /** The prior of the captions for the parameters last asked about. */
  private prior: { parameters: Readonly<Record<string, HostTensor>>; scores: Float32Array } | null = null;

  private constructor(
    private readonly withImage: ScoredRows,
    private readonly textOnly: ScoredRows,
    readonly concepts: readonly string[],
    private readonly imageSize: number,
  ) {}

  static async create(model: KosmosGNetworks, world: World, tokenizer: KosmosTokenizer, session: SessionOptions): Promise<CaptionRanker> {
    const concepts = [...world.catalog.concepts.map((concept) => concept.id)].sort();
    const captions = concepts.map((concept) => subjectCaption(world, concept));
    const withImage = await scoringSession(model, captions.map((caption) => encodeSequence(`${IMAGE_TOKEN} ${caption}`, 1, tokenizer, model.queries)), concepts.length, session);
    const textOnly = await scoringSession(model, captions.map((caption) => encodeSequence(caption, 0, tokenizer, model.queries)), 1, session);
    return new CaptionRanker(withImage, textOnly, concepts, model.configs.vision.vision_cfg.image_size);
  }

  /** Concepts ranked for one image, best first. */
  async rank(parameters: Readonly<Record<string, HostTensor>>, image: RgbaImage): Promise<ConceptRankings> {
    const count = this.concepts.length;
    const pixels = clipPixels(Array.from({ length: count }, () => image), count, this.imageSize);
    const scores = (await this.withImage.session.run(parameters, { ...this.withImage.rows, pixel_values: pixels }))['log_likelihood']!.data as Float32Array;
    if (this.prior?.parameters !== parameters) {
      const blank = clipPixels([], 1, this.imageSize);
      this.prior = { parameters, scores: (await this.textOnly.session.run(parameters, { ...this.textOnly.rows, pixel_values: blank }))['log_likelihood']!.data as Float32Array };
    }
    const prior = this.prior.scores;
    const order = (score: (i: number) => number) => this.concepts.map((concept, i) => [concept, score(i)] as const).sort((a, b) => b[1] - a[1]).map(([concept]) => concept);
    return { likelihood: order((i) => scores[i]!), calibrated: order((i) => scores[i]! - prior[i]!) };
  }

  async release(): Promise<void> {
    await Promise.all([this.withImage.session.release(), this.textOnly.session.release()]);
  }
}

/** Single subjects of the held-out style (OpenMoji) from the evaluation seed: the stage-1 probe images. */
export function heldOutStyleSubjects(world: World, config: Pick<KosmosLmConfig, 'data' | 'scenes'>, count: number): { image: RgbaImage; concept: string }[] {
  const stream = new CaptionedSceneStream(world, EVAL_SCENE_SEED, ['heldout'], config.data.splitSeed, config.scenes);
  const found: { image: RgbaImage; concept: string }[] = [];
  for (let index = 0; found.length < count && index < count * 50; index++) {
    const scene = stream.sceneWith(1, index);
    const subject = scene.spec.subjects[0]!;
    if (world.catalog.subjectById.get(subject.subject)?.style === HELD_OUT_STYLE) found.push({ image: scene.image, concept: subject.concept });
  }
  return found;
}

function buildNetworks(config: KosmosLmConfig, visionConfig: KosmosGNetworks['configs']['vision']): KosmosGNetworks {
  return new KosmosGNetworks({ vision: visionConfig, connector: config.connector, mllm: config.mllm }, new Random(deriveSeed(config.seed, 0x1a)));
}

export const kosmosLmStage: StageDefinition<KosmosLmConfig> = {
  name: 'kosmos-lm',
  description: 'Kosmos-G stage 1: MLLM + XConnector next-token prediction on captions, image → caption and interleaved world sequences',
  schema: kosmosLmConfigSchema,

  async build(config, environment) {
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const tokenizer = await loadKosmosTokenizer(config.tokenizer);
    if (config.mllm.vocab_size !== tokenizer.vocabularySize) throw new Error(`mllm.vocab_size ${config.mllm.vocab_size} differs from the tokenizer's ${tokenizer.vocabularySize} ids`);
    const vision = await OpenClipVisionModel.fromPretrained(config.vision);
    const model = buildNetworks(config, vision.config);
    model.img_model.loadStateDict(vision.stateDict());
    if (config.connectorDenseInitGain !== undefined) {
      const weight = model.img_connector.dense.weight.data.data as Float32Array;
      for (let i = 0; i < weight.length; i++) weight[i]! *= config.connectorDenseInitGain;
    }
    const imageSize = vision.config.vision_cfg.image_size;
    const world = await openWorld(config.data, imageSize, environment.report);
    const source = new LmSampleSource(world, config, tokenizer);
    const probes = heldOutStyleSubjects(world, config, config.previewCount);
    environment.report(`Kosmos-G stage 1: MLLM ${(model.mllm.parameterCount() / 1e6).toFixed(2)} M, connector ${(model.img_connector.parameterCount() / 1e6).toFixed(2)} M parameters`);
    const { batchSize: rows, sequenceLength: length, imagesPerBatch: slots } = config;
    let ranker: CaptionRanker | null = null;
    return {
      parameters: model.stateDict(),
      trainable: model.trainableKeys(),
      noWeightDecay: (key) => key.endsWith('.bias') || /norm|ln_|layer_norm|_ln\./.test(key),
      batchSpec: {
        tokens: { dtype: 'int64', shape: [rows, length] },
        targets: { dtype: 'int64', shape: [rows, length] },
        image_mask: { dtype: 'bool', shape: [rows, length] },
        pixel_values: { dtype: 'float32', shape: [slots, 3, imageSize, imageSize] },
      },
      loss: ({ graph, parameters, batch, dropoutSeed }) => lmLoss(model, contextFromValues(graph, model, parameters, dropoutSeed), batch),
      async batch(step) {
        return lmBatchTensors(source.batch(step), length, slots, imageSize);
      },
      async sampleGrid(parameters) {
        ranker ??= await CaptionRanker.create(model, world, tokenizer, session);
        const rows: RgbaImage[][] = [];
        for (const probe of probes) {
          const best = (await ranker.rank(parameters, probe.image)).likelihood[0]!;
          // Each row: the probe image, then the sprite of the concept ranked first (right or wrong).
          rows.push([probe.image, conceptThumbnail(world, best, imageSize)]);
        }
        return imageGridPng(rows);
      },
      async release() {
        await ranker?.release();
      },
    };
  },

  /** Writes `vision/`, `connector/`, `mllm/`, `tokenizer/` and the world description: the input of stage 2. */
  async exportModel(config, parameters, directory) {
    const vision = await OpenClipVisionModel.fromPretrained(config.vision);
    await exportKosmosGComponents(directory, { vision: vision.config, connector: config.connector, mllm: config.mllm }, parameters, config.tokenizer);
    const world = await openWorld(config.data, vision.config.vision_cfg.image_size, () => undefined);
    const description: WorldDescription = {
      sceneSize: vision.config.vision_cfg.image_size,
      concepts: world.catalog.concepts.map((concept) => concept.id).sort(),
      splits: config.data.splits,
      splitSeed: config.data.splitSeed,
    };
    await writeFile(join(directory, WORLD_FILE), `${JSON.stringify(description, null, 2)}\n`);
  },

  async importModel(_config, directory) {
    const components = await readKosmosGComponents(directory, { aligner: false });
    return components.stateDict();
  },
};

/** The concept's sprite in the held-out style on white, at the scene size (the grid's answer column). */
function conceptThumbnail(world: World, concept: string, size: number): RgbaImage {
  const subject = world.catalog.subjects.find((candidate) => candidate.concept === concept && candidate.style === HELD_OUT_STYLE) ?? world.catalog.subjects.find((candidate) => candidate.concept === concept)!;
  const sprite = world.sprites.fitted(subject.id, Math.round(size * 0.8));
  const canvas = createImage(size, size, [255, 255, 255, 255]);
  drawOver(canvas, sprite, Math.floor((size - sprite.width) / 2), Math.floor((size - sprite.height) / 2));
  return canvas;
}

