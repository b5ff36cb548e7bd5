// Where graphs run: the CPU execution provider, or WebGPU (Dawn over Vulkan/Metal/D3D12) when the
// machine has an adapter. onnxruntime-node fails session creation instead of falling back when a
// WebGPU session finds no adapter, so the adapter is probed once with a one-node session and the
// answer is cached for the process (each worker thread probes for itself).
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { Graph } from './graph.js';
import { add } from './ops/elementwise.js';
import { encodeModel } from '../onnx/proto.js';

/** What a caller asks for; `auto` picks WebGPU when an adapter is found, else the CPU. */
export type Device = 'cpu' | 'webgpu' | 'auto';
export type ResolvedDevice = 'cpu' | 'webgpu';

export interface WebGpuProbe {
  available: boolean;
  /** Why no adapter could be used (ORT's message), when none could. */
  reason?: string;
  /** How long the probe took, in milliseconds. */
  ms: number;
}

let probe: Promise<WebGpuProbe> | undefined;

function probeModel(): Uint8Array {
  const graph = new Graph('webgpu_probe');
  const x = graph.input('x', 'float32', [1]);
  return encodeModel(graph.toModel({ y: add(x, x) }));
}

/** Creates and runs a one-node session on the WebGPU provider; the result is cached. */
export function probeWebGpu(): Promise<WebGpuProbe> {
  probe ??= (async () => {
    const start = performance.now();
    try {
      // Severity 3 (errors only): a machine without an adapter is an expected answer, not a warning.
      const session = await ort.InferenceSession.create(probeModel(), { executionProviders: ['webgpu'], logSeverityLevel: 3 });
      try {
        const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });
        if (y?.data[0] !== 2) throw new Error(`WebGPU probe computed ${String(y?.data[0])} for 1 + 1`);
      } finally {
        await session.release();
      }
      return { available: true, ms: performance.now() - start };
    } catch (error) {
      return { available: false, reason: error instanceof Error ? error.message : String(error), ms: performance.now() - start };
    }
  })();
  return probe;
}

/** The device to run on: `webgpu` only when an adapter was actually found, never a silent fallback. */
export async function resolveDevice(device: Device): Promise<ResolvedDevice> {
  switch (device) {
    case 'cpu':
      return 'cpu';
    case 'auto':
      return (await probeWebGpu()).available ? 'webgpu' : 'cpu';
    case 'webgpu': {
      const result = await probeWebGpu();
      if (result.available) return 'webgpu';
      throw new Error(`device 'webgpu' was requested but no WebGPU adapter was found (${result.reason ?? 'unknown reason'})`);
    }
    default:
      throw new Error(`unknown device ${JSON.stringify(device)}; expected 'cpu', 'webgpu' or 'auto'`);
  }
}

/** Intra-op threads when none are given: one per core the process may use. */
export function defaultThreads(): number {
  return availableParallelism();
}

export function checkThreads(threads: number): number {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
  return threads;
}
