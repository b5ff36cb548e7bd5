// CLIP text encoder: transformers `CLIPTextModel` and `CLIPTextModelWithProjection` (the SD-1.5
// text encoder and Kosmos-G's stage-2 target). Token + learned absolute position embeddings, a
// causal pre-LN transformer, a final LayerNorm, the pooled output at the end-of-text token and,
// with a projection, `text_embeds`. Checkpoint keys are transformers' own (`text_model.…`,
// `text_projection.weight`). The encoder layers below are transformers' `CLIPEncoder`, which the
// vision tower (clip_vision.ts) shares exactly as modeling_clip.py does.
import { platform, join } from '#platform';
import { z } from 'zod';
import type { DType } from '../onnx/dtype.js';
import type { Value } from '../graph/graph.js';
import { add, argMax, cast, equal, gelu, quickGelu } from '../graph/ops/elementwise.js';
import { gatherElements, expand, reshape, slice, transpose } from '../graph/ops/shape.js';
import { scaledDotProductAttention } from '../graph/ops/nn.js';
import { Embedding, LayerNorm, Linear, type UniformSource, constantTensor, normalTensor, checkpointInitialized } from '../nn/layers.js';
import { Module, type TraceContext } from '../nn/module.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors, type WriteOptions } from '../io/safetensors.js';

// ---- configuration ---------------------------------------------------------------------------------

const positiveInt = z.number().int().positive();

/** transformers' activation names that CLIP checkpoints use (`ACT2FN`). */
export const clipActivation = z.enum(['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh']);
export type ClipActivation = z.infer<typeof clipActivation>;

/** The keys of transformers' `CLIPTextConfig` that the architecture reads; other keys are kept as they are. */
export const clipTextConfigSchema = z
  .looseObject({
    vocab_size: positiveInt,
    hidden_size: positiveInt,
    intermediate_size: positiveInt,
    num_hidden_layers: positiveInt,
    num_attention_heads: positiveInt,
    max_position_embeddings: positiveInt,
    hidden_act: clipActivation,
    layer_norm_eps: z.number().positive(),
    eos_token_id: z.number().int().nonnegative(),
    projection_dim: positiveInt.optional(),
    initializer_range: z.number().positive().default(0.02),
    initializer_factor: z.number().positive().default(1),
  })
  .refine((config) => config.hidden_size % config.num_attention_heads === 0, {
    message: 'hidden_size must be a multiple of num_attention_heads',
  })
  // The pooled output is read at the end token, which must be a row of the embedding.
  .refine((config) => config.eos_token_id < config.vocab_size, { message: 'eos_token_id must be below vocab_size', path: ['eos_token_id'] });
export type CLIPTextConfig = z.output<typeof clipTextConfigSchema>;

/** Validates a parsed config.json; `source` names it in the error. */
export function parseClipTextConfig(json: unknown, source = 'config'): CLIPTextConfig {
  const result = clipTextConfigSchema.safeParse(json);
  if (!result.success) throw new Error(`${source}: invalid CLIP text config:\n${z.prettifyError(result.error)}`);
  return result.data;
}

export interface ClipBuildOptions {
  random: UniformSource;
  dtype?: DType;
}

/** Sizes the encoder blocks need; the text and vision configs both have these keys. */
export interface ClipEncoderConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  hidden_act: ClipActivation;
  layer_norm_eps: number;
  initializer_factor: number;
}

export function clipActivationFunction(name: ClipActivation, x: Value): Value {
  if (name === 'quick_gelu') return quickGelu(x);
  if (name === 'gelu') return gelu(x);
  return gelu(x, 'tanh'); // gelu_new and gelu_pytorch_tanh are the same tanh approximation
}

/** A Linear initialised as transformers' CLIP `_init_weights` does: N(0, std) weights, zero bias. */
export function clipLinear(inFeatures: number, outFeatures: number, std: number, options: ClipBuildOptions & { bias?: boolean }): Linear {
  const layer = new Linear(inFeatures, outFeatures, options);
  layer.weight.data = normalTensor(options.random, [outFeatures, inFeatures], std, options.dtype);
  if (layer.bias) layer.bias.data = constantTensor([outFeatures], 0, options.dtype);
  return layer;
}

