// `npm run bench -- train`: one U-Net-mini training step — forward, ε-prediction MSE loss, backward,
// global-norm clipping and AdamW — in our engine (one TrainingStep graph) against the identical step
// in PyTorch CPU (bench/torch/train.py on the config-driven mirror bench/torch/unet.py), in the same
// run. The model, batch size and optimizer come from configs/train/unet-mini.json, as the U-Net
// stage (src/train/unet.ts) reads them; the learning rate is the config's peak rate held constant,
// so no schedule enters the timing. The batch is what the stage feeds its step: pre-noised latents,
// timesteps, the text encoder's hidden states (77 tokens × 256) and the target noise. The VAE and
// text encoder run outside the stage's step, so they are not part of it here either.
// Both sides train the same weights on the same batch: equal parameter counts show the mirror is
// the same architecture, equal first losses that it computes the same function, equal last losses
// that the optimizer steps agree. BENCH_PROFILE=1 adds where our step's time goes (bench/profile.ts).
//   node dist/bench/train.js [steps] [warmup]   (defaults 5 timed steps after 2 warm-up steps)
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { LossContext } from '../src/graph/train-step.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { parseClipTextConfig } from '../src/models/clip_text.js';
import { UNet2DConditionModel } from '../src/models/unet_2d_condition.js';
import { normalTensor } from '../src/nn/layers.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { type UnetConfig, unetConfigSchema, unetNoiseLoss, unetNoWeightDecay } from '../src/train/unet.js';
import { Random } from '../src/util/random.js';
import { BENCH_THREADS, repositoryPath, round, timeTrainingSteps } from './measure.js';
import { adamOutputBytes, timeProfiled } from './profile.js';
import { requireTorch, runTorchScript } from './torch-process.js';

const CONFIG = 'configs/train/unet-mini.json';

interface StepSettings {
  warmup: number;
  steps: number;
}

interface TorchTrainResult {
  torch_ms: number;
  first_loss: number;
  last_loss: number;
  parameters: number;
  threads: number;
  blas: string;
  torch: string;
}

/** The training config, parsed by the stage's own schema (model keys validated as the stage does). */
async function readStageConfig(): Promise<UnetConfig> {
  return unetConfigSchema.parse(JSON.parse(await readFile(repositoryPath(CONFIG), 'utf8')));
}

/**
 * The batch the stage's step receives, drawn at random: noisy latents and noise (B, C, s, s) with s
 * the latent side, int64 timesteps (B) below num_train_timesteps, hidden states (B, tokens, width)
 * of the stage's text encoder (77 × 256 for CLIP-mini).
 */
async function randomBatch(config: UnetConfig): Promise<Record<string, HostTensor>> {
  const text = parseClipTextConfig(JSON.parse(await readFile(repositoryPath(join(config.textEncoder, 'config.json')), 'utf8')), config.textEncoder);
  const side = config.model.sample_size;
  if (side === null) throw new Error(`${CONFIG}: model.sample_size (the latent side) is needed for the batch`);
  const crossDim = Array.isArray(config.model.cross_attention_dim) ? config.model.cross_attention_dim[0]! : config.model.cross_attention_dim;
  if (crossDim !== text.hidden_size) throw new Error(`cross_attention_dim ${crossDim} differs from the text encoder's hidden_size ${text.hidden_size}`);
  const timesteps = Number(config.scheduler['num_train_timesteps'] ?? 1000);
  const size = config.batchSize;
  const random = new Random(1);
  return {
    noisy_latents: normalTensor(random, [size, config.model.in_channels, side, side]),
    timesteps: { dtype: 'int64', shape: [size], data: BigInt64Array.from({ length: size }, () => BigInt(random.int(timesteps))) },
    encoder_hidden_states: normalTensor(random, [size, text.max_position_embeddings, text.hidden_size]),
    noise: normalTensor(random, [size, config.model.out_channels, side, side]),
  };
}

