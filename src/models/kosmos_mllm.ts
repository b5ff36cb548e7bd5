// Kosmos-G's multimodal large language model: the official `unilm/models/gpt.py` LMDecoder on
// torchscale's Decoder with the `kosmosg_xl` flags. Per layer (MAGNETO Sub-LN, residual scale 1):
//   x ← x + out_proj(inner_attn_ln(causal_attention(self_attn_layer_norm(x))))
//   x ← x + fc2(ffn_layernorm(gelu(fc1(final_layer_norm(x)))))
// Input embedding: √d·(token embeddings with image features written into the image-mask slots)
// + fairseq sinusoidal positions counted from 2. No xPos: the checkpoint carries a SoPE buffer, but
// LMDecoder.forward never passes relative positions to the layers. The output Kosmos-G uses is the
// final-LayerNorm hidden state at every position; the tied LM head serves stage-1 training.
import { platform, join } from '#platform';
import { z } from 'zod';
import { type DType, type HostTensor, hostTensor } from '../onnx/dtype.js';
import { type Graph, type Value, formatShape } from '../graph/graph.js';
import {
  add, cast, cos, cumsum, equal, gelu, matmul, max, mul, not, sin, softmax, sub, where,
} from '../graph/ops/elementwise.js';
import { crossEntropy, dropout, embedding, linear } from '../graph/ops/nn.js';
import { concat, gather, reshape, transpose, unsqueeze } from '../graph/ops/shape.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { type SafetensorsReader, writeSafetensors, type WriteOptions } from '../io/safetensors.js';
import { LayerNorm, type UniformSource, linearForward, markLinearWeight, normalTensor, uniformTensor } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { type ExternalWeights, externalBindings } from '../nn/weights.js';

/** Checkpoint prefix of the MLLM inside an official Kosmos-G checkpoint. */
export const KOSMOS_MLLM_PREFIX = 'gpt_model.decoder.';

/** fairseq Dictionary `<pad>` id. Positions count from padding index + 1 = 2. */
export const PAD_INDEX = 1;

/**
 * Checkpoint tensors that are not parameters: fairseq's `_float_tensor` only tracks device and
 * dtype, and `self_attn_sope.scale` is the xPos buffer LMDecoder never applies. Both are derived
 * from the config, so a strict loader accepts and ignores them; the tied `output_projection.weight`
 * is accepted only if it equals `embed_tokens.weight`.
 */
const IGNORED_BUFFERS = ['embed_positions._float_tensor', 'self_attn_sope.scale'];
const TIED_HEAD_KEY = 'output_projection.weight';

// ---- config -----------------------------------------------------------------------------------

const probability = z.number().min(0).lt(1);
const configSchema = z.looseObject({
  decoder_embed_dim: z.number().int().positive(),
  decoder_attention_heads: z.number().int().positive(),
  decoder_ffn_embed_dim: z.number().int().positive(),
  decoder_layers: z.number().int().positive(),
  /** torchscale leaves -1 here when the vocabulary comes from the dictionary; the checkpoint's embedding then decides. */
  vocab_size: z.number().int(),
  dropout: probability,
  attention_dropout: probability,
  activation_dropout: probability,
  no_scale_embedding: z.boolean(),
  // The one architecture implemented here; other torchscale variants are refused by name.
  activation_fn: z.literal('gelu'),
  subln: z.literal(true),
  decoder_normalize_before: z.literal(true),
  share_decoder_input_output_embed: z.literal(true),
  layernorm_embedding: z.literal(false),
  deepnorm: z.literal(false),
  multiway: z.literal(false),
  rel_pos_buckets: z.literal(0),
  moe_freq: z.literal(0),
});

/** The torchscale DecoderConfig attributes the MLLM reads (reference `config.json` keys). */
export type KosmosMllmConfig = z.infer<typeof configSchema>;

