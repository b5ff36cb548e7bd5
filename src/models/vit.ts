// Vision Transformer: transformers `ViTModel`, the layout of the DINO checkpoints on the Hub
// (`facebook/dino-vits16`, `dino-vitb16`) that DreamBench's DINO score uses. A patch convolution
// with bias, a class token and learned positions, pre-LN encoder layers (layernorm_before →
// self-attention → residual, layernorm_after → MLP → residual), and a final `layernorm` over every
// token. The DINO feature is the class token of that output: last_hidden_state[:, 0], which is
// also what torch.hub's `dino_vits16` returns (its VisionTransformer ends with norm(x)[:, 0]).
//
// Checkpoint keys are ViTModel's own: `embeddings.cls_token`, `encoder.layer.N.attention.attention.
// query.weight`, `layernorm.weight`. DINO was converted as a base model (convert_dino_to_pytorch.py,
// base_model=True), so its keys carry no `vit.` prefix and it has no pooler; a ViTFor… checkpoint
// (`vit.` prefix, a `classifier` head) loads too, as transformers' base_model_prefix does it.
import { platform, join } from '#platform';
import { z } from 'zod';
import type { DType, HostTensor } from '../onnx/dtype.js';
import type { Value } from '../graph/graph.js';
import { add, gelu, quickGelu, relu, tanh } from '../graph/ops/elementwise.js';
import { scaledDotProductAttention } from '../graph/ops/nn.js';
import { concat, expand, reshape, slice, transpose } from '../graph/ops/shape.js';
import { Conv2d, LayerNorm, Linear, type UniformSource, checkpointInitialized, constantTensor, normalTensor } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors } from '../io/safetensors.js';

// ---- configuration ---------------------------------------------------------------------------------

const positiveInt = z.number().int().positive();

