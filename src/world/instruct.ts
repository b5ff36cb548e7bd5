// Compositional instruction data built the Kosmos-G way (scripts/convert_openimage.py and the
// OpenImages loader): caption -> entities -> segmentation -> square crops (raw and white-background
// masked) -> interleaved input in which each entity is followed by its image, the entity word
// dropped with p = 0.5 and each slot given the raw or the masked crop with p = 0.5; the target is
// the full image. The same module builds edit samples (the InstructPix2Pix layout) and plain
// text-to-image samples.
import type { BackgroundSpec } from './backgrounds.js';
import { cropImage, resizeImage, type Box, type RgbaImage } from './image.js';
import type { Lexicon } from './lexicon.js';
import type { Random } from '../util/random.js';
import type { RenderedScene } from './scene.js';
import { COLOUR_NAMES } from './vocabulary.js';

/** Placeholder for one input image in a sample's text. BOS/EOS are the tokenizer's business. */
export const IMAGE_TOKEN = '<i>';
export const DROP_ENTITY_WORD_PROBABILITY = 0.5;
export const MASKED_CROP_PROBABILITY = 0.5;
export const DROP_SOURCE_CAPTION_PROBABILITY = 0.5;

export type SampleKind = 't2i' | 'edit' | 'compose';

export interface SlotInfo {
  /** The entity word as it appears in the caption. */
  entity: string;
  concept: string | null;
  /** Whether the entity word was cut from the text before its image. */
  dropped: boolean;
  /** Whether the slot holds the white-background masked crop (else the raw crop). */
  masked: boolean;
}

export interface InterleavedSample {
  kind: SampleKind;
  /** Text with one IMAGE_TOKEN per input image, in order. */
  text: string;
  images: RgbaImage[];
  target: RgbaImage;
  /** The full caption of the target (t2i, compose) or of the source (edit). */
  caption: string;
  instruction?: string;
  slots?: SlotInfo[];
  /** Subject ids drawn anywhere in the inputs or target. */
  subjects: string[];
  /** Backgrounds drawn anywhere in the inputs or target. */
  backgrounds: BackgroundSpec[];
  /** Which edit the instruction asks for (edit samples). */
  edit?: string;
}

export interface Entity {
  text: string;
  start: number;
  end: number;
  /** Catalog concept when the extractor knows it. */
  concept?: string;
}

/** Finds foreground entities in a caption (the paper used an instruction-tuned LLM). */
export interface EntityExtractor {
  extract(caption: string): Entity[];
}

/** Finds an entity's pixels in an image (the paper used CLIPSeg); null when it cannot. */
export interface Segmenter {
  segment(image: RgbaImage, entity: Entity): Uint8Array | null;
}

export class LexiconExtractor implements EntityExtractor {
  constructor(private readonly lexicon: Lexicon) {}

  extract(caption: string): Entity[] {
    return this.lexicon.find(caption).map((m) => ({ text: m.text, start: m.start, end: m.end, concept: m.concept }));
  }
}

/** Segments with the renderer's own masks: the entity's concept is the placed subject's concept. */
export class LayoutSegmenter implements Segmenter {
  constructor(private readonly scene: RenderedScene) {}

  segment(_image: RgbaImage, entity: Entity): Uint8Array | null {
    const index = this.scene.spec.subjects.findIndex((s) => s.concept === entity.concept);
    return index < 0 ? null : (this.scene.visibleMasks[index] as Uint8Array);
  }
}

const COLOUR_WORDS = new Set(Object.keys(COLOUR_NAMES));

