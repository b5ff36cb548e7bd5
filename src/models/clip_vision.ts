// CLIP vision tower: transformers `CLIPVisionModel` and `CLIPVisionModelWithProjection`. A bias-free
// patch convolution, a class token and learned positions, `pre_layrnorm` (transformers' spelling),
// the CLIP encoder shared with the text model, and `post_layernorm` on the class token for the
// pooled output; with a projection, `image_embeds`. Checkpoint keys are transformers' own
// (`vision_model.…`, `visual_projection.weight`).
import { platform, join } from '#platform';
import { z } from 'zod';
import type { DType } from '../onnx/dtype.js';
import type { Value } from '../graph/graph.js';
import { add } from '../graph/ops/elementwise.js';
import { concat, expand, reshape, slice, transpose } from '../graph/ops/shape.js';
import { Conv2d, Embedding, LayerNorm, type Linear, normalTensor, checkpointInitialized } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { type ClipBuildOptions, CLIPEncoder, clipActivation, clipLinear } from './clip_text.js';

// ---- configuration ---------------------------------------------------------------------------------

const positiveInt = z.number().int().positive();

/** The keys of transformers' `CLIPVisionConfig` that the architecture reads; other keys are kept. */
export const clipVisionConfigSchema = z
  .looseObject({
    hidden_size: positiveInt,
    intermediate_size: positiveInt,
    num_hidden_layers: positiveInt,
    num_attention_heads: positiveInt,
    num_channels: positiveInt,
    image_size: positiveInt,
    patch_size: positiveInt,
    hidden_act: clipActivation,
    layer_norm_eps: z.number().positive(),
    projection_dim: positiveInt.optional(),
    initializer_range: z.number().positive().default(0.02),
    initializer_factor: z.number().positive().default(1),
  })
  .refine((config) => config.hidden_size % config.num_attention_heads === 0, {
    message: 'hidden_size must be a multiple of num_attention_heads',
  })
  .refine((config) => config.image_size >= config.patch_size, { message: 'patch_size must not exceed image_size' });
export type CLIPVisionConfig = z.output<typeof clipVisionConfigSchema>;

export function parseClipVisionConfig(json: unknown, source = 'config'): CLIPVisionConfig {
  const result = clipVisionConfigSchema.safeParse(json);
  if (!result.success) throw new Error(`${source}: invalid CLIP vision config:\n${z.prettifyError(result.error)}`);
  return result.data;
}

/** Patches per side; the convolution drops a remainder, as torch's does. */
const gridSize = (config: CLIPVisionConfig) => Math.floor(config.image_size / config.patch_size);

// ---- the vision model ------------------------------------------------------------------------------

export class CLIPVisionEmbeddings extends Module {
  readonly class_embedding: Parameter;
  readonly patch_embedding: Conv2d;
  readonly position_embedding: Embedding;

  constructor(private readonly config: CLIPVisionConfig, options: ClipBuildOptions) {
    super();
    const { hidden_size: width, patch_size: patch, initializer_factor: factor, initializer_range: range } = config;
    const positions = gridSize(config) ** 2 + 1;
    this.class_embedding = new Parameter(normalTensor(options.random, [width], width ** -0.5 * factor, options.dtype));
    this.patch_embedding = new Conv2d(config.num_channels, width, patch, { ...options, stride: patch, bias: false });
    this.patch_embedding.weight.data = normalTensor(options.random, [width, config.num_channels, patch, patch], range * factor, options.dtype);
    this.position_embedding = new Embedding(positions, width, options);
    this.position_embedding.weight.data = normalTensor(options.random, [positions, width], range * factor, options.dtype);
  }

  /** pixels (B, C, H, W) → [class; patches] + positions, (B, 1 + grid², D). */
  forward(context: TraceContext, pixelValues: Value): Value {
    const width = this.config.hidden_size;
    const batch = pixelValues.shape[0]!;
    const patches = context.graph.scope('patch_embedding', () => this.patch_embedding.forward(context, pixelValues)); // (B, D, g, g)
    const sequence = transpose(reshape(patches, [batch, width, patches.size(2) * patches.size(3)], [pixelValues]), [0, 2, 1]); // (B, g², D)
    const classToken = expand(reshape(context.value(this.class_embedding), [1, 1, width]), [batch, 1, width], [pixelValues]); // (B, 1, D)
    return add(concat([classToken, sequence], 1), context.value(this.position_embedding.weight)); // (B, 1 + g², D)
  }
}

export interface CLIPVisionTransformerOutput {
  /** Encoder output, not post-layernormed, (B, T, D). */
  lastHiddenState: Value;
  /** pre_layrnorm(embeddings), then the output of every layer: transformers' hidden_states. */
  hiddenStates: Value[];
  /** post_layernorm(lastHiddenState[:, 0]), (B, D). */
  poolerOutput: Value;
  /** post_layernorm on every token of lastHiddenState, (B, T, D): the ln_post-on-all-tokens readout Kosmos-G uses. */
  postLayernormTokens: Value;
}

