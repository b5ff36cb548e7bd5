// LoRA on a model's Linear and Conv2d layers (for the U-Net: attn1/attn2 to_q, to_k, to_v, to_out.0,
// and whatever else a file targets). A target computes W·x + b + scale·(alpha/r)·B(A·x), either at
// run time (two extra small matmuls or convs per target, the scale optionally a graph input) or
// fused into the weights, W' = W + scale·(alpha/r)·B·A. Files in the diffusers/PEFT layout
// (`unet.<path>.lora_A.weight`, `.lora_B.weight`, alpha in the `lora_adapter_metadata` header) and
// in kohya's layout (`lora_unet_<path with _>.lora_down.weight`, `.lora_up.weight`, `.alpha`) load.
import type { Value } from '../graph/graph.js';
import { mul } from '../graph/ops/elementwise.js';
import { conv2d, linear } from '../graph/ops/nn.js';
import { type SafetensorsReader, writeSafetensors } from '../io/safetensors.js';
import { Conv2d, Linear, type UniformSource, uniformTensor } from '../nn/layers.js';
import { Module, Parameter, type TraceContext } from '../nn/module.js';
import { type HostTensor, elementCount } from '../onnx/dtype.js';
import type { ProjectionAdapter } from './unet_2d_blocks.js';

type Target = Linear | Conv2d;

/** Every Linear and Conv2d inside `root`, by property path (`down_blocks.0.…attn1.to_q`). */
export function namedLayers(root: Module): Map<string, Target> {
  const found = new Map<string, Target>();
  const visit = (value: unknown, path: string): void => {
    if (value instanceof Linear || value instanceof Conv2d) found.set(path, value);
    else if (value instanceof Module) for (const [name, child] of Object.entries(value)) visit(child, `${path}.${name}`);
    else if (Array.isArray(value)) value.forEach((item, index) => visit(item, `${path}.${index}`));
  };
  for (const [name, child] of Object.entries(root)) visit(child, name);
  return found;
}

/** Holds one matrix under the key `weight` (PEFT's `lora_A.weight`). */
class LoraWeight extends Module {
  constructor(readonly weight: Parameter) {
    super();
  }
}

/** The low-rank pair of one target: A (r, in[, k, k]) and B (out, r[, 1, 1]). */
export class LoraLayer extends Module {
  readonly lora_A: LoraWeight;
  readonly lora_B: LoraWeight;

  constructor(down: HostTensor, up: HostTensor, readonly alpha: number) {
    super();
    this.lora_A = new LoraWeight(new Parameter(down));
    this.lora_B = new LoraWeight(new Parameter(up));
  }

  get rank(): number {
    return this.lora_A.weight.shape[0]!;
  }

  /** B(A·x)·multiplier, with A applied like the target (same stride and padding for a conv). */
  delta(context: TraceContext, target: Target, x: Value, multiplier: number | Value): Value {
    const down = context.value(this.lora_A.weight);
    const up = context.value(this.lora_B.weight);
    const product =
      target instanceof Linear
        ? linear(linear(x, down), up) // (…, r) then (…, out)
        : conv2d(conv2d(x, down, null, { stride: target.options.stride, padding: target.options.padding }), up); // (B, r, H', W') then (B, out, H', W')
    return mul(product, multiplier);
  }
}

export interface LoraCreateOptions {
  rank: number;
  alpha?: number;
  /** PEFT target_modules: a layer is adapted when its path is, or ends in `.` + , one of these. */
  targetModules: readonly string[];
  random: UniformSource;
}

export interface LoraLoadOptions {
  /** Overrides the alpha found in the file (PEFT metadata or kohya `.alpha` tensors). */
  alpha?: number;
}

/** A set of LoRA layers keyed by target path; its parameter keys are PEFT's, without the `unet.` prefix. */
export class LoraAdapter extends Module {
  private readonly layers = new Map<string, LoraLayer>();
  /** Keys of a loaded file that belong to another model (text encoder) and were left out. */
  skippedKeys: string[] = [];

  override namedParameters(prefix = ''): [string, Parameter][] {
    return [...this.layers].flatMap(([path, layer]) => layer.namedParameters(`${prefix}${path}.`));
  }

  get targets(): string[] {
    return [...this.layers.keys()];
  }

  layer(path: string): LoraLayer | undefined {
    return this.layers.get(path);
  }

