// Kosmos-G's AlignerNet (official `unilm/models/aligner.py` on torchscale with EncoderDecoderConfig
// defaults: Sub-LN pre-norm layers, exact GELU, embedding scale 1, learned positions indexed 2…L+1).
//   M (inference, stages 2–3):  MLLM states s (B, L, 2048)
//       → encoder_proj: Linear 2048→d + positions, pad rows zeroed and key-masked, L layers, final LN
//       → encoder: 77 learned queries through a non-causal decoder (self-attention, cross-attention
//         to encoder_proj's output with the padding mask, FFN), final LN → (B, 77, d)
//   N (stage 2 only): decoder_query[:L] through a non-causal decoder cross-attending to M's output
//       → decoder_proj: an encoder with its own positions, final LN, Linear d→2048 → (B, L, 2048)
// Stage-2 loss: MSE(M(s), CLIP text states) + MSE(N(M(s)), s)·(77/L), means over all elements,
// padding included.
import { platform, join } from '#platform';
import { z } from 'zod';
import { type DType, hostTensor } from '../onnx/dtype.js';
import { type Graph, type Value, formatShape } from '../graph/graph.js';
import { add, gelu, matmul, mul, not, softmax, where } from '../graph/ops/elementwise.js';
import { dropout, mseLoss } from '../graph/ops/nn.js';
import { expand, reshape, slice, transpose, unsqueeze } from '../graph/ops/shape.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { type SafetensorsReader, writeSafetensors, type WriteOptions } from '../io/safetensors.js';
import { LayerNorm, type UniformSource, linearForward, markLinearWeight, normalTensor, uniformTensor } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { type ExternalWeights, externalBindings } from '../nn/weights.js';

/** Checkpoint prefix of the aligner inside an official Kosmos-G checkpoint. */
export const ALIGNER_PREFIX = 'aligner.';
/** The frozen CLIP text model a stage-2 checkpoint stores under the aligner; the CLIP text model loads it. */
const CLIP_ENCODER_PREFIX = 'clip_encoder.';
/** The parts of N, absent from stage-3 and inference checkpoints. */
const RECONSTRUCTION_PARTS = ['decoder_query', 'decoder.', 'decoder_proj.'];

// ---- config -----------------------------------------------------------------------------------

const size = z.number().int().positive();
const probability = z.number().min(0).lt(1);
const configSchema = z.looseObject({
  encoder_embed_dim: size,
  encoder_attention_heads: size,
  encoder_ffn_embed_dim: size,
  encoder_layers: size,
  decoder_embed_dim: size,
  decoder_attention_heads: size,
  decoder_ffn_embed_dim: size,
  decoder_layers: size,
  /** Width of the MLLM states (2048), hard-coded in aligner.py. */
  input_dim: size,
  /** Learned queries of M: 77, the length of the CLIP text states the U-Net expects. */
  num_queries: size,
  /** Rows of the learned position tables and of decoder_query (32768 in aligner.py); fairseq's positions start at 2, after the padding index, so one token needs 3. */
  position_table_size: size.min(3, { error: 'position_table_size must be at least 3 (positions start at 2, after the padding index)' }),
  dropout: probability,
  attention_dropout: probability,
  activation_dropout: probability,
  no_scale_embedding: z.boolean(),
  // The one architecture implemented here; other torchscale variants are refused by name.
  activation_fn: z.literal('gelu'),
  subln: z.literal(true),
  encoder_normalize_before: z.literal(true),
  decoder_normalize_before: z.literal(true),
  layernorm_embedding: z.literal(false),
  deepnorm: z.literal(false),
  multiway: z.literal(false),
  rel_pos_buckets: z.literal(0),
  moe_freq: z.literal(0),
});

/** torchscale EncoderDecoderConfig attributes plus aligner.py's sizes (reference `config.json` keys). */
export type AlignerConfig = z.infer<typeof configSchema>;

export function parseAlignerConfig(raw: unknown, source = 'aligner config'): AlignerConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${source}: ${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  if (config.encoder_embed_dim !== config.decoder_embed_dim) {
    throw new Error(`${source}: encoder_embed_dim ${config.encoder_embed_dim} and decoder_embed_dim ${config.decoder_embed_dim} must be equal (the stacks cross-attend)`);
  }
  for (const side of ['encoder', 'decoder'] as const) {
    const dim = config[`${side}_embed_dim`];
    const heads = config[`${side}_attention_heads`];
    if (dim % heads !== 0) throw new Error(`${source}: ${side}_embed_dim ${dim} does not split into ${heads} heads`);
  }
  return config;
}