/** transformers' activation names a ViT config may give (`ACT2FN`); DINO uses exact GELU. */
const vitActivation = z.enum(['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'quick_gelu', 'relu']);

/**
 * The keys of transformers' `ViTConfig` the architecture reads. The sizes are required; the rest
 * take ViTConfig's defaults (layer_norm_eps 1e-12, qkv_bias true, 3 channels, exact GELU), as
 * transformers fills them. Other keys are kept.
 */
export const vitConfigSchema = z
  .looseObject({
    model_type: z.literal('vit', { message: "model_type must be 'vit' (transformers ViTModel)" }).optional(),
    hidden_size: positiveInt,
    num_hidden_layers: positiveInt,
    num_attention_heads: positiveInt,
    intermediate_size: positiveInt,
    image_size: positiveInt,
    patch_size: positiveInt,
    num_channels: positiveInt.default(3),
    hidden_act: vitActivation.default('gelu'),
    layer_norm_eps: z.number().positive().default(1e-12),
    qkv_bias: z.boolean().default(true),
    initializer_range: z.number().positive().default(0.02),
  })
  .refine((config) => config.hidden_size % config.num_attention_heads === 0, { message: 'hidden_size must be a multiple of num_attention_heads' })
  .refine((config) => config.image_size >= config.patch_size, { message: 'patch_size must not exceed image_size' });
export type ViTConfig = z.output<typeof vitConfigSchema>;

export function parseViTConfig(json: unknown, source = 'config'): ViTConfig {
  const result = vitConfigSchema.safeParse(json);
  if (!result.success) throw new Error(`${source}: invalid ViT config: ${result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ')}`);
  return result.data;
}

/** Patches per side; the convolution drops a remainder, as torch's does. */
const gridSize = (config: ViTConfig) => Math.floor(config.image_size / config.patch_size);

export interface ViTBuildOptions {
  random: UniformSource;
  dtype?: DType;
  /** ViTModel's pooler (dense + tanh on the class token); DINO checkpoints have none. */
  withPooler?: boolean;
}

/** A Linear initialised as transformers' ViT `_init_weights`: N(0, initializer_range) weights (truncated there), zero bias. */
function vitLinear(inFeatures: number, outFeatures: number, config: ViTConfig, options: ViTBuildOptions & { bias?: boolean }): Linear {
  const layer = new Linear(inFeatures, outFeatures, options);
  layer.weight.data = normalTensor(options.random, [outFeatures, inFeatures], config.initializer_range, options.dtype);
  if (layer.bias) layer.bias.data = constantTensor([outFeatures], 0, options.dtype);
  return layer;
}

function activation(name: ViTConfig['hidden_act'], x: Value): Value {
  if (name === 'gelu') return gelu(x);
  if (name === 'quick_gelu') return quickGelu(x);
  if (name === 'relu') return relu(x);
  return gelu(x, 'tanh'); // gelu_new and gelu_pytorch_tanh are the same tanh approximation
}

// ---- embeddings ------------------------------------------------------------------------------------

export class ViTPatchEmbeddings extends Module {
  readonly projection: Conv2d;

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    const { hidden_size: width, patch_size: patch, num_channels: channels } = config;
    this.projection = new Conv2d(channels, width, patch, { ...options, stride: patch });
    this.projection.weight.data = normalTensor(options.random, [width, channels, patch, patch], config.initializer_range, options.dtype);
    this.projection.bias!.data = constantTensor([width], 0, options.dtype);
  }
}

export class ViTEmbeddings extends Module {
  readonly cls_token: Parameter;
  readonly position_embeddings: Parameter;
  readonly patch_embeddings: ViTPatchEmbeddings;

  constructor(private readonly config: ViTConfig, options: ViTBuildOptions) {
    super();
    const width = config.hidden_size;
    this.cls_token = new Parameter(normalTensor(options.random, [1, 1, width], config.initializer_range, options.dtype));
    this.position_embeddings = new Parameter(normalTensor(options.random, [1, gridSize(config) ** 2 + 1, width], config.initializer_range, options.dtype));
    this.patch_embeddings = new ViTPatchEmbeddings(config, options);
  }

  /** pixels (B, C, H, W) → [class; patches] + positions, (B, 1 + g², D); dropout is the identity at inference. */
  forward(context: TraceContext, pixelValues: Value): Value {
    const width = this.config.hidden_size;
    const batch = pixelValues.shape[0]!;
    const patches = context.graph.scope('patch_embeddings.projection', () => this.patch_embeddings.projection.forward(context, pixelValues)); // (B, D, g, g)
    const sequence = transpose(reshape(patches, [batch, width, patches.size(2) * patches.size(3)], [pixelValues]), [0, 2, 1]); // (B, g², D)
    const classToken = expand(context.value(this.cls_token), [batch, 1, width], [pixelValues]); // (1, 1, D) → (B, 1, D)
    return add(concat([classToken, sequence], 1), context.value(this.position_embeddings)); // (B, 1 + g², D) + (1, 1 + g², D)
  }
}

// ---- encoder ---------------------------------------------------------------------------------------

export class ViTSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;

  constructor(private readonly config: ViTConfig, options: ViTBuildOptions) {
    super();
    const width = config.hidden_size;
    const bias = config.qkv_bias;
    this.query = vitLinear(width, width, config, { ...options, bias });
    this.key = vitLinear(width, width, config, { ...options, bias });
    this.value = vitLinear(width, width, config, { ...options, bias });
  }

  /** x (B, T, D) → softmax(q·kᵀ/√head_dim)·v merged back to (B, T, D); no mask (every token sees every token). */
  forward(context: TraceContext, x: Value): Value {
    const [batch, tokens, width] = x.shape as [string | number, number, number];
    const heads = this.config.num_attention_heads;
    const headDim = width / heads;
    const toHeads = (projected: Value) => transpose(reshape(projected, [batch, tokens, heads, headDim], [x]), [0, 2, 1, 3]); // (B, H, T, hd)
    const { graph } = context;
    const query = graph.scope('query', () => toHeads(this.query.forward(context, x)));
    const key = graph.scope('key', () => toHeads(this.key.forward(context, x)));
    const value = graph.scope('value', () => toHeads(this.value.forward(context, x)));
    const attended = scaledDotProductAttention(query, key, value); // (B, H, T, hd)
    return reshape(transpose(attended, [0, 2, 1, 3]), [batch, tokens, width], [x]); // (B, T, H, hd) → (B, T, D)
  }
}

