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
// The generations are scored by a judge trained independently of the model: by default the
// embedded `models/judges` (its CLIPModel, clip/), or `--judge` — another judges folder, a
// CLIPModel folder, or a pipeline folder whose CLIP-mini is the instrument (the model's own one
// included, as earlier reports were measured). The retrieval and zero-shot figures are the model's
// own CLIP-mini's. A Kosmos-G folder is measured the same way, its text prompts going through
// MLLM → aligner M → U-Net; it has no CLIP-mini of its own, so those figures are the judge's.
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
import { kindOf } from './dreambench-data.js';
import { ClipJudgeProbe, type ConceptProbe, DEFAULT_JUDGES } from './clip-judge-probe.js';
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
   * What scores the generations: a judges folder (clip/ as a CLIPModel), a CLIPModel folder, or a
   * pipeline folder with a CLIP-mini (text_encoder, vision); its world.json, where it has one, must
   * be the model's world (scene size, split seed) with at least its concepts. Default: the embedded
   * models/judges.
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
    /** The judge that scored the generations (a CLIPModel folder, or a pipeline folder with a CLIP-mini). */
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

async function scoreSingles(probe: ConceptProbe, cases: readonly { image: RgbaImage; concept: string; position: Position }[]): Promise<GenerationScores> {
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

async function scorePairs(probe: ConceptProbe, cases: readonly { image: RgbaImage; concepts: string[] }[]): Promise<GenerationScores> {
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
async function positionTwinMatching(probe: ConceptProbe, world: World, description: WorldDescription, pairs: number): Promise<{ pairs: number; matched: number }> {
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
  const judgeSource = await resolveJudge(options.judge ?? DEFAULT_JUDGES);
  await checkJudgeWorld(judgeSource, description);
  const world = await openWorld({ seed: 0, splitSeed: description.splitSeed, splits: description.splits, concepts: description.concepts }, description.sceneSize, report);
  const stream = new CaptionedSceneStream(world, EVAL_SCENE_SEED, description.splits, description.splitSeed, { singleSubjectFraction: 0, shortCaptionFraction: 0 });
  const concepts = stream.concepts();

  report('VAE reconstruction PSNR');
  const vae = await AutoencoderKL.fromPretrained(join(directory, 'vae'));
  const vaeReport = await vaeReconstructionPsnr(vae, world, { scenesPerSplit: options.vaeScenesPerSplit ?? 64, splits: description.splits, splitSeed: description.splitSeed, session });

  report('CLIP-mini retrieval and zero-shot classification');
  const judgeDirectory = judgeSource.directory;
  const openJudge = (): Promise<ConceptProbe> =>
    judgeSource.kind === 'clip-model'
      ? ClipJudgeProbe.open(judgeDirectory, world, concepts, { device, ...(options.threads ? { threads: options.threads } : {}) })
      : ClipMiniProbe.open(judgeDirectory, world, concepts, session);
  // A Kosmos-G folder has no CLIP-mini: the judge is its probe. A judge naming the model's own folder is the model's probe, not a second copy of it.
  const ownJudge = !kosmosG && resolve(judgeDirectory) === resolve(directory);
  const probe: ConceptProbe = kosmosG ? await openJudge() : await ClipMiniProbe.open(directory, world, concepts, session);
  const judge = kosmosG || ownJudge ? probe : await openJudge().catch(async (error: unknown) => {
    await probe.release();
    throw error;
  });
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

export interface VaeEvaluationOptions {
  /** Scenes per split (default 64, as `eval world-sd`). */
  scenesPerSplit?: number;
  device?: Device;
  threads?: number;
}

/**
 * The VAE measure of `eval world-sd` for a VAE folder alone (a run's export, before any U-Net is
 * trained on its latents): reconstruction PSNR on the evaluation scenes of the world that
 * `worldDirectory`'s `world.json` describes, so figures compare with that model's card.
 */
export async function evaluateVae(vaeDirectory: string, worldDirectory: string, options: VaeEvaluationOptions = {}): Promise<VaeReconstructionReport> {
  const device = await resolveDevice(options.device ?? 'cpu');
  const session = { executionProvider: device, ...(options.threads ? { threads: options.threads } : {}) };
  const description = await readWorldDescription(worldDirectory, `${worldDirectory} has no ${WORLD_FILE}: --world must be a pipeline folder that describes its world (such as models/world-sd-mini)`);
  const world = await openWorld({ seed: 0, splitSeed: description.splitSeed, splits: description.splits, concepts: description.concepts }, description.sceneSize, () => undefined);
  const vae = await AutoencoderKL.fromPretrained(vaeDirectory);
  return vaeReconstructionPsnr(vae, world, { scenesPerSplit: options.scenesPerSplit ?? 64, splits: description.splits, splitSeed: description.splitSeed, session });
}

/** The `world.json` of a pipeline folder; `missing` is the error when it has none. */
async function readWorldDescription(directory: string, missing: string): Promise<WorldDescription> {
  const text = await readFile(join(directory, WORLD_FILE), 'utf8').catch(() => {
    throw new Error(missing);
  });
  return JSON.parse(text) as WorldDescription;
}

interface JudgeSource {
  kind: 'clip-model' | 'clip-mini';
  /** The CLIPModel folder, or the pipeline folder holding the CLIP-mini. */
  directory: string;
}

/** What `--judge` names: a judges folder (→ its clip/), a CLIPModel folder, or a pipeline folder with a CLIP-mini. */
async function resolveJudge(judge: string): Promise<JudgeSource> {
  const isFile = async (path: string) => (await kindOf(path)) === 'file';
  if (await isFile(join(judge, 'clip', 'config.json'))) return { kind: 'clip-model', directory: join(judge, 'clip') };
  if ((await isFile(join(judge, 'text_encoder', 'config.json'))) && (await isFile(join(judge, 'vision', 'config.json')))) return { kind: 'clip-mini', directory: judge };
  if (await isFile(join(judge, 'config.json'))) return { kind: 'clip-model', directory: judge };
  throw new Error(`judge ${judge} is neither a judges folder (clip/), a CLIPModel folder nor a pipeline folder with a CLIP-mini (text_encoder/, vision/)`);
}

/**
 * A judge trained on the world must have seen the model's world: the same scene size and split
 * seed and at least its concepts (it ranks only the model's). A CLIPModel without a world.json
 * (a real CLIP) is taken at its word; a CLIP-mini must have one.
 */
async function checkJudgeWorld(judge: JudgeSource, description: WorldDescription): Promise<void> {
  const hasWorld = (await kindOf(join(judge.directory, WORLD_FILE))) === 'file';
  if (!hasWorld && judge.kind === 'clip-model') return;
  const judgeWorld = await readWorldDescription(judge.directory, `judge ${judge.directory} has no ${WORLD_FILE}: a CLIP-mini judge must be a pipeline folder with text_encoder, vision and ${WORLD_FILE}`);
  const missing = description.concepts.filter((concept) => !judgeWorld.concepts.includes(concept));
  if (judgeWorld.sceneSize !== description.sceneSize || judgeWorld.splitSeed !== description.splitSeed || missing.length) {
    throw new Error(`judge ${judge.directory} was trained on another world (${missing.length ? `it lacks the concepts ${missing.join(', ')}` : `scene size or split seed differ from the model's ${WORLD_FILE}`})`);
  }
}