  /** Adds a layer for `path` of `model`, checking A and B against the target's weight. */
  add(model: Map<string, Target>, path: string, down: HostTensor, up: HostTensor, alpha: number, key: string): void {
    const target = model.get(path);
    if (!target) throw new Error(`LoRA ${key}: the model has no Linear or Conv2d at ${path}`);
    const [outFeatures, inFeatures, ...kernel] = target.weight.shape;
    const rank = down.shape[0]!;
    const expectDown = [rank, inFeatures, ...kernel];
    const expectUp = [outFeatures, rank, ...kernel.map(() => 1)];
    if (down.shape.join() !== expectDown.join() || up.shape.join() !== expectUp.join()) {
      throw new Error(`LoRA ${key}: down [${down.shape.join(', ')}] and up [${up.shape.join(', ')}] do not fit ${path} (weight [${target.weight.shape.join(', ')}]); expected [${expectDown.join(', ')}] and [${expectUp.join(', ')}]`);
    }
    this.layers.set(path, new LoraLayer(down, up, alpha));
  }

  /** A new adapter for training, initialised as PEFT does: A uniform(±1/√fan_in), B zero. */
  static create(model: Module, options: LoraCreateOptions): LoraAdapter {
    const adapter = new LoraAdapter();
    const layers = namedLayers(model);
    for (const [path, target] of layers) {
      if (!options.targetModules.some((name) => path === name || path.endsWith(`.${name}`))) continue;
      const [outFeatures, inFeatures, ...kernel] = target.weight.shape;
      const fanIn = inFeatures! * kernel.reduce((p, q) => p * q, 1);
      const down = uniformTensor(options.random, [options.rank, inFeatures!, ...kernel], 1 / Math.sqrt(fanIn));
      const up: HostTensor = { dtype: 'float32', shape: [outFeatures!, options.rank, ...kernel.map(() => 1)], data: new Float32Array(outFeatures! * options.rank) };
      adapter.add(layers, path, down, up, options.alpha ?? options.rank, path);
    }
    if (adapter.layers.size === 0) throw new Error(`LoRA: no Linear or Conv2d layer matches target modules ${options.targetModules.join(', ')}`);
    return adapter;
  }

  /** Loads a diffusers/PEFT or kohya LoRA file for `model` (the U-Net part; text-encoder keys are skipped). */
  static async fromSafetensors(model: Module, reader: SafetensorsReader, options: LoraLoadOptions = {}): Promise<LoraAdapter> {
    const names = reader.names();
    const kohya = names.some((name) => name.startsWith('lora_unet_') || name.startsWith('lora_te'));
    return kohya ? loadKohya(model, reader, options) : loadPeft(model, reader, options);
  }

  /** Writes the diffusers/PEFT layout: `unet.<path>.lora_A.weight`, alpha in the `lora_adapter_metadata` header. */
  async save(path: string): Promise<void> {
    const tensors = Object.fromEntries(Object.entries(this.stateDict()).map(([key, tensor]) => [`unet.${key}`, tensor]));
    const layers = [...this.layers];
    const alpha = layers[0]?.[1].alpha;
    const metadata = {
      'unet.r': layers[0]?.[1].rank,
      'unet.lora_alpha': alpha,
      // Layers whose alpha differs from the first one's, by full path (PEFT matches pattern keys as path suffixes).
      'unet.alpha_pattern': Object.fromEntries(layers.filter(([, layer]) => layer.alpha !== alpha).map(([target, layer]) => [target, layer.alpha])),
      'unet.target_modules': [...new Set(layers.map(([target]) => target))],
    };
    await writeSafetensors(path, tensors, { metadata: { lora_adapter_metadata: JSON.stringify(metadata) } });
  }

  /** The run-time form: each targeted layer of `model` gets scale·(alpha/r)·B(A·x) added to its output. */
  runtime(model: Module, context: TraceContext, scale: number | Value): ProjectionAdapter {
    const byTarget = new Map<Target, LoraLayer>();
    const layers = namedLayers(model);
    for (const [path, layer] of this.layers) {
      const target = layers.get(path);
      if (!target) throw new Error(`LoRA: the model has no layer ${path}`);
      byTarget.set(target, layer);
    }
    return {
      delta(target, x) {
        const layer = byTarget.get(target);
        if (!layer) return null;
        const multiplier = typeof scale === 'number' ? (scale * layer.alpha) / layer.rank : mul(scale, layer.alpha / layer.rank);
        return layer.delta(context, target, x, multiplier);
      },
    };
  }

  /** Adds scale·(alpha/r)·B·A to each target's weight in place (float64 sums, rounded once). */
  fuseInto(model: Module, scale: number): void {
    const layers = namedLayers(model);
    for (const [path, layer] of this.layers) {
      const target = layers.get(path);
      if (!target) throw new Error(`LoRA: the model has no layer ${path}`);
      const weight = target.weight.data;
      const outFeatures = weight.shape[0]!;
      const columns = elementCount(weight.shape) / outFeatures; // in·k·k
      const rank = layer.rank;
      const down = layer.lora_A.weight.data.data as Float32Array; // (r, in·k·k)
      const up = layer.lora_B.weight.data.data as Float32Array; // (out, r)
      const factor = (scale * layer.alpha) / rank;
      const fused = Float32Array.from(weight.data as Float32Array);
      for (let row = 0; row < outFeatures; row++) {
        for (let column = 0; column < columns; column++) {
          let sum = 0;
          for (let r = 0; r < rank; r++) sum += up[row * rank + r]! * down[r * columns + column]!;
          fused[row * columns + column] = fused[row * columns + column]! + factor * sum;
        }
      }
      target.weight.data = { dtype: 'float32', shape: weight.shape, data: fused };
    }
  }
}

