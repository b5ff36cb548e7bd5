// One training step (forward, backward and AdamW in one TrainingStep graph) of every model in a
// tiny configuration: the tiny init-random pipeline's components (src/pipeline/random_pipeline.ts),
// plus a CLIPVisionModel and a ControlNet of the same widths. Each model trains on the objective it
// is trained with (diffusion noise regression for the U-Net and, through a frozen U-Net, the
// ControlNet; reconstruction for the VAE; language modelling with injected image features for the
// MLLM; the stage-2 losses for the aligner), or regression of its output where it is trained as a
// part of a larger model (the CLIP towers, the connector). Prints one JSON line per model: median
// ms per step after warm-up, parameter counts and the first loss (finite: the graph runs).
//   node dist/bench/models-train.js [clip_text|clip_vision|…]…
import { pathToFileURL } from 'node:url';
import type { Value } from '../src/graph/graph.js';
import { mseLoss } from '../src/graph/ops/nn.js';
import type { LossContext } from '../src/graph/train-step.js';
import { normalTensor } from '../src/nn/layers.js';
import { Module, type TraceContext, contextFromValues } from '../src/nn/module.js';
import type { HostTensor } from '../src/onnx/dtype.js';
import { AlignerNet, parseAlignerConfig } from '../src/models/aligner.js';
import { AutoencoderKL, parseAutoencoderKLConfig } from '../src/models/autoencoder_kl.js';
import { CLIPTextModel, parseClipTextConfig } from '../src/models/clip_text.js';
import { CLIPVisionModel, parseClipVisionConfig } from '../src/models/clip_vision.js';
import { ControlNetModel, parseControlNetConfig } from '../src/models/controlnet.js';
import { KosmosGMllm, parseKosmosMllmConfig } from '../src/models/kosmos_mllm.js';
import { OpenClipVisionModel, parseOpenClipVisionConfig } from '../src/models/openclip_vision.js';
import { UNet2DConditionModel, parseUNetConfig } from '../src/models/unet_2d_condition.js';
import { XConnector, parseXConnectorConfig } from '../src/models/xconnector.js';
import { TINY_CONFIGS } from '../src/pipeline/random_pipeline.js';
import { Random } from '../src/util/random.js';
import { round, timeTrainingSteps } from './measure.js';

type TracedBatch = Readonly<Record<string, Value>>;

interface TinyModel {
  model: Module;
  loss: (context: TraceContext, batch: TracedBatch) => Value;
  /** Which parameters train; all when left out. */
  trainable?: (key: string) => boolean;
}

interface TinyTrainCase {
  build: (random: Random) => TinyModel;
  batch: (random: Random) => Record<string, HostTensor>;
}

const BATCH = 2;
const MLLM_VOCABULARY = 64;
const MLLM_TOKENS = 24;
/** The MLLM prompt's image slots: positions 2–9 of every row hold the connector's 8 features. */
const mllmImageMask = Array.from({ length: BATCH * MLLM_TOKENS }, (_, i) => (i % MLLM_TOKENS >= 2 && i % MLLM_TOKENS < 10 ? 1 : 0));

const tokens = (random: Random, shape: number[], vocabulary: number): HostTensor => ({
  dtype: 'int64', shape, data: BigInt64Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => BigInt(random.int(vocabulary))),
});
const timesteps = (random: Random): HostTensor => ({ dtype: 'int64', shape: [BATCH], data: BigInt64Array.from({ length: BATCH }, () => BigInt(random.int(1000))) });
/** Uniform values in [0, 1), as control images are. */
const uniformTensor = (random: Random, shape: number[]): HostTensor => ({
  dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => random.next()),
});

const unetConfig = parseUNetConfig(TINY_CONFIGS.unet);
const { up_block_types: _upBlocks, out_channels: _outChannels, ...controlNetShared } = TINY_CONFIGS.unet;
/** One stride-2 step in the conditioning embedding: control images are twice the latent size. */
const controlNetConfig = parseControlNetConfig({ ...controlNetShared, conditioning_embedding_out_channels: [4, 8] });
const latentSize = 8;
const crossDim = TINY_CONFIGS.unet.cross_attention_dim;

