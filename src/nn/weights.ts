// Inference graphs read weights straight from safetensors files: each parameter becomes an ONNX
// external-data initializer pointing at the tensor's byte range inside the checkpoint, so nothing
// is copied or converted on the host. Half-precision files are cast to the parameter's type in the
// graph (BF16 can only be consumed by Cast in onnxruntime).
import type { DType } from '../onnx/dtype.js';
import type { Graph, Value } from '../graph/graph.js';
import { formatShape } from '../graph/graph.js';
import { cast } from '../graph/ops/elementwise.js';
import type { SafetensorsDType, SafetensorsReader } from '../io/safetensors.js';
import { type Module, type Parameter, type TraceContext } from './module.js';
import { type QuantizedFile, withQuantizedLinears } from './quantize.js';

const graphDtype: Partial<Record<SafetensorsDType, DType>> = {
  F32: 'float32',
  BF16: 'bfloat16',
  F16: 'float16',
  F64: 'float64',
  I64: 'int64',
  I32: 'int32',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

export interface ExternalWeights {
  context: TraceContext;
  /** Pass to the session: maps each location named in the model to its file on disk (or, for quantized weights, its bytes). */
  externalData: { path: string; data: string | Uint8Array }[];
}

export interface ExternalBindingOptions {
  prefix?: string;
  /** Maps `${prefix}${key}` to the tensor name in the file (e.g. legacy names of older checkpoints). */
  checkpointKey?: (name: string) => string;
  /** Parts of the file under the prefix that belong to another model (the other tower of a CLIPModel file), in `unreadCheckpointKeys`' form. */
  otherModels?: readonly string[];
  /** Linear weights quantized at load time (nn/quantize.ts): those layers read their blocks, an in-memory external file. */
  quantized?: QuantizedFile;
}

/**
 * The location string of a weights file: a hash of its path, so that several bindings in one graph
 * (a U-Net and its ControlNet) never give two different files the same name.
 */
function locationName(file: string): string {
  let hash = 0x811c9dc5; // FNV-1a, 32 bits
  for (let i = 0; i < file.length; i++) hash = Math.imul(hash ^ file.charCodeAt(i), 0x01000193) >>> 0;
  return `weights-${hash.toString(16).padStart(8, '0')}.safetensors`;
}

/** How many names an error lists before "…". */
const LISTED_NAMES = 8;

/** Names for an error message: at most eight, then "…" and how many there are. */
export function listNames(names: readonly string[]): string {
  if (names.length <= LISTED_NAMES) return names.join(', ');
  return `${names.slice(0, LISTED_NAMES).join(', ')}, … (${names.length} in all)`;
}

/** Buffers that reference libraries save beside the parameters and no model here reads (transformers' CLIP `…embeddings.position_ids` of older checkpoints). */
const SAVED_BUFFERS = ['position_ids'];

/**
 * Tensors of the checkpoint under the prefix that `root` does not read (`layers.7.…` of a 7-layer
 * model, `down_blocks.0.resnets.2.…` of a U-Net built with 2 resnets per block, a stray `foo.weight`),
 * except saved buffers and what the model declares it may leave unread (`unreadCheckpointKeys`: a
 * tied LM head, derived buffers, the aligner's reconstruction decoder when it was built without
 * one). Tensors outside the prefix belong to other components of a full checkpoint, or to the other
 * tower of a CLIPModel file.
 */
function unreadTensors(names: readonly string[], prefix: string, read: ReadonlySet<string>, optional: readonly string[]): string[] {
  return names.filter((name) => {
    if (!name.startsWith(prefix) || read.has(name)) return false;
    const key = name.slice(prefix.length);
    if (SAVED_BUFFERS.includes(key.split('.').at(-1)!)) return false;
    return !optional.some((part) => key === part || (part.endsWith('.') && key.startsWith(part)));
  });
}

/**
 * Binds every parameter of `root` to the tensor `${prefix}${key}` of `reader` (renamed by
 * `checkpointKey` when given). Strict: missing tensors and tensors of the model that it does not
 * read (a checkpoint with more layers than the config) are listed by name, shape mismatches name
 * the key and both shapes.
 */
export function externalBindings(graph: Graph, root: Module, reader: SafetensorsReader, options: ExternalBindingOptions = {}): ExternalWeights {
  const prefix = options.prefix ?? '';
  const tensorName = (key: string): string => (options.checkpointKey ? options.checkpointKey(prefix + key) : prefix + key);
  const parameters = root.namedParameters();
  const missing = parameters.map(([key]) => tensorName(key)).filter((name) => !reader.has(name));
  if (missing.length) throw new Error(`${reader.path}: missing tensors: ${listNames(missing)}`);
  const read = new Set(parameters.map(([key]) => tensorName(key)));
  const unread = unreadTensors(reader.names(), prefix, read, [...root.unreadCheckpointKeys(), ...(options.otherModels ?? [])]);
  if (unread.length) throw new Error(`${reader.path}: unexpected tensors in the checkpoint: ${listNames(unread)}`);
  const locations = new Map<string, string>();
  const values = new Map<Parameter, Value>();
  for (const [key, parameter] of parameters) {
    const name = tensorName(key);
    const info = reader.info(name);
    if (info.shape.join() !== parameter.shape.join()) {
      throw new Error(`${name}: checkpoint shape ${formatShape(info.shape)} does not match model shape ${formatShape(parameter.shape)}`);
    }
    let location = locations.get(info.file);
    if (!location) {
      location = locationName(info.file);
      locations.set(info.file, location);
    }
    const stored = graphDtype[info.dtype];
    if (!stored) throw new Error(`${name}: ${info.dtype} weights are not supported`);
    const initializer = graph.externalInitializer(name, stored, info.shape, {
      location,
      offset: info.byteOffset,
      length: info.byteLength,
    });
    values.set(parameter, stored === parameter.dtype ? initializer : cast(initializer, parameter.dtype));
  }
  const context: TraceContext = {
    graph,
    value(parameter) {
      const value = values.get(parameter);
      if (!value) throw new Error(`parameter of shape ${formatShape(parameter.shape)} is not bound in this graph`);
      return value;
    },
  };
  const externalData: ExternalWeights['externalData'] = [...locations].map(([file, path]) => ({ path, data: file }));
  if (!options.quantized) return { context, externalData };
  // The float initializers of quantized weights are still declared; a graph that reads only the blocks drops them.
  return { context: withQuantizedLinears(context, options.quantized), externalData: [...externalData, { path: options.quantized.location, data: options.quantized.data }] };
}
