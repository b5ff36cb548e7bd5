// `kosmos-g data build --kind dreambench`: a world DreamBench (src/eval/world-dreambench-build.ts)
// drawn from the concepts of a world.json — by default the embedded world-sd-mini's, the concepts
// its decoder can draw — at that world's scene size and split seed.
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { readJsonFile } from '../eval/dreambench-data.js';
import { buildWorldDreamBench, DEFAULT_WORLD_DREAMBENCH } from '../eval/world-dreambench-build.js';
import { worldDescriptionSchema } from '../eval/world-dreambench.js';
import type { World } from '../world/world.js';

const DEFAULT_WORLD = fileURLToPath(new URL('../../../models/world-sd-mini/world.json', import.meta.url));

export interface DreamBenchBuildFlags {
  out: string;
  seed: string;
  splitSeed: string;
  size: string;
  concepts?: string;
  subjects?: string;
  multi?: string;
  edits?: string;
  world?: string;
  force?: boolean;
}

/** The options only `--kind dreambench` reads. */
export function dreamBenchBuildOptions(command: Command): Command {
  return command
    .option('--subjects <n>', `dreambench: number of subjects (default ${DEFAULT_WORLD_DREAMBENCH.subjects})`)
    .option('--multi <n>', `dreambench: number of two-subject prompts (default ${DEFAULT_WORLD_DREAMBENCH.multi})`)
    .option('--edits <n>', `dreambench: number of edits (default ${DEFAULT_WORLD_DREAMBENCH.edits})`)
    .option('--world <file>', "dreambench: the world.json whose concepts, scene size and split seed are used (default the embedded world-sd-mini's)")
    .option('--force', 'dreambench: replace an existing world DreamBench at --out');
}

function count(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) throw new Error(`${flag} must be a non-negative integer, got '${value}'`);
  return Number(value);
}

/** Builds the world DreamBench; `open` opens the world restricted to the given comma-separated concepts (data.ts's world options). */
export async function buildDreamBench(flags: DreamBenchBuildFlags, open: (concepts: string) => Promise<World>): Promise<void> {
  const path = flags.world ?? DEFAULT_WORLD;
  const description = await readJsonFile(path, worldDescriptionSchema);
  const seed = count(flags.seed, '--seed')!;
  // The subjects must be drawn from the world the models were trained on: its scene size and held-out concepts.
  if (count(flags.size, '--size') !== description.sceneSize) throw new Error(`--size ${flags.size} differs from the world's scene size (${path}: ${description.sceneSize})`);
  if (count(flags.splitSeed, '--split-seed') !== description.splitSeed) throw new Error(`--split-seed ${flags.splitSeed} differs from the world's (${path}: ${description.splitSeed})`);
  let concepts = description.concepts;
  if (flags.concepts !== undefined) {
    const wanted = flags.concepts.split(',').map((concept) => concept.trim());
    const unknown = wanted.filter((concept) => !concepts.includes(concept));
    if (unknown.length) throw new Error(`--concepts ${unknown.join(', ')}: not among the concepts of ${path}`);
    concepts = wanted;
  }
  const started = performance.now();
  const summary = await buildWorldDreamBench(await open(concepts.join(',')), {
    out: flags.out,
    seed,
    splitSeed: description.splitSeed,
    subjects: count(flags.subjects, '--subjects'),
    multi: count(flags.multi, '--multi'),
    edits: count(flags.edits, '--edits'),
    force: flags.force ?? false,
    report: (message) => process.stderr.write(`${message}\n`),
  });
  process.stdout.write(
    `world DreamBench: ${summary.subjects.length} subjects (${summary.images} reference images), ${summary.multi} two-subject prompts, ${summary.edits} edits -> ${summary.out} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`,
  );
}
