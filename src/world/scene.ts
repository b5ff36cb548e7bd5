// Scenes: a background and one to three subjects at named positions and sizes, with limited
// overlap. A SceneSpec is a complete, re-renderable description; rendering returns the image
// together with every subject's box and masks.
import type { BackgroundSpec } from './backgrounds.js';
import { drawOver, type Box, type RgbaImage } from './image.js';
import type { Random } from '../util/random.js';
import { POSITION_CENTRES, POSITIONS, SIZE_FRACTIONS, SIZES, type Position, type SizeWord } from './vocabulary.js';
import type { World } from './world.js';

export interface PlacedSubject {
  /** `${style}:${concept}` */
  subject: string;
  concept: string;
  style: string;
  position: Position;
  size: SizeWord;
  /** Where the fitted sprite is drawn, in pixels, inside the canvas. */
  box: Box;
}

export interface SceneSpec {
  size: number;
  background: BackgroundSpec;
  /** In drawing order: later subjects are in front. */
  subjects: PlacedSubject[];
}

export interface RenderedScene {
  spec: SceneSpec;
  image: RgbaImage;
  /** Per subject: its own alpha on the canvas (size x size), ignoring what covers it. */
  masks: Uint8Array[];
  /** Per subject: the alpha that remains visible after later subjects are drawn over it. */
  visibleMasks: Uint8Array[];
}

export interface SceneOptions {
  /** Subjects to draw from. */
  subjects: readonly string[];
  /** Styles allowed for scene-emoji backgrounds. */
  backgroundStyles: readonly string[];
  minSubjects?: number;
  maxSubjects?: number;
  /** Largest fraction of the smaller box that another box may cover. */
  maxOverlap?: number;
}

export const DEFAULT_MAX_OVERLAP = 0.2;
const SUBJECT_COUNT_WEIGHTS = [0.4, 0.35, 0.25];
const JITTER = 0.04;
const PLACEMENT_ATTEMPTS = 40;
/** Fresh starts of a scene whose subjects could not reach minSubjects. */
const SCENE_ROUNDS = 8;

export function overlapFraction(a: Box, b: Box): number {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / Math.min(a.w * a.h, b.w * b.h);
}

/**
 * Box of a sprite of the given size centred at a named position and kept inside the canvas: with
 * `rng`, its centre jittered by up to JITTER of the canvas (two draws); without, exactly at the
 * position's centre (a layout a user describes).
 */
export function placeBox(canvas: number, width: number, height: number, position: Position, rng: Random | null): Box {
  const [fx, fy] = POSITION_CENTRES[position];
  const jitter = () => (rng ? (rng.next() * 2 - 1) * JITTER : 0);
  const cx = (fx + jitter()) * canvas;
  const cy = (fy + jitter()) * canvas;
  const x = Math.min(canvas - width, Math.max(0, Math.round(cx - width / 2)));
  const y = Math.min(canvas - height, Math.max(0, Math.round(cy - height / 2)));
  return { x, y, w: width, h: height };
}

/** The subject's sprite scaled to its size word for this canvas. */
export function fittedSprite(world: World, subject: string, size: SizeWord, canvas: number): RgbaImage {
  return world.sprites.fitted(subject, Math.max(4, Math.round(SIZE_FRACTIONS[size] * canvas)));
}

/** The subject at its position and size; `rng` jitters its box (placeBox), null places it exactly. */
export function placeSubject(world: World, canvas: number, subject: string, position: Position, size: SizeWord, rng: Random | null): PlacedSubject {
  const info = world.catalog.subjectById.get(subject);
  if (!info) throw new Error(`unknown subject '${subject}'`);
  const sprite = fittedSprite(world, subject, size, canvas);
  return { subject, concept: info.concept, style: info.style, position, size, box: placeBox(canvas, sprite.width, sprite.height, position, rng) };
}

export function fitsWith(box: Box, others: readonly PlacedSubject[], maxOverlap: number): boolean {
  return others.every((o) => overlapFraction(box, o.box) <= maxOverlap);
}

/**
 * Add one subject at a free position without overlapping the others more than allowed, or null
 * when no placement fits after a bounded number of tries.
 */
export function tryPlaceNew(
  world: World,
  canvas: number,
  subject: string,
  existing: readonly PlacedSubject[],
  rng: Random,
  maxOverlap: number,
): PlacedSubject | null {
  const taken = new Set(existing.map((s) => s.position));
  const free = POSITIONS.filter((p) => !taken.has(p));
  for (let attempt = 0; attempt < PLACEMENT_ATTEMPTS && free.length > 0; attempt++) {
    // Later attempts prefer smaller sizes, which fit more often.
    const sizes = attempt < PLACEMENT_ATTEMPTS / 2 ? SIZES : SIZES.slice(0, 2);
    const placed = placeSubject(world, canvas, subject, rng.pick(free), rng.pick(sizes), rng);
    if (fitsWith(placed.box, existing, maxOverlap)) return placed;
  }
  return null;
}

