// Everything a scene needs, opened once: the catalog, its name lexicon, the sprite cache and the
// backgrounds.
import { BackgroundStore } from './backgrounds.js';
import { buildCatalog, type Catalog, type CatalogOptions } from './catalog.js';
import { Lexicon } from './lexicon.js';
import { buildSpriteCache, DEFAULT_SPRITE_SIZE, SpriteStore } from './sprites.js';

export const DEFAULT_SCENE_SIZE = 64;

export interface WorldOptions {
  catalog?: CatalogOptions;
  /** Resolution sprites are rendered and cached at. */
  spriteSize?: number;
  /** Side of generated scene images. */
  sceneSize?: number;
  cacheDir?: string;
  patternDirectory?: string;
  onWarning?: (message: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export class World {
  readonly lexicon: Lexicon;
  readonly sprites: SpriteStore;
  readonly backgrounds: BackgroundStore;

  private constructor(
    readonly catalog: Catalog,
    readonly sceneSize: number,
    options: WorldOptions,
  ) {
    const spriteSize = options.spriteSize ?? DEFAULT_SPRITE_SIZE;
    this.lexicon = new Lexicon(catalog.concepts);
    this.sprites = new SpriteStore(catalog, spriteSize, options.cacheDir);
    this.backgrounds = new BackgroundStore(catalog, this.lexicon, {
      renderSize: spriteSize,
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.patternDirectory !== undefined ? { patternDirectory: options.patternDirectory } : {}),
      ...(options.onWarning !== undefined ? { onWarning: options.onWarning } : {}),
    });
  }

  /** Build the catalog and render whatever the sprite cache lacks. */
  static async open(options: WorldOptions = {}): Promise<World> {
    const sceneSize = options.sceneSize ?? DEFAULT_SCENE_SIZE;
    if (!Number.isInteger(sceneSize) || sceneSize < 16 || sceneSize > 1024) {
      throw new Error(`scene size must be an integer in [16, 1024], got ${sceneSize}`);
    }
    const catalog = buildCatalog(options.catalog ?? {});
    await buildSpriteCache(catalog, {
      ...(options.spriteSize !== undefined ? { size: options.spriteSize } : {}),
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
    });
    return new World(catalog, sceneSize, options);
  }
}
