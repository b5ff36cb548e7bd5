// Each component's config.json for a converted checkpoint. A fairseq checkpoint's `args`/`cfg`
// name the architecture (`kosmosg_xl`) and a few training options, not every size; the sizes are
// read from the tensor shapes, and what shapes cannot tell (attention heads, the fixed flags of
// the kosmosg_xl architecture and of aligner.py's EncoderDecoderConfig) comes from the args when
// they hold it, else from those architectures' constants. `--arch-config` overrides any field.
import { isPlainObject } from '../io/safetensors.js';
import { SD15_VAE_CONFIG } from '../models/autoencoder_kl.js';

/** config.json fields per component, laid over the derived ones (nested objects merged). */
export type ArchitectureOverrides = Partial<Record<'vision' | 'connector' | 'mllm' | 'aligner' | 'unet' | 'vae', Record<string, unknown>>>;

export const OVERRIDABLE_COMPONENTS = ['vision', 'connector', 'mllm', 'aligner', 'unet', 'vae'] as const;

/** Shapes of the checkpoint's tensors, by full key. */
export type ShapeIndex = ReadonlyMap<string, readonly number[]>;

/** Every official size uses 64-wide attention heads (ViT-L/14 16×64, MLLM and connector 32×64, aligner 12×64). */
const HEAD_WIDTH = 64;

/** The Stable Diffusion 1.5 U-Net (`runwayml/stable-diffusion-v1-5`, subfolder `unet`), for checkpoints that hold `diffusion_unet.unet.*`. */
const SD15_UNET_CONFIG = {
  act_fn: 'silu',
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
};

/** `base` with `over` laid on top; nested objects are merged, everything else replaced. */
function mergeConfig(base: Record<string, unknown>, over: Record<string, unknown> = {}): Record<string, unknown> {
  // Spreading defines own properties, so a `__proto__` key in a user's JSON stays an ordinary key.
  const merged: Record<string, unknown> = { ...base, ...over };
  for (const [key, value] of Object.entries(over)) {
    const inner = Object.hasOwn(base, key) ? base[key] : undefined;
    if (isPlainObject(value) && isPlainObject(inner)) merged[key] = mergeConfig(inner, value);
  }
  return merged;
}

/** Reads shapes and layer counts under one component's prefix, naming the key a missing shape was needed for. */
class ComponentShapes {
  constructor(
    private readonly shapes: ShapeIndex,
    private readonly prefix: string,
    private readonly component: string,
  ) {}

  shape(key: string, rank: number): number[] {
    const shape = this.shapes.get(this.prefix + key);
    if (!shape) throw new Error(`the checkpoint has no ${this.prefix}${key}, which the ${this.component} needs`);
    if (shape.length !== rank) throw new Error(`${this.prefix}${key} has shape [${shape.join(', ')}], expected ${rank} dimensions`);
    return [...shape];
  }

  /** Number of `…<stack>.N.` blocks (N from 0). */
  layers(stack: string): number {
    const pattern = new RegExp(`^${(this.prefix + stack).replace(/\./g, '\\.')}\\.(\\d+)\\.`);
    const indices = new Set<number>();
    for (const key of this.shapes.keys()) {
      const match = pattern.exec(key);
      if (match) indices.add(Number(match[1]));
    }
    if (indices.size === 0) throw new Error(`the checkpoint has no ${this.prefix}${stack}.N.* blocks for the ${this.component}`);
    if (Math.max(...indices) !== indices.size - 1) throw new Error(`the ${this.component}'s ${this.prefix}${stack}.N blocks are not numbered 0…${indices.size - 1}`);
    return indices.size;
  }

  /** Heads of a `width`-wide attention: as given (by --arch-config or the args), else 64 wide as in every official size. */
  heads(width: number, given: unknown): number {
    if (typeof given === 'number') return given;
    if (width % HEAD_WIDTH !== 0) {
      throw new Error(`cannot tell the attention heads of the ${width}-wide ${this.component} from the checkpoint (the official sizes use ${HEAD_WIDTH}-wide heads): give them in --arch-config`);
    }
    return width / HEAD_WIDTH;
  }
}

