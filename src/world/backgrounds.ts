// Scene backgrounds, each with the caption phrase that says where the subjects are: tiled GIMP
// textures, scene emoji (beach, city, night sky…) and two-colour gradients.
import { join } from 'node:path';
import { cacheRoot, readCachedImage } from './cache.js';
import type { Catalog, SceneEmoji } from './catalog.js';
import { cloneImage, createImage, cropImage, drawOver, resizeImage, type RgbaImage } from './image.js';
import type { Lexicon } from './lexicon.js';
import { loadPatterns, patternPhrase, type Pattern } from './patterns.js';
import type { Random } from '../util/random.js';
import { COLOUR_NAMES, GENERIC_PATTERN_PHRASE } from './vocabulary.js';

export type BackgroundSpec =
  | { kind: 'pattern'; pattern: string; zoom: number; dx: number; dy: number }
  | { kind: 'scene'; scene: string; style: string }
  | { kind: 'gradient'; top: string; bottom: string };

export const PATTERN_ZOOMS = [0.5, 1, 1.5] as const;
const BACKGROUND_KIND_WEIGHTS = { pattern: 0.4, scene: 0.3, gradient: 0.3 } as const;
// Scene emoji are drawn inside rounded squares or frames; the inner part is the landscape itself.
const SCENE_INNER_FRACTION = 0.85;
const SKY: readonly [number, number, number, number] = [196, 226, 250, 255];

export function sceneEmojiPath(catalog: Catalog, scene: SceneEmoji, style: string, size: number, cacheDir?: string): string {
  const info = catalog.styleById.get(style);
  if (!info) throw new Error(`unknown style '${style}'`);
  return join(cacheRoot(cacheDir), 'scenes', String(size), `${style}-${info.version}`, `${scene.id}.rgba`);
}

export interface BackgroundStoreOptions {
  /** Size the scene emoji were rendered at (the sprite cache size). */
  renderSize: number;
  cacheDir?: string;
  patternDirectory?: string;
  onWarning?: (message: string) => void;
}

export class BackgroundStore {
  private patternList: Pattern[] | null = null;
  private patternById = new Map<string, Pattern>();
  private readonly tiles = new Map<string, RgbaImage>();
  private readonly sceneImages = new Map<string, RgbaImage>();
  private readonly sceneById: Map<string, SceneEmoji>;

  constructor(
    readonly catalog: Catalog,
    private readonly lexicon: Lexicon,
    private readonly options: BackgroundStoreOptions,
  ) {
    this.sceneById = new Map(catalog.scenes.map((s) => [s.id, s]));
  }

  patterns(): Pattern[] {
    if (!this.patternList) {
      this.patternList = loadPatterns({
        ...(this.options.patternDirectory !== undefined ? { directory: this.options.patternDirectory } : {}),
        ...(this.options.onWarning !== undefined ? { onWarning: this.options.onWarning } : {}),
      });
      this.patternById = new Map(this.patternList.map((p) => [p.id, p]));
    }
    return this.patternList;
  }

  private pattern(id: string): Pattern {
    this.patterns();
    const pattern = this.patternById.get(id);
    if (!pattern) throw new Error(`unknown GIMP pattern '${id}'`);
    return pattern;
  }

  /** The caption phrase, never containing a subject name (a texture called "wood" would read as the wood emoji). */
  phrase(spec: BackgroundSpec): string {
    let phrase: string;
    switch (spec.kind) {
      case 'pattern':
        phrase = patternPhrase(this.pattern(spec.pattern));
        break;
      case 'scene':
        phrase = this.scene(spec.scene).phrase;
        break;
      case 'gradient':
        phrase = spec.top === spec.bottom ? `on a plain ${spec.top} background` : `on a ${spec.top} and ${spec.bottom} gradient`;
        break;
    }
    return this.lexicon.find(phrase).length > 0 ? GENERIC_PATTERN_PHRASE : phrase;
  }

  private scene(id: string): SceneEmoji {
    const scene = this.sceneById.get(id);
    if (!scene) throw new Error(`unknown scene emoji '${id}'`);
    return scene;
  }

  /** Scene-emoji styles available for a background, restricted to `styles`. */
  sceneStyles(id: string, styles: readonly string[]): string[] {
    return styles.filter((s) => s in this.scene(id).icons);
  }

  /** A fresh image the caller may draw on. */
  render(spec: BackgroundSpec, size: number): RgbaImage {
    switch (spec.kind) {
      case 'gradient':
        return renderGradient(spec.top, spec.bottom, size);
      case 'scene':
        return cloneImage(this.renderScene(spec.scene, spec.style, size));
      case 'pattern':
        return this.renderPattern(spec, size);
    }
  }

