// `eval world-sd`: the world's "Stable Diffusion" measured on scenes from the evaluation seed
// (captions never trained on):
//   - VAE reconstruction PSNR (src/eval/world.ts) per split;
//   - CLIP-mini caption → image top-1 retrieval among `retrievalScenes` scenes, and zero-shot
//     concept classification of single-subject scenes with bare-subject prompts ("a cat");
//   - U-Net-mini through the real text-to-image pipeline (DPM-Solver++, guidance): for
//     single-subject prompts, whether CLIP-mini ranks the prompted concept first among the trained
//     concepts, and whether the subject's centre (difference from the background, see
//     subject-locator.ts) lies nearest the prompted position; for two-subject prompts, whether both concepts are among
//     CLIP-mini's top 5. The same measures on the real scenes the prompts describe calibrate them.
// A Kosmos-G folder is measured the same way, its text prompts going through MLLM → aligner M →
// U-Net; it has no CLIP-mini of its own, so the judge's is the instrument (and the retrieval and
// zero-shot figures are the judge's).
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { resolveDevice, type Device } from '../graph/devices.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { readPipelineFolder } from '../pipeline/folder.js';
import { KosmosGPipeline } from '../pipeline/kosmos_g_pipeline.js';
import { TextToImagePipeline } from '../pipeline/text_to_image.js';
import { CaptionedSceneStream, WORLD_FILE, type CaptionedScene, type WorldDescription } from '../train/captioned-scenes.js';
import { EVAL_SCENE_SEED, openWorld } from '../train/world-data.js';
import type { RgbaImage } from '../world/image.js';
import type { World } from '../world/world.js';
import type { Position } from '../world/vocabulary.js';
import { ClipMiniProbe, dot } from './clip-mini-probe.js';
import { nearestPosition, positionFollowing, subjectCentre } from './subject-locator.js';
import { vaeReconstructionPsnr, type VaeReconstructionReport } from './world.js';

export const WORLD_SD_TARGETS = { vaePsnr: 28, retrievalTop1: 0.6, zeroShotTop1: 0.7, generatedConcept: 0.5, generatedPosition: 0.7 } as const;

export interface WorldSdOptions {
  vaeScenesPerSplit?: number;
  retrievalScenes?: number;
  zeroShotScenes?: number;
  /** Single-subject position-twin pairs for CLIP-mini's position measure. */
  twinPairs?: number;
  /**
   * A pipeline folder whose CLIP-mini (text_encoder, vision, world.json with the same concepts)
   * scores the generations instead of the model's own: U-Net measures of models with different
   * CLIP-minis then compare on one instrument.
   */
  judge?: string;
  singlePrompts?: number;
  twoSubjectPrompts?: number;
  steps?: number;
  /** Guidance scales to try on separate tuning prompts; the best (concept accuracy, then position) is used. */
  guidanceScales?: readonly number[];
  tuningPrompts?: number;
  device?: Device;
  threads?: number;
  report?: (message: string) => void;
}

export interface GeneratedCase {
  prompt: string;
  concepts: string[];
  positions: Position[];
  real: RgbaImage;
  generated: RgbaImage;
}

export interface GenerationScores {
  prompts: number;
  /** Single subject: CLIP-mini's top concept is the prompted one. */
  conceptTop1?: number;
  /** Single subject: the located centre is nearest the prompted position. */
  position?: number;
  /**
   * Single subject: least-squares slope of the located centre on the prompted one, per axis —
   * 1 when the subject moves as far as the prompt says, 0 when it ignores the position words.
   */
  positionSlope?: { x: number; y: number };
  /** Two subjects: both prompted concepts in CLIP-mini's top 5. */
  bothPresentTop5?: number;
}

export interface WorldSdMetrics {
  model: string;
  evaluationSeed: number;
  world: WorldDescription;
  vae: VaeReconstructionReport;
  clip: {
    retrievalScenes: number;
    captionToImageTop1: number;
    imageToCaptionTop1: number;
    zeroShotScenes: number;
    zeroShotTop1: number;
    zeroShotTop5: number;
    /** Single-subject position twins (one scene, its subject moved): pairs measured and the fraction whose captions and images CLIP-mini matches rather than swaps (chance 0.5). */
    twinPairs: number;
    twinPairsMatched: number;
  };
  unet: {
    /** The folder whose CLIP-mini scored the generations. */
    judge: string;
    steps: number;
    scheduler: 'dpm++';
    guidanceScale: number;
    tuning: { guidanceScale: number; conceptTop1: number; position: number }[];
    singleSubject: { generated: GenerationScores; realScenes: GenerationScores };
    twoSubjects: { generated: GenerationScores; realScenes: GenerationScores };
    secondsPerImage: number;
  };
  targets: typeof WORLD_SD_TARGETS;
}

