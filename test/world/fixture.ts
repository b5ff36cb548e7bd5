// A small world for tests: a few held-out and training concepts, rendered into a private cache.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCatalog } from '../../src/world/catalog.js';
import { isHeldOutConcept } from '../../src/world/splits.js';
import { World } from '../../src/world/world.js';

export const KNOWN_CONCEPTS = ['cat', 'dog', 'top-hat', 'teapot', 'rocket', 'bicycle', 'sunglasses', 'backpack', 'guitar', 'red-apple'];

/** Known concepts plus the first held-out concepts (split seed 0) that have at least three styles. */
export function testConcepts(): string[] {
  const catalog = buildCatalog();
  const styleCount = (id: string): number => catalog.subjects.filter((s) => s.concept === id).length;
  const heldOut = catalog.concepts.filter((c) => isHeldOutConcept(c.id, 0) && styleCount(c.id) >= 4).slice(0, 4).map((c) => c.id);
  return [...KNOWN_CONCEPTS.filter((c) => !heldOut.includes(c)), ...heldOut];
}

let opened: Promise<World> | null = null;

export function testWorld(): Promise<World> {
  // Test files share one cache: cache writes are atomic renames, so parallel test processes are safe.
  opened ??= World.open({ catalog: { concepts: testConcepts() }, cacheDir: join(tmpdir(), 'kosmos-g-world-test-cache') });
  return opened;
}
