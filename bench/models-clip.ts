// Paper-size CLIP towers with random weights: the SD-1.5 text encoder (CLIP ViT-L/14 text, 12×768)
// on a batch of 2×77 tokens, and Kosmos-G's open_clip ViT-L/14 vision tower (24×1024, 224 px) on one
// image. Weights are written to a temporary safetensors file and read by the inference graph as
// external data, as a real checkpoint would be. One JSON line per model: initialisation, session
// creation, forward median, peak RSS. Heavy (several GiB); not part of the test suite.
//   node dist/bench/models-clip.js [text|vision]…
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Graph, type Value } from '../src/graph/graph.js';
import { GraphSession } from '../src/graph/session.js';
import { openSafetensors } from '../src/io/safetensors-index.js';
import { normalTensor } from '../src/nn/layers.js';
import type { Module, TraceContext } from '../src/nn/module.js';
import { externalBindings } from '../src/nn/weights.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { encodeModel } from '../src/onnx/proto.js';
import { CLIPTextModel, parseClipTextConfig } from '../src/models/clip_text.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../src/models/openclip_vision.js';
import { Random } from '../src/util/random.js';

const configDirectory = fileURLToPath(new URL('../../src/models/configs/', import.meta.url));
const readConfig = async (name: string): Promise<unknown> => JSON.parse(await readFile(join(configDirectory, name), 'utf8'));

interface PaperModel {
  name: string;
  build: () => Promise<Module & { save(directory: string): Promise<void> }>;
  input: HostTensor;
  forward: (model: Module, context: TraceContext, input: Value) => Value;
}

const models: Record<string, PaperModel> = {
  text: {
    name: 'clip-vit-l-14-text (SD 1.5 text encoder), batch 2×77',
    build: async () => new CLIPTextModel(parseClipTextConfig(await readConfig('clip-vit-l-14-text.json')), { random: new Random(1) }),
    input: { dtype: 'int64', shape: [2, 77], data: BigInt64Array.from({ length: 154 }, (_, i) => BigInt(i % 77 === 0 ? 49406 : i % 77 < 12 ? 320 + i : 49407)) },
    forward: (model, context, input) => (model as CLIPTextModel).forward(context, input).lastHiddenState,
  },
  vision: {
    name: 'open_clip ViT-L/14 (Kosmos-G vision tower), batch 1×3×224×224',
    build: async () => new OpenClipVisionModel(parseOpenClipVisionConfig(await readConfig('openclip-vit-l-14-kosmos-g.json')), { random: new Random(2) }),
    input: normalTensor(new Random(3), [1, 3, 224, 224]),
    forward: (model, context, input) => (model as OpenClipVisionModel).forward(context, input).features,
  },
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const peakRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024);

export async function runClipModelsBench(names: readonly string[] = Object.keys(models), repeats = 5): Promise<void> {
  for (const name of names) {
    const paper = models[name];
    if (!paper) throw new Error(`unknown model ${name}; models: ${Object.keys(models).join(', ')}`);
    const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-clip-'));
    try {
      let started = performance.now();
      const model = await paper.build();
      await model.save(directory);
      const initMs = performance.now() - started;
      const parameters = model.parameterCount();

      started = performance.now();
      const reader = await openSafetensors(directory);
      const graph = new Graph(name);
      const input = graph.input('input', paper.input.dtype, paper.input.shape);
      const { context, externalData } = externalBindings(graph, model, reader);
      const output = paper.forward(model, context, input);
      const session = await GraphSession.create(encodeModel(graph.toModel({ output })), { externalData });
      await reader.close();
      const createMs = performance.now() - started;

      const times: number[] = [];
      for (let run = 0; run < repeats; run++) {
        started = performance.now();
        await session.run({ input: paper.input });
        times.push(performance.now() - started);
      }
      await session.release();
      console.log(JSON.stringify({ bench: 'models-clip', model: paper.name, parameters, initMs: Math.round(initMs), createMs: Math.round(createMs), forwardMs: Math.round(median(times)), runs: repeats, peakRssMiB: peakRssMiB() }));
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runClipModelsBench(process.argv.length > 2 ? process.argv.slice(2) : undefined);
}
