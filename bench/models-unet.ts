// Paper-size U-Net with random weights: the SD 1.5 UNet2DConditionModel (320/640/1280/1280, cross
// attention 768, 8 heads) on a classifier-free-guidance batch of 2 with 64×64 latents (512 px). The
// weights (3.4 GB in float32, beyond the 2 GB ModelProto limit) are saved to a temporary safetensors
// file and read by the inference graph as external data, as a real checkpoint would be. Figures:
// initialisation, session creation, forward median after a warm-up run, peak RSS of the forward
// (initialisation excluded, see resetPeakRss), and the same forward in PyTorch
// (bench/torch/unet_sd15.py: the config-driven mirror bench/torch/unet.py built from the same
// config.json, run afterwards in its own process) with the ratio torch ms / our ms. Heavy; not
// part of the test suite.
//   node --expose-gc dist/bench/models-unet.js [fused|composed]   (attention kernel; default fused)
import { pathToFileURL } from 'node:url';
import { normalTensor } from '../src/nn/layers.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { UNet2DConditionModel, parseUNetConfig } from '../src/models/unet_2d_condition.js';
import { Random } from '../src/util/random.js';
import { BENCH_THREADS, median, peakRssMiB, timeRuns } from './measure.js';
import { compileSavedForward, readModelConfig, withSavedWeights } from './saved-weights.js';
import { requireTorch, runTorchScript } from './torch-process.js';

export type UNetAttention = 'fused' | 'composed';

export interface UNetForwardTiming {
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

/** Our side: one SD 1.5 U-Net forward over the CFG batch, median of `repeats` runs after one warm-up run. */
export async function timeUNetForward(attention: UNetAttention = 'fused', repeats = 3): Promise<UNetForwardTiming> {
  const config = parseUNetConfig(await readModelConfig('unet-sd15.json'));
  return withSavedWeights(() => new UNet2DConditionModel(config, new Random(1)), async (model, saved) => {
    const random = new Random(2);
    const feeds: Record<string, HostTensor> = {
      sample: normalTensor(random, [2, 4, 64, 64]),
      timestep: { dtype: 'int64', shape: [], data: BigInt64Array.of(981n) },
      encoder_hidden_states: normalTensor(random, [2, 77, 768]),
    };
    const { session, createMs } = await compileSavedForward('unet_sd15', model, saved.directory, feeds, (context, inputs) => ({
      noise_pred: model.forward(context, inputs['sample']!, inputs['timestep']!, inputs['encoder_hidden_states']!, { fusedAttention: attention === 'fused' }),
    }));
    try {
      const { times, outputs } = await timeRuns(session, feeds, repeats);
      if (!Array.from(outputs['noise_pred']!.data as Float32Array).every(Number.isFinite)) throw new Error('the U-Net produced non-finite values');
      return {
        parameters: model.parameterCount(), initMs: saved.initMs, initPeakRssMiB: saved.initPeakRssMiB, createMs,
        forwardMs: median(times), forwardRunsMs: times, peakRssMiB: peakRssMiB(), peakRssReset: saved.peakRssReset,
      };
    } finally {
      await session.release();
    }
  });
}

export interface TorchUNetTiming {
  forwardMs: number;
  peakRssMiB: number;
  parameters: number;
  threads: number;
  torch: string;
}

/** The PyTorch mirror of the same forward, in its own process: median of `repeats` runs after one warm-up run. */
export async function timeTorchUNetForward(repeats = 3): Promise<TorchUNetTiming> {
  await requireTorch();
  return JSON.parse(await runTorchScript('unet_sd15.py', [String(repeats), '1', String(BENCH_THREADS)], { benchmark: true })) as TorchUNetTiming;
}

/** Both sides of the paper-size U-Net forward; throws when the mirror's parameter count differs from ours. */
export async function benchUNetForward(attention: UNetAttention = 'fused', repeats = 3): Promise<{ ours: UNetForwardTiming; torch: TorchUNetTiming }> {
  const ours = await timeUNetForward(attention, repeats);
  const torch = await timeTorchUNetForward(repeats);
  if (torch.parameters !== ours.parameters) throw new Error(`the PyTorch mirror has ${torch.parameters} parameters, ours ${ours.parameters}`);
  return { ours, torch };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const attention = process.argv[2] ?? 'fused';
  if (attention !== 'fused' && attention !== 'composed') throw new Error(`attention must be fused or composed, got ${attention}`);
  const { ours, torch } = await benchUNetForward(attention);
  console.log(JSON.stringify({
    bench: 'models-unet', model: 'SD 1.5 UNet2DConditionModel, batch 2 (CFG), 4×64×64 latents, 77×768 condition, fp32', attention,
    ...ours, torch, ratio: Math.round((torch.forwardMs / ours.forwardMs) * 100) / 100,
  }));
}
