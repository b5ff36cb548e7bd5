// Kosmos-G's XConnector (unilm/models/connector.py): turns the vision tower's tokens of each image
// into a fixed number of vectors in the MLLM's embedding space. A Linear maps every token to the
// MLLM width, then learned latent queries attend once over concat(projected tokens, latents) with a
// fairseq MultiheadAttention. No residual, no LayerNorm, no feed-forward. The official checkpoint
// keys are `img_connector.{dense, latent_query, x_attn.{q,k,v,out}_proj}`.
import { platform, join } from '#platform';
import { z } from 'zod';
import type { HostTensor } from '../onnx/dtype.js';
import type { Graph, Value } from '../graph/graph.js';
import { matmul, mul, softmax } from '../graph/ops/elementwise.js';
import { dropout } from '../graph/ops/nn.js';
import { concat, expand, reshape, transpose, unsqueeze } from '../graph/ops/shape.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { type SafetensorsReader, writeSafetensors, type WriteOptions } from '../io/safetensors.js';
import { type LayerOptions, Linear, normalTensor, checkpointInitialized } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { type ExternalWeights, externalBindings } from '../nn/weights.js';

// ---------------------------------------------------------------------------------------------
// Configuration: the XConnector(input_dim, output_dim, args) constructor arguments.

const configSchema = z
  .object({
    /** Width of the vision tokens (1024 for ViT-L/14). */
    input_dim: z.number().int().positive(),
    /** Width of the MLLM embeddings (2048). */
    output_dim: z.number().int().positive(),
    /** Learned queries, i.e. vectors per image (64). */
    latent_query_num: z.number().int().positive(),
    decoder_attention_heads: z.number().int().positive(),
    /** Dropout on the attention probabilities while training (0.1 in the official runs). */
    attention_dropout: z.number().min(0).lt(1),
  })
  .superRefine((config, issues) => {
    if (config.output_dim % config.decoder_attention_heads !== 0) {
      issues.addIssue({ code: 'custom', path: ['decoder_attention_heads'], message: `output_dim ${config.output_dim} does not split into ${config.decoder_attention_heads} heads` });
    }
  });

export type XConnectorConfig = z.output<typeof configSchema>;

/** The connector of the released Kosmos-G (ViT-L/14 tokens → 64 vectors of the 2048-wide MLLM). */
export const KOSMOS_G_XCONNECTOR_CONFIG: XConnectorConfig = {
  input_dim: 1024,
  output_dim: 2048,
  latent_query_num: 64,
  decoder_attention_heads: 32,
  attention_dropout: 0.1,
};