function isWordChar(ch: string | undefined): boolean {
  return ch !== undefined && /[\p{L}\p{N}'’-]/u.test(ch);
}

/**
 * The loader's tag rules: drop colour words, keep tags found in the caption as whole words, drop
 * tags whose span overlaps another's (ambiguous), order by position in the caption.
 */
export function selectEntities(caption: string, entities: readonly Entity[]): Entity[] {
  const located: Entity[] = [];
  for (const entity of entities) {
    const word = entity.text.toLowerCase();
    if (COLOUR_WORDS.has(word)) continue;
    let start = caption.slice(entity.start, entity.end).toLowerCase() === word ? entity.start : caption.toLowerCase().indexOf(word);
    while (start >= 0 && (isWordChar(caption[start - 1]) || isWordChar(caption[start + word.length]))) {
      start = caption.toLowerCase().indexOf(word, start + 1);
    }
    if (start < 0) continue;
    located.push({ ...entity, start, end: start + word.length });
  }
  const kept = located.filter((a, i) => located.every((b, j) => i === j || a.end <= b.start || b.end <= a.start));
  return kept.sort((a, b) => a.start - b.start);
}

function maskBounds(mask: Uint8Array, size: number, threshold: number): Box | null {
  let x0 = size, y0 = size, x1 = -1, y1 = -1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if ((mask[y * size + x] as number) > threshold) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}

export interface Crops {
  raw: RgbaImage;
  masked: RgbaImage;
  box: Box;
}

/** Square crop around the mask (raw, and composited on white through the mask), resized to `cropSize`. */
export function cropEntity(image: RgbaImage, mask: Uint8Array, cropSize: number): Crops | null {
  if (mask.length !== image.width * image.height) throw new Error('mask and image sizes differ');
  if (image.width !== image.height) throw new Error('entity crops need a square image');
  const bounds = maskBounds(mask, image.width, 127);
  if (!bounds) return null;
  const side = Math.min(image.width, Math.max(bounds.w, bounds.h));
  const x = Math.min(image.width - side, Math.max(0, Math.round(bounds.x + bounds.w / 2 - side / 2)));
  const y = Math.min(image.height - side, Math.max(0, Math.round(bounds.y + bounds.h / 2 - side / 2)));
  const box = { x, y, w: side, h: side };
  const raw = cropImage(image, box);
  const masked = cropImage(image, box);
  for (let cy = 0; cy < side; cy++) {
    for (let cx = 0; cx < side; cx++) {
      const a = (mask[(y + cy) * image.width + x + cx] as number) / 255;
      const o = (cy * side + cx) * 4;
      for (let c = 0; c < 3; c++) masked.data[o + c] = Math.round((masked.data[o + c] as number) * a + 255 * (1 - a));
      masked.data[o + 3] = 255;
    }
  }
  return { raw: resizeImage(raw, cropSize, cropSize), masked: resizeImage(masked, cropSize, cropSize), box };
}

export interface ComposeInput {
  image: RgbaImage;
  caption: string;
  subjects: string[];
  backgrounds: BackgroundSpec[];
}

/** Interleave a caption with entity crops per the loader rules; null when no entity could be segmented. */
export function buildComposeSample(
  input: ComposeInput,
  extractor: EntityExtractor,
  segmenter: Segmenter,
  rng: Random,
  cropSize: number,
): InterleavedSample | null {
  const slots: { entity: Entity; crops: Crops }[] = [];
  for (const entity of selectEntities(input.caption, extractor.extract(input.caption))) {
    const mask = segmenter.segment(input.image, entity);
    const crops = mask ? cropEntity(input.image, mask, cropSize) : null;
    if (crops) slots.push({ entity, crops });
  }
  if (slots.length === 0) return null;
  let text = '';
  let cursor = 0;
  const images: RgbaImage[] = [];
  const info: SlotInfo[] = [];
  for (const { entity, crops } of slots) {
    const dropped = rng.chance(DROP_ENTITY_WORD_PROBABILITY);
    const masked = rng.chance(MASKED_CROP_PROBABILITY);
    text += input.caption.slice(cursor, dropped ? entity.start : entity.end);
    text = `${text.trimEnd()} ${IMAGE_TOKEN}`;
    cursor = entity.end;
    images.push(masked ? crops.masked : crops.raw);
    info.push({ entity: entity.text, concept: entity.concept ?? null, dropped, masked });
  }
  text = `${text}${input.caption.slice(cursor)}`.trim();
  return { kind: 'compose', text, images, target: input.image, caption: input.caption, slots: info, subjects: input.subjects, backgrounds: input.backgrounds };
}

export interface EditInput {
  before: RgbaImage;
  after: RgbaImage;
  sourceCaption: string;
  instruction: string;
  edit: string;
  subjects: string[];
  backgrounds: BackgroundSpec[];
}

/** `[source caption, dropped with p = 0.5] <i> instruction` -> the edited image. */
export function buildEditSample(input: EditInput, rng: Random): InterleavedSample {
  const keepCaption = !rng.chance(DROP_SOURCE_CAPTION_PROBABILITY);
  const text = keepCaption ? `${input.sourceCaption} ${IMAGE_TOKEN} ${input.instruction}` : `${IMAGE_TOKEN} ${input.instruction}`;
  return {
    kind: 'edit',
    text,
    images: [input.before],
    target: input.after,
    caption: input.sourceCaption,
    instruction: input.instruction,
    edit: input.edit,
    subjects: input.subjects,
    backgrounds: input.backgrounds,
  };
}

export function buildTextToImageSample(image: RgbaImage, caption: string, subjects: string[], backgrounds: BackgroundSpec[]): InterleavedSample {
  return { kind: 't2i', text: caption, images: [], target: image, caption, subjects, backgrounds };
}
