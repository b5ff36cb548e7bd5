// The DINO judge: a transformers ViTModel whose class-token feature tells one world subject from
// another — including another subject of the same concept in another style, which is what
// DreamBench's DINO score is for ("is this *my* backpack", not "is this a backpack"). Trained on
// subject identity with a contrastive loss on the feature the score reads:
//   a batch is S subjects (S/2 concepts × 2 styles, so every subject meets a same-concept
//   negative) seen twice, each view the subject alone at its own size and position on its own
//   background; f = L2-normalised last_hidden_state[:, 0];
//   loss = ½ (CE(f_a f_bᵀ / τ, diag) + CE(f_b f_aᵀ / τ, diag))   (symmetric InfoNCE, fixed τ)
// Views go through the protocol's own DINO transform (Resize R = round(S·256/224) bicubic →
// CenterCrop S → ImageNet mean/std, as eval/judges.ts applies it), so the judge is trained on
// exactly what it will be shown. `excludeSubjects` keeps the subjects it will judge out of
// training, so its figures on them are held-out figures.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { z } from 'zod';
import type { Value } from '../graph/graph.js';
import { add, matmul, mul } from '../graph/ops/elementwise.js';
import { crossEntropy, l2Normalize } from '../graph/ops/nn.js';
import { slice, transpose } from '../graph/ops/shape.js';
import type { SessionOptions } from '../graph/session.js';
import { ViTModel, parseViTConfig } from '../models/vit.js';
import { contextFromValues, type TraceContext } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { dinoPreprocessing, resizeCropBox } from '../pipeline/images.js';
import { deriveSeed, Random } from '../util/random.js';
import { attributionMarkdown } from '../world/attribution.js';
import type { RgbaImage } from '../world/image.js';
import { CaptionedSceneStream, captionedScenesSchema } from './captioned-scenes.js';
import { baseConfigSchema, modelConfigSchema } from './config.js';
import { ForwardSession } from './forward.js';
import { retrievalMatrixPng } from './images.js';
import type { StageDefinition } from './stage.js';
import { EVAL_SCENE_SEED, openWorld, worldDataSchema } from './world-data.js';

export const judgeDinoConfigSchema = baseConfigSchema
  .extend({
    stage: z.literal('judge-dino'),
    /** transformers ViTConfig keys; image_size is the crop the judge sees. */
    model: modelConfigSchema(parseViTConfig, 'model'),
    /** InfoNCE temperature τ. */
    temperature: z.number().positive().default(0.1),
    /** World scene side the views are rendered at before the DINO transform. */
    sceneSize: z.number().int().min(8).default(64),
    data: worldDataSchema,
    /** Only `excludeSubjects` is read: subjects never drawn. */
    scenes: captionedScenesSchema.default({ singleSubjectFraction: 1, shortCaptionFraction: 0 }),
    /** Subjects in the sample grid's retrieval matrix (evaluation-seed views). */
    previewCount: z.number().int().min(2).default(8),
  })
  .refine((config) => config.batchSize % 4 === 0, { message: 'batchSize must be a multiple of 4 (concepts × 2 styles × 2 views)', path: ['batchSize'] });

export type JudgeDinoConfig = z.output<typeof judgeDinoConfigSchema>;

function initialModel(config: JudgeDinoConfig): ViTModel {
  return new ViTModel(config.model, { random: new Random(deriveSeed(config.seed, 0xd1d0)) });
}

/** The protocol's DINO transform of world scenes: (B, 3, S, S) ImageNet-normalised pixels. */
export async function dinoPixels(images: readonly RgbaImage[], crop: number): Promise<HostTensor<'float32'>> {
  const p = dinoPreprocessing(crop);
  const plane = crop * crop;
  const data = new Float32Array(images.length * 3 * plane);
  for (const [b, image] of images.entries()) {
    const box = resizeCropBox(image.width, image.height, p);
    const rgb = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 4 } })
      .removeAlpha()
      .resize(box.width, box.height, { kernel: 'cubic', fit: 'fill' })
      .extract({ left: box.left, top: box.top, width: crop, height: crop })
      .raw()
      .toBuffer();
    for (let c = 0; c < 3; c++) for (let q = 0; q < plane; q++) data[(b * 3 + c) * plane + q] = (rgb[q * 3 + c]! / 255 - p.mean[c]!) / p.std[c]!;
  }
  return { dtype: 'float32', shape: [images.length, 3, crop, crop], data };
}

/** L2-normalised class-token features (B, D) of pixel values. */
function features(model: ViTModel, context: TraceContext, pixels: Value): Value {
  return l2Normalize(model.forward(context, pixels).clsFeature);
}

/** Symmetric InfoNCE between the first and second halves of a (2S, D) batch of unit features. */
export function viewContrastiveLoss(unit: Value, labels: Value, temperature: number): Value {
  const subjects = unit.shape[0]! as number / 2;
  const first = slice(unit, { starts: [0], ends: [subjects], axes: [0] }); // (S, D)
  const second = slice(unit, { starts: [subjects], ends: [2 * subjects], axes: [0] }); // (S, D)
  const logits = mul(matmul(first, transpose(second, [1, 0])), 1 / temperature); // (S first views, S second views)
  return mul(add(crossEntropy(logits, labels), crossEntropy(transpose(logits, [1, 0]), labels)), 0.5);
}

