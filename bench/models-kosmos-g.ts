// Paper-size Kosmos-G MLLM and AlignerNet with random weights: the 24×2048 MLLM over the
// 134-token prompt "<i> wearing <i>" (two images of 64 injected features each), AlignerNet M on
// those 134 states (inference), and the stage-2 forward M + N with both losses. Weights are saved to
// a temporary safetensors file and read by onnxruntime from disk as external data (a ModelProto is
// limited to 2 GB and the MLLM file is 5.4 GB); the host copy is released before the session is
// built. One JSON line per model: initialisation, session creation, forward median after a warm-up
// run, peak RSS of the initialisation and of the forward (see resetPeakRss).
// Heavy (up to ~12 GiB); not part of the test suite.
//   node --expose-gc dist/bench/models-kosmos-g.js [mllm|aligner-m|aligner-stage2]…
import { pathToFileURL } from 'node:url';
import type { Value } from '../src/graph/graph.js';
import { normalTensor } from '../src/nn/layers.js';
import type { TraceContext } from '../src/nn/module.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { AlignerNet, parseAlignerConfig } from '../src/models/aligner.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../src/models/kosmos_mllm.js';
import { Random } from '../src/util/random.js';
import { median, peakRssMiB, timeRuns } from './measure.js';
import { type SavableModel, compileSavedForward, readModelConfig, withSavedWeights } from './saved-weights.js';

// "<i> wearing <i>": <s>, then per image <image>×65 </image> with the last 64 <image> slots
// replaced by connector features, and "▁wearing" (1679) between the images.
const IMAGE = 64003;
const IMAGE_END = 64004;
const promptTokens = [0, ...Array(65).fill(IMAGE), IMAGE_END, 1679, ...Array(65).fill(IMAGE), IMAGE_END];
const promptMask = promptTokens.map((token, i) => (token === IMAGE && promptTokens[i - 1] === IMAGE ? 1 : 0));
const promptLength = promptTokens.length; // 134

interface PaperModel {
  name: string;
  build: () => Promise<SavableModel>;
  inputs: () => Record<string, HostTensor>;
  forward: (model: SavableModel, context: TraceContext, inputs: Record<string, Value>) => Record<string, Value>;
}

const alignerInputs = (): Record<string, HostTensor> => ({
  condition: normalTensor(new Random(5), [1, promptLength, 2048]),
  padding: { dtype: 'bool', shape: [1, promptLength], data: new Uint8Array(promptLength) },
  clip_target: normalTensor(new Random(6), [1, 77, 768]),
});

const buildAligner = async (reconstruction: boolean) =>
  new AlignerNet(parseAlignerConfig(await readModelConfig('kosmos-g-aligner.json')), { init: new Random(2), reconstruction });

const models: Record<string, PaperModel> = {
  mllm: {
    name: 'Kosmos-G MLLM 24×2048, prompt of 134 tokens with 2×64 image features',
    build: async () => new KosmosGMllm(parseKosmosMllmConfig(await readModelConfig('kosmos-g-mllm.json')), { init: new Random(1) }),
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

export const KOSMOS_G_PAPER_MODELS = Object.keys(models);

export interface PaperForwardTiming {
  model: string;
  parameters: number;
  initMs: number;
  initPeakRssMiB: number;
  createMs: number;
  forwardMs: number;
  forwardRunsMs: number[];
  /** Peak RSS from the session's creation on (the whole process where peakRssReset is false). */
  peakRssMiB: number;
  peakRssReset: boolean;
}

/** One paper-size forward: median of `repeats` runs after one warm-up run. */
export async function timeKosmosGForward(name: string, repeats = 5): Promise<PaperForwardTiming> {
  const paper = models[name];
  if (!paper) throw new Error(`unknown model ${name}; models: ${KOSMOS_G_PAPER_MODELS.join(', ')}`);
  return withSavedWeights(paper.build, async (model, saved) => {
    const feeds = paper.inputs();
    const { session, createMs } = await compileSavedForward(name, model, saved.directory, feeds, (context, inputs) => paper.forward(model, context, inputs));
    try {
      const { times } = await timeRuns(session, feeds, repeats);
      return {
        model: paper.name, parameters: model.parameterCount(), initMs: saved.initMs, initPeakRssMiB: saved.initPeakRssMiB, createMs,
        forwardMs: median(times), forwardRunsMs: times, peakRssMiB: peakRssMiB(), peakRssReset: saved.peakRssReset,
      };
    } finally {
      await session.release();
    }
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const name of process.argv.length > 2 ? process.argv.slice(2) : KOSMOS_G_PAPER_MODELS) {
    console.log(JSON.stringify({ bench: 'models-kosmos-g', ...(await timeKosmosGForward(name)) }));
  }
}
