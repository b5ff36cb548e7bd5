// Paper-size Kosmos-G XConnector (1024 → 2048, 64 queries, 32 heads) with random weights: one
// inference forward over the 257 ViT-L/14 tokens of one image, weights read from a safetensors file
// by byte offset. Prints one JSON line with the session-creation and run times and the peak RSS
// since the host weights were dropped (`node --expose-gc dist/bench/models-xconnector.js [images]`).
import { pathToFileURL } from 'node:url';
import { normalTensor } from '../src/nn/layers.js';
import { KOSMOS_G_XCONNECTOR_CONFIG, XConnector } from '../src/models/xconnector.js';
import { Random } from '../src/util/random.js';
import { peakRssMiB, round, timeRuns } from './measure.js';
import { compileSavedForward, withSavedWeights } from './saved-weights.js';

export async function runXConnectorBench(images = 1): Promise<void> {
  const random = new Random(1);
  await withSavedWeights(() => new XConnector(KOSMOS_G_XCONNECTOR_CONFIG, { random }), async (model, saved) => {
    const feeds = { image_tokens: normalTensor(random, [images, 257, KOSMOS_G_XCONNECTOR_CONFIG.input_dim], 1 / 32) };
    const { session, createMs } = await compileSavedForward('xconnector', model, saved.directory, feeds, (context, inputs) => ({ latents: model.forward(context, inputs['image_tokens']!) }));
    try {
      const { times, outputs } = await timeRuns(session, feeds, 1, 0);
      console.log(JSON.stringify({
        case: 'kosmosg_xconnector_forward',
        parameters: model.parameterCount(),
        input: feeds.image_tokens.shape,
        output: outputs['latents']!.shape,
        session_ms: round(createMs),
        run_ms: round(times[0]!),
        peak_rss_mib: peakRssMiB(),
      }));
    } finally {
      await session.release();
    }
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await runXConnectorBench(Number(process.argv[2] ?? 1));
