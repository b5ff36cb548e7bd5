// Paper-size Kosmos-G XConnector (1024 → 2048, 64 queries, 32 heads) with random weights: one
// inference forward over the 257 ViT-L/14 tokens of one image, weights read from a safetensors file
// by byte offset. Prints one JSON line with the session-creation and run times and the peak RSS
// (`node dist/bench/models-xconnector.js [images]`).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Graph } from '../src/graph/graph.js';
import { GraphSession } from '../src/graph/session.js';
import { openSafetensors } from '../src/io/safetensors-index.js';
import { normalTensor } from '../src/nn/layers.js';
import { encodeModel } from '../src/onnx/proto.js';
import { KOSMOS_G_XCONNECTOR_CONFIG, XConnector } from '../src/models/xconnector.js';
import { Random } from '../src/util/random.js';

const threads = 2;
const round = (value: number) => Math.round(value * 10) / 10;

export async function runXConnectorBench(images = 1): Promise<void> {
  const random = new Random(1);
  const model = new XConnector(KOSMOS_G_XCONNECTOR_CONFIG, { random });
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-xconnector-bench-'));
  try {
    await model.save(directory);
    const reader = await openSafetensors(directory);
    const tokens = normalTensor(random, [images, 257, KOSMOS_G_XCONNECTOR_CONFIG.input_dim], 1 / 32);
    const graph = new Graph('xconnector');
    const input = graph.input('image_tokens', 'float32', tokens.shape);
    const { context, externalData } = model.externalWeights(graph, reader);
    const started = performance.now();
    const session = await GraphSession.create(encodeModel(graph.toModel({ latents: model.forward(context, input) })), { externalData, threads });
    const created = performance.now();
    const latents = (await session.run({ image_tokens: tokens }))['latents']!;
    const finished = performance.now();
    await session.release();
    await reader.close();
    console.log(JSON.stringify({
      case: 'kosmosg_xconnector_forward',
      parameters: model.parameterCount(),
      input: tokens.shape,
      output: latents.shape,
      session_ms: round(created - started),
      run_ms: round(finished - created),
      peak_rss_mib: round(process.resourceUsage().maxRSS / 1024),
    }));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await runXConnectorBench(Number(process.argv[2] ?? 1));