export function parseKosmosMllmConfig(raw: unknown, source = 'MLLM config'): KosmosMllmConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${source}: ${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  if (config.decoder_embed_dim % config.decoder_attention_heads !== 0) {
    throw new Error(`${source}: decoder_embed_dim ${config.decoder_embed_dim} does not split into ${config.decoder_attention_heads} heads`);
  }
  if (config.decoder_embed_dim % 2 !== 0) throw new Error(`${source}: decoder_embed_dim ${config.decoder_embed_dim} must be even (sin/cos position halves)`);
  return config;
}

// ---- layers -----------------------------------------------------------------------------------

/**
 * Parameter initialisation: a random source (PyTorch/torchscale initialisers), or null for a model
 * whose weights come from a checkpoint (zero-filled buffers whose pages stay untouched until loaded).
 */
export type Initializer = UniformSource | null;

function zerosParameter(shape: number[], dtype: DType): Parameter {
  return new Parameter(hostTensor(dtype, shape));
}

function uniformParameter(init: Initializer, shape: number[], bound: number, dtype: DType): Parameter {
  return init && bound > 0 ? new Parameter(uniformTensor(init, shape, bound, dtype)) : zerosParameter(shape, dtype);
}

/** nn.Linear; `weightBound`/`biasBound` override PyTorch's U(±1/√in) (torchscale's xavier and Sub-LN scaling). */
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

interface LayerOptions {
  config: KosmosMllmConfig;
  init: Initializer;
  dtype: DType;
  /** torchscale Sub-LN: fc1, fc2, out_proj and v_proj (weights and biases) are scaled by √log(2·layers). */
  sublnScale: number;
}

function dropoutIf(context: TraceContext, x: Value, rate: number): Value {
  return rate > 0 && context.dropoutSeed ? dropout(x, rate, context.dropoutSeed) : x;
}

/** torchscale MultiheadAttention with Sub-LN (`inner_attn_ln` before `out_proj`). */
class SelfAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  readonly inner_attn_ln: LayerNorm;

  constructor(private readonly options: LayerOptions) {
    super();
    const { config, init, dtype, sublnScale } = options;
    const dim = config.decoder_embed_dim;
    // reset_parameters: xavier_uniform(gain 1/√2) on q/k/v, xavier_uniform on out_proj (bound √(6/(2d))), out_proj bias 0.
    const xavier = Math.sqrt(6 / (2 * dim));
    const inBias = 1 / Math.sqrt(dim);
    this.q_proj = new Linear(dim, dim, init, dtype, { weight: xavier / Math.SQRT2 });
    this.k_proj = new Linear(dim, dim, init, dtype, { weight: xavier / Math.SQRT2 });
    this.v_proj = new Linear(dim, dim, init, dtype, { weight: (sublnScale * xavier) / Math.SQRT2, bias: sublnScale * inBias });
    this.out_proj = new Linear(dim, dim, init, dtype, { weight: sublnScale * xavier, bias: 0 });
    this.inner_attn_ln = new LayerNorm(dim, 1e-5, dtype);
  }

  /** x (B, T, D) → (B, T, D); `causalMask` (T, T) is added to the scores. */
  forward(context: TraceContext, x: Value, causalMask: Value): Value {
    const heads = this.options.config.decoder_attention_heads;
    const [batch, length, dim] = x.shape as [number, number, number];
    const headDim = dim / heads;
    const splitHeads = (projected: Value) => transpose(reshape(projected, [batch, length, heads, headDim]), [0, 2, 1, 3]); // (B, H, T, hd)
    // torchscale scales q (bias included) by head_dim^-0.5 before q·kᵀ.
    const query = splitHeads(mul(this.q_proj.forward(context, x), 1 / Math.sqrt(headDim)));
    const key = splitHeads(this.k_proj.forward(context, x));
    const value = splitHeads(this.v_proj.forward(context, x));
    const scores = add(matmul(query, transpose(key, [0, 1, 3, 2])), causalMask); // (B, H, T, T)
    const probabilities = dropoutIf(context, softmax(scores, -1), this.options.config.attention_dropout);
    const attended = matmul(probabilities, value); // (B, H, T, hd)
    const merged = reshape(transpose(attended, [0, 2, 1, 3]), [batch, length, dim]); // (B, T, D)
    return this.out_proj.forward(context, this.inner_attn_ln.forward(context, merged));
  }
}

