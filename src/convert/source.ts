// What `convert` reads, as one view: tensors by key (declared element type and shape, bytes read on
// demand) and the training arguments. A `.pt` or `.bin` file goes through the safe torch reader
// (fairseq keeps the weights under `model`, the config in `args` or `cfg.model`); a `.safetensors`
// file, sharded index or folder has no arguments. Sharded indexes may carry a diffusers variant
// (`….safetensors.index.fp16.json`); a `pytorch_model.bin.index.json` joins its torch shards.
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { parseJson } from '../io/file-errors.js';
import type { DType, HostTensor } from '../onnx/dtype.js';
import { plainValue } from '../io/pickle.js';
import { openSafetensors } from '../io/safetensors-index.js';
import { type SafetensorsDType, isPlainObject } from '../io/safetensors.js';
import { TorchCheckpoint, stateDictOf } from '../io/torch-checkpoint.js';

/** A tensor of the source: what reading it gives (bfloat16 and int16 arrive widened) and how to read it. */
export interface SourceTensor {
  dtype: DType;
  shape: number[];
  read(): Promise<HostTensor>;
}

export interface CheckpointSource {
  path: string;
  format: 'torch zip' | 'torch legacy' | 'safetensors' | 'torch shards';
  tensors: ReadonlyMap<string, SourceTensor>;
  /** The training arguments: `cfg.model` with `args` laid over it (both fairseq generations), or nothing. */
  args: Record<string, unknown>;
  close(): Promise<void>;
}

/** The element type a read returns for each stored type (reads widen bfloat16 to float32, as safetensors reads do). */
const READ_AS: Record<SafetensorsDType | 'I16', DType> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'float32',
  F64: 'float64',
  I64: 'int64',
  I32: 'int32',
  I16: 'int32',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

/** fairseq's arguments: the argparse Namespace of older checkpoints and the omegaconf `cfg.model` of newer ones. */
function trainingArgs(root: unknown): Record<string, unknown> {
  if (!(root instanceof Map)) return {};
  const args = plainValue(root.get('args') ?? null);
  const cfg = plainValue(root.get('cfg') ?? null);
  const model = isPlainObject(cfg) && isPlainObject(cfg['model']) ? cfg['model'] : {};
  return { ...model, ...(isPlainObject(args) ? args : {}) };
}

const SAFETENSORS_PATH = /\.safetensors$|\.safetensors\.index(\.\w+)?\.json$/;
const TORCH_INDEX_PATH = /\.bin\.index(\.\w+)?\.json$/;

export async function openCheckpointSource(path: string): Promise<CheckpointSource> {
  const entry = await stat(path).catch(() => {
    throw new Error(`--from ${path} does not exist`);
  });
  if (entry.isDirectory() || SAFETENSORS_PATH.test(path)) {
    const reader = await openSafetensors(path);
    const tensors = new Map<string, SourceTensor>();
    for (const name of reader.names()) {
      const info = reader.info(name);
      tensors.set(name, { dtype: READ_AS[info.dtype], shape: info.shape, read: () => reader.read(name) });
    }
    return { path, format: 'safetensors', tensors, args: {}, close: () => reader.close() };
  }
  if (TORCH_INDEX_PATH.test(path)) return openTorchShards(path);
  const checkpoint = await TorchCheckpoint.open(path);
  try {
    const format = checkpoint.format === 'zip' ? 'torch zip' : 'torch legacy';
    return { path, format, tensors: torchTensors(checkpoint, path), args: trainingArgs(checkpoint.root), close: () => checkpoint.close() };
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

function torchTensors(checkpoint: TorchCheckpoint, path: string): Map<string, SourceTensor> {
  const tensors = new Map<string, SourceTensor>();
  for (const [name, tensor] of stateDictOf(checkpoint.root, path)) {
    tensors.set(name, { dtype: READ_AS[tensor.storage.dtype], shape: tensor.shape, read: () => tensor.read() });
  }
  return tensors;
}

/** A transformers/diffusers index of torch shards: each shard beside the index holds the keys its weight_map gives it. */
async function openTorchShards(indexPath: string): Promise<CheckpointSource> {
  const index = parseJson(await readFile(indexPath, 'utf8'), indexPath);
  const weightMap = isPlainObject(index) ? index['weight_map'] : undefined;
  if (!isPlainObject(weightMap)) throw new Error(`${indexPath}: invalid index: "weight_map" must map tensor names to shard files`);
  const directory = dirname(indexPath);
  const shards = new Map<string, { checkpoint: TorchCheckpoint; tensors: Map<string, SourceTensor> }>();
  const close = () => Promise.all([...shards.values()].map(({ checkpoint }) => checkpoint.close())).then(() => {});
  try {
    const tensors = new Map<string, SourceTensor>();
    for (const [name, file] of Object.entries(weightMap)) {
      if (typeof file !== 'string' || isAbsolute(file) || relative(directory, resolve(directory, file)).startsWith('..')) {
        throw new Error(`${indexPath}: weight_map["${name}"] = ${JSON.stringify(file)} is not a shard file beside the index`);
      }
      const shardPath = resolve(directory, file);
      let shard = shards.get(shardPath);
      if (!shard) {
        shard = { checkpoint: await TorchCheckpoint.open(shardPath), tensors: new Map() };
        // Registered before its state dict is read, so `close` closes it when that fails.
        shards.set(shardPath, shard);
        shard.tensors = torchTensors(shard.checkpoint, shardPath);
      }
      const tensor = shard.tensors.get(name);
      if (!tensor) throw new Error(`${indexPath}: tensor "${name}" is mapped to ${file}, which does not hold it`);
      tensors.set(name, tensor);
    }
    return { path: indexPath, format: 'torch shards', tensors, args: {}, close };
  } catch (error) {
    await close();
    throw error;
  }
}
