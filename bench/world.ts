// World benchmarks: scenes per second from a warm sprite cache, compose samples per second, and
// the cold build of catalog + sprite cache into an empty folder. One JSON line per case.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCatalog } from '../src/world/catalog.js';
import { captionScene } from '../src/world/caption.js';
import { SampleGenerator } from '../src/world/generate.js';
import { Random } from '../src/util/random.js';
import { renderScene, sampleScene } from '../src/world/scene.js';
import { makeSplits, splitPool } from '../src/world/splits.js';
import { buildSpriteCache } from '../src/world/sprites.js';
import { World } from '../src/world/world.js';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function rate(runs: number, count: number, work: (i: number) => void): number[] {
  const rates: number[] = [];
  for (let r = 0; r < runs; r++) {
    const started = performance.now();
    for (let i = 0; i < count; i++) work(r * count + i);
    rates.push(count / ((performance.now() - started) / 1000));
  }
  return rates;
}

export async function runWorldBench(): Promise<void> {
  const coldDir = mkdtempSync(join(tmpdir(), 'kosmos-g-bench-cache-'));
  try {
    const started = performance.now();
    const catalog = buildCatalog();
    const catalogSeconds = (performance.now() - started) / 1000;
    const report = await buildSpriteCache(catalog, { cacheDir: coldDir });
    const totalSeconds = (performance.now() - started) / 1000;
    console.log(JSON.stringify({
      case: 'world_cold_build',
      seconds: totalSeconds,
      catalog_seconds: catalogSeconds,
      render_seconds: report.seconds,
      images_rendered: report.rendered,
      sharp_fallbacks: report.fallbacks.size,
      concepts: catalog.concepts.length,
      styles: catalog.styles.length,
      subjects: catalog.subjects.length,
    }));

    const world = await World.open({ cacheDir: coldDir });
    const pool = splitPool(world.catalog, makeSplits(world.catalog), 'train');
    const options = { subjects: pool.subjects, backgroundStyles: pool.backgroundStyles };
    const rng = new Random(1);
    rate(1, 2000, () => renderScene(world, sampleScene(world, rng, options)));
    const scenes = rate(5, 2000, () => {
      const spec = sampleScene(world, rng, options);
      renderScene(world, spec);
      captionScene(world, spec, rng);
    });
    console.log(JSON.stringify({ case: 'world_scenes', per_second: median(scenes), runs: scenes.length, scene_size: world.sceneSize }));

    for (const kind of ['compose', 'edit', 't2i'] as const) {
      const generator = new SampleGenerator(world, { kind, split: 'train', seed: 1 });
      const rates = rate(5, 500, (i) => generator.sample(i));
      console.log(JSON.stringify({ case: `world_${kind}_samples`, per_second: median(rates), runs: rates.length }));
    }
  } finally {
    rmSync(coldDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await runWorldBench();
