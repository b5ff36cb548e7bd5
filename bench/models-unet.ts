// Paper-size U-Net with random weights: the SD 1.5 UNet2DConditionModel (320/640/1280/1280, cross
// attention 768, 8 heads) on a classifier-free-guidance batch of 2 with 64×64 latents (512 px). The
// weights (3.4 GB in float32, beyond the 2 GB ModelProto limit) are written to a temporary
// safetensors file and read by the inference graph as external data, as a real checkpoint would
// be. One JSON line: initialisation, session creation, forward median, peak RSS, and the same forward
// in PyTorch (bench/torch/unet_sd15.py, a mirror of the same config, run afterwards in its own
// process) with the ratio torch ms / our ms. Heavy; not part of the test suite.
//   node dist/bench/models-unet.js [fused|composed]   (attention kernel; default fused)
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Graph } from '../src/graph/graph.js';
import { GraphSession } from '../src/graph/session.js';
import { openSafetensors } from '../src/io/safetensors-index.js';
import { normalTensor } from '../src/nn/layers.js';
import { externalBindings } from '../src/nn/weights.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { encodeModel } from '../src/onnx/proto.js';
import { UNet2DConditionModel, parseUNetConfig } from '../src/models/unet_2d_condition.js';
import { Random } from '../src/util/random.js';
import { requireTorch, runTorchScript } from './torch-process.js';

const configPath = fileURLToPath(new URL('../../src/models/configs/unet-sd15.json', import.meta.url));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const peakRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024);

export async function runUNetModelsBench(attention: 'fused' | 'composed' = 'fused', repeats = 3): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-unet-'));
  try {
    let started = performance.now();
    const config = parseUNetConfig(JSON.parse(await readFile(configPath, 'utf8')));
    const model = new UNet2DConditionModel(config, new Random(1));
    await model.save(directory);
    const parameters = model.parameterCount();
    // The graph reads the file; only the parameters' shapes are needed from here on.
    for (const [, parameter] of model.namedParameters()) parameter.data = { dtype: 'float32', shape: parameter.shape, data: new Float32Array(0) };
    const initMs = performance.now() - started;

    const random = new Random(2);
    const feeds: Record<string, HostTensor> = {
      sample: normalTensor(random, [2, 4, 64, 64]),
      timestep: { dtype: 'int64', shape: [], data: BigInt64Array.of(981n) },
      encoder_hidden_states: normalTensor(random, [2, 77, 768]),
    };
    started = performance.now();
    const reader = await openSafetensors(directory);
    const graph = new Graph('unet_sd15');
    const inputs = Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
    const { context, externalData } = externalBindings(graph, model, reader);
    const noisePrediction = model.forward(context, inputs['sample']!, inputs['timestep']!, inputs['encoder_hidden_states']!, { fusedAttention: attention === 'fused' });
    // ORT reads the weights from disk itself (no JavaScript copy of the file): each location the graph
    // names is linked, inside the temporary folder, to its safetensors file.
    for (const { path, data } of externalData) await symlink(data, join(directory, path));
    const session = await GraphSession.create(encodeModel(graph.toModel({ noise_pred: noisePrediction })), { externalDataDirectory: directory });
    await reader.close();
    const createMs = performance.now() - started;

    const times: number[] = [];
    for (let run = 0; run < repeats; run++) {
      started = performance.now();
      const { noise_pred } = await session.run(feeds);
      times.push(performance.now() - started);
      if (!noise_pred || !Array.from(noise_pred.data as Float32Array).every(Number.isFinite)) throw new Error('the U-Net produced non-finite values');
    }
    await session.release();
    await requireTorch();
    const torch = JSON.parse(await runTorchScript('unet_sd15.py', [String(repeats)], { benchmark: true })) as { forwardMs: number; peakRssMiB: number; parameters: number };
    if (torch.parameters !== parameters) throw new Error(`the PyTorch mirror has ${torch.parameters} parameters, ours ${parameters}`);
    console.log(
      JSON.stringify({
        bench: 'models-unet',
        model: 'SD 1.5 UNet2DConditionModel, batch 2 (CFG), 4×64×64 latents, 77×768 condition, fp32',
        attention,
        parameters,
        initMs: Math.round(initMs),
        createMs: Math.round(createMs),
        forwardMs: Math.round(median(times)),
        forwardRunsMs: times.map(Math.round),
        peakRssMiB: peakRssMiB(),
        torchForwardMs: torch.forwardMs,
        torchPeakRssMiB: torch.peakRssMiB,
        ratio: Math.round((torch.forwardMs / median(times)) * 100) / 100,
      }),
    );
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const attention = process.argv[2] ?? 'fused';
  if (attention !== 'fused' && attention !== 'composed') throw new Error(`attention must be fused or composed, got ${attention}`);
  await runUNetModelsBench(attention);
}