// ---- layers -----------------------------------------------------------------------------------

/** A random source (torchscale initialisers), or null for weights about to be loaded (untouched zero buffers). */
export type Initializer = UniformSource | null;

interface StackOptions {
  dim: number;
  heads: number;
  ffn: number;
  layers: number;
  init: Initializer;
  dtype: DType;
  config: AlignerConfig;
  /** torchscale Sub-LN init: fc1, fc2, out_proj and v_proj scaled by this (not the cross-attention). */
  sublnScale: number;
}

function uniformParameter(init: Initializer, shape: number[], bound: number, dtype: DType): Parameter {
  return new Parameter(init && bound > 0 ? uniformTensor(init, shape, bound, dtype) : hostTensor(dtype, shape));
}

function normalParameter(init: Initializer, shape: number[], dtype: DType): Parameter {
  return new Parameter(init ? normalTensor(init, shape, 1, dtype) : hostTensor(dtype, shape));
}

function dropoutIf(context: TraceContext, x: Value, rate: number): Value {
  return rate > 0 && context.dropoutSeed ? dropout(x, rate, context.dropoutSeed) : x;
}

/** nn.Linear; `bounds` override PyTorch's U(±1/√in) (torchscale's xavier and Sub-LN scaling). */
class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(inFeatures: number, outFeatures: number, init: Initializer, dtype: DType, bounds: { weight?: number; bias?: number } = {}) {
    super();
    this.weight = uniformParameter(init, [outFeatures, inFeatures], bounds.weight ?? 1 / Math.sqrt(inFeatures), dtype);
    this.bias = uniformParameter(init, [outFeatures], bounds.bias ?? 1 / Math.sqrt(inFeatures), dtype);
    markLinearWeight(this.weight);
  }

  forward(context: TraceContext, x: Value): Value {
    return linearForward(context, x, this.weight, this.bias);
  }
}

/** torchscale MultiheadAttention; self-attention carries Sub-LN's `inner_attn_ln`, cross-attention does not. */
class Attention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  readonly inner_attn_ln: LayerNorm | null;

  constructor(private readonly options: StackOptions, kind: 'self' | 'cross') {
    super();
    const { dim, init, dtype } = options;
    const scale = kind === 'self' ? options.sublnScale : 1;
    // reset_parameters: xavier_uniform(gain 1/√2) on q/k/v, xavier_uniform on out_proj, out_proj bias 0.
    const xavier = Math.sqrt(6 / (2 * dim));
    this.q_proj = new Linear(dim, dim, init, dtype, { weight: xavier / Math.SQRT2 });
    this.k_proj = new Linear(dim, dim, init, dtype, { weight: xavier / Math.SQRT2 });
    this.v_proj = new Linear(dim, dim, init, dtype, { weight: (scale * xavier) / Math.SQRT2, bias: scale / Math.sqrt(dim) });
    this.out_proj = new Linear(dim, dim, init, dtype, { weight: scale * xavier, bias: 0 });
    this.inner_attn_ln = kind === 'self' ? new LayerNorm(dim, 1e-5, dtype) : null;
  }

  /** query (B, T, d), keyValue (B, S, d), keyPadding (B, S) bool true at masked keys → (B, T, d). */
  forward(context: TraceContext, query: Value, keyValue: Value, keyPadding: Value | null): Value {
    const { heads, dim } = this.options;
    const headDim = dim / heads;
    const splitHeads = (projected: Value) => transpose(reshape(projected, [projected.size(0), projected.size(1), heads, headDim]), [0, 2, 1, 3]); // (B, H, ·, hd)
    // torchscale scales q (bias included) by head_dim^-0.5 before q·kᵀ.
    const q = splitHeads(mul(this.q_proj.forward(context, query), 1 / Math.sqrt(headDim))); // (B, H, T, hd)
    const k = splitHeads(this.k_proj.forward(context, keyValue)); // (B, H, S, hd)
    const v = splitHeads(this.v_proj.forward(context, keyValue)); // (B, H, S, hd)
    let scores = matmul(q, transpose(k, [0, 1, 3, 2])); // (B, H, T, S)
    if (keyPadding) {
      const keep = reshape(not(keyPadding), [keyPadding.size(0), 1, 1, keyPadding.size(1)]); // (B, 1, 1, S)
      scores = where(keep, scores, query.dtype === 'float64' ? -Number.MAX_VALUE : -3.4028234663852886e38);
    }
    const probabilities = dropoutIf(context, softmax(scores, -1), this.options.config.attention_dropout);
    const attended = matmul(probabilities, v); // (B, H, T, hd)
    let merged = reshape(transpose(attended, [0, 2, 1, 3]), [query.size(0), query.size(1), dim]); // (B, T, d)
    if (this.inner_attn_ln) merged = this.inner_attn_ln.forward(context, merged);
    return this.out_proj.forward(context, merged);
  }
}

