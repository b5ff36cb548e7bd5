// `kosmos-g data …`: the emoji world's sprite cache, datasets, previews, statistics and licences.
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { attributionMarkdown } from '../world/attribution.js';
import { buildCatalog, type CatalogOptions } from '../world/catalog.js';
import { parseStreamKind, SampleGenerator } from '../world/generate.js';
import { CELL_RANGE, checkSheetSize, contactSheet, sheetSize } from '../world/sheet.js';
import { writeShards } from '../world/shards.js';
import { makeSplits, parseSplit } from '../world/splits.js';
import { buildSpriteCache, DEFAULT_SPRITE_SIZE } from '../world/sprites.js';
import { datasetStats } from '../world/stats.js';
import { DEFAULT_SCENE_SIZE, World } from '../world/world.js';
import { buildDreamBench, dreamBenchBuildOptions, type DreamBenchBuildFlags } from './data-dreambench.js';
import { checkOutputFile } from './output.js';
import { writeFileNamed } from '../io/file-errors.js';

interface WorldFlags {
  size: string;
  spriteSize: string;
  cache?: string;
  concepts?: string;
  styles?: string;
  patterns?: string;
}

function integer(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`${what} must be an integer, got '${value}'`);
  return n;
}

/** Writes `text` to --out (checked first, replaced only with --force), or to stdout without --out. */
async function writeTextOutput(text: string, flags: { out?: string; force?: boolean }): Promise<void> {
  if (!flags.out) {
    process.stdout.write(text);
    return;
  }
  await checkOutputFile(flags.out, { force: flags.force ?? false });
  await writeFileNamed(flags.out, text);
}

function catalogOptions(flags: { concepts?: string; styles?: string }): CatalogOptions {
  return {
    ...(flags.concepts ? { concepts: flags.concepts.split(',').map((s) => s.trim()) } : {}),
    ...(flags.styles ? { styles: flags.styles.split(',').map((s) => s.trim()) } : {}),
  };
}

