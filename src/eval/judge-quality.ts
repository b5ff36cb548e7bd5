// How good are the judges? `eval judges` measures a judges folder (clip/ + dino/) on subjects it
// never trained on — the world DreamBench's (the judges' configs exclude exactly those) — and,
// optionally, on the real DreamBench photos:
//   AUC, other subjects      the feature's cosine between a subject's reference and its true
//                            scenes (positives) against the reference and other subjects' true
//                            scenes (negatives): ROC AUC, 1 = always ranks the same subject higher
//   AUC, same concept        the same positives against the reference and the *same concept in the
//                            world's other styles* (an OpenMoji cat against a noto cat): does the
//                            feature see the subject, not only its concept
//   concept / style, 1-NN    each true scene's nearest image in a gallery (the held-out references
//                            and the other styles' views); concept: the query's own reference left
//                            out; style: every image of the query's concept left out
//   CLIP zero-shot           concept top-1 among the world's concepts ("a cat"), style top-1 among
//                            the concept's styles ("an openmoji cat"), on the true scenes
//   real DreamBench          every pair of photos: same subject against other subjects, and against
//                            other subjects of the same class (dog against dog2)
import { join } from 'node:path';
import type { Device } from '../graph/devices.js';
import { CaptionedSceneStream } from '../train/captioned-scenes.js';
import { EVAL_SCENE_SEED, openWorld } from '../train/world-data.js';
import { deriveSeed, hashString, Random } from '../util/random.js';
import { encodePng } from '../world/image.js';
import { type DreamBenchData, readDreamBench } from './dreambench-data.js';
import { cosine, loadJudges, type Judges } from './judges.js';
import { readWorldDreamBench } from './world-dreambench.js';

/** ROC AUC of scores: P(positive > negative) + ½ P(tie), by ranks (Mann–Whitney U). */
export function rocAuc(positives: readonly number[], negatives: readonly number[]): number {
  if (!positives.length || !negatives.length) throw new Error('an AUC needs positives and negatives');
  const all = [...positives.map((score) => ({ score, positive: true })), ...negatives.map((score) => ({ score, positive: false }))].sort((a, b) => a.score - b.score);
  let rankSum = 0;
  for (let start = 0; start < all.length; ) {
    let end = start;
    while (end + 1 < all.length && all[end + 1]!.score === all[start]!.score) end++;
    const averageRank = (start + end) / 2 + 1; // ties share their mean 1-based rank
    for (let k = start; k <= end; k++) if (all[k]!.positive) rankSum += averageRank;
    start = end + 1;
  }
  return (rankSum - (positives.length * (positives.length + 1)) / 2) / (positives.length * negatives.length);
}

/** Index of the gallery item nearest `query` by cosine among those `allowed` admits, or −1. */
function nearest(query: Float32Array, gallery: readonly Float32Array[], allowed: (index: number) => boolean): number {
  let [best, bestScore] = [-1, -Infinity];
  gallery.forEach((item, index) => {
    if (!allowed(index)) return;
    const score = cosine(query, item);
    if (score > bestScore) [best, bestScore] = [index, score];
  });
  return best;
}

export interface FeatureQuality {
  aucOtherSubjects: number;
  aucSameConceptOtherStyle: number;
  conceptNearest: number;
  styleNearest: number;
}

export interface RealQuality {
  subjects: number;
  images: number;
  dino: { aucOtherSubjects: number; aucSameClass: number };
  clipImage: { aucOtherSubjects: number; aucSameClass: number };
}

export interface JudgeQuality {
  judges: string;
  data: string;
  heldOutSubjects: number;
  /** Reference–true-scene pairs of one subject. */
  positives: number;
  /** Reference–true-scene pairs of two subjects. */
  negatives: number;
  /** Reference–view pairs of one concept in two styles. */
  sameConceptNegatives: number;
  dino: FeatureQuality;
  clipImage: FeatureQuality;
  clipZeroShot: { images: number; conceptTop1: number; styleTop1: number; concepts: number };
  real: RealQuality | null;
}