export interface WorldSdResult {
  metrics: WorldSdMetrics;
  singleCases: GeneratedCase[];
  twoSubjectCases: GeneratedCase[];
}

const fraction = (hits: number, total: number) => (total ? hits / total : 0);

function rgbToRgba(image: { width: number; height: number; data: Uint8Array }): RgbaImage {
  const data = new Uint8Array(image.width * image.height * 4);
  for (let p = 0; p < image.width * image.height; p++) {
    data.set(image.data.subarray(p * 3, p * 3 + 3), p * 4);
    data[p * 4 + 3] = 255;
  }
  return { width: image.width, height: image.height, data };
}

async function scoreSingles(probe: ClipMiniProbe, cases: readonly { image: RgbaImage; concept: string; position: Position }[]): Promise<GenerationScores> {
  const embeds = await probe.embedImages(cases.map((item) => item.image));
  let [conceptHits, positionHits] = [0, 0];
  const located: { x: number; y: number }[] = [];
  for (const [k, item] of cases.entries()) {
    if (probe.rankConcepts(embeds[k]!)[0] === item.concept) conceptHits++;
    const centre = subjectCentre(item.image);
    if (nearestPosition(centre.x, centre.y) === item.position) positionHits++;
    located.push(centre);
  }
  const positionSlope = positionFollowing(cases.map((item) => item.position), located);
  return { prompts: cases.length, conceptTop1: fraction(conceptHits, cases.length), position: fraction(positionHits, cases.length), positionSlope };
}

async function scorePairs(probe: ClipMiniProbe, cases: readonly { image: RgbaImage; concepts: string[] }[]): Promise<GenerationScores> {
  const embeds = await probe.embedImages(cases.map((item) => item.image));
  const hits = cases.filter((item, k) => {
    const top = probe.rankConcepts(embeds[k]!).slice(0, 5);
    return item.concepts.every((concept) => top.includes(concept));
  }).length;
  return { prompts: cases.length, bothPresentTop5: fraction(hits, cases.length) };
}

/**
 * Does CLIP-mini see where a subject stands? Single-subject position twins of the evaluation seed
 * (same scene, the subject at another position, the caption's position words changed): a pair
 * counts as matched when image a · caption a + image b · caption b beats the swapped assignment.
 * Pairs whose subject found no other free position are plain samples and are skipped.
 */
async function positionTwinMatching(probe: ClipMiniProbe, world: World, description: WorldDescription, pairs: number): Promise<{ pairs: number; matched: number }> {
  const stream = new CaptionedSceneStream(world, EVAL_SCENE_SEED, description.splits, description.splitSeed, { singleSubjectFraction: 1, shortCaptionFraction: 0, positionTwinFraction: 1 });
  const scenes = Array.from({ length: 2 * pairs }, (_, i) => stream.sample(i));
  const imageEmbeds = await probe.embedImages(scenes.map((scene) => scene.image));
  const textEmbeds = await probe.embedTexts(scenes.map((scene) => scene.caption));
  let measured = 0;
  let matched = 0;
  for (let pair = 0; pair < pairs; pair++) {
    const [a, b] = [2 * pair, 2 * pair + 1];
    if (!scenes[a]!.positionTwin) continue;
    measured++;
    const straight = dot(textEmbeds[a]!, imageEmbeds[a]!) + dot(textEmbeds[b]!, imageEmbeds[b]!);
    const swapped = dot(textEmbeds[a]!, imageEmbeds[b]!) + dot(textEmbeds[b]!, imageEmbeds[a]!);
    if (straight > swapped) matched++;
  }
  return { pairs: measured, matched };
}

function caseOf(scene: CaptionedScene, generated: RgbaImage): GeneratedCase {
  return {
    prompt: scene.caption,
    concepts: scene.spec.subjects.map((subject) => subject.concept),
    positions: scene.spec.subjects.map((subject) => subject.position),
    real: scene.image,
    generated,
  };
}