/** torchscale FeedForwardNetwork with Sub-LN: fc1 → exact GELU → ffn_layernorm → fc2. */
class FeedForward extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly ffn_layernorm: LayerNorm;

  constructor(private readonly options: LayerOptions) {
    super();
    const { config, init, dtype, sublnScale } = options;
    const dim = config.decoder_embed_dim;
    const hidden = config.decoder_ffn_embed_dim;
    this.fc1 = new Linear(dim, hidden, init, dtype, { weight: sublnScale / Math.sqrt(dim), bias: sublnScale / Math.sqrt(dim) });
    this.fc2 = new Linear(hidden, dim, init, dtype, { weight: sublnScale / Math.sqrt(hidden), bias: sublnScale / Math.sqrt(hidden) });
    this.ffn_layernorm = new LayerNorm(hidden, 1e-5, dtype);
  }

  forward(context: TraceContext, x: Value): Value {
    const activated = dropoutIf(context, gelu(this.fc1.forward(context, x)), this.options.config.activation_dropout); // (B, T, F)
    return this.fc2.forward(context, this.ffn_layernorm.forward(context, activated));
  }
}

class DecoderLayer extends Module {
  readonly self_attn: SelfAttention;
  readonly self_attn_layer_norm: LayerNorm;
  readonly ffn: FeedForward;
  readonly final_layer_norm: LayerNorm;

  constructor(private readonly options: LayerOptions) {
    super();
    const dim = options.config.decoder_embed_dim;
    this.self_attn = new SelfAttention(options);
    this.self_attn_layer_norm = new LayerNorm(dim, 1e-5, options.dtype);
    this.ffn = new FeedForward(options);
    this.final_layer_norm = new LayerNorm(dim, 1e-5, options.dtype);
  }

  forward(context: TraceContext, x: Value, causalMask: Value): Value {
    const rate = this.options.config.dropout;
    const attended = context.graph.scope('self_attn', () => this.self_attn.forward(context, this.self_attn_layer_norm.forward(context, x), causalMask));
    const afterAttention = add(x, dropoutIf(context, attended, rate));
    const transformed = context.graph.scope('ffn', () => this.ffn.forward(context, this.final_layer_norm.forward(context, afterAttention)));
    return add(afterAttention, dropoutIf(context, transformed, rate));
  }
}

/** fairseq `Embedding`: N(0, d^-½) with the padding row zeroed. */
class TokenEmbedding extends Module {
  readonly weight: Parameter;

  constructor(vocab: number, dim: number, init: Initializer, dtype: DType) {
    super();
    this.weight = init ? new Parameter(normalTensor(init, [vocab, dim], 1 / Math.sqrt(dim), dtype)) : zerosParameter([vocab, dim], dtype);
    if (init && vocab > PAD_INDEX) (this.weight.data.data as Float32Array | Float64Array).fill(0, PAD_INDEX * dim, (PAD_INDEX + 1) * dim);
  }
}

// ---- the model --------------------------------------------------------------------------------

/** Image features to write into the token embeddings (`img_gpt_input_mask` semantics). */
export interface ImageInjection {
  /** (B, L) bool: true where an image feature replaces the token embedding. */
  mask: Value;
  /** (N, D) features in mask order (batch-major, prompt order); N must equal the number of true entries. */
  features: Value;
}

/** Every intermediate the reference fixture records. */
export interface MllmTrace {
  /** (B, L, D) sinusoidal position vectors (zeros at padding). */
  positions: Value;
  /** (B, L, D) √d·embeddings + positions: the first layer's input. */
  embeddingOutput: Value;
  /** (B, L, D) each layer's output, before the final LayerNorm. */
  layerOutputs: Value[];
  /** (B, L, D) hidden states after the final LayerNorm: what the aligner reads. */
  hidden: Value;
}

