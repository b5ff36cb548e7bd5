// Paper-size AutoencoderKL (the SD 1.5 VAE, 83.7 M parameters) with random weights: one encode of an
// image and one decode of its latents at 512×512 (or the size given as the first argument), weights
// read from a safetensors file by byte offset as in inference. Prints one JSON line per pass with
// the session-creation and run times and the process's peak RSS. Heavy: run it alone
// (`node dist/bench/models-autoencoder_kl.js [size]`).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Graph, type Value } from '../src/graph/graph.js';
import { GraphSession } from '../src/graph/session.js';
import { openSafetensors } from '../src/io/safetensors-index.js';
import { normalTensor } from '../src/nn/layers.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { encodeModel } from '../src/onnx/proto.js';
import { AutoencoderKL, SD15_VAE_CONFIG } from '../src/models/autoencoder_kl.js';
import { gaussianNoise } from '../src/models/gaussian_noise.js';
import { Random } from '../src/util/random.js';

const threads = 2;
const round = (value: number) => Math.round(value * 10) / 10;
const peakRssMiB = () => round(process.resourceUsage().maxRSS / 1024);

async function timePass(
  name: string,
  directory: string,
  model: AutoencoderKL,
  input: HostTensor,
  build: (graph: Graph, context: Parameters<AutoencoderKL['decode']>[0], input: Value) => Value,
): Promise<HostTensor> {
  const reader = await openSafetensors(directory);
  const graph = new Graph(name);
  const inputValue = graph.input('input', 'float32', input.shape);
  const { context, externalData } = model.externalWeights(graph, reader);
  const started = performance.now();
  const session = await GraphSession.create(encodeModel(graph.toModel({ output: build(graph, context, inputValue) })), { externalData, threads });
  const created = performance.now();
  const output = (await session.run({ input }))['output']!;
  const finished = performance.now();
  await session.release();
  await reader.close();
  console.log(JSON.stringify({
    case: `sd15_vae_${name}`,
    input: input.shape,
    output: output.shape,
    session_ms: round(created - started),
    run_ms: round(finished - created),
    peak_rss_mib: peakRssMiB(),
  }));
  return output;
}

export async function runAutoencoderKLBench(size = 512): Promise<void> {
  const random = new Random(1);
  const model = new AutoencoderKL(SD15_VAE_CONFIG, { random });
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-vae-bench-'));
  try {
    await model.save(directory);
    const image = normalTensor(random, [1, 3, size, size], 0.5);
    const factor = model.downsamplingFactor;
    const noise = gaussianNoise(0, [1, SD15_VAE_CONFIG.latent_channels, size / factor, size / factor]);
    const latents = await timePass('encode', directory, model, image, (graph, context, input) =>
      model.encodeToLatents(context, input, graph.constant(noise, 'noise')),
    );
    await timePass('decode', directory, model, latents, (_, context, input) => model.decodeToImage(context, input));
    console.log(JSON.stringify({ case: 'sd15_vae_parameters', parameters: model.parameterCount(), peak_rss_mib: peakRssMiB() }));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await runAutoencoderKLBench(Number(process.argv[2] ?? 512));