/** A ControlNet trained through its frozen U-Net, as diffusers' train_controlnet does. */
class ControlledUNet extends Module {
  constructor(readonly unet: UNet2DConditionModel, readonly controlnet: ControlNetModel) {
    super();
  }

  forward(context: TraceContext, batch: TracedBatch): Value {
    const scope = context.graph.scope.bind(context.graph);
    const [sample, timestep, states] = [batch['sample']!, batch['timestep']!, batch['states']!];
    const residuals = scope('controlnet', () => this.controlnet.forward(context, sample, timestep, states, batch['control']!));
    return scope('unet', () => this.unet.forward(context, sample, timestep, states, {
      downBlockAdditionalResiduals: residuals.downBlockResiduals, midBlockAdditionalResidual: residuals.midBlockResidual,
    }));
  }
}

const diffusionBatch = (random: Random): Record<string, HostTensor> => ({
  sample: normalTensor(random, [BATCH, 4, latentSize, latentSize]),
  timestep: timesteps(random),
  states: normalTensor(random, [BATCH, 77, crossDim]),
  target: normalTensor(random, [BATCH, 4, latentSize, latentSize]),
});

const tinyTrainCases: Record<string, TinyTrainCase> = {
  clip_text: {
    build: (random) => {
      const model = new CLIPTextModel(parseClipTextConfig({ ...TINY_CONFIGS.textEncoder, vocab_size: 64, eos_token_id: 63 }), { random });
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch['ids']!).lastHiddenState, batch['target']!) };
    },
    batch: (random) => ({ ids: tokens(random, [BATCH, 77], 64), target: normalTensor(random, [BATCH, 77, TINY_CONFIGS.textEncoder.hidden_size]) }),
  },
  clip_vision: {
    build: (random) => {
      const config = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_channels: 3, image_size: 32, patch_size: 8, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 };
      const model = new CLIPVisionModel(parseClipVisionConfig(config), { random });
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch['pixels']!).lastHiddenState, batch['target']!) };
    },
    batch: (random) => ({ pixels: normalTensor(random, [BATCH, 3, 32, 32]), target: normalTensor(random, [BATCH, 17, 32]) }),
  },
  openclip_vision: {
    build: (random) => {
      const model = new OpenClipVisionModel(parseOpenClipVisionConfig(TINY_CONFIGS.vision), { random });
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch['pixels']!).featuresBeforeNormalize, batch['target']!) };
    },
    batch: (random) => ({ pixels: normalTensor(random, [BATCH, 3, 32, 32]), target: normalTensor(random, [BATCH, 17, TINY_CONFIGS.vision.vision_cfg.width]) }),
  },
  unet: {
    build: (random) => {
      const model = new UNet2DConditionModel(unetConfig, random);
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch['sample']!, batch['timestep']!, batch['states']!), batch['target']!) };
    },
    batch: diffusionBatch,
  },
  controlnet: {
    build: (random) => {
      const model = new ControlledUNet(new UNet2DConditionModel(unetConfig, random), new ControlNetModel(controlNetConfig, random));
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch), batch['target']!), trainable: (key) => key.startsWith('controlnet.') };
    },
    batch: (random) => ({ ...diffusionBatch(random), control: uniformTensor(random, [BATCH, 3, 2 * latentSize, 2 * latentSize]) }),
  },
  vae: {
    build: (random) => {
      const model = new AutoencoderKL(parseAutoencoderKLConfig(TINY_CONFIGS.vae), { random });
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch['image']!, batch['noise']!), batch['image']!) };
    },
    batch: (random) => ({ image: normalTensor(random, [BATCH, 3, 64, 64], 0.5), noise: normalTensor(random, [BATCH, 4, 8, 8]) }),
  },
  kosmos_mllm: {
    build: (random) => {
      const model = new KosmosGMllm(parseKosmosMllmConfig({ ...TINY_CONFIGS.mllm, vocab_size: MLLM_VOCABULARY }), { init: random });
      return {
        model,
        loss: (context, batch) => model.languageModelingLoss(context, batch['tokens']!, batch['targets']!, { mask: batch['mask']!, features: batch['features']! }),
      };
    },
    batch: (random) => ({
      tokens: tokens(random, [BATCH, MLLM_TOKENS], MLLM_VOCABULARY),
      targets: tokens(random, [BATCH, MLLM_TOKENS], MLLM_VOCABULARY),
      mask: { dtype: 'bool', shape: [BATCH, MLLM_TOKENS], data: Uint8Array.from(mllmImageMask) },
      features: normalTensor(random, [mllmImageMask.filter(Boolean).length, TINY_CONFIGS.mllm.decoder_embed_dim]),
    }),
  },
  xconnector: {
    build: (random) => {
      const model = new XConnector(parseXConnectorConfig(TINY_CONFIGS.connector), { random });
      return { model, loss: (context, batch) => mseLoss(model.forward(context, batch['tokens']!), batch['target']!) };
    },
    batch: (random) => ({
      tokens: normalTensor(random, [BATCH, 17, TINY_CONFIGS.connector.input_dim]),
      target: normalTensor(random, [BATCH, TINY_CONFIGS.connector.latent_query_num, TINY_CONFIGS.connector.output_dim]),
    }),
  },
  aligner: {
    build: (random) => {
      const model = new AlignerNet(parseAlignerConfig(TINY_CONFIGS.aligner), { init: random, reconstruction: true });
      return { model, loss: (context, batch) => model.stage2Losses(context, batch['condition']!, batch['padding']!, batch['clip_target']!).loss };
    },
    batch: (random) => ({
      condition: normalTensor(random, [BATCH, MLLM_TOKENS, TINY_CONFIGS.aligner.input_dim]),
      padding: { dtype: 'bool', shape: [BATCH, MLLM_TOKENS], data: new Uint8Array(BATCH * MLLM_TOKENS) },
      clip_target: normalTensor(random, [BATCH, TINY_CONFIGS.aligner.num_queries, TINY_CONFIGS.aligner.encoder_embed_dim]),
    }),
  },
};