/** torchscale FeedForwardNetwork with Sub-LN: fc1 → exact GELU → ffn_layernorm → fc2. */
class FeedForward extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly ffn_layernorm: LayerNorm;

  constructor(private readonly options: StackOptions) {
    super();
    const { dim, ffn, init, dtype, sublnScale } = options;
    this.fc1 = new Linear(dim, ffn, init, dtype, { weight: sublnScale / Math.sqrt(dim), bias: sublnScale / Math.sqrt(dim) });
    this.fc2 = new Linear(ffn, dim, init, dtype, { weight: sublnScale / Math.sqrt(ffn), bias: sublnScale / Math.sqrt(ffn) });
    this.ffn_layernorm = new LayerNorm(ffn, 1e-5, dtype);
  }

  forward(context: TraceContext, x: Value): Value {
    const activated = dropoutIf(context, gelu(this.fc1.forward(context, x)), this.options.config.activation_dropout); // (B, T, F)
    return this.fc2.forward(context, this.ffn_layernorm.forward(context, activated));
  }
}

/**
 * One pre-norm layer: x + SA(LN(x)) [+ x + XA(LN(x), memory)] + x + FFN(LN(x)). Encoder layers
 * have no `encoder_attn`; decoder layers cross-attend to `memory`.
 */
class TransformerLayer extends Module {
  readonly self_attn: Attention;
  readonly self_attn_layer_norm: LayerNorm;
  readonly encoder_attn: Attention | null;
  readonly encoder_attn_layer_norm: LayerNorm | null;
  readonly ffn: FeedForward;
  readonly final_layer_norm: LayerNorm;

  constructor(private readonly options: StackOptions, crossAttention: boolean) {
    super();
    const { dim, dtype } = options;
    this.self_attn = new Attention(options, 'self');
    this.self_attn_layer_norm = new LayerNorm(dim, 1e-5, dtype);
    this.encoder_attn = crossAttention ? new Attention(options, 'cross') : null;
    this.encoder_attn_layer_norm = crossAttention ? new LayerNorm(dim, 1e-5, dtype) : null;
    this.ffn = new FeedForward(options);
    this.final_layer_norm = new LayerNorm(dim, 1e-5, dtype);
  }

  /** x (B, T, d); selfPadding masks keys of x, memoryPadding keys of memory (B, S, d). */
  forward(context: TraceContext, x: Value, selfPadding: Value | null, memory?: { states: Value; padding: Value | null }): Value {
    const graph = context.graph;
    const rate = this.options.config.dropout;
    const residual = (input: Value, update: Value) => add(input, dropoutIf(context, update, rate));
    const normalized = this.self_attn_layer_norm.forward(context, x);
    x = residual(x, graph.scope('self_attn', () => this.self_attn.forward(context, normalized, normalized, selfPadding)));
    if (this.encoder_attn && this.encoder_attn_layer_norm) {
      if (!memory) throw new Error('aligner: a decoder layer needs the encoder output to attend to');
      const crossInput = this.encoder_attn_layer_norm.forward(context, x);
      const crossAttention = this.encoder_attn;
      x = residual(x, graph.scope('encoder_attn', () => crossAttention.forward(context, crossInput, memory.states, memory.padding)));
    }
    const feedForwardInput = this.final_layer_norm.forward(context, x);
    return residual(x, graph.scope('ffn', () => this.ffn.forward(context, feedForwardInput)));
  }
}

/** The learned torchscale PositionalEmbedding (an nn.Embedding), read at rows 2…L+1. */
class PositionTable extends Module {
  readonly weight: Parameter;

  constructor(rows: number, dim: number, init: Initializer, dtype: DType) {
    super();
    this.weight = normalParameter(init, [rows, dim], dtype);
  }