/** ViTSelfOutput: the attention's output projection (its residual is added in ViTLayer). */
export class ViTSelfOutput extends Module {
  readonly dense: Linear;

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.dense = vitLinear(config.hidden_size, config.hidden_size, config, options);
  }
}

export class ViTAttention extends Module {
  readonly attention: ViTSelfAttention;
  readonly output: ViTSelfOutput;

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.attention = new ViTSelfAttention(config, options);
    this.output = new ViTSelfOutput(config, options);
  }

  forward(context: TraceContext, x: Value): Value {
    const attended = context.graph.scope('attention', () => this.attention.forward(context, x));
    return context.graph.scope('output.dense', () => this.output.dense.forward(context, attended));
  }
}

/** ViTIntermediate: dense + activation, D → intermediate_size. */
export class ViTIntermediate extends Module {
  readonly dense: Linear;

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.dense = vitLinear(config.hidden_size, config.intermediate_size, config, options);
  }
}

/** ViTOutput: dense back to D; ViTLayer adds the residual, as ViTOutput.forward does. */
export class ViTOutput extends Module {
  readonly dense: Linear;

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.dense = vitLinear(config.intermediate_size, config.hidden_size, config, options);
  }
}

/** Pre-LN block: x + attention(layernorm_before(x)), then x + output(act(intermediate(layernorm_after(x)))). */
export class ViTLayer extends Module {
  readonly attention: ViTAttention;
  readonly intermediate: ViTIntermediate;
  readonly output: ViTOutput;
  readonly layernorm_before: LayerNorm;
  readonly layernorm_after: LayerNorm;

  constructor(private readonly config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.attention = new ViTAttention(config, options);
    this.intermediate = new ViTIntermediate(config, options);
    this.output = new ViTOutput(config, options);
    this.layernorm_before = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
    this.layernorm_after = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
  }

  forward(context: TraceContext, x: Value): Value {
    const scope = <T>(name: string, build: () => T) => context.graph.scope(name, build);
    const normalized = scope('layernorm_before', () => this.layernorm_before.forward(context, x));
    const attended = add(x, scope('attention', () => this.attention.forward(context, normalized))); // (B, T, D)
    const normalized2 = scope('layernorm_after', () => this.layernorm_after.forward(context, attended));
    const hidden = scope('intermediate.dense', () => activation(this.config.hidden_act, this.intermediate.dense.forward(context, normalized2))); // (B, T, inner)
    return add(attended, scope('output.dense', () => this.output.dense.forward(context, hidden)));
  }
}

export class ViTEncoder extends Module {
  readonly layer: ViTLayer[];

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.layer = Array.from({ length: config.num_hidden_layers }, () => new ViTLayer(config, options));
  }

  forward(context: TraceContext, x: Value): Value {
    return this.layer.reduce((hidden, layer, index) => context.graph.scope(`layer.${index}`, () => layer.forward(context, hidden)), x);
  }
}

/** ViTPooler: tanh(dense(last_hidden_state[:, 0])). */
export class ViTPooler extends Module {
  readonly dense: Linear;

  constructor(config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.dense = vitLinear(config.hidden_size, config.hidden_size, config, options);
  }
}

// ---- the model -------------------------------------------------------------------------------------

export interface ViTModelOutput {
  /** layernorm(encoder output), every token: (B, 1 + g², D). */
  lastHiddenState: Value;
  /** lastHiddenState[:, 0], (B, D): the DINO feature. */
  clsFeature: Value;
  /** tanh(pooler.dense(clsFeature)), (B, D); only with a pooler. */
  poolerOutput: Value | null;
}

export interface ViTPretrainedOptions {
  dtype?: DType;
}

/** How a checkpoint's tensor names map onto ViTModel's keys. */
export interface ViTCheckpointLayout {
  /** '' for a ViTModel checkpoint (DINO), 'vit.' for a ViTFor… one. */
  prefix: string;
  /** Whether the checkpoint has ViTModel's pooler. */
  pooler: boolean;
  /** Tensors a ViTModel does not read and transformers drops too (a ViTFor… `classifier` head). */
  ignored: string[];
}

