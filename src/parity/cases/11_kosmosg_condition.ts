// Case 11: Kosmos-G's condition path end to end (official get_image_representation and
// encode_condition): images → vision tower → XConnector latents → MLLM with the latents in the
// image-mask positions → Aligner M, the null condition M(MLLM([<s>])) and the guidance batch.
// The four networks read their weights by byte offset from the fixture's one checkpoint, under the
// official prefixes, through the same KosmosGConditionModel the pipeline uses.
import { checkpointInitialized } from '../../nn/layers.js';
import { join } from 'node:path';
import { Runtime } from '../../graph/runtime.js';
import { readConfigJson } from '../../io/config-json.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import type { HostTensor } from '../../onnx/dtype.js';
import { ALIGNER_PREFIX, AlignerNet, parseAlignerConfig } from '../../models/aligner.js';
import { KOSMOS_MLLM_PREFIX, KosmosGMllm, parseKosmosMllmConfig } from '../../models/kosmos_mllm.js';
import { KOSMOS_G_PREFIX, OpenClipVisionModel, parseOpenClipVisionConfig } from '../../models/openclip_vision.js';
import { XCONNECTOR_PREFIX, XConnector, parseXConnectorConfig } from '../../models/xconnector.js';
import { guidanceConditionBatch } from '../../pipeline/condition.js';
import { KosmosGConditionModel } from '../../pipeline/condition_model.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

function fixtureInput(fixture: FixtureCase, name: string): HostTensor {
  const tensor = fixture.inputs.get(name);
  if (!tensor) throw new Error(`${fixture.name}: no input ${name}`);
  return tensor;
}

interface FixtureConfig {
  vision: unknown;
  xconnector: { input_dim: number; output_dim: number; latent_query_num: number; heads: number };
  mllm: Record<string, unknown>;
  aligner: { dim: number; ffn: number; heads: number; layers: number; max_positions: number; queries: number };
}

/** The fixture's compact aligner sizes as the torchscale EncoderDecoderConfig aligner.py builds (dropout 0). */
function alignerConfig(sizes: FixtureConfig['aligner'], inputDim: number) {
  return parseAlignerConfig({
    encoder_embed_dim: sizes.dim, encoder_attention_heads: sizes.heads, encoder_ffn_embed_dim: sizes.ffn, encoder_layers: sizes.layers,
    decoder_embed_dim: sizes.dim, decoder_attention_heads: sizes.heads, decoder_ffn_embed_dim: sizes.ffn, decoder_layers: sizes.layers,
    input_dim: inputDim, num_queries: sizes.queries, position_table_size: sizes.max_positions,
    dropout: 0, attention_dropout: 0, activation_dropout: 0, no_scale_embedding: true, activation_fn: 'gelu', subln: true,
    encoder_normalize_before: true, decoder_normalize_before: true, layernorm_embedding: false, deepnorm: false, multiway: false,
    rel_pos_buckets: 0, moe_freq: 0,
  });
}

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const config = (await readConfigJson(join(fixture.directory, 'config.json'))) as unknown as FixtureConfig;
  const weights = join(fixture.directory, 'model.safetensors');
  // Every parameter is bound to checkpoint bytes; this draw only gives the modules their shapes.
  const unused = checkpointInitialized;
  // The fixture's config leaves the vocabulary to the dictionary, as torchscale does: the embedding decides.
  const reader = await openSafetensors(weights);
  let vocab: number;
  try {
    vocab = reader.info(`${KOSMOS_MLLM_PREFIX}embed_tokens.weight`).shape[0]!;
  } finally {
    await reader.close();
  }
  const mllmConfig = parseKosmosMllmConfig({ ...config.mllm, vocab_size: vocab });
  const runtime = await Runtime.create({ device: 'cpu' });
  try {
    const model = await KosmosGConditionModel.create(
      {
        vision: { model: new OpenClipVisionModel(parseOpenClipVisionConfig(config.vision), { random: unused }), weights, prefix: KOSMOS_G_PREFIX },
        connector: {
          model: new XConnector(
            parseXConnectorConfig({ ...config.xconnector, decoder_attention_heads: config.xconnector.heads, attention_dropout: 0 }),
            { random: unused },
          ),
          weights,
          prefix: XCONNECTOR_PREFIX,
        },
        mllm: { model: new KosmosGMllm(mllmConfig, { init: null }), weights, prefix: KOSMOS_MLLM_PREFIX },
        aligner: { model: new AlignerNet(alignerConfig(config.aligner, mllmConfig.decoder_embed_dim), { init: null, reconstruction: false }), weights, prefix: ALIGNER_PREFIX },
      },
      runtime,
    );
    return compareOutputs(fixture, await conditionOutputs(model, fixture));
  } finally {
    await runtime.dispose();
  }
}

/** The case's outputs computed by `model` from its inputs (case 12 runs the same on converted checkpoints). */
export async function conditionOutputs(model: KosmosGConditionModel, fixture: FixtureCase): Promise<Record<string, HostTensor>> {
  const latents = await model.imageLatents(fixtureInput(fixture, 'pixel_values'));
  const maskBytes = fixtureInput(fixture, 'img_gpt_input_mask');
  const mask: HostTensor = { dtype: 'bool', shape: maskBytes.shape, data: maskBytes.data as Uint8Array };
  const { hidden, condition } = await model.encodeTokens(fixtureInput(fixture, 'src_tokens'), { mask, latents });
  const nullCondition = (await model.encodeTokens({ dtype: 'int64', shape: [1, 1], data: BigInt64Array.of(0n) })).condition;
  return {
    image_latents: latents,
    mllm_hidden: hidden,
    condition,
    null_condition: nullCondition,
    cfg_condition_batch: guidanceConditionBatch(nullCondition, condition),
  };
}