export class KosmosGMllm extends Module {
  readonly embed_tokens: TokenEmbedding;
  readonly layers: DecoderLayer[];
  readonly layer_norm: LayerNorm;

  constructor(readonly config: KosmosMllmConfig, options: { init: Initializer; dtype?: DType }) {
    super();
    const dtype = options.dtype ?? 'float32';
    if (config.vocab_size <= 0) throw new Error(`MLLM config: vocab_size ${config.vocab_size} must be positive to build a model (a checkpoint's embedding fixes it in fromPretrained)`);
    const sublnScale = Math.sqrt(Math.log(2 * config.decoder_layers));
    const layerOptions = { config, init: options.init, dtype, sublnScale };
    this.embed_tokens = new TokenEmbedding(config.vocab_size, config.decoder_embed_dim, options.init, dtype);
    this.layers = Array.from({ length: config.decoder_layers }, () => new DecoderLayer(layerOptions));
    this.layer_norm = new LayerNorm(config.decoder_embed_dim, 1e-5, dtype);
  }

  get dtype(): DType {
    return this.embed_tokens.weight.dtype;
  }

  /** tokens (B, L) int64 [+ image features] → every intermediate of the forward pass. */
  trace(context: TraceContext, tokens: Value, image?: ImageInjection): MllmTrace {
    const graph = context.graph;
    const dim = this.config.decoder_embed_dim;
    if (tokens.dtype !== 'int64' || tokens.rank !== 2 || !tokens.isStatic) throw new Error(`MLLM: tokens must be static int64 (B, L), got ${tokens}`);
    const length = tokens.size(1);
    const embeddingWeight = context.value(this.embed_tokens.weight);
    let embeddings = graph.scope('embed_tokens', () => embedding(embeddingWeight, tokens)); // (B, L, D)
    if (image) embeddings = graph.scope('image_injection', () => injectImageFeatures(embeddings, image, dim));
    const positions = graph.scope('embed_positions', () => sinusoidalPositions(graph, tokens, dim, this.dtype));
    // The √d scale multiplies token and injected image embeddings alike (no_scale_embedding=False).
    const scale = this.config.no_scale_embedding ? 1 : Math.sqrt(dim);
    const embeddingOutput = add(mul(embeddings, scale), positions); // (B, L, D)
    let x = dropoutIf(context, embeddingOutput, this.config.dropout);
    const causalMask = causalMaskConstant(graph, length, this.dtype);
    const layerOutputs: Value[] = [];
    this.layers.forEach((layer, index) => {
      x = graph.scope(`layers.${index}`, () => layer.forward(context, x, causalMask));
      layerOutputs.push(x);
    });
    const hidden = graph.scope('layer_norm', () => this.layer_norm.forward(context, x)); // (B, L, D)
    return { positions, embeddingOutput, layerOutputs, hidden };
  }

  /** tokens (B, L) int64 [+ image mask (B, L) bool, features (N, D)] → hidden states (B, L, D) after the final LayerNorm. */
  forward(context: TraceContext, tokens: Value, imageMask?: Value, imageFeatures?: Value): Value {
    if (!imageMask !== !imageFeatures) throw new Error('MLLM: give both the image mask and the image features, or neither');
    return this.trace(context, tokens, imageMask && imageFeatures ? { mask: imageMask, features: imageFeatures } : undefined).hidden;
  }

  /** hidden (B, L, D) → logits (B, L, V) through the output projection tied to `embed_tokens`. */
  logits(context: TraceContext, hidden: Value): Value {
    return context.graph.scope('output_projection', () => linear(hidden, context.value(this.embed_tokens.weight)));
  }

  /**
   * Stage-1 language-modelling loss: mean cross-entropy of the next-token logits against `targets`
   * (B, L) int64, `<pad>` targets ignored (fairseq's cross_entropy criterion, per token).
   */
  languageModelingLoss(context: TraceContext, tokens: Value, targets: Value, image?: ImageInjection): Value {
    if (targets.shape.join() !== tokens.shape.join()) throw new Error(`MLLM: targets ${targets} do not match tokens ${tokens}`);
    return crossEntropy(this.logits(context, this.trace(context, tokens, image).hidden), targets, PAD_INDEX);
  }