// ---- the encoder (transformers CLIPEncoder) ------------------------------------------------------

export class CLIPAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  readonly heads: number;

  constructor(config: ClipEncoderConfig, options: ClipBuildOptions) {
    super();
    const width = config.hidden_size;
    const inStd = width ** -0.5 * (2 * config.num_hidden_layers) ** -0.5 * config.initializer_factor;
    this.q_proj = clipLinear(width, width, inStd, options);
    this.k_proj = clipLinear(width, width, inStd, options);
    this.v_proj = clipLinear(width, width, inStd, options);
    this.out_proj = clipLinear(width, width, width ** -0.5 * config.initializer_factor, options);
    this.heads = config.num_attention_heads;
  }

  /** x (B, T, D) → (B, T, D); softmax(q·kᵀ/√head_dim + causal mask)·v. */
  forward(context: TraceContext, x: Value, causal: boolean): Value {
    const [batch, tokens, width] = x.shape as [string | number, number, number];
    const headDim = width / this.heads;
    const toHeads = (projected: Value) => transpose(reshape(projected, [batch, tokens, this.heads, headDim], [x]), [0, 2, 1, 3]); // (B, H, T, hd)
    const graph = context.graph;
    const query = graph.scope('q_proj', () => toHeads(this.q_proj.forward(context, x)));
    const key = graph.scope('k_proj', () => toHeads(this.k_proj.forward(context, x)));
    const value = graph.scope('v_proj', () => toHeads(this.v_proj.forward(context, x)));
    const attended = scaledDotProductAttention(query, key, value, { causal }); // (B, H, T, hd)
    const merged = reshape(transpose(attended, [0, 2, 1, 3]), [batch, tokens, width], [x]); // (B, T, D)
    return graph.scope('out_proj', () => this.out_proj.forward(context, merged));
  }
}

export class CLIPMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(private readonly config: ClipEncoderConfig, options: ClipBuildOptions) {
    super();
    const { hidden_size: width, intermediate_size: inner, initializer_factor: factor } = config;
    this.fc1 = clipLinear(width, inner, (2 * width) ** -0.5 * factor, options);
    this.fc2 = clipLinear(inner, width, width ** -0.5 * (2 * config.num_hidden_layers) ** -0.5 * factor, options);
  }

  forward(context: TraceContext, x: Value): Value {
    const hidden = clipActivationFunction(this.config.hidden_act, this.fc1.forward(context, x)); // (B, T, inner)
    return this.fc2.forward(context, hidden);
  }
}

/** Pre-LN block: x + attn(LN₁(x)), then x + mlp(LN₂(x)). */
export class CLIPEncoderLayer extends Module {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: LayerNorm;

  constructor(config: ClipEncoderConfig, options: ClipBuildOptions) {
    super();
    this.self_attn = new CLIPAttention(config, options);
    this.layer_norm1 = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
    this.mlp = new CLIPMLP(config, options);
    this.layer_norm2 = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
  }

  forward(context: TraceContext, x: Value, causal: boolean): Value {
    const scope = <T>(name: string, build: () => T) => context.graph.scope(name, build);
    const normalized = scope('layer_norm1', () => this.layer_norm1.forward(context, x));
    const attended = add(x, scope('self_attn', () => this.self_attn.forward(context, normalized, causal)));
    const normalized2 = scope('layer_norm2', () => this.layer_norm2.forward(context, attended));
    return add(attended, scope('mlp', () => this.mlp.forward(context, normalized2)));
  }
}

export class CLIPEncoder extends Module {
  readonly layers: CLIPEncoderLayer[];

  constructor(config: ClipEncoderConfig, options: ClipBuildOptions) {
    super();
    this.layers = Array.from({ length: config.num_hidden_layers }, () => new CLIPEncoderLayer(config, options));
  }