export interface JudgeQualityOptions {
  judges: string;
  /** A world DreamBench folder (data build --kind dreambench). */
  data: string;
  /** A real DreamBench folder, optional. */
  real?: string;
  /** Rendered views per other-style subject of each held-out concept. */
  views?: number;
  device?: Device;
  threads?: number;
  report?: (message: string) => void;
}

interface GalleryItem {
  concept: string;
  style: string;
  /** The held-out subject whose reference this is, or null for another style's view. */
  subject: string | null;
}

async function features(judges: Judges, images: readonly (string | Buffer)[]): Promise<{ dino: Float32Array[]; clip: Float32Array[] }> {
  return { dino: await judges.dino.features(images), clip: await judges.clip.embedImages(images) };
}

export async function evaluateJudges(options: JudgeQualityOptions): Promise<JudgeQuality> {
  const report = options.report ?? (() => undefined);
  const data = await readDreamBench(options.data);
  const world = await readWorldDreamBench(data);
  if (!world) throw new Error(`${options.data} is not a world DreamBench (no world-dreambench.json): the judges are measured on held-out world subjects`);
  const real = options.real ? await readDreamBench(options.real) : null;
  const judges = await loadJudges(options.judges, { device: options.device, threads: options.threads });
  try {
    const subjects = data.subjects.map((subject) => ({ ...subject, world: world.file.subjects[subject.subject]! }));
    report(`rendering the other styles of ${subjects.length} held-out subjects' concepts`);
    const description = world.file.world;
    const worldModel = await openWorld({ seed: 0, splitSeed: description.splitSeed, splits: description.splits, concepts: description.concepts }, description.sceneSize, report);
    const stream = new CaptionedSceneStream(worldModel, EVAL_SCENE_SEED, ['train', 'heldout'], description.splitSeed, { singleSubjectFraction: 1, shortCaptionFraction: 0 });
    const views = options.views ?? 4;
    const viewItems: (GalleryItem & { png: Buffer })[] = [];
    for (const subject of subjects) {
      for (const style of Object.keys(subject.world.style_prompts).filter((style) => style !== subject.world.style)) {
        const id = `${style}:${subject.world.concept}`;
        if (!stream.subjects.includes(id)) continue;
        const rng = new Random(deriveSeed(EVAL_SCENE_SEED, hashString(id)));
        for (let v = 0; v < views; v++) viewItems.push({ concept: subject.world.concept, style, subject: null, png: await encodePng(stream.subjectScene(id, rng).image) });
      }
    }
    report(`judging ${subjects.length} references, ${subjects.length * subjects[0]!.world.scenes.length} true scenes and ${viewItems.length} other-style views`);
    const references = await features(judges, subjects.map((subject) => join(data.directory, subject.reference)));
    const scenes = subjects.flatMap((subject, s) => subject.world.scenes.map((file) => ({ s, path: join(data.directory, file) })));
    const sceneFeatures = await features(judges, scenes.map((scene) => scene.path));
    const viewFeatures = await features(judges, viewItems.map((item) => item.png));
    const gallery: GalleryItem[] = [...subjects.map((subject) => ({ concept: subject.world.concept, style: subject.world.style, subject: subject.subject })), ...viewItems];

    const quality = (kind: 'dino' | 'clip'): FeatureQuality => {
      const [positives, negatives, sameConcept] = [[] as number[], [] as number[], [] as number[]];
      scenes.forEach((scene, k) => {
        subjects.forEach((_, s) => (s === scene.s ? positives : negatives).push(cosine(references[kind][s]!, sceneFeatures[kind][k]!)));
      });
      viewItems.forEach((item, v) => {
        subjects.forEach((subject, s) => {
          if (subject.world.concept === item.concept) sameConcept.push(cosine(references[kind][s]!, viewFeatures[kind][v]!));
        });
      });
      const galleryFeatures = [...references[kind], ...viewFeatures[kind]];
      let [conceptHits, styleHits] = [0, 0];
      scenes.forEach((scene, k) => {
        const own = subjects[scene.s]!;
        const byConcept = nearest(sceneFeatures[kind][k]!, galleryFeatures, (g) => gallery[g]!.subject !== own.subject);
        if (gallery[byConcept]?.concept === own.world.concept) conceptHits++;
        const byStyle = nearest(sceneFeatures[kind][k]!, galleryFeatures, (g) => gallery[g]!.concept !== own.world.concept);
        if (gallery[byStyle]?.style === own.world.style) styleHits++;
      });
      return { aucOtherSubjects: rocAuc(positives, negatives), aucSameConceptOtherStyle: rocAuc(positives, sameConcept), conceptNearest: conceptHits / scenes.length, styleNearest: styleHits / scenes.length };
    };
    const dino = quality('dino');
    const clipImage = quality('clip');

    const conceptIds = Object.keys(world.file.concepts);
    const conceptTexts = await judges.clip.embedTexts(conceptIds.map((id) => world.file.concepts[id]!.prompt));
    // Each subject's style prompts, embedded once for its 25 scenes.
    const styleCandidates = await Promise.all(subjects.map(async (subject) => {
      const styles = Object.keys(subject.world.style_prompts);
      return { styles, texts: await judges.clip.embedTexts(styles.map((style) => subject.world.style_prompts[style]!)) };
    }));
    let [conceptHits, styleHits] = [0, 0];
    for (const [k, scene] of scenes.entries()) {
      const subject = subjects[scene.s]!;
      const embed = sceneFeatures.clip[k]!;
      if (conceptIds[nearest(embed, conceptTexts, () => true)] === subject.world.concept) conceptHits++;
      const { styles, texts } = styleCandidates[scene.s]!;
      if (styles[nearest(embed, texts, () => true)] === subject.world.style) styleHits++;
    }
    const clipZeroShot = { images: scenes.length, conceptTop1: conceptHits / scenes.length, styleTop1: styleHits / scenes.length, concepts: conceptIds.length };

    return {
      judges: options.judges,
      data: options.data,
      heldOutSubjects: subjects.length,
      positives: scenes.length,
      negatives: scenes.length * (subjects.length - 1),
      sameConceptNegatives: viewItems.length,
      dino,
      clipImage,
      clipZeroShot,
      real: real ? await realQuality(judges, real, report) : null,
    };
  } finally {
    await judges.close();
  }
}