  override unreadCheckpointKeys(): readonly string[] {
    return [...IGNORED_BUFFERS, TIED_HEAD_KEY];
  }

  /** Binds the weights of an inference graph to the checkpoint tensors (`gpt_model.decoder.*`) by byte offset. */
  externalWeights(graph: Graph, reader: SafetensorsReader): ExternalWeights {
    return externalBindings(graph, this, reader, { prefix: KOSMOS_MLLM_PREFIX });
  }

  /** Reads `config.json` and the `gpt_model.decoder.*` tensors of `model.safetensors` (single or sharded), strictly. */
  static async fromPretrained(directory: string, options: { dtype?: DType } = {}): Promise<KosmosGMllm> {
    const config = parseKosmosMllmConfig(await readJson(join(directory, 'config.json')), join(directory, 'config.json'));
    const reader = await openSafetensors(directory);
    try {
      const embeddingKey = `${KOSMOS_MLLM_PREFIX}embed_tokens.weight`;
      if (!reader.has(embeddingKey)) throw new Error(`${reader.path}: missing tensors: ${embeddingKey}`);
      const vocab = reader.info(embeddingKey).shape[0]!;
      if (config.vocab_size > 0 && config.vocab_size !== vocab) throw new Error(`${embeddingKey}: checkpoint has ${vocab} rows, config vocab_size is ${config.vocab_size}`);
      const model = new KosmosGMllm({ ...config, vocab_size: vocab }, { init: null, dtype: options.dtype });
      await loadStrict(model, reader, KOSMOS_MLLM_PREFIX, IGNORED_BUFFERS);
      if (reader.has(KOSMOS_MLLM_PREFIX + TIED_HEAD_KEY)) {
        const head = await reader.read(KOSMOS_MLLM_PREFIX + TIED_HEAD_KEY, { asFloat32: true });
        const tied = model.embed_tokens.weight.data.data;
        if (head.shape.join() !== model.embed_tokens.weight.shape.join() || head.data.some((value, i) => Number(value) !== Number(tied[i]))) {
          throw new Error(`${KOSMOS_MLLM_PREFIX + TIED_HEAD_KEY} differs from ${embeddingKey}, but share_decoder_input_output_embed ties them`);
        }
      }
      return model;
    } finally {
      await reader.close();
    }
  }

  /** Writes `config.json` and `model.safetensors` with the official key names (the tied head is not duplicated). */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    const tensors = Object.fromEntries(Object.entries(this.stateDict()).map(([key, tensor]) => [KOSMOS_MLLM_PREFIX + key, tensor]));
    await writeSafetensors(join(directory, 'model.safetensors'), tensors, options);
  }
}

// ---- embedding pieces -------------------------------------------------------------------------

/** Writes features (N, D) into the rows of embeddings (B, L, D) where mask (B, L) is true, in row-major mask order. */
function injectImageFeatures(embeddings: Value, image: ImageInjection, dim: number): Value {
  const { mask, features } = image;
  const [batch, length] = embeddings.shape as [number, number];
  if (mask.dtype !== 'bool' || mask.shape.join() !== [batch, length].join()) throw new Error(`MLLM: image mask must be bool (${batch}, ${length}), got ${mask}`);
  if (features.rank !== 2 || features.shape[1] !== dim || features.dtype !== embeddings.dtype) throw new Error(`MLLM: image features must be ${embeddings.dtype} (N, ${dim}), got ${features}`);
  const flatMask = reshape(mask, [batch * length]); // (B·L)
  // Slot of each masked position in the feature list: running count of true entries − 1.
  const slot = max(sub(cumsum(cast(flatMask, 'int64'), 0), 1), 0); // (B·L)
  const picked = gather(features, slot, 0); // (B·L, D)
  const flatEmbeddings = reshape(embeddings, [batch * length, dim]); // (B·L, D)
  return reshape(where(unsqueeze(flatMask, -1), picked, flatEmbeddings), [batch, length, dim]); // (B, L, D)
}