  /** (L, d) rows for positions 2…L+1, as torchscale's PositionalEmbedding (fairseq's offset). */
  forward(context: TraceContext, length: number): Value {
    if (length + 2 > this.weight.shape[0]!) throw new Error(`aligner: ${length} positions need ${length + 2} rows of the position table, it has ${this.weight.shape[0]}`);
    return slice(context.value(this.weight), { starts: [2], ends: [length + 2], axes: [0] });
  }
}

/**
 * torchscale Encoder as aligner.py builds it: optional input projection `embed_tokens`, learned
 * positions, pad rows zeroed and key-masked, layers, final LN, optional `output_projection`.
 */
class TransformerEncoder extends Module {
  readonly embed_tokens: Linear | null;
  readonly embed_positions: PositionTable;
  readonly layers: TransformerLayer[];
  readonly layer_norm: LayerNorm;
  readonly output_projection: Linear | null;

  constructor(private readonly options: StackOptions, projections: { input?: number; output?: number }) {
    super();
    const { dim, init, dtype, config } = options;
    this.embed_tokens = projections.input ? new Linear(projections.input, dim, init, dtype) : null;
    this.embed_positions = new PositionTable(config.position_table_size, dim, init, dtype);
    this.layers = Array.from({ length: options.layers }, () => new TransformerLayer(options, false));
    this.layer_norm = new LayerNorm(dim, 1e-5, dtype);
    this.output_projection = projections.output ? new Linear(dim, projections.output, init, dtype) : null;
  }

  /** x (B, L, in) [padding (B, L) bool] → (B, L, d), or (B, L, out) with an output projection. */
  forward(context: TraceContext, x: Value, padding: Value | null): Value {
    const graph = context.graph;
    const tokens = this.embed_tokens;
    const embedded = tokens ? graph.scope('embed_tokens', () => tokens.forward(context, x)) : x; // (B, L, d)
    const scale = this.options.config.no_scale_embedding ? 1 : Math.sqrt(this.options.dim);
    const length = x.size(1);
    let hidden = add(mul(embedded, scale), graph.scope('embed_positions', () => this.embed_positions.forward(context, length))); // (B, L, d)
    if (padding) hidden = where(unsqueeze(padding, -1), 0, hidden);
    hidden = dropoutIf(context, hidden, this.options.config.dropout);
    this.layers.forEach((layer, index) => {
      hidden = graph.scope(`layers.${index}`, () => layer.forward(context, hidden, padding));
    });
    hidden = graph.scope('layer_norm', () => this.layer_norm.forward(context, hidden));
    const output = this.output_projection;
    return output ? graph.scope('output_projection', () => output.forward(context, hidden)) : hidden;
  }
}

/** torchscale Decoder with causal_mask=False over learned queries (no positions), cross-attending to `memory`. */
class QueryDecoder extends Module {
  readonly layers: TransformerLayer[];
  readonly layer_norm: LayerNorm;

  constructor(private readonly options: StackOptions) {
    super();
    this.layers = Array.from({ length: options.layers }, () => new TransformerLayer(options, true));
    this.layer_norm = new LayerNorm(options.dim, 1e-5, options.dtype);
  }

  /** queries (B, Q, d), memory (B, S, d) [memoryPadding (B, S)] → (B, Q, d). */
  forward(context: TraceContext, queries: Value, memory: Value, memoryPadding: Value | null): Value {
    const scale = this.options.config.no_scale_embedding ? 1 : Math.sqrt(this.options.dim);
    let hidden = dropoutIf(context, mul(queries, scale), this.options.config.dropout);
    this.layers.forEach((layer, index) => {
      hidden = context.graph.scope(`layers.${index}`, () => layer.forward(context, hidden, null, { states: memory, padding: memoryPadding }));
    });
    return context.graph.scope('layer_norm', () => this.layer_norm.forward(context, hidden));
  }
}

// ---- the model --------------------------------------------------------------------------------

export interface AlignerEncoding {
  /** (B, L, d) encoder_proj output (after its final LN). */
  encoderOut: Value;
  /** (B, num_queries, d): the U-Net's encoder_hidden_states. */
  output: Value;
}

export interface Stage2Losses {
  /** MSE(M(s), CLIP text states). */
  mseLoss: Value;
  /** MSE(N(M(s)), s)·(num_queries/L). */
  recLoss: Value;
  /** Their sum, what stage 2 minimises. */
  loss: Value;
}

