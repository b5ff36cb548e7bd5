// The open_clip ViT as Kosmos-G uses it (`unilm/models/vl/clip.py` ClipVisualOnly +
// VisualTransformer4Seq2Seq on the bundled open_clip): a bias-free patch convolution, class
// embedding and learned positions, `ln_pre`, residual blocks whose attention is torchscale's
// `ts_attn` (separate q/k/v/out projections), `ln_post` on every token (not only the class token),
// no projection, then each token L2-normalised. Keys are the official ones below `img_model.`
// (`visual.transformer.resblocks.N.ts_attn.q_proj.weight`); stock open_clip checkpoints
// (`attn.in_proj_weight` = [q; k; v]) load into the same module.
import { platform, isAbsolute, join } from '#platform';
import { z } from 'zod';
import type { DType, HostTensor } from '../onnx/dtype.js';
import type { Value } from '../graph/graph.js';
import { add, gelu, quickGelu } from '../graph/ops/elementwise.js';
import { concat, expand, reshape, transpose } from '../graph/ops/shape.js';
import { l2Normalize, scaledDotProductAttention } from '../graph/ops/nn.js';
import { Conv2d, LayerNorm, Linear, type UniformSource, constantTensor, normalTensor, uniformTensor, checkpointInitialized } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { writeSafetensors, type WriteOptions } from '../io/safetensors.js';

// ---- configuration (open_clip model config: model_configs/*.json) ----------------------------------

const positiveInt = z.number().int().positive();

/** open_clip vision_cfg options this port does not implement; each must be absent or at its default. */
const unsupportedVisionOptions: Record<string, unknown> = {
  timm_model_name: null,
  attentional_pool: false,
  ls_init_value: null,
  no_ln_pre: false,
  input_patchnorm: false,
  final_ln_after_pool: false,
  pos_embed_type: 'learnable',
};

export const openClipVisionConfigSchema = z.looseObject({
  /** Selects QuickGELU (x·σ(1.702x)) instead of exact GELU; Kosmos-G forces it for ViT-L-14. */
  quick_gelu: z.boolean().default(false),
  vision_cfg: z
    .looseObject({
      image_size: positiveInt,
      patch_size: positiveInt,
      width: positiveInt,
      layers: positiveInt,
      head_width: positiveInt.default(64),
      mlp_ratio: z.number().positive().default(4),
    })
    .refine((vision) => vision.width % vision.head_width === 0, { message: 'width must be a multiple of head_width' })
    .refine((vision) => vision.image_size >= vision.patch_size, { message: 'patch_size must not exceed image_size' })
    .superRefine((vision, issues) => {
      for (const [option, neutral] of Object.entries(unsupportedVisionOptions)) {
        const value = (vision as Record<string, unknown>)[option];
        if (value !== undefined && value !== neutral) {
          issues.addIssue({ code: 'custom', path: [option], message: `${option} = ${JSON.stringify(value)} is not supported (only ${JSON.stringify(neutral)})` });
        }
      }
    }),
});
export type OpenClipVisionConfig = z.output<typeof openClipVisionConfigSchema>;

export function parseOpenClipVisionConfig(json: unknown, source = 'config'): OpenClipVisionConfig {
  const result = openClipVisionConfigSchema.safeParse(json);
  if (!result.success) throw new Error(`${source}: invalid open_clip vision config:\n${z.prettifyError(result.error)}`);
  return result.data;
}

export interface OpenClipBuildOptions {
  random: UniformSource;
  dtype?: DType;
}

/** torch.nn.init.xavier_uniform_ for a (out, in) matrix. */
const xavierUniform = (random: UniformSource, outFeatures: number, inFeatures: number, gain: number, dtype?: DType): HostTensor =>
  uniformTensor(random, [outFeatures, inFeatures], gain * Math.sqrt(6 / (inFeatures + outFeatures)), dtype);

// ---- blocks ---------------------------------------------------------------------------------------