const pick = (args: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> =>
  Object.fromEntries(keys.filter((key) => args[key] !== undefined && args[key] !== null).map((key) => [key, args[key]]));

/** The torchscale flags the MLLM's parser insists on; args that disagree make it refuse the checkpoint by name. */
const MLLM_FLAGS = ['activation_fn', 'subln', 'decoder_normalize_before', 'share_decoder_input_output_embed', 'no_scale_embedding', 'layernorm_embedding', 'deepnorm', 'multiway', 'rel_pos_buckets', 'moe_freq'];

/** The open_clip ViT of `img_model.visual.*`: widths, patch and grid from the convolution and the position table. */
export function visionConfig(shapes: ShapeIndex, prefix: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const visual = new ComponentShapes(shapes, `${prefix}visual.`, 'vision tower');
  const [width, , patch] = visual.shape('conv1.weight', 4) as [number, number, number];
  const [tokens] = visual.shape('positional_embedding', 2) as [number];
  const grid = Math.round(Math.sqrt(tokens - 1));
  if (grid * grid !== tokens - 1) throw new Error(`${prefix}visual.positional_embedding has ${tokens} rows, not a class token plus a square grid`);
  const [mlpWidth] = visual.shape('transformer.resblocks.0.mlp.c_fc.weight', 2) as [number];
  const givenHeadWidth = isPlainObject(overrides['vision_cfg']) ? overrides['vision_cfg']['head_width'] : undefined;
  const headWidth = typeof givenHeadWidth === 'number' ? givenHeadWidth : width / visual.heads(width, undefined);
  return mergeConfig(
    {
      // Kosmos-G forces QuickGELU on its ViT-L/14 (unilm/models/vl/clip.py).
      quick_gelu: true,
      vision_cfg: { image_size: grid * patch, patch_size: patch, width, layers: visual.layers('transformer.resblocks'), head_width: headWidth, mlp_ratio: mlpWidth / width },
    },
    overrides,
  );
}

/** The XConnector of `img_connector.*`; fairseq builds its attention with the MLLM's `decoder_attention_heads`. */
export function connectorConfig(shapes: ShapeIndex, prefix: string, args: Record<string, unknown>, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const connector = new ComponentShapes(shapes, prefix, 'XConnector');
  const [outputDim, inputDim] = connector.shape('dense.weight', 2) as [number, number];
  const [queries] = connector.shape('latent_query', 2) as [number];
  return mergeConfig(
    {
      input_dim: inputDim,
      output_dim: outputDim,
      latent_query_num: queries,
      decoder_attention_heads: connector.heads(outputDim, overrides['decoder_attention_heads'] ?? args['decoder_attention_heads']),
      attention_dropout: args['attention_dropout'] ?? 0.1,
    },
    overrides,
  );
}

/** The MLLM of `gpt_model.decoder.*` with the kosmosg_xl flags (torchscale DecoderConfig keys). */
export function mllmConfig(shapes: ShapeIndex, prefix: string, args: Record<string, unknown>, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const decoder = new ComponentShapes(shapes, prefix, 'MLLM');
  const [vocab, dim] = decoder.shape('embed_tokens.weight', 2) as [number, number];
  const [ffn] = decoder.shape('layers.0.ffn.fc1.weight', 2) as [number];
  return mergeConfig(
    {
      decoder_embed_dim: dim,
      decoder_attention_heads: decoder.heads(dim, overrides['decoder_attention_heads'] ?? args['decoder_attention_heads']),
      decoder_ffn_embed_dim: ffn,
      decoder_layers: decoder.layers('layers'),
      vocab_size: vocab,
      dropout: 0.1,
      attention_dropout: 0.1,
      activation_dropout: 0,
      no_scale_embedding: false,
      activation_fn: 'gelu',
      subln: true,
      decoder_normalize_before: true,
      share_decoder_input_output_embed: true,
      layernorm_embedding: false,
      deepnorm: false,
      multiway: false,
      rel_pos_buckets: 0,
      moe_freq: 0,
      ...pick(args, ['dropout', 'attention_dropout', 'activation_dropout', ...MLLM_FLAGS]),
    },
    overrides,
  );
}

/** AlignerNet M of `aligner.*`: aligner.py builds both stacks from EncoderDecoderConfig() defaults, never from the args. */
export function alignerConfig(shapes: ShapeIndex, prefix: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const aligner = new ComponentShapes(shapes, prefix, 'aligner');
  const [dim, inputDim] = aligner.shape('encoder_proj.embed_tokens.weight', 2) as [number, number];
  const [positions] = aligner.shape('encoder_proj.embed_positions.weight', 2) as [number];
  const [queries] = aligner.shape('encoder_query', 2) as [number];
  const [encoderFfn] = aligner.shape('encoder_proj.layers.0.ffn.fc1.weight', 2) as [number];
  const [decoderFfn] = aligner.shape('encoder.layers.0.ffn.fc1.weight', 2) as [number];
  return mergeConfig(
    {
      encoder_embed_dim: dim,
      encoder_attention_heads: aligner.heads(dim, overrides['encoder_attention_heads']),
      encoder_ffn_embed_dim: encoderFfn,
      encoder_layers: aligner.layers('encoder_proj.layers'),
      decoder_embed_dim: dim,
      decoder_attention_heads: aligner.heads(dim, overrides['decoder_attention_heads']),
      decoder_ffn_embed_dim: decoderFfn,
      decoder_layers: aligner.layers('encoder.layers'),
      input_dim: inputDim,
      num_queries: queries,
      position_table_size: positions,
      dropout: 0,
      attention_dropout: 0,
      activation_dropout: 0,
      no_scale_embedding: true,
      activation_fn: 'gelu',
      subln: true,
      encoder_normalize_before: true,
      decoder_normalize_before: true,
      layernorm_embedding: false,
      deepnorm: false,
      multiway: false,
      rel_pos_buckets: 0,
      moe_freq: 0,
    },
    overrides,
  );
}

/** U-Net and VAE held by the checkpoint: Stable Diffusion 1.5's configs, the model Kosmos-G trains with. */
export function diffusionConfigs(overrides: ArchitectureOverrides): { unet: Record<string, unknown>; vae: Record<string, unknown> } {
  return { unet: mergeConfig(SD15_UNET_CONFIG, overrides.unet), vae: mergeConfig(SD15_VAE_CONFIG, overrides.vae) };
}

/** Checks a parsed `--arch-config` file: an object of objects keyed by component. */
export function parseArchitectureOverrides(json: unknown, source: string): ArchitectureOverrides {
  if (!isPlainObject(json)) throw new Error(`${source}: expected an object keyed by component (${OVERRIDABLE_COMPONENTS.join(', ')})`);
  for (const [key, value] of Object.entries(json)) {
    if (!(OVERRIDABLE_COMPONENTS as readonly string[]).includes(key)) throw new Error(`${source}: unknown component ${JSON.stringify(key)} (expected ${OVERRIDABLE_COMPONENTS.join(', ')})`);
    if (!isPlainObject(value)) throw new Error(`${source}: ${key} must be an object of config.json fields`);
  }
  return json as ArchitectureOverrides;
}