/**
 * `subject` moved to a position outside `taken`, at its own size, overlapping none of `others` more
 * than allowed; null when no placement fits after `attempts` tries.
 */
export function tryMoveSubject(
  world: World,
  canvas: number,
  subject: PlacedSubject,
  others: readonly PlacedSubject[],
  taken: ReadonlySet<Position>,
  rng: Random,
  maxOverlap: number,
  attempts = PLACEMENT_ATTEMPTS,
): PlacedSubject | null {
  const free = POSITIONS.filter((p) => !taken.has(p));
  for (let attempt = 0; attempt < attempts && free.length > 0; attempt++) {
    const placed = placeSubject(world, canvas, subject.subject, rng.pick(free), subject.size, rng);
    if (fitsWith(placed.box, others, maxOverlap)) return placed;
  }
  return null;
}

export function sampleScene(world: World, rng: Random, options: SceneOptions): SceneSpec {
  const canvas = world.sceneSize;
  const maxOverlap = options.maxOverlap ?? DEFAULT_MAX_OVERLAP;
  const min = options.minSubjects ?? 1;
  const max = options.maxSubjects ?? 3;
  if (min < 1 || max > 3 || min > max) throw new Error(`subject count range must lie within 1..3, got ${min}..${max}`);
  if (options.subjects.length === 0) throw new Error('no subjects to place in a scene');
  const weights = SUBJECT_COUNT_WEIGHTS.map((w, i) => (i + 1 >= min && i + 1 <= max ? w : 0));
  const count = rng.weighted(weights) + 1;
  const background = world.backgrounds.sample(rng, options.backgroundStyles);
  const subjects: PlacedSubject[] = [];
  const concepts = new Set<string>();
  // Scenes below `min` after the usual tries keep drawing (small concept pools repeat concepts
  // often), and start over when the subjects placed so far leave no room (a large subject in the
  // centre); scenes that reach `min` within the usual tries are drawn exactly as before.
  for (let round = 0; round < SCENE_ROUNDS; round++) {
    const enough = (tries: number) => tries < count * 8 || (subjects.length < min && tries < count * 64);
    for (let tries = 0; subjects.length < count && enough(tries); tries++) {
      const subject = rng.pick(options.subjects);
      const concept = world.catalog.subjectById.get(subject)?.concept;
      // One subject per concept, so a name in the caption points at exactly one thing.
      if (!concept || concepts.has(concept)) continue;
      const placed = tryPlaceNew(world, canvas, subject, subjects, rng, maxOverlap);
      if (!placed) continue;
      subjects.push(placed);
      concepts.add(concept);
    }
    if (subjects.length >= min) return { size: canvas, background, subjects };
    subjects.length = 0;
    concepts.clear();
  }
  throw new Error(`could not place ${min} subjects without overlap; the subject pool may be too small`);
}

export function renderScene(world: World, spec: SceneSpec): RenderedScene {
  const size = spec.size;
  const image = world.backgrounds.render(spec.background, size);
  const pixels = size * size;
  const masks: Uint8Array[] = [];
  for (const placed of spec.subjects) {
    const sprite = fittedSprite(world, placed.subject, placed.size, size);
    if (sprite.width !== placed.box.w || sprite.height !== placed.box.h) {
      throw new Error(`scene box ${placed.box.w}x${placed.box.h} does not match the ${placed.subject} sprite at ${placed.size} (${sprite.width}x${sprite.height}); the sprite cache size differs from the one the scene was made with`);
    }
    drawOver(image, sprite, placed.box.x, placed.box.y);
    const mask = new Uint8Array(pixels);
    for (let y = 0; y < sprite.height; y++) {
      const cy = placed.box.y + y;
      if (cy < 0 || cy >= size) continue;
      for (let x = 0; x < sprite.width; x++) {
        const cx = placed.box.x + x;
        if (cx < 0 || cx >= size) continue;
        mask[cy * size + cx] = sprite.data[(y * sprite.width + x) * 4 + 3] as number;
      }
    }
    masks.push(mask);
  }
  const visibleMasks = masks.map((mask, i) => {
    const visible = new Uint8Array(mask);
    for (let j = i + 1; j < masks.length; j++) {
      const front = masks[j] as Uint8Array;
      for (let p = 0; p < pixels; p++) {
        const f = front[p] as number;
        if (f !== 0) visible[p] = Math.round(((visible[p] as number) * (255 - f)) / 255);
      }
    }
    return visible;
  });
  return { spec, image, masks, visibleMasks };
}
