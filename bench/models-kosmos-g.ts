// Paper-size Kosmos-G MLLM and AlignerNet with random weights: the 24×2048 MLLM over the
// 134-token prompt "<i> wearing <i>" (two images of 64 injected features each), AlignerNet M on
// those 134 states (inference), and the stage-2 forward M + N with both losses. Weights are written
// to a temporary safetensors file and read by onnxruntime from disk as external data (a ModelProto
// is limited to 2 GB and the MLLM file is 5.4 GB); the host copy is released before the session is
// built. One JSON line per model: initialisation, session creation, forward median, peak RSS.
// Heavy (up to ~12 GiB); not part of the test suite.
//   node --expose-gc dist/bench/models-kosmos-g.js [mllm|aligner-m|aligner-stage2]…
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Graph, type Value } from '../src/graph/graph.js';
import { GraphSession } from '../src/graph/session.js';
import { openSafetensors } from '../src/io/safetensors-index.js';
import { normalTensor } from '../src/nn/layers.js';
import type { Module, TraceContext } from '../src/nn/module.js';
import { externalBindings } from '../src/nn/weights.js';
import { type HostTensor, hostTensor } from '../src/onnx/dtype.js';
import { encodeModel } from '../src/onnx/proto.js';
import { AlignerNet, parseAlignerConfig } from '../src/models/aligner.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../src/models/kosmos_mllm.js';
import { Random } from '../src/util/random.js';

const configDirectory = fileURLToPath(new URL('../../src/models/configs/', import.meta.url));
const readConfig = async (name: string): Promise<unknown> => JSON.parse(await readFile(join(configDirectory, name), 'utf8'));

// "<i> wearing <i>": <s>, then per image <image>×65 </image> with the last 64 <image> slots
// replaced by connector features, and "▁wearing" (1679) between the images.
const IMAGE = 64003;
const IMAGE_END = 64004;
const promptTokens = [0, ...Array(65).fill(IMAGE), IMAGE_END, 1679, ...Array(65).fill(IMAGE), IMAGE_END];
const promptMask = promptTokens.map((token, i) => (token === IMAGE && promptTokens[i - 1] === IMAGE ? 1 : 0));
const promptLength = promptTokens.length; // 134

interface PaperModel {
  name: string;
  build: () => Promise<Module & { save(directory: string): Promise<void>; externalPrefix: string }>;
  inputs: () => Record<string, HostTensor>;
  forward: (model: Module, context: TraceContext, inputs: Record<string, Value>) => Record<string, Value>;
}

const alignerInputs = (): Record<string, HostTensor> => ({
  condition: normalTensor(new Random(5), [1, promptLength, 2048]),
  padding: { dtype: 'bool', shape: [1, promptLength], data: new Uint8Array(promptLength) },
  clip_target: normalTensor(new Random(6), [1, 77, 768]),
});

const buildAligner = async (reconstruction: boolean) =>
  Object.assign(new AlignerNet(parseAlignerConfig(await readConfig('kosmos-g-aligner.json')), { init: new Random(2), reconstruction }), { externalPrefix: 'aligner.' });

const models: Record<string, PaperModel> = {
  mllm: {
    name: 'Kosmos-G MLLM 24×2048, prompt of 134 tokens with 2×64 image features',
    build: async () => Object.assign(new KosmosGMllm(parseKosmosMllmConfig(await readConfig('kosmos-g-mllm.json')), { init: new Random(1) }), { externalPrefix: 'gpt_model.decoder.' }),
    inputs: () => ({
      tokens: { dtype: 'int64', shape: [1, promptLength], data: BigInt64Array.from(promptTokens, BigInt) },
      mask: { dtype: 'bool', shape: [1, promptLength], data: Uint8Array.from(promptMask) },
      features: normalTensor(new Random(3), [promptMask.filter(Boolean).length, 2048]),
    }),
    forward: (model, context, inputs) => ({ hidden: (model as KosmosGMllm).forward(context, inputs['tokens']!, inputs['mask']!, inputs['features']!) }),
  },
  'aligner-m': {
    name: 'AlignerNet M 12+12×768 (inference), 134 MLLM states → 77×768',
    build: () => buildAligner(false),
    inputs: alignerInputs,
    forward: (model, context, inputs) => ({ aligned: (model as AlignerNet).forward(context, inputs['condition']!, inputs['padding']!) }),
  },
  'aligner-stage2': {
    name: 'AlignerNet M + N 12+12+12+12×768 (stage-2 forward with both losses), 134 MLLM states',
    build: () => buildAligner(true),
    inputs: alignerInputs,
    forward: (model, context, inputs) => {
      const losses = (model as AlignerNet).stage2Losses(context, inputs['condition']!, inputs['padding']!, inputs['clip_target']!);
      return { mse_loss: losses.mseLoss, rec_loss: losses.recLoss };
    },
  },
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const rssMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const peakRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024);
const collectGarbage = (globalThis as { gc?: () => void }).gc;

export async function runKosmosGModelsBench(names: readonly string[] = Object.keys(models), repeats = 5): Promise<void> {
  for (const name of names) {
    const paper = models[name];
    if (!paper) throw new Error(`unknown model ${name}; models: ${Object.keys(models).join(', ')}`);
    const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-'));
    try {
      let started = performance.now();
      const model = await paper.build();
      await model.save(directory);
      const initMs = performance.now() - started;
      const parameters = model.parameterCount();
      const initPeakRssMiB = peakRssMiB();
      // The graph reads the weights from the file: drop the host copy (fresh zero buffers are never touched).
      for (const [, parameter] of model.namedParameters()) parameter.data = hostTensor(parameter.dtype, parameter.shape);
      collectGarbage?.();
      const rssBeforeSessionMiB = rssMiB();

      started = performance.now();
      const reader = await openSafetensors(directory);
      const graph = new Graph(name);
      const feeds = paper.inputs();
      const inputs = Object.fromEntries(Object.entries(feeds).map(([input, tensor]) => [input, graph.input(input, tensor.dtype, tensor.shape)]));
      const { context, externalData } = externalBindings(graph, model, reader, { prefix: model.externalPrefix });
      // onnxruntime reads the external file itself (a typed array cannot hold 5.4 GB in Node).
      for (const { path, data } of externalData) await symlink(data, join(directory, path));
      const session = await GraphSession.create(encodeModel(graph.toModel(paper.forward(model, context, inputs))), { externalDataDirectory: directory });
      await reader.close();
      const createMs = performance.now() - started;

      const times: number[] = [];
      for (let run = 0; run < repeats; run++) {
        started = performance.now();
        await session.run(feeds);
        times.push(performance.now() - started);
      }
      const rssAfterForwardMiB = rssMiB();
      await session.release();
      console.log(JSON.stringify({
        bench: 'models-kosmos-g', model: paper.name, parameters, initMs: Math.round(initMs), createMs: Math.round(createMs),
        forwardMs: Math.round(median(times)), forwardRunsMs: times.map(Math.round), initPeakRssMiB, rssBeforeSessionMiB, rssAfterForwardMiB, peakRssMiB: peakRssMiB(),
      }));
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runKosmosGModelsBench(process.argv.length > 2 ? process.argv.slice(2) : undefined);
}