function progressBar(label: string): { update: (done: number, total: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} {eta_formatted}`, stream: process.stderr }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

async function openWorld(flags: WorldFlags): Promise<World> {
  const bar = progressBar('rendering sprites');
  try {
    return await World.open({
      catalog: catalogOptions(flags),
      sceneSize: integer(flags.size, '--size'),
      spriteSize: integer(flags.spriteSize, '--sprite-size'),
      ...(flags.cache ? { cacheDir: flags.cache } : {}),
      ...(flags.patterns ? { patternDirectory: flags.patterns } : {}),
      onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
      onProgress: bar.update,
    });
  } finally {
    bar.stop();
  }
}

function worldOptions(command: Command): Command {
  return command
    .option('--size <px>', 'scene image side', String(DEFAULT_SCENE_SIZE))
    .option('--sprite-size <px>', 'resolution sprites are rendered at', String(DEFAULT_SPRITE_SIZE))
    .option('--cache <dir>', 'sprite cache folder (default $KOSMOS_G_CACHE or ~/.cache/kosmos-g)')
    .option('--concepts <ids>', 'restrict the catalog to these comma-separated concept ids')
    .option('--styles <ids>', 'restrict the catalog to these comma-separated style ids')
    .option('--patterns <dir>', 'folder of GIMP .pat files (default /usr/share/gimp/2.0/patterns)');
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('the emoji world: sprites, datasets, previews, statistics');

  data
    .command('catalog')
    .description('print the subject catalog summary (concepts, styles, subjects)')
    .option('--json', 'print every concept as JSON')
    .option('--concepts <ids>', 'restrict to these comma-separated concept ids')
    .option('--styles <ids>', 'restrict to these comma-separated style ids')
    .action((flags: { json?: boolean; concepts?: string; styles?: string }) => {
      const catalog = buildCatalog(catalogOptions(flags));
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ styles: catalog.styles, concepts: catalog.concepts, subjects: catalog.subjects }, null, 2)}\n`);
        return;
      }
      const perStyle = catalog.styles.map((s) => `${s.id} ${catalog.subjects.filter((x) => x.style === s.id).length} (${s.license})`);
      process.stdout.write(
        `${catalog.concepts.length} concepts, ${catalog.styles.length} styles, ${catalog.subjects.length} subjects, ${catalog.scenes.length} scene backgrounds\n${perStyle.join('\n')}\n`,
      );
    });

  data
    .command('sprites')
    .description('render the sprite cache from node_modules (only what is missing)')
    .option('--sprite-size <px>', 'render resolution', String(DEFAULT_SPRITE_SIZE))
    .option('--cache <dir>', 'cache folder (default $KOSMOS_G_CACHE or ~/.cache/kosmos-g)')
    .option('--concepts <ids>', 'restrict to these comma-separated concept ids')
    .option('--styles <ids>', 'restrict to these comma-separated style ids')
    .action(async (flags: { spriteSize: string; cache?: string; concepts?: string; styles?: string }) => {
      const catalog = buildCatalog(catalogOptions(flags));
      const bar = progressBar('rendering sprites');
      const report = await buildSpriteCache(catalog, {
        size: integer(flags.spriteSize, '--sprite-size'),
        ...(flags.cache ? { cacheDir: flags.cache } : {}),
        onProgress: bar.update,
      });
      bar.stop();
      process.stdout.write(`${report.rendered} rendered, ${report.cached} already cached, in ${report.seconds.toFixed(1)} s -> ${report.directory}\n`);
      for (const [key, reason] of report.fallbacks) process.stdout.write(`  ${key}: rendered with sharp (${reason})\n`);
    });

  dreamBenchBuildOptions(worldOptions(
    data
      .command('build')
      .description('write a dataset of samples as shards (PNG images + JSONL), or a world DreamBench')
      .requiredOption('--kind <kind>', 't2i | edit | compose | mix (stage-3 mixture 1:2:2) | dreambench (docs/world/dreambench.md)')
      .option('--n <count>', 'number of samples (all kinds but dreambench)')
      .requiredOption('--out <dir>', 'output folder (must not hold a dataset yet)')
      .option('--split <split>', 'train | heldout', 'train')
      .option('--seed <n>', 'sample stream seed', '0')
      .option('--split-seed <n>', 'seed of the held-out concept choice', '0')
      .option('--shard-size <n>', 'samples per shard', '1000'),
  )).action(async (flags: WorldFlags & DreamBenchBuildFlags & { kind: string; n?: string; split: string; shardSize: string }) => {
    if (flags.kind === 'dreambench') return buildDreamBench(flags, (concepts) => openWorld({ ...flags, concepts }));
    if (flags.n === undefined) throw new Error(`--n is required for --kind ${flags.kind}`);
    const options = {
      kind: parseStreamKind(flags.kind),
      split: parseSplit(flags.split),
      seed: integer(flags.seed, '--seed'),
      splitSeed: integer(flags.splitSeed, '--split-seed'),
    };
    const count = integer(flags.n, '--n');
    const shardSize = integer(flags.shardSize, '--shard-size');
    const generator = new SampleGenerator(await openWorld(flags), options);
    const bar = progressBar('building');
    const started = performance.now();
    const manifest = await writeShards(generator, {
      count,
      out: flags.out,
      shardSize,
      onProgress: bar.update,
    });
    bar.stop();
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(`${manifest.count} ${manifest.kind} samples (${manifest.split}) in ${manifest.shards.length} shard(s) -> ${flags.out} (${seconds.toFixed(1)} s)\n`);
  });

  worldOptions(
    data
      .command('preview')
      .description('draw a contact sheet of samples: inputs, text, target')
      .requiredOption('--kind <kind>', 't2i | edit | compose | mix')
      .requiredOption('--out <file>', 'PNG file to write')
      .option('--force', 'replace an existing --out')
      .option('--n <count>', 'number of samples (the sheet may hold 64 M pixels)', '16')
      .option('--split <split>', 'train | heldout', 'train')
      .option('--seed <n>', 'sample stream seed', '0')
      .option('--cell <px>', `displayed image size, ${CELL_RANGE.min} to ${CELL_RANGE.max}`, '96'),
  ).action(async (flags: WorldFlags & { kind: string; out: string; force?: boolean; n: string; split: string; seed: string; cell: string }) => {
    const kind = parseStreamKind(flags.kind);
    const split = parseSplit(flags.split);
    const seed = integer(flags.seed, '--seed');
    const count = integer(flags.n, '--n');
    const cell = integer(flags.cell, '--cell');
    if (count < 1) throw new Error(`--n must be at least 1, got ${count}`);
    if (cell < CELL_RANGE.min || cell > CELL_RANGE.max) throw new Error(`--cell must be from ${CELL_RANGE.min} to ${CELL_RANGE.max}, got ${cell}`);
    const sheet = { cell, title: `${kind} samples, ${split} split, seed ${seed}` };
    // The smallest sheet these samples make (one input each): refused before any sample is drawn.
    checkSheetSize(sheetSize(count, 1, sheet));
    await checkOutputFile(flags.out, { extension: '.png', force: flags.force ?? false });
    const generator = new SampleGenerator(await openWorld(flags), { kind, split, seed });
    const samples = function* () {
      for (let i = 0; i < count; i++) yield generator.sample(i);
    };
    await writeFileNamed(flags.out, await contactSheet(samples(), sheet));
    process.stdout.write(`${count} ${kind} samples -> ${flags.out}\n`);
  });

  data
    .command('stats')
    .description('summarise a dataset folder')
    .argument('<dir>', 'dataset folder written by `data build`')
    .action(async (dir: string) => {
      process.stdout.write(`${JSON.stringify(await datasetStats(dir), null, 2)}\n`);
    });

  data
    .command('splits')
    .description('write the split manifest (training styles, held-out style and concepts)')
    .option('--split-seed <n>', 'seed of the held-out concept choice', '0')
    .option('--out <file>', 'JSON file to write (default: stdout)')
    .option('--force', 'replace an existing --out')
    .action(async (flags: { splitSeed: string; out?: string; force?: boolean }) => {
      await writeTextOutput(`${JSON.stringify(makeSplits(buildCatalog(), integer(flags.splitSeed, '--split-seed')), null, 2)}\n`, flags);
    });

  data
    .command('attribution')
    .description('write the attribution file for the artwork the world uses')
    .option('--out <file>', 'Markdown file to write (default: stdout)')
    .option('--force', 'replace an existing --out')
    .action(async (flags: { out?: string; force?: boolean }) => {
      await writeTextOutput(attributionMarkdown(buildCatalog()), flags);
    });
}