export const TINY_TRAIN_MODELS = Object.keys(tinyTrainCases);

export interface TinyTrainTiming {
  msPerStep: number;
  parameters: number;
  trainableParameters: number;
  firstLoss: number;
}

/** Median ms per training step of the tiny `name` (one of TINY_TRAIN_MODELS) after warm-up. */
export async function timeTinyTrainStep(name: string): Promise<TinyTrainTiming> {
  const trainCase = tinyTrainCases[name];
  if (!trainCase) throw new Error(`unknown model ${name}; models: ${TINY_TRAIN_MODELS.join(', ')}`);
  const random = new Random(1);
  const { model, loss, trainable } = trainCase.build(random);
  const batch = trainCase.batch(random);
  const parameters = model.stateDict();
  const trainableKeys = Object.keys(parameters).filter((key) => trainable?.(key) ?? true);
  const timing = await timeTrainingSteps({
    parameters,
    trainable: trainableKeys,
    loss: ({ graph, parameters: values, batch: traced, dropoutSeed }: LossContext) => loss(contextFromValues(graph, model, values, dropoutSeed), traced),
  }, batch);
  if (!Number.isFinite(timing.firstLoss)) throw new Error(`${name}: the first loss is ${timing.firstLoss}`);
  const count = (keys: string[]) => keys.reduce((total, key) => total + parameters[key]!.data.length, 0);
  return { msPerStep: timing.ms, parameters: model.parameterCount(), trainableParameters: count(trainableKeys), firstLoss: round(timing.firstLoss, 6) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const name of process.argv.length > 2 ? process.argv.slice(2) : TINY_TRAIN_MODELS) {
    console.log(JSON.stringify({ bench: 'models-train', model: name, ...(await timeTinyTrainStep(name)) }));
  }
}
