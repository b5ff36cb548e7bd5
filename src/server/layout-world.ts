// Layout control maps drawn from a world scene description, for the server's `preprocess: {kind:
// 'layout'}` and `generate --control layout`. The world is the one the base model was trained on
// (its folder's world.json); the pipeline lies below the world layer, so the map is drawn here and
// reaches the pipeline as the control image, with the description recorded as its preprocess.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayoutPreprocess } from '../pipeline/controlnet.js';
import { encodePng } from '../pipeline/image_output.js';
import { WORLD_FILE, type WorldDescription } from '../train/captioned-scenes.js';
import { layoutSceneMap, parseLayoutScene, type LayoutScene } from '../world/layout-scene.js';
import { World } from '../world/world.js';

/** Why a model cannot have layout maps; `name` is how the user knows the model. */
export function noWorldMessage(name: string): string {
  return `layout maps need a world model (${name} has no ${WORLD_FILE})`;
}

/**
 * The world a model folder's world.json describes (its scene size and concepts), null when it has
 * none. Sprites the cache (`cacheDir`, else $KOSMOS_G_CACHE or ~/.cache/kosmos-g) lacks are rendered first.
 */
export async function openModelWorld(directory: string, cacheDir?: string): Promise<World | null> {
  const file = join(directory, WORLD_FILE);
  let description: WorldDescription;
  try {
    description = JSON.parse(await readFile(file, 'utf8')) as WorldDescription;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`${file}: not a readable world description (${(error as Error).message})`);
  }
  return World.open({ sceneSize: description.sceneSize, catalog: { concepts: description.concepts }, ...(cacheDir !== undefined ? { cacheDir } : {}) });
}

export interface LayoutControl {
  /** The layout map as a PNG: the control image. */
  image: Buffer;
  /** What the settings record: the description as parseLayoutScene normalised it. */
  preprocess: LayoutPreprocess & { scene: LayoutScene };
}

/** The layout control image of a description in `world`; a bad description throws a one-line error. */
export async function layoutControl(world: World, description: unknown): Promise<LayoutControl> {
  const scene = parseLayoutScene(world, description);
  const { width, height, rgb } = layoutSceneMap(world, scene);
  return { image: await encodePng({ width, height, data: rgb }), preprocess: { kind: 'layout', scene } };
}