/** Reads the layout from the tensor names: the prefix is `vit.` when the class token is found under it. */
export function vitCheckpointLayout(names: readonly string[]): ViTCheckpointLayout {
  const prefix = names.includes('vit.embeddings.cls_token') ? 'vit.' : '';
  const ignored = prefix ? names.filter((name) => name.startsWith('classifier.')) : [];
  return { prefix, pooler: names.includes(`${prefix}pooler.dense.weight`), ignored };
}

export class ViTModel extends Module {
  readonly embeddings: ViTEmbeddings;
  readonly encoder: ViTEncoder;
  readonly layernorm: LayerNorm;
  readonly pooler: ViTPooler | null;

  constructor(readonly config: ViTConfig, options: ViTBuildOptions) {
    super();
    this.embeddings = new ViTEmbeddings(config, options);
    this.encoder = new ViTEncoder(config, options);
    this.layernorm = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
    this.pooler = options.withPooler ? new ViTPooler(config, options) : null;
  }

  /** pixel_values (B, num_channels, image_size, image_size), already normalised. */
  forward(context: TraceContext, pixelValues: Value): ViTModelOutput {
    const { num_channels: channels, image_size: size, hidden_size: width } = this.config;
    const [batch, inputChannels, height, inputWidth] = pixelValues.shape;
    if (pixelValues.rank !== 4 || inputChannels !== channels || height !== size || inputWidth !== size) {
      throw new Error(`ViTModel: pixel_values must be (batch, ${channels}, ${size}, ${size}), got ${pixelValues}`);
    }
    const { graph } = context;
    const embedded = graph.scope('embeddings', () => this.embeddings.forward(context, pixelValues)); // (B, T, D)
    const encoded = graph.scope('encoder', () => this.encoder.forward(context, embedded));
    const lastHiddenState = graph.scope('layernorm', () => this.layernorm.forward(context, encoded)); // (B, T, D)
    const clsFeature = reshape(slice(lastHiddenState, { starts: [0], ends: [1], axes: [1] }), [batch!, width], [pixelValues]); // (B, 1, D) → (B, D)
    const pooler = this.pooler;
    const poolerOutput = pooler && graph.scope('pooler.dense', () => tanh(pooler.dense.forward(context, clsFeature)));
    return { lastHiddenState, clsFeature, poolerOutput };
  }

  /**
   * Reads `config.json` and the safetensors weights of a model folder; strict (a missing or extra
   * tensor is an error naming it), except that a ViTFor… checkpoint's `vit.` prefix is stripped
   * and its classifier head dropped.
   */
  static async fromPretrained(directory: string, options: ViTPretrainedOptions = {}): Promise<ViTModel> {
    const configPath = join(directory, 'config.json');
    const config = parseViTConfig(JSON.parse(await platform.readText(configPath)), configPath);
    const reader = await openSafetensors(directory);
    try {
      const layout = vitCheckpointLayout(reader.names());
      const model = new ViTModel(config, { random: checkpointInitialized, dtype: options.dtype, withPooler: layout.pooler });
      const tensors = await reader.readAll({ asFloat32: true });
      const renamed: Record<string, HostTensor> = {};
      for (const [name, tensor] of tensors) {
        if (layout.ignored.includes(name)) continue;
        renamed[layout.prefix && name.startsWith(layout.prefix) ? name.slice(layout.prefix.length) : name] = tensor;
      }
      model.loadStateDict(renamed);
      return model;
    } finally {
      await reader.close();
    }
  }

  /** Writes `config.json` and `model.safetensors` in ViTModel's layout (no prefix), as save_pretrained does; float32 unless `dtype` says F16. */
  async save(directory: string, options: { dtype?: 'F32' | 'F16' } = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify({ ...this.config, architectures: ['ViTModel'], model_type: 'vit' }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'model.safetensors'), this.stateDict(), options.dtype ? { dtype: options.dtype } : {});
  }
}