/** Subjects grouped by concept, only concepts with at least two subjects (sorted, for determinism). */
export function conceptsWithTwoStyles(stream: CaptionedSceneStream): string[][] {
  const byConcept = new Map<string, string[]>();
  for (const id of stream.subjects) {
    const concept = stream.world.catalog.subjectById.get(id)!.concept;
    byConcept.set(concept, [...(byConcept.get(concept) ?? []), id]);
  }
  return [...byConcept.keys()].sort().map((concept) => byConcept.get(concept)!).filter((group) => group.length >= 2);
}

/**
 * Batch `step`: S = B/2 subjects — S/2 distinct concepts × 2 distinct styles each — and their views,
 * the S first views then the S second views (view k and view S + k show subject k).
 */
export function batchViews(stream: CaptionedSceneStream, groups: readonly string[][], seed: number, step: number, batchSize: number): { subjects: string[]; views: RgbaImage[] } {
  const rng = new Random(deriveSeed(seed, step));
  const concepts = rng.shuffle([...groups.keys()]).slice(0, batchSize / 4);
  if (concepts.length < batchSize / 4) throw new Error(`a batch of ${batchSize} needs ${batchSize / 4} concepts with two styles; the world has ${groups.length}`);
  const subjects = concepts.flatMap((index) => rng.shuffle([...groups[index]!]).slice(0, 2));
  const first = subjects.map((subject) => stream.subjectScene(subject, rng).image);
  const second = subjects.map((subject) => stream.subjectScene(subject, rng).image);
  return { subjects, views: [...first, ...second] };
}

export const judgeDinoStage: StageDefinition<JudgeDinoConfig> = {
  name: 'judge-dino',
  description: 'DINO judge: a ViTModel whose class token tells world subjects apart (contrastive on two views of each subject)',
  schema: judgeDinoConfigSchema,

  async build(config, environment) {
    const world = await openWorld(config.data, config.sceneSize, environment.report);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const groups = conceptsWithTwoStyles(stream);
    environment.report(`DINO judge: ${stream.subjects.length} subjects, ${groups.length} concepts with two or more styles`);
    const crop = config.model.image_size;
    const model = initialModel(config);
    const subjects = config.batchSize / 2;
    const labels: HostTensor<'int64'> = { dtype: 'int64', shape: [subjects], data: BigInt64Array.from({ length: subjects }, (_, i) => BigInt(i)) };
    // Evaluation-seed views of previewCount subjects (rounded up to whole concept pairs): first views, then second views.
    const previewViews = batchViews(stream, groups, EVAL_SCENE_SEED, 1, 4 * Math.ceil(config.previewCount / 2)).views;
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    let embedder: ForwardSession | null = null;
    return {
      parameters: model.stateDict(),
      noWeightDecay: (key) => key.endsWith('.bias') || /layernorm|cls_token|position_embeddings/.test(key),
      batchSpec: {
        pixel_values: { dtype: 'float32', shape: [config.batchSize, 3, crop, crop] },
        labels: { dtype: 'int64', shape: [subjects] },
      },
      loss: ({ graph, parameters, batch }) => viewContrastiveLoss(features(model, contextFromValues(graph, model, parameters), batch['pixel_values']!), batch['labels']!, config.temperature),
      async batch(step) {
        return { pixel_values: await dinoPixels(batchViews(stream, groups, config.data.seed, step, config.batchSize).views, crop), labels };
      },
      async sampleGrid(parameters) {
        const count = previewViews.length / 2;
        embedder ??= await ForwardSession.create(model, { pixel_values: { dtype: 'float32', shape: [2 * count, 3, crop, crop] } }, (context, { pixel_values }) => ({ features: features(model, context, pixel_values!) }), session);
        const unit = (await embedder.run(parameters, { pixel_values: await dinoPixels(previewViews, crop) }))['features']!.data as Float32Array;
        const dim = unit.length / (2 * count);
        const similarity = new Float32Array(count * count);
        for (let r = 0; r < count; r++) {
          for (let c = 0; c < count; c++) {
            let dot = 0;
            for (let k = 0; k < dim; k++) dot += unit[r * dim + k]! * unit[(count + c) * dim + k]!;
            similarity[r * count + c] = dot;
          }
        }
        return retrievalMatrixPng(previewViews.slice(0, count), previewViews.slice(count), similarity);
      },
      async release() {
        await embedder?.release();
      },
    };
  },

  /** A transformers ViTModel folder (config.json, float16 model.safetensors) with ATTRIBUTION.md. */
  async exportModel(config, parameters, directory) {
    const model = initialModel(config);
    model.loadStateDict(parameters);
    await model.save(directory, { dtype: 'F16' });
    const world = await openWorld(config.data, config.sceneSize, () => undefined);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    await writeFile(join(directory, 'ATTRIBUTION.md'), attributionMarkdown(world.catalog, { styles: stream.styles(), patterns: true }));
  },

  async importModel(_config, directory) {
    return (await ViTModel.fromPretrained(directory)).stateDict();
  },
};
