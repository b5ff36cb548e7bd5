// A small world DreamBench for tests: six concepts of the embedded world-sd-mini (pizza is held out
// at split seed 0), rendered into the tests' shared sprite cache.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildWorldDreamBench, type WorldDreamBenchOptions, type WorldDreamBenchSummary } from '../../src/eval/world-dreambench-build.js';
import { World } from '../../src/world/world.js';

export const DREAMBENCH_TEST_CONCEPTS = ['cat', 'dog', 'guitar', 'pizza', 'red-apple', 'rocket'];
export const DREAMBENCH_TEST_CACHE = join(tmpdir(), 'kosmos-g-world-test-cache');

let opened: Promise<World> | null = null;

export function dreamBenchTestWorld(): Promise<World> {
  opened ??= World.open({ catalog: { concepts: DREAMBENCH_TEST_CONCEPTS }, cacheDir: DREAMBENCH_TEST_CACHE });
  return opened;
}

/** 3 subjects, 2 two-subject prompts, 2 edits unless `options` says otherwise. */
export async function buildTestDreamBench(out: string, options: Partial<WorldDreamBenchOptions> = {}): Promise<WorldDreamBenchSummary> {
  return buildWorldDreamBench(await dreamBenchTestWorld(), { out, subjects: 3, multi: 2, edits: 2, ...options });
}
