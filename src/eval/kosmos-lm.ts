// `eval kosmos-lm`: what Kosmos-G's stage-1 MLLM reads from images and text, on data it never
// trained on (the evaluation seed, held-out split):
//   - concept naming: for single subjects in the held-out style (OpenMoji), the world's concepts
//     ranked by the likelihood of `<s> <image> a {concept} </s>`, plain and less the caption's own
//     likelihood without the image; top-1 and top-5 (chance 1/32 and 5/32);
//   - perplexity: exp of the mean next-token cross-entropy on the text of evaluation-seed
//     sequences in the stage-1 mixture (captions, image → caption, interleaved), on the held-out
//     split (new style and concept words) and on the train split (validation).
import { join } from 'node:path';
import { resolveDevice, type Device } from '../graph/devices.js';
import type { SessionOptions } from '../graph/session.js';
import type { Value } from '../graph/graph.js';
import { cast, equal, not, sum } from '../graph/ops/elementwise.js';
import { PAD_INDEX } from '../models/kosmos_mllm.js';
import { loadKosmosTokenizer, type KosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import type { SplitName } from '../world/splits.js';
import type { World } from '../world/world.js';
import { readConfigJson } from '../io/config-json.js';
import { WORLD_FILE, type WorldDescription } from '../train/captioned-scenes.js';
import { ForwardSession } from '../train/forward.js';
import { readKosmosGComponents } from '../train/kosmos-g-folder.js';
import { CaptionRanker, heldOutStyleSubjects, lmBatchTensors, lmLoss, LmSampleSource, type KosmosLmConfig } from '../train/kosmos-lm.js';
import { EVAL_SCENE_SEED, openWorld } from '../train/world-data.js';

export interface KosmosLmEvalOptions {
  /** Held-out-style single subjects to name. */
  images?: number;
  /** Batches of held-out sequences for the perplexity. */
  perplexityBatches?: number;
  device?: Device;
  threads?: number;
  report?: (message: string) => void;
}

export interface KosmosLmMetrics {
  model: string;
  evaluationSeed: number;
  concepts: number;
  images: number;
  conceptTop1: number;
  conceptTop5: number;
  /** Ranked by the log-likelihood less the caption's own without the image (pointwise mutual information). */
  calibratedConceptTop1: number;
  calibratedConceptTop5: number;
  /** Sequences per split in each perplexity. */
  sequences: number;
  /** The held-out split: the held-out style and concepts, whose words stage 1 never read. */
  heldOutCrossEntropy: number;
  heldOutPerplexity: number;
  /** Unseen sequences of the train split (the vocabulary stage 1 read). */
  validationCrossEntropy: number;
  validationPerplexity: number;
}

const ROWS = 16;

export async function evaluateKosmosLm(directory: string, options: KosmosLmEvalOptions = {}): Promise<KosmosLmMetrics> {
  const report = options.report ?? (() => undefined);
  const device = await resolveDevice(options.device ?? 'cpu');
  const session: SessionOptions = { executionProvider: device, ...(options.threads ? { threads: options.threads } : {}) };
  const description = (await readConfigJson(join(directory, WORLD_FILE))) as unknown as WorldDescription;
  const networks = await readKosmosGComponents(directory, { aligner: false });
  const tokenizer = await loadKosmosTokenizer(join(directory, 'tokenizer'));
  const imageSize = networks.configs.vision.vision_cfg.image_size;
  const world = await openWorld({ seed: 0, splitSeed: description.splitSeed, splits: ['heldout'], concepts: description.concepts }, imageSize, report);
  const parameters = networks.stateDict();

  report('concept naming of held-out-style subjects');
  const scenes = { singleSubjectFraction: 0.5, shortCaptionFraction: 0.5 };
  const probes = heldOutStyleSubjects(world, { data: { seed: EVAL_SCENE_SEED, splitSeed: description.splitSeed, splits: ['heldout'] }, scenes }, options.images ?? 200);
  const ranker = await CaptionRanker.create(networks, world, tokenizer, session);
  let [top1, top5, calibratedTop1, calibratedTop5] = [0, 0, 0, 0];
  try {
    for (const probe of probes) {
      const { likelihood, calibrated } = await ranker.rank(parameters, probe.image);
      if (likelihood[0] === probe.concept) top1++;
      if (likelihood.slice(0, 5).includes(probe.concept)) top5++;
      if (calibrated[0] === probe.concept) calibratedTop1++;
      if (calibrated.slice(0, 5).includes(probe.concept)) calibratedTop5++;
    }
  } finally {
    await ranker.release();
  }

  report('perplexity on held-out and validation sequences');
  const batches = options.perplexityBatches ?? 16;
  const heldOut = await perplexity(networks, world, tokenizer, { split: 'heldout', splitSeed: description.splitSeed, batches, session });
  const validationWorld = await openWorld({ seed: 0, splitSeed: description.splitSeed, splits: ['train'], concepts: description.concepts }, imageSize, report);
  const validation = await perplexity(networks, validationWorld, tokenizer, { split: 'train', splitSeed: description.splitSeed, batches, session });
  return {
    model: directory,
    evaluationSeed: EVAL_SCENE_SEED,
    concepts: ranker.concepts.length,
    images: probes.length,
    conceptTop1: top1 / probes.length,
    conceptTop5: top5 / probes.length,
    calibratedConceptTop1: calibratedTop1 / probes.length,
    calibratedConceptTop5: calibratedTop5 / probes.length,
    sequences: batches * ROWS,
    heldOutCrossEntropy: heldOut,
    heldOutPerplexity: Math.exp(heldOut),
    validationCrossEntropy: validation,
    validationPerplexity: Math.exp(validation),
  };
}

/**
 * Mean next-token cross-entropy per text target over `batches` batches of evaluation-seed
 * sequences of one split, in the stage-1 mixture.
 */
async function perplexity(
  networks: Awaited<ReturnType<typeof readKosmosGComponents>>,
  world: World,
  tokenizer: KosmosTokenizer,
  options: { split: SplitName; splitSeed: number; batches: number; session: SessionOptions },
): Promise<number> {
  const imageSize = networks.configs.vision.vision_cfg.image_size;
  const config = {
    batchSize: ROWS,
    sequenceLength: 128,
    imagesPerBatch: 3 * ROWS,
    connector: networks.configs.connector,
    mixture: { caption: 1, imageCaption: 2, interleaved: 2 },
    data: { seed: EVAL_SCENE_SEED, splitSeed: options.splitSeed, splits: [options.split] },
    scenes: { singleSubjectFraction: 0.5, shortCaptionFraction: 0.5 },
  } as unknown as KosmosLmConfig;
  const source = new LmSampleSource(world, config, tokenizer);
  const batchOf = (step: number) => lmBatchTensors(source.batch(step), config.sequenceLength, config.imagesPerBatch, imageSize);
  const first = batchOf(1);
  const specs = Object.fromEntries(Object.entries(first).map(([name, tensor]) => [name, { dtype: tensor.dtype, shape: tensor.shape }]));
  const forward = await ForwardSession.create(networks, specs, (context, inputs) => ({ loss: lmLoss(networks, context, inputs), target_count: textTargetCount(inputs['targets']!) }), options.session);
  const parameters = networks.stateDict();
  let [lossSum, tokenSum] = [0, 0];
  try {
    for (let step = 1; step <= options.batches; step++) {
      const outputs = await forward.run(parameters, step === 1 ? first : batchOf(step));
      const tokens = Number(outputs['target_count']!.data[0]);
      lossSum += Number(outputs['loss']!.data[0]) * tokens;
      tokenSum += tokens;
    }
  } finally {
    await forward.release();
  }
  return lossSum / tokenSum;
}

/** The number of text targets in a batch (the weight of its mean loss). */
function textTargetCount(targets: Value): Value {
  return sum(cast(not(equal(targets, PAD_INDEX)), 'float32'));
}