export class CLIPVisionTransformer extends Module {
  readonly embeddings: CLIPVisionEmbeddings;
  readonly pre_layrnorm: LayerNorm;
  readonly encoder: CLIPEncoder;
  readonly post_layernorm: LayerNorm;

  constructor(config: CLIPVisionConfig, options: ClipBuildOptions) {
    super();
    this.embeddings = new CLIPVisionEmbeddings(config, options);
    this.pre_layrnorm = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
    this.encoder = new CLIPEncoder(config, options);
    this.post_layernorm = new LayerNorm(config.hidden_size, config.layer_norm_eps, options.dtype);
  }

  forward(context: TraceContext, pixelValues: Value): CLIPVisionTransformerOutput {
    const { graph } = context;
    const embedded = graph.scope('embeddings', () => this.embeddings.forward(context, pixelValues)); // (B, T, D)
    const normalized = graph.scope('pre_layrnorm', () => this.pre_layrnorm.forward(context, embedded));
    const layerOutputs = graph.scope('encoder', () => this.encoder.forward(context, normalized, false));
    const lastHiddenState = layerOutputs.at(-1) ?? normalized;
    const [batch, , width] = lastHiddenState.shape as [string | number, number, number];
    const classToken = reshape(slice(lastHiddenState, { starts: [0], ends: [1], axes: [1] }), [batch, width], [pixelValues]); // (B, D)
    return graph.scope('post_layernorm', () => ({
      lastHiddenState,
      hiddenStates: [normalized, ...layerOutputs],
      poolerOutput: this.post_layernorm.forward(context, classToken),
      postLayernormTokens: this.post_layernorm.forward(context, lastHiddenState),
    }));
  }
}

export interface CLIPVisionModelOutput extends CLIPVisionTransformerOutput {
  /** visual_projection(poolerOutput), (B, projection_dim); only with a projection. */
  imageEmbeds: Value | null;
}

export interface CLIPVisionModelOptions extends ClipBuildOptions {
  /** CLIPVisionModelWithProjection: adds `visual_projection` (needs `projection_dim`). */
  withProjection?: boolean;
}

export interface CLIPVisionPretrainedOptions {
  dtype?: DType;
  /** Build the projection head; by default when the checkpoint holds `visual_projection.weight`. */
  withProjection?: boolean;
}

const PROJECTION_KEY = 'visual_projection.weight';

export class CLIPVisionModel extends Module {
  readonly vision_model: CLIPVisionTransformer;
  readonly visual_projection: Linear | null;

  constructor(readonly config: CLIPVisionConfig, options: CLIPVisionModelOptions) {
    super();
    this.vision_model = new CLIPVisionTransformer(config, options);
    if (options.withProjection) {
      if (config.projection_dim === undefined) throw new Error('CLIPVisionModelWithProjection needs projection_dim in its config');
      this.visual_projection = clipLinear(config.hidden_size, config.projection_dim, config.hidden_size ** -0.5 * config.initializer_factor, { ...options, bias: false });
    } else {
      this.visual_projection = null;
    }
  }

  /** pixel_values (B, num_channels, image_size, image_size), already normalised. */
  forward(context: TraceContext, pixelValues: Value): CLIPVisionModelOutput {
    const { num_channels: channels, image_size: size } = this.config;
    const [, inputChannels, height, width] = pixelValues.shape;
    if (pixelValues.rank !== 4 || inputChannels !== channels || height !== size || width !== size) {
      throw new Error(`CLIPVisionModel: pixel_values must be (batch, ${channels}, ${size}, ${size}), got ${pixelValues}`);
    }
    const output = context.graph.scope('vision_model', () => this.vision_model.forward(context, pixelValues));
    const projection = this.visual_projection;
    const imageEmbeds = projection && context.graph.scope('visual_projection', () => projection.forward(context, output.poolerOutput));
    return { ...output, imageEmbeds };
  }

  /** Reads `config.json` and the safetensors weights (single file or sharded) of a model folder; strict. */
  static async fromPretrained(directory: string, options: CLIPVisionPretrainedOptions = {}): Promise<CLIPVisionModel> {
    const configPath = join(directory, 'config.json');
    const config = parseClipVisionConfig(JSON.parse(await platform.readText(configPath)), configPath);
    const reader = await openSafetensors(directory);
    try {
      const withProjection = options.withProjection ?? reader.has(PROJECTION_KEY);
      const model = new CLIPVisionModel(config, { random: checkpointInitialized, dtype: options.dtype, withProjection });
      const tensors = await reader.readAll({ asFloat32: true });
      if (!withProjection) tensors.delete(PROJECTION_KEY);
      model.loadStateDict(Object.fromEntries(tensors));
      return model;
    } finally {
      await reader.close();
    }
  }

  /** Writes `config.json` and `model.safetensors` under transformers' names. */
  async save(directory: string): Promise<void> {
    await platform.makeDirectory(directory);
    const architectures = [this.visual_projection ? 'CLIPVisionModelWithProjection' : 'CLIPVisionModel'];
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify({ ...this.config, architectures, model_type: 'clip_vision_model' }, null, 2)}\n`);
    await writeSafetensors(join(directory, 'model.safetensors'), this.stateDict());
  }
}
