// Scene captions from varied templates. Every placed subject is named once (by its label or one of
// its distinctive tags) together with its style and position; the background phrase follows.
import type { Random } from '../util/random.js';
import type { SceneSpec } from './scene.js';
import { POSITION_PHRASES, SIZE_PHRASES } from './vocabulary.js';
import type { World } from './world.js';

export interface Mention {
  /** Index into the scene's subjects. */
  subject: number;
  /** The name used for the subject's concept. */
  name: string;
  /** Character offsets of the name in the caption. */
  start: number;
  end: number;
}

export interface Caption {
  text: string;
  mentions: Mention[];
}

/** Probability that a caption names a concept by a tag instead of its label. */
export const TAG_NAME_PROBABILITY = 0.1;

type Piece = string | { name: string; subject: number };

interface SubjectWords {
  /** Size adjective with a trailing space, or empty. */
  size: string;
  style: string;
  name: { name: string; subject: number };
  position: string;
}

function an(nextWord: string): string {
  return /^[aeiou]/i.test(nextWord) ? 'an ' : 'a ';
}

const SUBJECT_TEMPLATES: readonly ((w: SubjectWords) => Piece[])[] = [
  ({ size, style, name, position }) => [`${an(size || style)}${size}${style} `, name, ` ${position}`],
  ({ size, style, name, position }) => [`${an(size || name.name)}${size}`, name, ` in ${style} style ${position}`],
  ({ size, style, name, position }) => [`${an(size || name.name)}${size}`, name, ` drawn in ${style} style ${position}`],
];

const SCENE_TEMPLATES: readonly ((list: Piece[], background: string) => Piece[])[] = [
  (list, bg) => [...list, `, ${bg}`],
  (list, bg) => [`${bg}, `, ...list],
  (list, bg) => ['a picture of ', ...list, `, ${bg}`],
  (list, bg) => ['an emoji scene with ', ...list, ` ${bg}`],
];

export function chooseName(world: World, concept: string, rng: Random): string {
  const info = world.catalog.conceptById.get(concept);
  if (!info) throw new Error(`unknown concept '${concept}'`);
  if (info.names.length > 1 && rng.chance(TAG_NAME_PROBABILITY)) return rng.pick(info.names.slice(1));
  return info.names[0] as string;
}

export function styleWord(world: World, style: string): string {
  const info = world.catalog.styleById.get(style);
  if (!info) throw new Error(`unknown style '${style}'`);
  return info.word;
}

/** Words for one subject ("a small noto cat on the left"), as pieces with the name marked. */
export function subjectPhrase(world: World, spec: SceneSpec, index: number, rng: Random): Piece[] {
  const placed = spec.subjects[index];
  if (!placed) throw new Error(`scene has no subject ${index}`);
  const sizeWord = rng.pick(SIZE_PHRASES[placed.size]);
  return rng.pick(SUBJECT_TEMPLATES)({
    size: sizeWord && rng.chance(0.5) ? `${sizeWord} ` : '',
    style: styleWord(world, placed.style),
    name: { name: chooseName(world, placed.concept, rng), subject: index },
    position: rng.pick(POSITION_PHRASES[placed.position]),
  });
}

export function joinPieces(pieces: readonly Piece[]): Caption {
  let text = '';
  const mentions: Mention[] = [];
  for (const piece of pieces) {
    if (typeof piece === 'string') {
      text += piece;
    } else {
      mentions.push({ subject: piece.subject, name: piece.name, start: text.length, end: text.length + piece.name.length });
      text += piece.name;
    }
  }
  return { text, mentions };
}

export function listPieces(phrases: readonly Piece[][]): Piece[] {
  const out: Piece[] = [];
  phrases.forEach((phrase, i) => {
    if (i > 0) out.push(i === phrases.length - 1 ? ' and ' : ', ');
    out.push(...phrase);
  });
  return out;
}

export function captionScene(world: World, spec: SceneSpec, rng: Random): Caption {
  const phrases = spec.subjects.map((_, i) => subjectPhrase(world, spec, i, rng));
  const background = world.backgrounds.phrase(spec.background);
  return joinPieces(rng.pick(SCENE_TEMPLATES)(listPieces(phrases), background));
}