/** Validates a parsed config.json; unknown keys are ignored. `source` names the file in errors. */
export function parseXConnectorConfig(json: unknown, source?: string): XConnectorConfig {
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${source ? `${source}: ` : ''}invalid XConnector config:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The connector's prefix in Kosmos-G checkpoints. */
export const XCONNECTOR_PREFIX = 'img_connector.';

function scoped<T>(context: TraceContext, name: string, build: () => T): T {
  return context.graph.scope(name, build);
}

// ---------------------------------------------------------------------------------------------
// fairseq MultiheadAttention (encoder-decoder attention: q from the query, k and v from the key).

export class FairseqMultiheadAttention extends Module {
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly q_proj: Linear;
  readonly out_proj: Linear;

  constructor(
    embedDim: number,
    readonly heads: number,
    readonly attentionDropout: number,
    options: LayerOptions,
  ) {
    super();
    this.k_proj = new Linear(embedDim, embedDim, options);
    this.v_proj = new Linear(embedDim, embedDim, options);
    this.q_proj = new Linear(embedDim, embedDim, options);
    this.out_proj = new Linear(embedDim, embedDim, options);
  }

  /** query (B, T, D), key and value (B, S, D) → (B, T, D). Dropout applies only when the context has a seed. */
  forward(context: TraceContext, query: Value, key: Value, value: Value): Value {
    const [batch, width] = [query.shape[0]!, query.size(2)];
    const headDim = width / this.heads;
    const heads = (x: Value) => transpose(reshape(x, [batch, x.shape[1]!, this.heads, headDim], [x]), [0, 2, 1, 3]); // (B, H, ·, head_dim)
    // fairseq scales q by head_dim^-1/2 after the projection, bias included.
    const q = heads(mul(scoped(context, 'q_proj', () => this.q_proj.forward(context, query)), headDim ** -0.5)); // (B, H, T, head_dim)
    const k = heads(scoped(context, 'k_proj', () => this.k_proj.forward(context, key))); // (B, H, S, head_dim)
    const v = heads(scoped(context, 'v_proj', () => this.v_proj.forward(context, value))); // (B, H, S, head_dim)
    let probabilities = softmax(matmul(q, transpose(k, [0, 1, 3, 2])), -1); // (B, H, T, S)
    if (context.dropoutSeed && this.attentionDropout > 0) probabilities = dropout(probabilities, this.attentionDropout, context.dropoutSeed);
    const attended = transpose(matmul(probabilities, v), [0, 2, 1, 3]); // (B, T, H, head_dim)
    const merged = reshape(attended, [batch, query.shape[1]!, width], [query]); // (B, T, D)
    return scoped(context, 'out_proj', () => this.out_proj.forward(context, merged));
  }
}

// ---------------------------------------------------------------------------------------------
// The connector.

export class XConnector extends Module {
  readonly dense: Linear;
  /** (Q, D), initialised N(0, 1) as torch.randn. */
  readonly latent_query: Parameter;
  readonly x_attn: FairseqMultiheadAttention;

  constructor(readonly config: XConnectorConfig, options: LayerOptions) {
    super();
    this.dense = new Linear(config.input_dim, config.output_dim, options);
    this.latent_query = new Parameter(normalTensor(options.random, [config.latent_query_num, config.output_dim], 1, options.dtype));
    this.x_attn = new FairseqMultiheadAttention(config.output_dim, config.decoder_attention_heads, config.attention_dropout, options);
  }

  /** dense(tokens): image tokens (N, T, input_dim) → (N, T, output_dim). */
  project(context: TraceContext, imageTokens: Value): Value {
    return scoped(context, 'dense', () => this.dense.forward(context, imageTokens));
  }

  /** Image tokens (N, T, input_dim), one row per image → latents (N, Q, output_dim). */
  forward(context: TraceContext, imageTokens: Value): Value {
    const [images, width, queries] = [imageTokens.shape[0]!, this.config.output_dim, this.config.latent_query_num];
    if (imageTokens.rank !== 3 || imageTokens.shape[2] !== this.config.input_dim) {
      throw new Error(`XConnector: expects image tokens (N, T, ${this.config.input_dim}), got ${imageTokens}`);
    }
    const projected = this.project(context, imageTokens); // (N, T, D)
    const latents = expand(unsqueeze(context.value(this.latent_query), 0), [images, queries, width], [imageTokens]); // (N, Q, D)
    const keysAndValues = concat([projected, latents], 1); // (N, T+Q, D)
    return scoped(context, 'x_attn', () => this.x_attn.forward(context, latents, keysAndValues, keysAndValues)); // (N, Q, D)
  }

  /** A connector from config.json and a safetensors checkpoint whose keys carry the `img_connector.` prefix. */
  static async fromPretrained(directory: string): Promise<XConnector> {
    const model = new XConnector(await readXConnectorConfig(directory), { random: checkpointInitialized });
    const reader = await openSafetensors(directory);
    try {
      const outside = reader.names().filter((name) => !name.startsWith(XCONNECTOR_PREFIX));
      if (outside.length) throw new Error(`${reader.path}: unexpected keys outside ${XCONNECTOR_PREFIX}*: ${outside.join(', ')}`);
      const tensors: Record<string, HostTensor> = {};
      for (const [name, tensor] of await reader.readAll({ asFloat32: true })) tensors[name.slice(XCONNECTOR_PREFIX.length)] = tensor;
      model.loadStateDict(tensors);
    } finally {
      await reader.close();
    }
    return model;
  }

  /** Inference bindings to `img_connector.*` tensors by byte offset (no copy). */
  externalWeights(graph: Graph, reader: SafetensorsReader): ExternalWeights {
    return externalBindings(graph, this, reader, { prefix: XCONNECTOR_PREFIX });
  }

  /** Writes config.json and model.safetensors with the official `img_connector.` key names. */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    const tensors = Object.fromEntries(Object.entries(this.stateDict()).map(([key, tensor]) => [XCONNECTOR_PREFIX + key, tensor]));
    await writeSafetensors(join(directory, 'model.safetensors'), tensors, options);
  }
}

export async function readXConnectorConfig(directory: string): Promise<XConnectorConfig> {
  const path = join(directory, 'config.json');
  try {
    return parseXConnectorConfig(JSON.parse(await platform.readText(path)));
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}