  /** The output of every layer, in order (transformers' hidden_states[1:]). */
  forward(context: TraceContext, x: Value, causal: boolean): Value[] {
    const outputs: Value[] = [];
    this.layers.forEach((layer, index) => {
      outputs.push(context.graph.scope(`layers.${index}`, () => layer.forward(context, outputs.at(-1) ?? x, causal)));
    });
    return outputs;
  }
}

// ---- the text model --------------------------------------------------------------------------------

export class CLIPTextEmbeddings extends Module {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;

  constructor(config: CLIPTextConfig, options: ClipBuildOptions) {
    super();
    const std = 0.02 * config.initializer_factor;
    this.token_embedding = new Embedding(config.vocab_size, config.hidden_size, options);
    this.token_embedding.weight.data = normalTensor(options.random, [config.vocab_size, config.hidden_size], std, options.dtype);
    this.position_embedding = new Embedding(config.max_position_embeddings, config.hidden_size, options);
    this.position_embedding.weight.data = normalTensor(options.random, [config.max_position_embeddings, config.hidden_size], std, options.dtype);
  }

  /** ids (B, T) → token + position embeddings (B, T, D), positions 0…T−1. */
  forward(context: TraceContext, inputIds: Value): Value {
    const tokens = inputIds.size(1);
    const tokenEmbeddings = this.token_embedding.forward(context, inputIds); // (B, T, D)
    const positions = slice(context.value(this.position_embedding.weight), { starts: [0], ends: [tokens], axes: [0] }); // (T, D)
    return add(tokenEmbeddings, positions);
  }
}

export interface CLIPTextTransformerOutput {
  /** final_layer_norm(last layer output), (B, T, D). */
  lastHiddenState: Value;
  /** Embeddings, then the output of every layer (before final_layer_norm): transformers' hidden_states. */
  hiddenStates: Value[];
  /** lastHiddenState at the end-of-text token of each sequence, (B, D). */
  poolerOutput: Value;
}

export class CLIPTextTransformer extends Module {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly final_layer_norm: LayerNorm;

  constructor(private readonly config: CLIPTextConfig, options: ClipBuildOptions) {
    super();
    this.embeddings = new CLIPTextEmbeddings(config, options);
    this.encoder = new CLIPEncoder(config, options);
    this.final_layer_norm = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
  }

  forward(context: TraceContext, inputIds: Value): CLIPTextTransformerOutput {
    const { graph } = context;
    const embedded = graph.scope('embeddings', () => this.embeddings.forward(context, inputIds)); // (B, T, D)
    const layerOutputs = graph.scope('encoder', () => this.encoder.forward(context, embedded, true));
    const lastHiddenState = graph.scope('final_layer_norm', () => this.final_layer_norm.forward(context, layerOutputs.at(-1) ?? embedded));
    const poolerOutput = graph.scope('pooler', () => this.pool(lastHiddenState, inputIds));
    return { lastHiddenState, hiddenStates: [embedded, ...layerOutputs], poolerOutput };
  }

  /**
   * The hidden state at the end-of-text token, chosen as transformers does: with the legacy
   * `eos_token_id == 2` (SD-1.5's config) the position of the largest id, since the real end token
   * 49407 is the largest id in the vocabulary; otherwise the first position holding eos_token_id.
   */
  private pool(lastHiddenState: Value, inputIds: Value): Value {
    const [batch, , width] = lastHiddenState.shape as [string | number, number, number];
    const eos = this.config.eos_token_id;
    // ArgMax has no int64 kernel on the CPU; ids and booleans are exact in int32.
    const scores = eos === 2 ? cast(inputIds, 'int32') : cast(equal(inputIds, eos), 'int32'); // (B, T)
    const positions = reshape(argMax(scores, -1), [batch, 1, 1], [inputIds]); // (B, 1, 1)
    const index = expand(positions, [batch, 1, width], [lastHiddenState]); // (B, 1, D)
    return reshape(gatherElements(lastHiddenState, index, 1), [batch, width], [inputIds]); // (B, D)
  }
}

