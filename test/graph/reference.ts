// Plain-JavaScript float64 references for the op tests, written for clarity over speed.
import { Tensor } from './harness.js';

export const map = (x: Tensor, fn: (value: number) => number): Tensor => new Tensor(x.data.map(fn), x.shape);

export function broadcastShape(shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((shape) => shape.length));
  return Array.from({ length: rank }, (_, axis) => Math.max(...shapes.map((shape) => shape[axis - (rank - shape.length)] ?? 1)));
}

/** NumPy-broadcasting n-ary elementwise function. */
export function broadcast(tensors: readonly Tensor[], fn: (...operands: number[]) => number): Tensor {
  return Tensor.build(broadcastShape(tensors.map((t) => t.shape)), (index) => fn(...tensors.map((t) => t.atBroadcast(index))));
}

/** Reduces `axes` (all when omitted) with `combine` over the list of reduced elements. */
export function reduce(x: Tensor, axes: readonly number[] | undefined, keepDims: boolean, combine: (elements: number[]) => number): Tensor {
  const reduced = new Set((axes ?? x.shape.map((_, axis) => axis)).map((axis) => (axis < 0 ? axis + x.rank : axis)));
  const outputShape = x.shape.flatMap((dim, axis) => (reduced.has(axis) ? (keepDims ? [1] : []) : [dim]));
  const groups = new Map<string, number[]>();
  Tensor.forEachIndex(x.shape, (index) => {
    const key = index.filter((_, axis) => !reduced.has(axis)).join(',');
    const group = groups.get(key) ?? [];
    group.push(x.at(index));
    groups.set(key, group);
  });
  return Tensor.build(outputShape, (index) => {
    const kept = keepDims ? index.filter((_, axis) => !reduced.has(axis)) : index;
    return combine(groups.get(kept.join(','))!);
  });
}

export const total = (elements: number[]): number => elements.reduce((p, q) => p + q, 0);
export const average = (elements: number[]): number => total(elements) / elements.length;

/** Applies `fn` to every 1-D lane along `axis`. */
export function alongAxis(x: Tensor, axis: number, fn: (lane: number[]) => number[]): Tensor {
  const position = axis < 0 ? axis + x.rank : axis;
  const lanes = new Map<string, number[]>();
  return Tensor.build(x.shape, (index) => {
    const key = index.map((i, a) => (a === position ? '*' : i)).join(',');
    let lane = lanes.get(key);
    if (!lane) {
      const values = Array.from({ length: x.shape[position]! }, (_, i) => x.at(index.map((v, a) => (a === position ? i : v))));
      lane = fn(values);
      lanes.set(key, lane);
    }
    return lane[index[position]!]!;
  });
}

export function softmaxLane(lane: number[]): number[] {
  const top = Math.max(...lane);
  const exps = lane.map((v) => Math.exp(v - top));
  const norm = total(exps);
  return exps.map((e) => e / norm);
}

export const logSoftmaxLane = (lane: number[]): number[] => softmaxLane(lane).map(Math.log);

export function transposeRef(x: Tensor, perm: readonly number[]): Tensor {
  return Tensor.build(perm.map((axis) => x.shape[axis]!), (index) => {
    const source = new Array<number>(x.rank);
    perm.forEach((axis, i) => (source[axis] = index[i]!));
    return x.at(source);
  });
}

/** numpy.matmul, including 1-D promotion and batch broadcasting. */
export function matmulRef(a: Tensor, b: Tensor): Tensor {
  const a2 = a.rank === 1 ? new Tensor(a.data, [1, a.shape[0]!]) : a;
  const b2 = b.rank === 1 ? new Tensor(b.data, [b.shape[0]!, 1]) : b;
  const [m, k] = a2.shape.slice(-2) as [number, number];
  const n = b2.shape.at(-1)!;
  const batch = broadcastShape([a2.shape.slice(0, -2), b2.shape.slice(0, -2)]);
  const full = Tensor.build([...batch, m, n], (index) => {
    const batchIndex = index.slice(0, -2);
    const [i, j] = index.slice(-2) as [number, number];
    let acc = 0;
    for (let p = 0; p < k; p++) acc += a2.atBroadcast([...batchIndex, i, p]) * b2.atBroadcast([...batchIndex, p, j]);
    return acc;
  });
  const shape = [...batch, ...(a.rank > 1 ? [m] : []), ...(b.rank > 1 ? [n] : [])];
  return new Tensor(full.data, shape);
}

