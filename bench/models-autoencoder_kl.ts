// Paper-size AutoencoderKL (the SD 1.5 VAE, 83.7 M parameters) with random weights: one encode of an
// image and one decode of its latents at 512×512 (or the size given as the first argument), weights
// read from a safetensors file by byte offset as in inference. Prints one JSON line per pass with
// the session-creation and run times and the peak RSS since the host weights were dropped (see
// resetPeakRss). Heavy: run it alone (`node --expose-gc dist/bench/models-autoencoder_kl.js [size]`).
import { pathToFileURL } from 'node:url';
import type { Value } from '../src/graph/graph.js';
import { normalTensor } from '../src/nn/layers.js';
import type { TraceContext } from '../src/nn/module.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { AutoencoderKL, SD15_VAE_CONFIG } from '../src/models/autoencoder_kl.js';
import { gaussianNoise } from '../src/models/gaussian_noise.js';
import { Random } from '../src/util/random.js';
import { peakRssMiB, round, timeRuns } from './measure.js';
import { compileSavedForward, withSavedWeights } from './saved-weights.js';

async function timePass(name: string, directory: string, model: AutoencoderKL, input: HostTensor, build: (context: TraceContext, input: Value) => Value): Promise<HostTensor> {
  const feeds = { input };
  const { session, createMs } = await compileSavedForward(name, model, directory, feeds, (context, inputs) => ({ output: build(context, inputs['input']!) }));
  try {
    const { times, outputs } = await timeRuns(session, feeds, 1, 0);
    const output = outputs['output']!;
    console.log(JSON.stringify({
      case: `sd15_vae_${name}`,
      input: input.shape,
      output: output.shape,
      session_ms: round(createMs),
      run_ms: round(times[0]!),
      peak_rss_mib: peakRssMiB(),
    }));
    return output;
  } finally {
    await session.release();
  }
}

export async function runAutoencoderKLBench(size = 512): Promise<void> {
  const random = new Random(1);
  await withSavedWeights(() => new AutoencoderKL(SD15_VAE_CONFIG, { random }), async (model, saved) => {
    const image = normalTensor(random, [1, 3, size, size], 0.5);
    const factor = model.downsamplingFactor;
    const noise = gaussianNoise(0, [1, SD15_VAE_CONFIG.latent_channels, size / factor, size / factor]);
    const latents = await timePass('encode', saved.directory, model, image, (context, input) => model.encodeToLatents(context, input, context.graph.constant(noise, 'noise')));
    await timePass('decode', saved.directory, model, latents, (context, input) => model.decodeToImage(context, input));
    console.log(JSON.stringify({ case: 'sd15_vae_parameters', parameters: model.parameterCount(), init_peak_rss_mib: saved.initPeakRssMiB, peak_rss_mib: peakRssMiB() }));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await runAutoencoderKLBench(Number(process.argv[2] ?? 512));