export async function evaluateWorldSd(directory: string, options: WorldSdOptions = {}): Promise<WorldSdResult> {
  const report = options.report ?? (() => undefined);
  const device = await resolveDevice(options.device ?? 'cpu');
  const session = { executionProvider: device, ...(options.threads ? { threads: options.threads } : {}) };
  const description = await readWorldDescription(directory, `${directory} has no ${WORLD_FILE} (written by 'train export' of the CLIP stage): the evaluation needs the concepts the models were trained on`);
  const kosmosG = (await readPipelineFolder(directory)).className === 'KosmosGPipeline';
  if (kosmosG && !options.judge) throw new Error(`${directory} is a Kosmos-G folder without a CLIP-mini of its own; name a world-sd folder with --judge`);
  if (options.judge) await checkJudgeWorld(options.judge, description);
  const world = await openWorld({ seed: 0, splitSeed: description.splitSeed, splits: description.splits, concepts: description.concepts }, description.sceneSize, report);
  const stream = new CaptionedSceneStream(world, EVAL_SCENE_SEED, description.splits, description.splitSeed, { singleSubjectFraction: 0, shortCaptionFraction: 0 });
  const concepts = stream.concepts();

  report('VAE reconstruction PSNR');
  const vae = await AutoencoderKL.fromPretrained(join(directory, 'vae'));
  const vaeReport = await vaeReconstructionPsnr(vae, world, { scenesPerSplit: options.vaeScenesPerSplit ?? 64, splits: description.splits, splitSeed: description.splitSeed, session });

  report('CLIP-mini retrieval and zero-shot classification');
  const judgeDirectory = options.judge ?? directory;
  const probe = await ClipMiniProbe.open(kosmosG ? judgeDirectory : directory, world, concepts, session);
  // A judge naming the model's own folder is the model's probe, not a second copy of it.
  const judge = kosmosG || resolve(judgeDirectory) === resolve(directory) ? probe : await ClipMiniProbe.open(judgeDirectory, world, concepts, session);
  try {
    const retrievalCount = options.retrievalScenes ?? 100;
    const scenes = Array.from({ length: retrievalCount }, (_, i) => stream.sample(i));
    const imageEmbeds = await probe.embedImages(scenes.map((scene) => scene.image));
    const textEmbeds = await probe.embedTexts(scenes.map((scene) => scene.caption));
    const argmax = (scores: number[]) => scores.indexOf(Math.max(...scores));
    const captionToImage = textEmbeds.filter((text, t) => argmax(imageEmbeds.map((image) => dot(text, image))) === t).length;
    const imageToCaption = imageEmbeds.filter((image, i) => argmax(textEmbeds.map((text) => dot(text, image))) === i).length;
    const zeroShotCount = options.zeroShotScenes ?? 200;
    const singles = Array.from({ length: zeroShotCount }, (_, i) => stream.sceneWith(1, i));
    const singleEmbeds = await probe.embedImages(singles.map((scene) => scene.image));
    const rankings = singleEmbeds.map((embed) => probe.rankConcepts(embed));
    const zeroShotTop1 = singles.filter((scene, k) => rankings[k]![0] === scene.spec.subjects[0]!.concept).length;
    const zeroShotTop5 = singles.filter((scene, k) => rankings[k]!.slice(0, 5).includes(scene.spec.subjects[0]!.concept)).length;
    const twins = await positionTwinMatching(probe, world, description, options.twinPairs ?? 100);

    report('U-Net-mini generations');
    const loadOptions = { device, ...(options.threads ? { threads: options.threads } : {}) };
    const pipeline = kosmosG ? await KosmosGPipeline.fromPretrained(directory, loadOptions) : await TextToImagePipeline.fromPretrained(directory, loadOptions);
    const steps = options.steps ?? 25;
    let generatedImages = 0;
    const started = performance.now();
    const generate = async (prompt: string, guidanceScale: number, seed: number) => {
      const { images } = await pipeline.generate({ prompt, steps, guidanceScale, seed, scheduler: 'dpm++' });
      generatedImages++;
      return rgbToRgba(images[0]!);
    };
    try {
      // Tuning prompts come after the reported ones in the same single-subject sequence: disjoint from them.
      const singleCount = options.singlePrompts ?? 100;
      const tuningScenes = Array.from({ length: options.tuningPrompts ?? 24 }, (_, i) => stream.sceneWith(1, singleCount + 10000 + i));
      const tuning: WorldSdMetrics['unet']['tuning'] = [];
      for (const guidanceScale of options.guidanceScales ?? [2, 3, 4, 5, 7]) {
        const cases = [];
        for (const [i, scene] of tuningScenes.entries()) {
          cases.push({ image: await generate(scene.caption, guidanceScale, i), concept: scene.spec.subjects[0]!.concept, position: scene.spec.subjects[0]!.position });
        }
        const scores = await scoreSingles(judge, cases);
        tuning.push({ guidanceScale, conceptTop1: scores.conceptTop1!, position: scores.position! });
        report(`guidance ${guidanceScale}: concept ${(scores.conceptTop1! * 100).toFixed(0)}%, position ${(scores.position! * 100).toFixed(0)}%`);
      }
      const best = [...tuning].sort((a, b) => b.conceptTop1 - a.conceptTop1 || b.position - a.position)[0]!.guidanceScale;

      const singleScenes = Array.from({ length: singleCount }, (_, i) => stream.sceneWith(1, i));
      const singleCases: GeneratedCase[] = [];
      for (const [i, scene] of singleScenes.entries()) singleCases.push(caseOf(scene, await generate(scene.caption, best, i)));
      const asSingle = (image: 'real' | 'generated') => singleCases.map((item) => ({ image: item[image], concept: item.concepts[0]!, position: item.positions[0]! }));
      const pairScenes = Array.from({ length: options.twoSubjectPrompts ?? 40 }, (_, i) => stream.sceneWith(2, i));
      const twoSubjectCases: GeneratedCase[] = [];
      for (const [i, scene] of pairScenes.entries()) twoSubjectCases.push(caseOf(scene, await generate(scene.caption, best, i)));
      const asPair = (image: 'real' | 'generated') => twoSubjectCases.map((item) => ({ image: item[image], concepts: item.concepts }));
      const secondsPerImage = (performance.now() - started) / 1000 / generatedImages;

      const metrics: WorldSdMetrics = {
        model: directory,
        evaluationSeed: EVAL_SCENE_SEED,
        world: description,
        vae: vaeReport,
        clip: {
          retrievalScenes: retrievalCount,
          captionToImageTop1: fraction(captionToImage, retrievalCount),
          imageToCaptionTop1: fraction(imageToCaption, retrievalCount),
          zeroShotScenes: zeroShotCount,
          zeroShotTop1: fraction(zeroShotTop1, zeroShotCount),
          zeroShotTop5: fraction(zeroShotTop5, zeroShotCount),
          twinPairs: twins.pairs,
          twinPairsMatched: fraction(twins.matched, twins.pairs),
        },
        unet: {
          judge: judgeDirectory,
          steps,
          scheduler: 'dpm++',
          guidanceScale: best,
          tuning,
          singleSubject: { generated: await scoreSingles(judge, asSingle('generated')), realScenes: await scoreSingles(judge, asSingle('real')) },
          twoSubjects: { generated: await scorePairs(judge, asPair('generated')), realScenes: await scorePairs(judge, asPair('real')) },
          secondsPerImage,
        },
        targets: WORLD_SD_TARGETS,
      };
      return { metrics, singleCases, twoSubjectCases };
    } finally {
      await pipeline.dispose();
    }
  } finally {
    await probe.release();
    if (judge !== probe) await judge.release();
  }
}

/** The `world.json` of a pipeline folder; `missing` is the error when it has none. */
async function readWorldDescription(directory: string, missing: string): Promise<WorldDescription> {
  const text = await readFile(join(directory, WORLD_FILE), 'utf8').catch(() => {
    throw new Error(missing);
  });
  return JSON.parse(text) as WorldDescription;
}

/** A judge's CLIP-mini must know the same concepts of the same world as the model. */
async function checkJudgeWorld(judge: string, description: WorldDescription): Promise<void> {
  const judgeWorld = await readWorldDescription(judge, `judge ${judge} has no ${WORLD_FILE}: it must be a pipeline folder with a CLIP-mini (text_encoder, vision, ${WORLD_FILE})`);
  const same = (a: readonly unknown[], b: readonly unknown[]) => a.length === b.length && a.every((value, i) => value === b[i]);
  if (judgeWorld.sceneSize !== description.sceneSize || judgeWorld.splitSeed !== description.splitSeed || !same(judgeWorld.concepts, description.concepts)) {
    throw new Error(`judge ${judge} was trained on another world (scene size, split seed or concepts differ from the model's ${WORLD_FILE})`);
  }
}