/** torchscale MultiheadAttention (`ts_attn`), self-attention without a mask, as the vision tower calls it. */
export class TorchscaleAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  constructor(width: number, readonly heads: number, options: OpenClipBuildOptions) {
    super();
    this.q_proj = new Linear(width, width, options);
    this.k_proj = new Linear(width, width, options);
    this.v_proj = new Linear(width, width, options);
    this.out_proj = new Linear(width, width, options);
    // torchscale's reset_parameters: xavier (gain 1/√2) for q/k/v, plain xavier and zero bias for out.
    for (const projection of [this.q_proj, this.k_proj, this.v_proj]) projection.weight.data = xavierUniform(options.random, width, width, Math.SQRT1_2, options.dtype);
    this.out_proj.weight.data = xavierUniform(options.random, width, width, 1, options.dtype);
    this.out_proj.bias!.data = constantTensor([width], 0, options.dtype);
  }

  /** x (B, T, W) → (B, T, W). */
  forward(context: TraceContext, x: Value): Value {
    const [batch, tokens, width] = x.shape as [string | number, number, number];
    const headDim = width / this.heads;
    const toHeads = (projected: Value) => transpose(reshape(projected, [batch, tokens, this.heads, headDim], [x]), [0, 2, 1, 3]); // (B, H, T, hd)
    const graph = context.graph;
    const query = graph.scope('q_proj', () => toHeads(this.q_proj.forward(context, x)));
    const key = graph.scope('k_proj', () => toHeads(this.k_proj.forward(context, x)));
    const value = graph.scope('v_proj', () => toHeads(this.v_proj.forward(context, x)));
    const attended = scaledDotProductAttention(query, key, value); // (B, H, T, hd)
    const merged = reshape(transpose(attended, [0, 2, 1, 3]), [batch, tokens, width], [x]); // (B, T, W)
    return graph.scope('out_proj', () => this.out_proj.forward(context, merged));
  }
}

export class OpenClipMlp extends Module {
  readonly c_fc: Linear;
  readonly c_proj: Linear;

  constructor(width: number, hidden: number, private readonly quick: boolean, options: OpenClipBuildOptions) {
    super();
    this.c_fc = new Linear(width, hidden, options);
    this.c_proj = new Linear(hidden, width, options);
  }

  forward(context: TraceContext, x: Value): Value {
    const hidden = this.c_fc.forward(context, x); // (B, T, hidden)
    return this.c_proj.forward(context, this.quick ? quickGelu(hidden) : gelu(hidden));
  }
}

/** open_clip ResidualAttentionBlock with torchscale attention: x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
export class ResidualAttentionBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly ts_attn: TorchscaleAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: OpenClipMlp;

  constructor(width: number, heads: number, mlpWidth: number, quick: boolean, options: OpenClipBuildOptions) {
    super();
    this.ln_1 = new LayerNorm(width, 1e-5, options.dtype);
    this.ts_attn = new TorchscaleAttention(width, heads, options);
    this.ln_2 = new LayerNorm(width, 1e-5, options.dtype);
    this.mlp = new OpenClipMlp(width, mlpWidth, quick, options);
  }

  forward(context: TraceContext, x: Value): Value {
    const scope = <T>(name: string, build: () => T) => context.graph.scope(name, build);
    const normalized = scope('ln_1', () => this.ln_1.forward(context, x));
    const attended = add(x, scope('ts_attn', () => this.ts_attn.forward(context, normalized)));
    const normalized2 = scope('ln_2', () => this.ln_2.forward(context, attended));
    return add(attended, scope('mlp', () => this.mlp.forward(context, normalized2)));
  }
}

export class OpenClipTransformer extends Module {
  readonly resblocks: ResidualAttentionBlock[];

  constructor(config: OpenClipVisionConfig['vision_cfg'], quick: boolean, options: OpenClipBuildOptions) {
    super();
    const { width, layers, head_width: headWidth, mlp_ratio: mlpRatio } = config;
    this.resblocks = Array.from({ length: layers }, () => new ResidualAttentionBlock(width, width / headWidth, Math.trunc(width * mlpRatio), quick, options));
  }

  /** The output of every block, in order. */
  forward(context: TraceContext, x: Value): Value[] {
    const outputs: Value[] = [];
    this.resblocks.forEach((block, index) => {
      outputs.push(context.graph.scope(`resblocks.${index}`, () => block.forward(context, outputs.at(-1) ?? x)));
    });
    return outputs;
  }
}