/** Every pair of photos of a real DreamBench folder: same subject against other subjects, and against other subjects of the same class. */
async function realQuality(judges: Judges, data: DreamBenchData, report: (message: string) => void): Promise<RealQuality> {
  const photos = data.subjects.flatMap((subject) => subject.images.map((image) => ({ subject: subject.subject, class: subject.class, path: join(data.directory, image) })));
  report(`judging ${photos.length} real DreamBench photos`);
  const all = await features(judges, photos.map((photo) => photo.path));
  const measure = (kind: 'dino' | 'clip') => {
    const [positives, negatives, sameClass] = [[] as number[], [] as number[], [] as number[]];
    for (let i = 0; i < photos.length; i++) {
      for (let j = i + 1; j < photos.length; j++) {
        const score = cosine(all[kind][i]!, all[kind][j]!);
        if (photos[i]!.subject === photos[j]!.subject) positives.push(score);
        else {
          negatives.push(score);
          if (photos[i]!.class === photos[j]!.class) sameClass.push(score);
        }
      }
    }
    return { aucOtherSubjects: rocAuc(positives, negatives), aucSameClass: rocAuc(positives, sameClass) };
  };
  return { subjects: data.subjects.length, images: photos.length, dino: measure('dino'), clipImage: measure('clip') };
}
