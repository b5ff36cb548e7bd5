// Kosmos-G stage 2, aligning the MLLM to the decoder: AlignerNet M and N learn on captions alone
// with the objective of the official `--align` runs,
//   MSE(M(s), CLIPText(caption)) + MSE(N(M(s)), s) · 77 / L,
// where s is the frozen stage-1 MLLM's final-LN states of the whole sequence `<s> caption` (no
// `</s>`, right-padded with `<pad>` to L) and CLIPText the frozen world text encoder's
// last_hidden_state of the caption at 77 tokens, as the text-to-image pipeline encodes prompts.
// Both frozen encoders run while the batch is built (the data share); the training graph holds
// the aligner alone. After this stage, a text prompt through MLLM → M → U-Net should draw what
// the CLIP-text path draws; the sample grids put the two side by side.
import { join } from 'node:path';
import { z } from 'zod';
import type { SessionOptions } from '../graph/session.js';
import { readConfigJson } from '../io/config-json.js';
import { AlignerNet, parseAlignerConfig } from '../models/aligner.js';
import { KosmosGMllm, PAD_INDEX } from '../models/kosmos_mllm.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { contextFromValues, Module } from '../nn/module.js';
import type { HostTensor } from '../onnx/dtype.js';
import { loadKosmosTokenizer, type KosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';
import { deriveSeed, Random } from '../util/random.js';
import { baseConfigSchema, modelConfigSchema } from './config.js';
import { CaptionedSceneStream, captionedScenesSchema } from './captioned-scenes.js';
import { ForwardSession } from './forward.js';
import { imageGridPng } from './images.js';
import { copyKosmosGComponents, writeKosmosGPipeline } from './kosmos-g-export.js';
import { encodeSequence, packSequences, writeComponent } from './kosmos-g-networks.js';
import { LatentSampler } from './latent-sampler.js';
import type { StageDefinition } from './stage.js';
import { FrozenEncoders } from './unet.js';
import { EVAL_SCENE_SEED, openWorld, worldDataSchema } from './world-data.js';

/** Stages 2 and 3 never see the held-out style or concepts: their data comes from the train split alone. */
export const trainSplitDataSchema = worldDataSchema.refine((data) => data.splits.length === 1 && data.splits[0] === 'train', {
  message: 'Kosmos-G stages 2 and 3 train on the train split only (the held-out style and concepts are for evaluation)',
  path: ['splits'],
});

export const kosmosAlignConfigSchema = baseConfigSchema.extend({
  stage: z.literal('kosmos-align'),
  /** The stage-1 export: `tokenizer/`, `vision/`, `connector/`, `mllm/` (the MLLM is frozen here). */
  kosmosG: z.string().min(1),
  /** The text-to-image folder whose U-Net the aligner feeds: `text_encoder/`, `clip_tokenizer/`, `unet/`, `vae/`, `scheduler/`. */
  decoder: z.string().min(1),
  /** AlignerNet config.json keys (M and N are both built). */
  aligner: modelConfigSchema(parseAlignerConfig, 'aligner'),
  /** L: MLLM tokens per caption row. */
  sequenceLength: z.number().int().positive(),
  data: trainSplitDataSchema,
  scenes: captionedScenesSchema.default({ singleSubjectFraction: 0.3, shortCaptionFraction: 0.5 }),
  preview: z
    .strictObject({ count: z.number().int().positive(), steps: z.number().int().positive(), guidanceScale: z.number().min(1) })
    .default({ count: 6, steps: 20, guidanceScale: 3 }),
});

export type KosmosAlignConfig = z.output<typeof kosmosAlignConfigSchema>;

/** The stage's parameter tree: the aligner under its official key `aligner.*`. */
class AlignerRoot extends Module {
  constructor(readonly aligner: AlignerNet) {
    super();
  }
}

function buildRoot(config: KosmosAlignConfig, reconstruction: boolean): AlignerRoot {
  return new AlignerRoot(new AlignerNet(config.aligner, { init: new Random(deriveSeed(config.seed, 0x2a)), reconstruction }));
}

/** The frozen stage-1 MLLM over caption rows: `<s> caption` right-padded → final-LN states (B, L, D). */
export class FrozenMllm {
  private constructor(
    readonly mllm: KosmosGMllm,
    readonly tokenizer: KosmosTokenizer,
    private readonly session: ForwardSession,
    private readonly rows: number,
    readonly length: number,
  ) {}

  static async open(kosmosG: string, rows: number, length: number, session: SessionOptions): Promise<FrozenMllm> {
    const mllm = await KosmosGMllm.fromPretrained(join(kosmosG, 'mllm'));
    const tokenizer = await loadKosmosTokenizer(join(kosmosG, 'tokenizer'));
    const forward = await ForwardSession.create(mllm, { tokens: { dtype: 'int64', shape: [rows, length] } }, (context, { tokens }) => ({ hidden: mllm.forward(context, tokens!) }), session);
    return new FrozenMllm(mllm, tokenizer, forward, rows, length);
  }

  /** Token rows (B, L) of captions; a caption longer than L is an error naming it. */
  tokens(captions: readonly string[]): HostTensor<'int64'> {
    const sequences = captions.map((caption) => {
      const sequence = encodeSequence(caption, 0, this.tokenizer, 1);
      if (sequence.tokens.length > this.length) throw new Error(`the caption "${caption}" has ${sequence.tokens.length} MLLM tokens; raise sequenceLength above ${this.length}`);
      return sequence;
    });
    return packSequences(sequences, this.length).tokens;
  }

  /** States (B, L, D) of token rows (B, L). */
  async states(tokens: HostTensor<'int64'>): Promise<HostTensor> {
    if (tokens.shape[0] !== this.rows) throw new Error(`the MLLM was compiled for ${this.rows} rows, got ${tokens.shape[0]}`);
    return (await this.session.run(this.mllm.stateDict(), { tokens }))['hidden']!;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** (B, L) bool: true at `<pad>`, the aligner's padding mask. */
export function paddingMask(tokens: HostTensor<'int64'>): HostTensor<'bool'> {
  return { dtype: 'bool', shape: [...tokens.shape], data: Uint8Array.from(tokens.data as BigInt64Array, (id) => (id === BigInt(PAD_INDEX) ? 1 : 0)) };
}

/** The decoder folder's U-Net config and scheduler, and its frozen VAE + CLIP text encoder compiled for `rows`. */
export async function openDecoder(decoder: string, rows: number, session: SessionOptions): Promise<{ encoders: FrozenEncoders; unetDirectory: string; scheduler: Record<string, unknown> }> {
  const unetDirectory = join(decoder, 'unet');
  const unetConfig = parseUNetConfig(await readConfigJson(join(unetDirectory, 'config.json')));
  const encoders = await FrozenEncoders.open(
    { vae: join(decoder, 'vae'), textEncoder: join(decoder, 'text_encoder'), tokenizer: join(decoder, 'clip_tokenizer'), model: unetConfig },
    rows,
    session,
  );
  const scheduler = (await readConfigJson(join(decoder, 'scheduler', 'scheduler_config.json'))) as Record<string, unknown>;
  return { encoders, unetDirectory, scheduler };
}

export const kosmosAlignStage: StageDefinition<KosmosAlignConfig> = {
  name: 'kosmos-align',
  description: 'Kosmos-G stage 2: AlignerNet M + N on captions, MSE to the frozen CLIP text states plus reconstruction of the frozen MLLM states',
  schema: kosmosAlignConfigSchema,

  async build(config, environment) {
    const session: SessionOptions = { executionProvider: environment.device, threads: environment.threads };
    const rows = config.batchSize;
    const mllm = await FrozenMllm.open(config.kosmosG, rows, config.sequenceLength, session);
    const { encoders, unetDirectory, scheduler } = await openDecoder(config.decoder, rows, session);
    const root = buildRoot(config, true);
    const { num_queries: queries, decoder_embed_dim: width } = config.aligner;
    const text = encoders.textEncoder.config;
    if (queries !== text.max_position_embeddings || width !== text.hidden_size) throw new Error(`the aligner gives ${queries}×${width}, the decoder's text encoder ${text.max_position_embeddings}×${text.hidden_size}`);
    if (config.aligner.input_dim !== mllm.mllm.config.decoder_embed_dim) throw new Error(`aligner input_dim ${config.aligner.input_dim} differs from the MLLM width ${mllm.mllm.config.decoder_embed_dim}`);
    const world = await openWorld(config.data, encoders.vae.config.sample_size, environment.report);
    const stream = new CaptionedSceneStream(world, config.data.seed, config.data.splits, config.data.splitSeed, config.scenes);
    const preview = new CaptionedSceneStream(world, EVAL_SCENE_SEED, config.data.splits, config.data.splitSeed, config.scenes);
    const previewScenes = Array.from({ length: config.preview.count }, (_, i) => preview.sample(i));
    environment.report(`Kosmos-G stage 2: aligner ${(root.parameterCount() / 1e6).toFixed(2)} M parameters (M and N)`);
    const length = config.sequenceLength;
    const dim = mllm.mllm.config.decoder_embed_dim;
    let previewParts: { sampler: LatentSampler; unet: UNet2DConditionModel; mllm: FrozenMllm; aligner: ForwardSession; model: AlignerNet } | null = null;
    return {
      parameters: root.stateDict(),
      noWeightDecay: (key) => key.endsWith('.bias') || /layer_norm|_ln\./.test(key),
      batchSpec: {
        states: { dtype: 'float32', shape: [rows, length, dim] },
        padding: { dtype: 'bool', shape: [rows, length] },
        clip_states: { dtype: 'float32', shape: [rows, queries, width] },
      },
      loss: ({ graph, parameters, batch }) => {
        const context = contextFromValues(graph, root, parameters);
        return graph.scope('aligner', () => root.aligner.stage2Losses(context, batch['states']!, batch['padding']!, batch['clip_states']!).loss);
      },
      async batch(step) {
        const captions = stream.batch(step, rows).map((scene) => scene.caption);
        const tokens = mllm.tokens(captions);
        return { states: await mllm.states(tokens), padding: paddingMask(tokens), clip_states: await encoders.encodeText(captions) };
      },
      async sampleGrid(parameters) {
        previewParts ??= await (async () => {
          const count = previewScenes.length;
          const unet = await UNet2DConditionModel.fromPretrained(unetDirectory);
          const model = buildRoot(config, false).aligner;
          const aligner = await ForwardSession.create(
            model,
            { states: { dtype: 'float32', shape: [2 * count, length, dim] }, padding: { dtype: 'bool', shape: [2 * count, length] } },
            (context, { states, padding }) => ({ condition: model.forward(context, states!, padding!) }),
            session,
          );
          return { sampler: await LatentSampler.create(unet, encoders, scheduler, count, session), unet, mllm: await FrozenMllm.open(config.kosmosG, 2 * count, length, session), aligner, model };
        })();
        const { sampler, unet, aligner, model } = previewParts;
        const captions = previewScenes.map((scene) => scene.caption);
        const settings = { steps: config.preview.steps, guidanceScale: config.preview.guidanceScale, seed: 0 };
        const clipPath = await sampler.generate(unet.stateDict(), captions, settings);
        // [<s>] rows (the unconditional prompt) then the captions, through MLLM → M.
        const tokens = previewParts.mllm.tokens([...captions.map(() => ''), ...captions]);
        const states = await previewParts.mllm.states(tokens);
        const mParameters = Object.fromEntries(model.namedParameters().map(([key]) => [key, parameters[`aligner.${key}`]!]));
        const { condition } = await aligner.run(mParameters, { states, padding: paddingMask(tokens) });
        const alignedPath = await sampler.generateFromConditions(unet.stateDict(), condition!, settings);
        return imageGridPng([previewScenes.map((scene) => scene.image), clipPath, alignedPath]);
      },
      async release() {
        if (previewParts) await Promise.all([previewParts.sampler.release(), previewParts.mllm.release(), previewParts.aligner.release()]);
        await Promise.all([mllm.release(), encoders.release()]);
      },
    };
  },

  /**
   * Writes a complete Kosmos-G pipeline folder: the stage-1 components and tokenizer, aligner M
   * (N is training-only and stays in the run's checkpoints), and the decoder's U-Net, VAE and
   * scheduler — the "stage-2-only" model.
   */
  async exportModel(config, parameters, directory) {
    const model = buildRoot(config, false);
    model.loadStateDict(Object.fromEntries(model.namedParameters().map(([key]) => [key, parameters[key]!])));
    await copyKosmosGComponents(config.kosmosG, directory);
    await writeComponent(join(directory, 'aligner'), config.aligner, Object.fromEntries(Object.entries(model.stateDict())));
    await writeKosmosGPipeline(directory, config.decoder);
  },

  async importModel(config, directory) {
    const aligner = await AlignerNet.fromPretrained(join(directory, 'aligner'), { reconstruction: true });
    const root = buildRoot(config, true);
    root.loadStateDict(Object.fromEntries(Object.entries(aligner.stateDict()).map(([key, tensor]) => [`aligner.${key}`, tensor])));
    return root.stateDict();
  },
};