export class AlignerNet extends Module {
  readonly encoder_proj: TransformerEncoder;
  readonly encoder_query: Parameter;
  readonly encoder: QueryDecoder;
  readonly decoder_query: Parameter | null;
  readonly decoder: QueryDecoder | null;
  readonly decoder_proj: TransformerEncoder | null;

  /** `reconstruction` builds N (decoder_query, decoder, decoder_proj) for stage-2 training. */
  constructor(readonly config: AlignerConfig, options: { init: Initializer; dtype?: DType; reconstruction: boolean }) {
    super();
    const { init } = options;
    const dtype = options.dtype ?? 'float32';
    const dim = config.encoder_embed_dim;
    // torchscale Sub-LN init: √log(2N) for an encoder-only stack, √log(3N) for an encoder-decoder's decoder.
    const encoderStack: StackOptions = {
      dim, heads: config.encoder_attention_heads, ffn: config.encoder_ffn_embed_dim, layers: config.encoder_layers, init, dtype, config,
      sublnScale: Math.sqrt(Math.log(2 * config.encoder_layers)),
    };
    const decoderStack: StackOptions = {
      dim, heads: config.decoder_attention_heads, ffn: config.decoder_ffn_embed_dim, layers: config.decoder_layers, init, dtype, config,
      sublnScale: Math.sqrt(Math.log(3 * config.decoder_layers)),
    };
    this.encoder_proj = new TransformerEncoder(encoderStack, { input: config.input_dim });
    this.encoder_query = normalParameter(init, [config.num_queries, dim], dtype);
    this.encoder = new QueryDecoder(decoderStack);
    this.decoder_query = options.reconstruction ? normalParameter(init, [config.position_table_size, dim], dtype) : null;
    this.decoder = options.reconstruction ? new QueryDecoder(decoderStack) : null;
    this.decoder_proj = options.reconstruction ? new TransformerEncoder(encoderStack, { output: config.input_dim }) : null;
  }

  /** M: condition (B, L, input_dim), padding (B, L) bool true at `<pad>` → encoder_proj output and the aligned (B, Q, d). */
  encode(context: TraceContext, condition: Value, padding: Value): AlignerEncoding {
    const graph = context.graph;
    if (condition.rank !== 3 || condition.shape[2] !== this.config.input_dim) throw new Error(`aligner: condition must be (B, L, ${this.config.input_dim}), got ${condition}`);
    if (padding.dtype !== 'bool' || padding.shape.join() !== condition.shape.slice(0, 2).join()) throw new Error(`aligner: padding mask must be bool ${formatShape(condition.shape.slice(0, 2))}, got ${padding}`);
    const encoderOut = graph.scope('encoder_proj', () => this.encoder_proj.forward(context, condition, padding)); // (B, L, d)
    const queries = expandQueries(context.value(this.encoder_query), condition.size(0)); // (B, Q, d)
    const output = graph.scope('encoder', () => this.encoder.forward(context, queries, encoderOut, padding));
    return { encoderOut, output };
  }

  /** M's output (B, Q, d): the drop-in for CLIP text states. */
  forward(context: TraceContext, condition: Value, padding: Value): Value {
    return this.encode(context, condition, padding).output;
  }

  /** N: aligned (B, Q, d) → reconstruction of the MLLM states (B, length, input_dim). */
  reconstruct(context: TraceContext, aligned: Value, length: number): Value {
    const { decoder_query: table, decoder, decoder_proj: projection } = this;
    if (!table || !decoder || !projection) throw new Error('aligner: this model was built without the reconstruction decoder N');
    if (length > table.shape[0]!) throw new Error(`aligner: ${length} positions exceed the ${table.shape[0]} rows of decoder_query`);
    const graph = context.graph;
    const rows = slice(context.value(table), { starts: [0], ends: [length], axes: [0] }); // (L, d)
    const queries = expandQueries(rows, aligned.size(0)); // (B, L, d)
    const decoded = graph.scope('decoder', () => decoder.forward(context, queries, aligned, null)); // (B, L, d)
    return graph.scope('decoder_proj', () => projection.forward(context, decoded, null)); // (B, L, input_dim)
  }

  /** Stage-2 objective for MLLM states `condition` and CLIP text states `clipTarget` (B, Q, d). */
  stage2Losses(context: TraceContext, condition: Value, padding: Value, clipTarget: Value): Stage2Losses {
    const aligned = this.forward(context, condition, padding);
    const length = condition.size(1);
    const mseValue = mseLoss(aligned, clipTarget);
    const recValue = mul(mseLoss(this.reconstruct(context, aligned, length), condition), this.config.num_queries / length);
    return { mseLoss: mseValue, recLoss: recValue, loss: add(mseValue, recValue) };
  }