export interface OpenClipVisionOutput {
  /** Every token L2-normalised, (B, T, W) with T = 1 + grid², class token first: Kosmos-G's image features. */
  features: Value;
  /** ln_post on every token, before the normalisation, (B, T, W). */
  featuresBeforeNormalize: Value;
  /** ln_pre([class; patches] + positions), (B, T, W). */
  embeddings: Value;
  /** The output of every residual block, (B, T, W) each. */
  blockOutputs: Value[];
}

/** open_clip VisionTransformer as Kosmos-G's VisualTransformer4Seq2Seq reads it out. */
export class VisualTransformer extends Module {
  readonly conv1: Conv2d;
  readonly class_embedding: Parameter;
  readonly positional_embedding: Parameter;
  readonly ln_pre: LayerNorm;
  readonly transformer: OpenClipTransformer;
  readonly ln_post: LayerNorm;

  constructor(private readonly config: OpenClipVisionConfig['vision_cfg'], quick: boolean, options: OpenClipBuildOptions) {
    super();
    const { width, patch_size: patch } = config;
    const positions = Math.floor(config.image_size / patch) ** 2 + 1;
    this.conv1 = new Conv2d(3, width, patch, { ...options, stride: patch, bias: false });
    this.class_embedding = new Parameter(normalTensor(options.random, [width], width ** -0.5, options.dtype));
    this.positional_embedding = new Parameter(normalTensor(options.random, [positions, width], width ** -0.5, options.dtype));
    this.ln_pre = new LayerNorm(width, 1e-5, options.dtype);
    this.transformer = new OpenClipTransformer(config, quick, options);
    this.ln_post = new LayerNorm(width, 1e-5, options.dtype);
  }

  forward(context: TraceContext, pixelValues: Value): OpenClipVisionOutput {
    const { graph } = context;
    const width = this.config.width;
    const batch = pixelValues.shape[0]!;
    const patches = graph.scope('conv1', () => this.conv1.forward(context, pixelValues)); // (B, W, g, g)
    const sequence = transpose(reshape(patches, [batch, width, patches.size(2) * patches.size(3)], [pixelValues]), [0, 2, 1]); // (B, g², W)
    const classToken = expand(reshape(context.value(this.class_embedding), [1, 1, width]), [batch, 1, width], [pixelValues]); // (B, 1, W)
    const positioned = add(concat([classToken, sequence], 1), context.value(this.positional_embedding)); // (B, T, W)
    const embeddings = graph.scope('ln_pre', () => this.ln_pre.forward(context, positioned));
    const blockOutputs = graph.scope('transformer', () => this.transformer.forward(context, embeddings));
    const featuresBeforeNormalize = graph.scope('ln_post', () => this.ln_post.forward(context, blockOutputs.at(-1) ?? embeddings));
    const features = graph.scope('normalize', () => l2Normalize(featuresBeforeNormalize, -1)); // F.normalize(dim=-1)
    return { features, featuresBeforeNormalize, embeddings, blockOutputs };
  }
}

// ---- the model ------------------------------------------------------------------------------------

/** The prefix of the vision tower inside a full Kosmos-G checkpoint. */
export const KOSMOS_G_PREFIX = 'img_model.';

/**
 * This module's tensors out of a checkpoint's: the ones under `${prefix}visual.` with the prefix
 * removed; stock open_clip blocks (`attn.in_proj_weight`/`in_proj_bias` = [q; k; v], `attn.out_proj`)
 * become `ts_attn.{q,k,v,out}_proj`, as Kosmos-G fills them. Tensors outside `visual.` belong to
 * other components (the MLLM, an open_clip text tower) and are left out, as is open_clip's
 * `visual.proj`, which Kosmos-G's tower does not have.
 */
