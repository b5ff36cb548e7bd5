// Weight-only block quantization of linear layers for CPU inference, in the layout of onnxruntime's
// MatMulNBits (graph/ops/nn.ts quantizedLinear): the (N, K) weight is cut along K into blocks of
// `blockSize`; each block keeps its own scale and zero point (asymmetric: the block's min and max
// map to codes 0 and 2^bits − 1), so w ≈ (code − zero point) · scale. K is padded to whole blocks
// with zeros, which a zero point represents exactly.
import type { BlockQuantization } from '../graph/ops/nn.js';
import type { SafetensorsReader } from '../io/safetensors.js';
import { isLinearWeight } from './layers.js';
import type { Module, Parameter, QuantizedLinearValues, TraceContext } from './module.js';

export interface QuantizedWeight extends BlockQuantization {
  /** (N, blocks, blockSize·bits/8): codes of consecutive K, low bits first. */
  codes: Uint8Array;
  /** (N·blocks). */
  scales: Float32Array;
  /** (N·⌈blocks·bits/8⌉): one per block, packed two to a byte at 4 bits (low nibble first). */
  zeroPoints: Uint8Array;
}

export const QUANTIZATION_BITS = [4, 8] as const;

/** Blocks per row of a K-feature weight. */
export const blocksPerRow = (k: number, blockSize: number) => Math.ceil(k / blockSize);

export function quantizeBlockwise(weight: Float32Array, n: number, k: number, bits: 4 | 8, blockSize: number): QuantizedWeight {
  if (!QUANTIZATION_BITS.includes(bits)) throw new Error(`quantization bits must be 4 or 8, got ${bits}`);
  if (!Number.isInteger(Math.log2(blockSize)) || blockSize < 16) throw new Error(`the block size must be a power of two ≥ 16, got ${blockSize}`);
  if (weight.length !== n * k) throw new Error(`quantizeBlockwise: ${weight.length} values are not a ${n}×${k} weight`);
  const blocks = blocksPerRow(k, blockSize);
  const levels = 2 ** bits - 1;
  const blob = (blockSize * bits) / 8;
  const zeroBytesPerRow = Math.ceil((blocks * bits) / 8);
  const codes = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zeroPoints = new Uint8Array(n * zeroBytesPerRow);
  for (let row = 0; row < n; row++) {
    for (let block = 0; block < blocks; block++) {
      const start = block * blockSize;
      const end = Math.min(start + blockSize, k);
      // The range includes 0, so padding and exact zeros quantize without error.
      let low = 0;
      let high = 0;
      for (let i = row * k + start; i < row * k + end; i++) {
        const value = weight[i]!;
        if (value < low) low = value;
        else if (value > high) high = value;
      }
      const scale = high > low ? (high - low) / levels : 1;
      const inverse = 1 / scale;
      const zeroPoint = Math.min(levels, Math.max(0, Math.round(-low * inverse)));
      const index = row * blocks + block;
      scales[index] = scale;
      zeroPoints[row * zeroBytesPerRow + ((block * bits) >> 3)] |= zeroPoint << ((block * bits) & 7);
      for (let i = 0; i < end - start; i++) {
        const code = Math.round(weight[row * k + start + i]! * inverse) + zeroPoint;
        codes[index * blob + ((i * bits) >> 3)] |= (code < 0 ? 0 : code > levels ? levels : code) << ((i * bits) & 7);
      }
      // The padding past K holds the code of 0, the zero point itself.
      for (let i = end - start; i < blockSize; i++) codes[index * blob + ((i * bits) >> 3)] |= zeroPoint << ((i * bits) & 7);
    }
  }
  return { k, n, bits, blockSize, codes, scales, zeroPoints };
}

