// Subject sprites: each (concept, style) icon rendered at `size` pixels and trimmed to its alpha
// bounding box (vendors pad differently, and padding would give the style away).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sceneEmojiPath } from './backgrounds.js';
import { cacheRoot, readCachedImage, writeCachedImage } from './cache.js';
import type { Catalog, Subject } from './catalog.js';
import { loadIconSet } from './iconify.js';
import { resizeImage, trimToAlpha, type RgbaImage } from './image.js';
import { KNOWN_RESVG_CRASHERS, renderSvgs, type RenderJob } from './render.js';

export const DEFAULT_SPRITE_SIZE = 64;

export interface SpriteCacheOptions {
  size?: number;
  cacheDir?: string;
  workers?: number;
  /** Also send icons known to crash resvg to the resvg child (to exercise crash recovery). */
  tryKnownCrashers?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface SpriteBuildReport {
  size: number;
  directory: string;
  rendered: number;
  cached: number;
  fallbacks: Map<string, string>;
  seconds: number;
}

export function spriteDirectory(size: number, cacheDir?: string): string {
  return join(cacheRoot(cacheDir), 'sprites', String(size));
}

function spritePath(catalog: Catalog, subject: Subject, size: number, cacheDir?: string): string {
  const style = catalog.styleById.get(subject.style);
  if (!style) throw new Error(`subject ${subject.id} has a style missing from the catalog`);
  return join(spriteDirectory(size, cacheDir), `${subject.style}-${style.version}`, `${subject.concept}.rgba`);
}

function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < 8 || size > 1024) throw new Error(`sprite size must be an integer in [8, 1024], got ${size}`);
}

/** Render every catalog subject and scene emoji missing from the cache. */
export async function buildSpriteCache(catalog: Catalog, options: SpriteCacheOptions = {}): Promise<SpriteBuildReport> {
  const size = options.size ?? DEFAULT_SPRITE_SIZE;
  checkSize(size);
  const started = performance.now();
  const jobs: RenderJob[] = [];
  const paths = new Map<string, string>();
  let cached = 0;
  for (const subject of catalog.subjects) {
    const path = spritePath(catalog, subject, size, options.cacheDir);
    if (existsSync(path)) {
      cached++;
      continue;
    }
    const style = catalog.styleById.get(subject.style);
    const svg = style ? loadIconSet(style.packageName).svg(subject.icon) : null;
    if (!svg) throw new Error(`icon ${subject.style}:${subject.icon} is missing from its set`);
    paths.set(subject.id, path);
    const crasher = KNOWN_RESVG_CRASHERS.has(`${subject.style}:${subject.icon}`);
    jobs.push({ key: subject.id, svg, size, preferSharp: crasher && !options.tryKnownCrashers });
  }
  const scenePaths = new Map<string, string>();
  for (const scene of catalog.scenes) {
    for (const [style, icon] of Object.entries(scene.icons)) {
      const info = catalog.styleById.get(style);
      if (!info) continue;
      const path = sceneEmojiPath(catalog, scene, style, size, options.cacheDir);
      if (existsSync(path)) {
        cached++;
        continue;
      }
      const svg = loadIconSet(info.packageName).svg(icon);
      if (!svg) throw new Error(`icon ${style}:${icon} is missing from its set`);
      const key = `scene/${style}:${scene.id}`;
      scenePaths.set(key, path);
      const crasher = KNOWN_RESVG_CRASHERS.has(`${style}:${icon}`);
      jobs.push({ key, svg, size, preferSharp: crasher && !options.tryKnownCrashers });
    }
  }
  let done = 0;
  const outcome = await renderSvgs(jobs, {
    ...(options.workers !== undefined ? { workers: options.workers } : {}),
    onRendered: () => options.onProgress?.(++done, jobs.length),
  });
  for (const [key, image] of outcome.images) {
    const scenePath = scenePaths.get(key);
    if (scenePath) writeCachedImage(scenePath, image);
    else writeCachedImage(paths.get(key) as string, trimToAlpha(image));
  }
  return {
    size,
    directory: spriteDirectory(size, options.cacheDir),
    rendered: jobs.length,
    cached,
    fallbacks: outcome.fallbacks,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Sprites read lazily from the cache, with resized copies memoised per requested size. */
export class SpriteStore {
  private readonly sprites = new Map<string, RgbaImage>();
  private readonly scaled = new Map<string, RgbaImage>();

  constructor(
    readonly catalog: Catalog,
    readonly size: number = DEFAULT_SPRITE_SIZE,
    private readonly cacheDir?: string,
  ) {
    checkSize(size);
  }

  /** The trimmed sprite at cache resolution. */
  sprite(subjectId: string): RgbaImage {
    const hit = this.sprites.get(subjectId);
    if (hit) return hit;
    const subject = this.catalog.subjectById.get(subjectId);
    if (!subject) throw new Error(`unknown subject '${subjectId}'`);
    const image = readCachedImage(spritePath(this.catalog, subject, this.size, this.cacheDir));
    if (!image) {
      throw new Error(`sprite ${subjectId} is not in the cache at ${spriteDirectory(this.size, this.cacheDir)}; run \`kosmos-g data sprites --size ${this.size}\``);
    }
    this.sprites.set(subjectId, image);
    return image;
  }

  /** The sprite resized so that its longer side is `longSide` pixels, aspect kept. */
  fitted(subjectId: string, longSide: number): RgbaImage {
    const key = `${subjectId}@${longSide}`;
    const hit = this.scaled.get(key);
    if (hit) return hit;
    const sprite = this.sprite(subjectId);
    const scale = longSide / Math.max(sprite.width, sprite.height);
    const image = resizeImage(sprite, Math.max(1, Math.round(sprite.width * scale)), Math.max(1, Math.round(sprite.height * scale)));
    this.scaled.set(key, image);
    return image;
  }
}