/** Our step: the stage's loss (prediction of the added noise, MSE) in one TrainingStep graph. */
async function timeOurs(config: UnetConfig, model: UNet2DConditionModel, parameters: Record<string, HostTensor>, batch: Record<string, HostTensor>, settings: StepSettings) {
  return timeProfiled((session) => timeTrainingSteps(
    {
      parameters,
      loss: (context: LossContext) => unetNoiseLoss(model, context),
      optimizer: config.optimizer,
      schedule: { kind: 'constant', learningRate: config.schedule.learningRate },
      maxGradNorm: config.maxGradNorm,
      // bench/torch/train.py mirrors the stage's weight-decay exemptions.
      noWeightDecay: unetNoWeightDecay,
    },
    batch,
    settings.warmup,
    settings.steps,
    session,
  ), adamOutputBytes(parameters), settings.steps);
}

/** PyTorch's step on the same weights and batch, handed over in a temporary safetensors file. */
async function timeTorch(config: UnetConfig, parameters: Record<string, HostTensor>, batch: Record<string, HostTensor>, settings: StepSettings): Promise<TorchTrainResult> {
  await requireTorch();
  const directory = await mkdtemp(join(tmpdir(), 'train-bench-'));
  try {
    const inputs = join(directory, 'inputs.safetensors');
    await writeSafetensors(inputs, { ...parameters, ...batch });
    const tokens = batch['encoder_hidden_states']!.shape[1]!;
    const script = { warmup: settings.warmup, steps: settings.steps, threads: BENCH_THREADS, tokens };
    const output = await runTorchScript('train.py', [repositoryPath(CONFIG), String(config.batchSize), JSON.stringify(script), inputs], { benchmark: true });
    return JSON.parse(output) as TorchTrainResult;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** Prints the `unet_mini_train` line; throws afterwards when the mirror's parameter count differs from ours. */
export async function runTrainBench(settings: StepSettings = { warmup: 2, steps: 5 }): Promise<void> {
  const config = await readStageConfig();
  const model = new UNet2DConditionModel(config.model, new Random(0));
  const parameters = model.stateDict();
  const batch = await randomBatch(config);
  const ours = await timeOurs(config, model, parameters, batch, settings);
  const torch = await timeTorch(config, parameters, batch, settings);
  const [size, channels, side] = batch['noisy_latents']!.shape;
  const [, tokens, width] = batch['encoder_hidden_states']!.shape;
  console.log(JSON.stringify({
    case: 'unet_mini_train',
    model: `U-Net-mini (${CONFIG} model), batch ${size}, ${channels}×${side}×${side} latents, ${tokens}×${width} condition, fp32; AdamW, clip ${config.maxGradNorm ?? 'none'}`,
    ours_ms: round(ours.ms),
    torch_ms: round(torch.torch_ms),
    ratio: round(torch.torch_ms / ours.ms),
    parameters: { ours: model.parameterCount(), torch: torch.parameters },
    first_loss: { ours: round(ours.firstLoss, 6), torch: round(torch.first_loss, 6) },
    // After warmup + steps − 1 updates: agrees when the clipping, weight decay and AdamW agree.
    last_loss: { ours: round(ours.lastLoss, 6), torch: round(torch.last_loss, 6) },
    warmup_steps: settings.warmup,
    timed_steps: settings.steps,
    threads: { ours: BENCH_THREADS, torch: torch.threads },
    torch_blas: torch.blas,
    torch_version: torch.torch,
    ...(ours.profile ? { profile: ours.profile } : {}),
  }));
  if (torch.parameters !== model.parameterCount()) throw new Error(`the PyTorch mirror has ${torch.parameters} parameters, ours ${model.parameterCount()}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [steps = 5, warmup = 2] = process.argv.slice(2).map(Number);
  if (!Number.isInteger(steps) || steps < 1 || !Number.isInteger(warmup) || warmup < 1) throw new Error('usage: train.js [steps ≥ 1] [warmup ≥ 1]');
  await runTrainBench({ steps, warmup });
}