export interface ConvReferenceOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
}

/** Direct cross-correlation: x (N, C, H, W), weight (O, C/G, kH, kW), bias (O). */
export function conv2dRef(x: Tensor, weight: Tensor, bias: Tensor | null, options: ConvReferenceOptions = {}): Tensor {
  const { stride = 1, padding = 0, dilation = 1, groups = 1 } = options;
  const [n, , h, w] = x.shape as [number, number, number, number];
  const [o, cPerGroup, kh, kw] = weight.shape as [number, number, number, number];
  const outSize = (size: number, k: number) => Math.floor((size + 2 * padding - dilation * (k - 1) - 1) / stride) + 1;
  const oPerGroup = o / groups;
  return Tensor.build([n, o, outSize(h, kh), outSize(w, kw)], ([batch, out, y, xo]) => {
    const group = Math.floor(out! / oPerGroup);
    let acc = bias ? bias.at([out!]) : 0;
    for (let ci = 0; ci < cPerGroup; ci++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const row = y! * stride + i * dilation - padding;
          const column = xo! * stride + j * dilation - padding;
          if (row < 0 || row >= h || column < 0 || column >= w) continue;
          acc += x.at([batch!, group * cPerGroup + ci, row, column]) * weight.at([out!, ci, i, j]);
        }
      }
    }
    return acc;
  });
}

/** Transposed convolution by scattering: x (N, C, H, W), weight (C, O/G, kH, kW). */
export function convTranspose2dRef(x: Tensor, weight: Tensor, bias: Tensor | null, options: ConvReferenceOptions & { outputPadding?: number } = {}): Tensor {
  const { stride = 1, padding = 0, dilation = 1, groups = 1, outputPadding = 0 } = options;
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [, oPerGroup, kh, kw] = weight.shape as [number, number, number, number];
  const outSize = (size: number, k: number) => (size - 1) * stride - 2 * padding + dilation * (k - 1) + outputPadding + 1;
  const [oh, ow] = [outSize(h, kh), outSize(w, kw)];
  const out = Tensor.build([n, oPerGroup * groups, oh, ow], ([, channel]) => (bias ? bias.at([channel!]) : 0));
  const cPerGroup = c / groups;
  Tensor.forEachIndex(x.shape, ([batch, ci, y, xi]) => {
    const group = Math.floor(ci! / cPerGroup);
    for (let co = 0; co < oPerGroup; co++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const row = y! * stride + i * dilation - padding;
          const column = xi! * stride + j * dilation - padding;
          if (row < 0 || row >= oh || column < 0 || column >= ow) continue;
          const offset = ((batch! * oPerGroup * groups + group * oPerGroup + co) * oh + row) * ow + column;
          out.data[offset] = out.data[offset]! + x.at([batch!, ci!, y!, xi!]) * weight.at([ci!, co, i, j]);
        }
      }
    }
  });
  return out;
}

/** softmax(q·kᵀ·scale + bias)·v per (batch, head); `bias(b, h, t, s)` is additive (−∞ masks). */
export function attentionRef(q: Tensor, k: Tensor, v: Tensor, bias: (index: number[]) => number, scale = 1 / Math.sqrt(q.shape[3]!)): Tensor {
  const [batches, heads, queries, depth] = q.shape as [number, number, number, number];
  const keys = k.shape[2]!;
  const valueDepth = v.shape[3]!;
  const weights = new Map<string, number[]>();
  return Tensor.build([batches, heads, queries, valueDepth], ([b, h, t, d]) => {
    const key = `${b},${h},${t}`;
    let row = weights.get(key);
    if (!row) {
      const scores = Array.from({ length: keys }, (_, s) => {
        let dot = 0;
        for (let e = 0; e < depth; e++) dot += q.at([b!, h!, t!, e]) * k.at([b!, h!, s, e]);
        return dot * scale + bias([b!, h!, t!, s]);
      });
      row = softmaxLane(scores);
      weights.set(key, row);
    }
    return row.reduce((acc, weight, s) => acc + weight * v.at([b!, h!, s, d!]), 0);
  });
}
