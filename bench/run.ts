// `npm run bench [-- group…]`: runs the named benchmark groups, or all of them. Each case prints
// one JSON line on standard output.
import { runEngineBench } from './engine.js';
import { runGpuBench } from './gpu.js';
import { runKosmosGBench } from './kosmos-g.js';
import { runModelsBench } from './models.js';
import { runQuantizeBench } from './quantize.js';
import { runStagesBench } from './stages.js';
import { runTrainBench } from './train.js';

type BenchGroup = () => Promise<void>;

/** Loads a group from a module that may not exist yet (groups are written independently). */
function optionalGroup(specifier: string, exportName: string): BenchGroup {
  return async () => {
    let module: Record<string, unknown>;
    try {
      module = (await import(specifier)) as Record<string, unknown>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
      console.error(`bench: ${specifier} is not built; skipping its group`);
      return;
    }
    const run = module[exportName];
    if (typeof run !== 'function') throw new Error(`bench: ${specifier} does not export ${exportName}`);
    await (run as BenchGroup)();
  };
}

/** Every group by name, in the order a plain `npm run bench` runs them (NAMED_ONLY apart); new groups go here. */
const groups: Record<string, BenchGroup> = {
  engine: runEngineBench,
  world: optionalGroup('./world.js', 'runWorldBench'),
  pipeline: optionalGroup('./pipeline.js', 'runPipelineBench'),
  models: runModelsBench,
  'kosmos-g': async () => void (await runKosmosGBench()),
  train: () => runTrainBench(),
  stages: runStagesBench,
  server: optionalGroup('./server.js', 'runServerBench'),
  workers: optionalGroup('./workers.js', 'runWorkersBench'),
  browser: optionalGroup('./browser.js', 'runBrowserBench'),
  quantize: runQuantizeBench,
  gpu: runGpuBench,
};

/** Groups a plain `npm run bench` skips: the GPU group needs a GPU and a CUDA build of PyTorch. */
const NAMED_ONLY = new Set(['gpu']);

async function main(): Promise<void> {
  const requested = process.argv.slice(2);
  const unknown = requested.filter((name) => !(name in groups));
  if (unknown.length) throw new Error(`unknown bench group ${unknown.join(', ')}; groups: ${Object.keys(groups).join(', ')}`);
  for (const name of requested.length ? requested : Object.keys(groups).filter((group) => !NAMED_ONLY.has(group))) await groups[name]!();
}

await main();