  private renderScene(id: string, style: string, size: number): RgbaImage {
    const key = `${style}:${id}@${size}`;
    const hit = this.sceneImages.get(key);
    if (hit) return hit;
    const scene = this.scene(id);
    const path = sceneEmojiPath(this.catalog, scene, style, this.options.renderSize, this.options.cacheDir);
    const full = readCachedImage(path);
    if (!full) throw new Error(`scene emoji ${style}:${id} is not in the cache; run \`kosmos-g data sprites --size ${this.options.renderSize}\``);
    const inner = Math.round(full.width * SCENE_INNER_FRACTION);
    const margin = Math.floor((full.width - inner) / 2);
    const cropped = resizeImage(cropImage(full, { x: margin, y: margin, w: inner, h: inner }), size, size);
    const image = createImage(size, size, SKY);
    drawOver(image, cropped, 0, 0);
    this.sceneImages.set(key, image);
    return image;
  }

  private renderPattern(spec: Extract<BackgroundSpec, { kind: 'pattern' }>, size: number): RgbaImage {
    const key = `${spec.pattern}@${spec.zoom}@${size}`;
    let tile = this.tiles.get(key);
    if (!tile) {
      const pattern = this.pattern(spec.pattern);
      // Large textures count as 128 px (at 64 px scenes) so their detail is not shrunk away.
      const scale = (size * spec.zoom) / Math.min(pattern.image.width, pattern.image.height, 128 * (size / 64));
      const w = Math.max(1, Math.round(pattern.image.width * scale));
      const h = Math.max(1, Math.round(pattern.image.height * scale));
      tile = resizeImage(pattern.image, w, h);
      this.tiles.set(key, tile);
    }
    const out = createImage(size, size, SKY);
    const layer = createImage(size, size);
    const ox = Math.floor(spec.dx * tile.width);
    const oy = Math.floor(spec.dy * tile.height);
    const src = tile.data;
    const dst = layer.data;
    for (let y = 0; y < size; y++) {
      const ty = (y + oy) % tile.height;
      for (let x = 0; x < size; x++) {
        const tx = (x + ox) % tile.width;
        const s = (ty * tile.width + tx) * 4;
        const d = (y * size + x) * 4;
        dst[d] = src[s] as number;
        dst[d + 1] = src[s + 1] as number;
        dst[d + 2] = src[s + 2] as number;
        dst[d + 3] = src[s + 3] as number;
      }
    }
    drawOver(out, layer, 0, 0);
    return out;
  }

  /** A random background whose scene emoji (if any) is drawn in one of `styles`. */
  sample(rng: Random, styles: readonly string[]): BackgroundSpec {
    const kinds = ['pattern', 'scene', 'gradient'] as const;
    const kind = kinds[rng.weighted(kinds.map((k) => BACKGROUND_KIND_WEIGHTS[k]))] as (typeof kinds)[number];
    if (kind === 'pattern') {
      const pattern = rng.pick(this.patterns());
      return { kind, pattern: pattern.id, zoom: rng.pick(PATTERN_ZOOMS), dx: rng.int(8) / 8, dy: rng.int(8) / 8 };
    }
    if (kind === 'scene') {
      const candidates = this.catalog.scenes.filter((s) => this.sceneStyles(s.id, styles).length > 0);
      if (candidates.length > 0) {
        const scene = rng.pick(candidates);
        return { kind, scene: scene.id, style: rng.pick(this.sceneStyles(scene.id, styles)) };
      }
    }
    const colours = Object.keys(COLOUR_NAMES);
    const top = rng.pick(colours);
    return { kind: 'gradient', top, bottom: rng.chance(0.3) ? top : rng.pick(colours) };
  }
}

export function renderGradient(top: string, bottom: string, size: number): RgbaImage {
  const a = COLOUR_NAMES[top];
  const b = COLOUR_NAMES[bottom];
  if (!a || !b) throw new Error(`unknown gradient colour '${a ? bottom : top}'; known: ${Object.keys(COLOUR_NAMES).join(', ')}`);
  const image = createImage(size, size);
  for (let y = 0; y < size; y++) {
    const t = size > 1 ? y / (size - 1) : 0;
    const r = Math.round(a[0] + (b[0] - a[0]) * t);
    const g = Math.round(a[1] + (b[1] - a[1]) * t);
    const bl = Math.round(a[2] + (b[2] - a[2]) * t);
    for (let x = 0; x < size; x++) {
      const o = (y * size + x) * 4;
      image.data[o] = r;
      image.data[o + 1] = g;
      image.data[o + 2] = bl;
      image.data[o + 3] = 255;
    }
  }
  return image;
}