/**
 * fairseq SinusoidalPositionalEmbedding: position p = padding index + running count of non-pad
 * tokens (2, 3, … for a right-padded row); row p = [sin(p·w_i)…, cos(p·w_i)…] with
 * w_i = exp(−i·ln(10000)/(half − 1)); padding positions give zeros.
 */
function sinusoidalPositions(graph: Graph, tokens: Value, dim: number, dtype: DType): Value {
  const half = dim / 2;
  const step = Math.log(10000) / (half - 1);
  // fairseq builds the table in float32: frequencies exp(i·(−step)) rounded to float32.
  const frequencies = Array.from({ length: half }, (_, i) => (dtype === 'float64' ? Math.exp(-i * step) : Math.fround(Math.exp(Math.fround(i * Math.fround(-step))))));
  const frequencyValue = graph.constant({ dtype, shape: [half], data: dtype === 'float64' ? Float64Array.from(frequencies) : Float32Array.from(frequencies) } as HostTensor, 'frequencies');
  const isPad = equal(tokens, PAD_INDEX); // (B, L)
  const nonPad = cast(not(isPad), 'int64');
  const positionIds = add(mul(cumsum(nonPad, 1), nonPad), PAD_INDEX); // (B, L)
  const angles = mul(unsqueeze(cast(positionIds, dtype), -1), frequencyValue); // (B, L, half)
  const table = concat([sin(angles), cos(angles)], -1); // (B, L, D)
  return where(unsqueeze(isPad, -1), 0, table);
}

/** torchscale's causal mask: −∞ (here the lowest finite value) above the diagonal. */
function causalMaskConstant(graph: Graph, length: number, dtype: DType): Value {
  const lowest = dtype === 'float64' ? -Number.MAX_VALUE : -3.4028234663852886e38;
  const data = dtype === 'float64' ? new Float64Array(length * length) : new Float32Array(length * length);
  for (let t = 0; t < length; t++) for (let s = t + 1; s < length; s++) data[t * length + s] = lowest;
  return graph.constant({ dtype, shape: [length, length], data } as HostTensor, 'causal_mask');
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
 * Strictly loads every parameter of `model` from the tensors `${prefix}${key}`: missing and
 * unexpected keys under the prefix are listed by name (`ignored` buffers excepted; tensors outside
 * the prefix belong to other components of a full checkpoint), shape mismatches name both shapes.
 * Tensors are read one at a time, so the peak is the model plus one tensor.
 */
async function loadStrict(model: Module, reader: SafetensorsReader, prefix: string, ignored: readonly string[]): Promise<void> {
  const parameters = new Map(model.namedParameters());
  const stored = reader.names().filter((name) => name.startsWith(prefix)).map((name) => name.slice(prefix.length));
  const storedSet = new Set(stored);
  const missing = [...parameters.keys()].filter((key) => !storedSet.has(key)).map((key) => prefix + key);
  const unexpected = stored.filter((key) => !parameters.has(key) && !ignored.includes(key) && key !== TIED_HEAD_KEY).map((key) => prefix + key);
  if (missing.length || unexpected.length) {
    const parts = [];
    if (missing.length) parts.push(`missing keys: ${missing.join(', ')}`);
    if (unexpected.length) parts.push(`unexpected keys: ${unexpected.join(', ')}`);
    throw new Error(`${reader.path} does not match the MLLM (${parts.join('; ')})`);
  }
  for (const [key, parameter] of parameters) {
    const shape = reader.info(prefix + key).shape;
    if (shape.join() !== parameter.shape.join()) {
      throw new Error(`${prefix + key}: checkpoint shape ${formatShape(shape)} does not match model shape ${formatShape(parameter.shape)}`);
    }
  }
  for (const key of parameters.keys()) model.loadStateDict({ [key]: await reader.read(prefix + key, { asFloat32: true }) }, { strict: false });
}
