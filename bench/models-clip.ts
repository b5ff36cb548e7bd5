// Paper-size CLIP towers with random weights: the SD-1.5 text encoder (CLIP ViT-L/14 text, 12×768)
// on a batch of 2×77 tokens, and Kosmos-G's open_clip ViT-L/14 vision tower (24×1024, 224 px) on one
// image. Weights are saved to a temporary safetensors file and read by the inference graph as
// external data, as a real checkpoint would be. One JSON line per model: initialisation, session
// creation, forward median after a warm-up run, peak RSS of the forward (see resetPeakRss). Heavy
// (several GiB); not part of the test suite.
//   node --expose-gc dist/bench/models-clip.js [text|vision]…
import { pathToFileURL } from 'node:url';
import type { Value } from '../src/graph/graph.js';
import { normalTensor } from '../src/nn/layers.js';
import type { TraceContext } from '../src/nn/module.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { CLIPTextModel, parseClipTextConfig } from '../src/models/clip_text.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../src/models/openclip_vision.js';
import { Random } from '../src/util/random.js';
import { median, peakRssMiB, round, timeRuns } from './measure.js';
import { type SavableModel, compileSavedForward, readModelConfig, withSavedWeights } from './saved-weights.js';

interface PaperModel {
  name: string;
  build: () => Promise<SavableModel>;
  input: HostTensor;
  forward: (model: SavableModel, context: TraceContext, input: Value) => Value;
}

const models: Record<string, PaperModel> = {
  text: {
    name: 'clip-vit-l-14-text (SD 1.5 text encoder), batch 2×77',
    build: async () => new CLIPTextModel(parseClipTextConfig(await readModelConfig('clip-vit-l-14-text.json')), { random: new Random(1) }),
    input: { dtype: 'int64', shape: [2, 77], data: BigInt64Array.from({ length: 154 }, (_, i) => BigInt(i % 77 === 0 ? 49406 : i % 77 < 12 ? 320 + i : 49407)) },
    forward: (model, context, input) => (model as CLIPTextModel).forward(context, input).lastHiddenState,
  },
  vision: {
    name: 'open_clip ViT-L/14 (Kosmos-G vision tower), batch 1×3×224×224',
    build: async () => new OpenClipVisionModel(parseOpenClipVisionConfig(await readModelConfig('openclip-vit-l-14-kosmos-g.json')), { random: new Random(2) }),
    input: normalTensor(new Random(3), [1, 3, 224, 224]),
    forward: (model, context, input) => (model as OpenClipVisionModel).forward(context, input).features,
  },
};

export async function runClipModelsBench(names: readonly string[] = Object.keys(models), repeats = 5): Promise<void> {
  for (const name of names) {
    const paper = models[name];
    if (!paper) throw new Error(`unknown model ${name}; models: ${Object.keys(models).join(', ')}`);
    await withSavedWeights(paper.build, async (model, saved) => {
      const feeds = { input: paper.input };
      const { session, createMs } = await compileSavedForward(name, model, saved.directory, feeds, (context, inputs) => ({ output: paper.forward(model, context, inputs['input']!) }));
      try {
        const { times } = await timeRuns(session, feeds, repeats);
        console.log(JSON.stringify({
          bench: 'models-clip', model: paper.name, parameters: model.parameterCount(), initMs: Math.round(saved.initMs), createMs: Math.round(createMs),
          forwardMs: round(median(times)), runs: repeats, initPeakRssMiB: saved.initPeakRssMiB, peakRssMiB: peakRssMiB(), peakRssReset: saved.peakRssReset,
        }));
      } finally {
        await session.release();
      }
    });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runClipModelsBench(process.argv.length > 2 ? process.argv.slice(2) : undefined);
}
