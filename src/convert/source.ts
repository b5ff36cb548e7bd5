// What `convert --from` reads, as one view: tensors by official key (declared element type and
// shape, bytes read on demand) and the training arguments. A `.pt` file goes through the safe
// torch reader (fairseq keeps the weights under `model`, the config in `args` or `cfg.model`); a
// `.safetensors` file, sharded index or folder with the official key names has no arguments.
import { stat } from 'node:fs/promises';
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
  format: 'torch zip' | 'torch legacy' | 'safetensors';
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

export async function openCheckpointSource(path: string): Promise<CheckpointSource> {
  const entry = await stat(path).catch(() => {
    throw new Error(`--from ${path} does not exist`);
  });
  if (entry.isDirectory() || path.endsWith('.safetensors') || path.endsWith('.safetensors.index.json')) {
    const reader = await openSafetensors(path);
    const tensors = new Map<string, SourceTensor>();
    for (const name of reader.names()) {
      const info = reader.info(name);
      tensors.set(name, { dtype: READ_AS[info.dtype], shape: info.shape, read: () => reader.read(name) });
    }
    return { path, format: 'safetensors', tensors, args: {}, close: () => reader.close() };
  }
  const checkpoint = await TorchCheckpoint.open(path);
  try {
    const tensors = new Map<string, SourceTensor>();
    for (const [name, tensor] of stateDictOf(checkpoint.root, path)) {
      tensors.set(name, { dtype: READ_AS[tensor.storage.dtype], shape: tensor.shape, read: () => tensor.read() });
    }
    return { path, format: checkpoint.format === 'zip' ? 'torch zip' : 'torch legacy', tensors, args: trainingArgs(checkpoint.root), close: () => checkpoint.close() };
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}