function metadataAlpha(reader: SafetensorsReader): { alpha?: number; pattern: Record<string, number> } {
  const raw = reader.metadata['lora_adapter_metadata'];
  if (typeof raw !== 'string') return { pattern: {} };
  const metadata = JSON.parse(raw) as Record<string, unknown>;
  const alpha = metadata['unet.lora_alpha'] ?? metadata['lora_alpha'];
  const pattern = (metadata['unet.alpha_pattern'] ?? metadata['alpha_pattern'] ?? {}) as Record<string, number>;
  return { alpha: typeof alpha === 'number' ? alpha : undefined, pattern };
}

async function loadPeft(model: Module, reader: SafetensorsReader, options: LoraLoadOptions): Promise<LoraAdapter> {
  const adapter = new LoraAdapter();
  const layers = namedLayers(model);
  const { alpha: fileAlpha, pattern } = metadataAlpha(reader);
  const pairs = new Map<string, { down?: string; up?: string }>();
  const unrecognised: string[] = [];
  for (const name of reader.names()) {
    if (name.startsWith('text_encoder')) {
      adapter.skippedKeys.push(name);
      continue;
    }
    const match = /^(?:unet\.|base_model\.model\.)?(.+)\.lora_([AB])\.weight$/.exec(name);
    if (!match) {
      unrecognised.push(name);
      continue;
    }
    const pair = pairs.get(match[1]!) ?? {};
    pair[match[2] === 'A' ? 'down' : 'up'] = name;
    pairs.set(match[1]!, pair);
  }
  if (unrecognised.length) throw new Error(`${reader.path}: not LoRA keys of the diffusers/PEFT layout: ${unrecognised.join(', ')}`);
  for (const [path, pair] of pairs) {
    if (!pair.down || !pair.up) throw new Error(`${reader.path}: ${path} has only ${pair.down ? 'lora_A' : 'lora_B'}`);
    const down = await reader.read(pair.down, { asFloat32: true });
    const patternKey = Object.keys(pattern).find((key) => path === key || path.endsWith(`.${key}`));
    const alpha = options.alpha ?? (patternKey ? pattern[patternKey]! : undefined) ?? fileAlpha ?? down.shape[0]!;
    adapter.add(layers, path, down, await reader.read(pair.up, { asFloat32: true }), alpha, pair.down);
  }
  return adapter;
}

async function loadKohya(model: Module, reader: SafetensorsReader, options: LoraLoadOptions): Promise<LoraAdapter> {
  const adapter = new LoraAdapter();
  const layers = namedLayers(model);
  // kohya names a layer by its path with every '.' turned into '_'.
  const pathOf = new Map([...layers.keys()].map((path) => [`lora_unet_${path.replaceAll('.', '_')}`, path]));
  const groups = new Map<string, { down?: string; up?: string; alpha?: string }>();
  const unrecognised: string[] = [];
  for (const name of reader.names()) {
    if (name.startsWith('lora_te')) {
      adapter.skippedKeys.push(name);
      continue;
    }
    const match = /^(lora_unet_.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(name);
    if (!match) {
      unrecognised.push(name);
      continue;
    }
    const group = groups.get(match[1]!) ?? {};
    group[match[2] === 'alpha' ? 'alpha' : match[2]!.startsWith('lora_down') ? 'down' : 'up'] = name;
    groups.set(match[1]!, group);
  }
  if (unrecognised.length) throw new Error(`${reader.path}: not LoRA keys of the kohya layout: ${unrecognised.join(', ')}`);
  for (const [prefix, group] of groups) {
    const path = pathOf.get(prefix);
    if (!path) throw new Error(`${reader.path}: ${prefix} names no Linear or Conv2d layer of the model`);
    if (!group.down || !group.up) throw new Error(`${reader.path}: ${prefix} needs both lora_down.weight and lora_up.weight`);
    const down = await reader.read(group.down, { asFloat32: true });
    const alphaTensor = group.alpha ? await reader.read(group.alpha, { asFloat32: true }) : null;
    const alpha = options.alpha ?? (alphaTensor ? Number(alphaTensor.data[0]) : down.shape[0]!);
    adapter.add(layers, path, down, await reader.read(group.up, { asFloat32: true }), alpha, group.down);
  }
  return adapter;
}