export function openClipVisionStateDict(tensors: ReadonlyMap<string, HostTensor>, prefix = ''): Record<string, HostTensor> {
  const result: Record<string, HostTensor> = {};
  for (const [name, tensor] of tensors) {
    if (!name.startsWith(`${prefix}visual.`)) continue;
    const key = name.slice(prefix.length);
    if (key === 'visual.proj') continue;
    const packed = /^(visual\.transformer\.resblocks\.\d+\.)attn\.in_proj_(weight|bias)$/.exec(key);
    if (packed) {
      const [, block, kind] = packed;
      const rows = tensor.shape[0]! / 3;
      const rowSize = tensor.data.length / tensor.shape[0]!;
      ['q', 'k', 'v'].forEach((projection, index) => {
        const data = (tensor.data as Float32Array).slice(index * rows * rowSize, (index + 1) * rows * rowSize);
        result[`${block}ts_attn.${projection}_proj.${kind}`] = { dtype: tensor.dtype, shape: [rows, ...tensor.shape.slice(1)], data } as HostTensor;
      });
      continue;
    }
    result[key.replace(/^(visual\.transformer\.resblocks\.\d+\.)attn\.out_proj\./, '$1ts_attn.out_proj.')] = tensor;
  }
  return result;
}

export interface OpenClipPretrainedOptions {
  dtype?: DType;
  /** A safetensors file or index (relative to the folder) to read instead of the folder's model.safetensors. */
  checkpoint?: string;
  /** Where the tower sits in the checkpoint; by default `img_model.` when a Kosmos-G checkpoint is detected, else none. */
  prefix?: string;
}

/** Kosmos-G's image encoder (`img_model`): the open_clip vision tower under the key `visual`. */
export class OpenClipVisionModel extends Module {
  readonly visual: VisualTransformer;

  constructor(readonly config: OpenClipVisionConfig, options: OpenClipBuildOptions) {
    super();
    this.visual = new VisualTransformer(config.vision_cfg, config.quick_gelu, options);
  }

  /** pixel_values (B, 3, image_size, image_size), normalised with the CLIP mean and std. */
  forward(context: TraceContext, pixelValues: Value): OpenClipVisionOutput {
    const size = this.config.vision_cfg.image_size;
    const [, channels, height, width] = pixelValues.shape;
    if (pixelValues.rank !== 4 || channels !== 3 || height !== size || width !== size) {
      throw new Error(`OpenClipVisionModel: pixel_values must be (batch, 3, ${size}, ${size}), got ${pixelValues}`);
    }
    return context.graph.scope('visual', () => this.visual.forward(context, pixelValues));
  }

  /**
   * Kosmos-G stage 3 (`--no-freeze-layer`): only the last residual block and ln_post train; every
   * other parameter is frozen.
   */
  freezeAsKosmosG(): void {
    const lastBlock = `visual.transformer.resblocks.${this.config.vision_cfg.layers - 1}.`;
    for (const [key, parameter] of this.namedParameters()) parameter.trainable = key.startsWith(lastBlock) || key.startsWith('visual.ln_post.');
  }

  /**
   * Reads `config.json` and the weights of a model folder (official Kosmos-G or stock open_clip
   * layout, single file or sharded); strict on every tensor under `visual.`.
   */
  static async fromPretrained(directory: string, options: OpenClipPretrainedOptions = {}): Promise<OpenClipVisionModel> {
    const configPath = join(directory, 'config.json');
    const config = parseOpenClipVisionConfig(JSON.parse(await platform.readText(configPath)), configPath);
    const checkpoint = options.checkpoint === undefined ? directory : isAbsolute(options.checkpoint) ? options.checkpoint : join(directory, options.checkpoint);
    const reader = await openSafetensors(checkpoint);
    try {
      const prefix = options.prefix ?? (reader.has(`${KOSMOS_G_PREFIX}visual.conv1.weight`) ? KOSMOS_G_PREFIX : '');
      const model = new OpenClipVisionModel(config, { random: checkpointInitialized, dtype: options.dtype });
      model.loadStateDict(openClipVisionStateDict(await reader.readAll({ asFloat32: true }), prefix));
      return model;
    } finally {
      await reader.close();
    }
  }

  /** Writes `config.json` and `model.safetensors` with the official key names (below `img_model.`). */
  /** config.json and the weights, float32 tensors stored as `options.dtype` (F16 halves the file; loaders read it back as float32). */
  async save(directory: string, options: Pick<WriteOptions, 'dtype'> = {}): Promise<void> {
    await platform.makeDirectory(directory);
    await platform.writeFile(join(directory, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    await writeSafetensors(join(directory, 'model.safetensors'), this.stateDict(), options);
  }
}