  /** Binds the weights of an inference graph to the checkpoint tensors (`aligner.*`) by byte offset. */
  /** The CLIP encoder a stage-2 checkpoint carries beside the aligner, and N when this model has none. */
  override unreadCheckpointKeys(): readonly string[] {
    return [CLIP_ENCODER_PREFIX, ...(this.decoder ? [] : RECONSTRUCTION_PARTS)];
  }

  externalWeights(graph: Graph, reader: SafetensorsReader): ExternalWeights {
    return externalBindings(graph, this, reader, { prefix: ALIGNER_PREFIX });
  }

  /**
   * Reads `config.json` and the `aligner.*` tensors strictly. N is built when the checkpoint has it
   * (stage 2) unless `reconstruction` says otherwise; a checkpoint's `aligner.clip_encoder.*` is the
   * frozen CLIP text model, another component.
   */
  static async fromPretrained(directory: string, options: { dtype?: DType; reconstruction?: boolean } = {}): Promise<AlignerNet> {
    const configPath = join(directory, 'config.json');
    const config = parseAlignerConfig(await readJson(configPath), configPath);
    const reader = await openSafetensors(directory);
    try {
      const reconstruction = options.reconstruction ?? reader.has(`${ALIGNER_PREFIX}decoder_query`);
      const model = new AlignerNet(config, { init: null, dtype: options.dtype, reconstruction });
      const ignored = (key: string) => key.startsWith(CLIP_ENCODER_PREFIX) || (!reconstruction && RECONSTRUCTION_PARTS.some((part) => key === part || key.startsWith(part)));
      await loadStrict(model, reader, ALIGNER_PREFIX, ignored);
      return model;
    } finally {
      await reader.close();
    }
  }

  /** Writes `config.json` and `model.safetensors` with the official `aligner.*` key names. */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    const tensors = Object.fromEntries(Object.entries(this.stateDict()).map(([key, tensor]) => [ALIGNER_PREFIX + key, tensor]));
    await writeSafetensors(join(directory, 'model.safetensors'), tensors, options);
  }
}

/** A learned query table (rows, d) repeated over the batch. */
function expandQueries(rows: Value, batch: number): Value {
  return expand(unsqueeze(rows, 0), [batch, rows.size(0), rows.size(1)]); // (B, rows, d)
}

// ---- checkpoint I/O ---------------------------------------------------------------------------

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await platform.readText(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: invalid JSON (${(error as Error).message})`);
  }
}

/**
 * Strictly loads every parameter from the tensors `${prefix}${key}`: missing and unexpected keys
 * under the prefix are listed by name (`ignored` ones excepted; tensors outside the prefix belong
 * to other components of a full checkpoint), shape mismatches name both shapes. Tensors are read
 * one at a time, so the peak is the model plus one tensor.
 */
async function loadStrict(model: Module, reader: SafetensorsReader, prefix: string, ignored: (key: string) => boolean): Promise<void> {
  const parameters = new Map(model.namedParameters());
  const stored = reader.names().filter((name) => name.startsWith(prefix)).map((name) => name.slice(prefix.length));
  const storedSet = new Set(stored);
  const missing = [...parameters.keys()].filter((key) => !storedSet.has(key)).map((key) => prefix + key);
  const unexpected = stored.filter((key) => !parameters.has(key) && !ignored(key)).map((key) => prefix + key);
  if (missing.length || unexpected.length) {
    const parts = [];
    if (missing.length) parts.push(`missing keys: ${missing.join(', ')}`);
    if (unexpected.length) parts.push(`unexpected keys: ${unexpected.join(', ')}`);
    throw new Error(`${reader.path} does not match the aligner (${parts.join('; ')})`);
  }
  for (const [key, parameter] of parameters) {
    const shape = reader.info(prefix + key).shape;
    if (shape.join() !== parameter.shape.join()) {
      throw new Error(`${prefix + key}: checkpoint shape ${formatShape(shape)} does not match model shape ${formatShape(parameter.shape)}`);
    }
  }
  for (const key of parameters.keys()) model.loadStateDict({ [key]: await reader.read(prefix + key, { asFloat32: true }) }, { strict: false });
}