export interface CLIPTextModelOutput extends CLIPTextTransformerOutput {
  /** text_projection(poolerOutput), (B, projection_dim); only with a projection. */
  textEmbeds: Value | null;
}

export interface CLIPTextModelOptions extends ClipBuildOptions {
  /** CLIPTextModelWithProjection: adds `text_projection` (needs `projection_dim`). */
  withProjection?: boolean;
}

export interface CLIPTextPretrainedOptions {
  dtype?: DType;
  /**
   * Build the projection head. By default it is built when the checkpoint holds
   * `text_projection.weight`; false loads only the `text_model.…` weights of such a checkpoint,
   * as transformers' CLIPTextModel does.
   */
  withProjection?: boolean;
}

const PROJECTION_KEY = 'text_projection.weight';

export class CLIPTextModel extends Module {
  readonly text_model: CLIPTextTransformer;
  readonly text_projection: Linear | null;

  constructor(readonly config: CLIPTextConfig, options: CLIPTextModelOptions) {
    super();
    this.text_model = new CLIPTextTransformer(config, options);
    if (options.withProjection) {
      if (config.projection_dim === undefined) throw new Error('CLIPTextModelWithProjection needs projection_dim in its config');
      this.text_projection = clipLinear(config.hidden_size, config.projection_dim, config.hidden_size ** -0.5 * config.initializer_factor, { ...options, bias: false });
    } else {
      this.text_projection = null;
    }
  }

  /** A CLIPTextModelWithProjection file read as a plain CLIPTextModel leaves its projection unread. */
  override unreadCheckpointKeys(): readonly string[] {
    return this.text_projection ? [] : [PROJECTION_KEY];
  }

  /** input_ids (B, T) int64 with T ≤ max_position_embeddings; no attention mask, as SD pipelines call it. */
  forward(context: TraceContext, inputIds: Value): CLIPTextModelOutput {
    if (inputIds.rank !== 2 || inputIds.dtype !== 'int64') throw new Error(`CLIPTextModel: input_ids must be int64 (batch, tokens), got ${inputIds}`);
    const tokens = inputIds.shape[1];
    if (typeof tokens !== 'number' || tokens > this.config.max_position_embeddings) {
      throw new Error(`CLIPTextModel: input_ids ${inputIds} need a static length ≤ max_position_embeddings (${this.config.max_position_embeddings})`);
    }
    const output = context.graph.scope('text_model', () => this.text_model.forward(context, inputIds));
    const projection = this.text_projection;
    const textEmbeds = projection && context.graph.scope('text_projection', () => projection.forward(context, output.poolerOutput));
    return { ...output, textEmbeds };
  }

  /** Reads `config.json` and the safetensors weights (single file or sharded) of a model folder; strict. */
  static async fromPretrained(directory: string, options: CLIPTextPretrainedOptions = {}): Promise<CLIPTextModel> {
    const configPath = join(directory, 'config.json');
    const config = parseClipTextConfig(JSON.parse(await platform.readText(configPath)), configPath);
    const reader = await openSafetensors(directory);
    try {
      const withProjection = options.withProjection ?? reader.has(PROJECTION_KEY);
      const model = new CLIPTextModel(config, { random: checkpointInitialized, dtype: options.dtype, withProjection });
      const tensors = await reader.readAll({ asFloat32: true });
      if (!withProjection) tensors.delete(PROJECTION_KEY);
      model.loadStateDict(Object.fromEntries(tensors));
      return model;
    } finally {
      await reader.close();
    }
  }

  /** Writes `config.json` and `model.safetensors` under transformers' names. */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    const architectures = [this.text_projection ? 'CLIPTextModelWithProjection' : 'CLIPTextModel'];
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify({ ...this.config, architectures, model_type: 'clip_text_model' }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'model.safetensors'), this.stateDict(), options);
  }
}