/** The (N, K) float weight the codes stand for, as MatMulNBits reads them. */
export function dequantizeBlockwise(quantized: QuantizedWeight): Float32Array {
  const { n, k, bits, blockSize, codes, scales, zeroPoints } = quantized;
  const blocks = blocksPerRow(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const mask = 2 ** bits - 1;
  const zeroBytesPerRow = Math.ceil((blocks * bits) / 8);
  const weight = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let i = 0; i < k; i++) {
      const block = Math.floor(i / blockSize);
      const index = row * blocks + block;
      const zeroPoint = (zeroPoints[row * zeroBytesPerRow + ((block * bits) >> 3)]! >> ((block * bits) & 7)) & mask;
      const within = i - block * blockSize;
      const code = (codes[index * blob + ((within * bits) >> 3)]! >> ((within * bits) & 7)) & mask;
      weight[row * k + i] = (code - zeroPoint) * scales[index]!;
    }
  }
  return weight;
}

// ---- a model's linear layers, quantized at load time -------------------------------------------

/** A byte range of a QuantizedFile. */
interface ByteRange {
  offset: number;
  length: number;
}

/** The Linear weights of one model quantized into one external-data file. */
export interface QuantizedFile {
  /** The external-data location the graphs name. */
  location: string;
  /** Its bytes, or the path of a file holding them (where the platform keeps them on disk, out of the heap). */
  data: Uint8Array | string;
  tensors: Map<Parameter, { key: string; layout: BlockQuantization; codes: ByteRange; scales: ByteRange; zeroPoints: ByteRange }>;
}

export interface QuantizeOptions {
  bits: 4 | 8;
  /** Weights per scale; default 32. */
  blockSize?: number;
  /** The external-data location of the file (unique within a graph). */
  location: string;
  /** The checkpoint name of a parameter key (a prefix, a legacy name); default the key. */
  tensorName?: (key: string) => string;
}

export const DEFAULT_BLOCK_SIZE = 32;

/**
 * Reads every Linear weight of `root` from `reader` (float32, or half precision as float32), one
 * at a time, and quantizes it; the float weights stay in the file for anything else that reads them.
 */
export async function quantizeLinearWeights(root: Module, reader: SafetensorsReader, options: QuantizeOptions): Promise<QuantizedFile> {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const append = (bytes: Uint8Array): ByteRange => {
    // 4-byte alignment keeps every float32 scale table readable in place.
    const offset = Math.ceil(size / 4) * 4;
    if (offset > size) chunks.push(new Uint8Array(offset - size));
    chunks.push(bytes);
    size = offset + bytes.length;
    return { offset, length: bytes.length };
  };
  const tensors: QuantizedFile['tensors'] = new Map();
  for (const [key, parameter] of root.namedParameters()) {
    if (!isLinearWeight(parameter)) continue;
    const [n, k] = parameter.shape as [number, number];
    const weight = await reader.read(options.tensorName ? options.tensorName(key) : key, { asFloat32: true });
    const quantized = quantizeBlockwise(weight.data as Float32Array, n, k, options.bits, blockSize);
    const scales = new Uint8Array(quantized.scales.buffer, quantized.scales.byteOffset, quantized.scales.byteLength);
    tensors.set(parameter, { key, layout: { n, k, bits: options.bits, blockSize }, codes: append(quantized.codes), scales: append(scales), zeroPoints: append(quantized.zeroPoints) });
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return { location: options.location, data: bytes, tensors };
}

/** `context` with the quantized Linear weights of `file` offered through `quantized` (initializers made on first use). */
export function withQuantizedLinears(context: TraceContext, file: QuantizedFile): TraceContext {
  const traced = new Map<Parameter, QuantizedLinearValues>();
  return {
    ...context,
    quantized(parameter) {
      const tensor = file.tensors.get(parameter);
      if (!tensor) return undefined;
      let values = traced.get(parameter);
      if (!values) {
        const { key, layout, codes, scales, zeroPoints } = tensor;
        const blocks = blocksPerRow(layout.k, layout.blockSize);
        const external = (range: ByteRange) => ({ location: file.location, ...range });
        values = {
          codes: context.graph.externalInitializer(`${key}.codes`, 'uint8', [layout.n, blocks, (layout.blockSize * layout.bits) / 8], external(codes)),
          scales: context.graph.externalInitializer(`${key}.scales`, 'float32', [layout.n * blocks], external(scales)),
          zeroPoints: context.graph.externalInitializer(`${key}.zero_points`, 'uint8', [zeroPoints.length], external(zeroPoints)),
          layout,
        };
        traced.set(parameter, values);
      }
      return values;
    },
  };
}
