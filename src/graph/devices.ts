// Where graphs run: the CPU execution provider (wasm in a page), or WebGPU (Dawn over
// Vulkan/Metal/D3D12, or the browser's) when the machine has an adapter. ORT fails session creation
// instead of falling back when a WebGPU session finds no adapter, so the adapter is probed once and
// the answer cached for the process (each worker thread probes for itself). On Node the probe runs
// in a child process (webgpu-probe.ts: Dawn's native warnings and any driver crash stay there).
import { platform } from '#platform';

/** What a caller asks for; `auto` picks WebGPU when an adapter is found, else the CPU. */
export type Device = 'cpu' | 'webgpu' | 'auto';
export type ResolvedDevice = 'cpu' | 'webgpu';

export interface WebGpuProbe {
  available: boolean;
  /** Why no adapter could be used, in one line, when none could. */
  reason?: string;
  /** How long the probe took, in milliseconds. */
  ms: number;
}

const PROBE_SCRIPT = new URL('./webgpu-probe.js', import.meta.url);

let probe: Promise<WebGpuProbe> | undefined;

/**
 * ORT's reason in one line: its message starts with a source location and a failed condition
 * ("…webgpu_context.cc:136 … was false. Failed to get a WebGPU adapter: No supported adapters").
 */
function webGpuReason(message: string): string {
  const line = message.replace(/^[\s\S]*? was false\. /, '').split('\n')[0]!.trim();
  return line || 'unknown reason';
}

/** Probes once; the result is cached. */
export function probeWebGpu(): Promise<WebGpuProbe> {
  probe ??= (async () => {
    const start = performance.now();
    const answer = await platform.probeWebGpu(PROBE_SCRIPT);
    const ms = performance.now() - start;
    return answer.available ? { available: true, ms } : { available: false, reason: webGpuReason(answer.reason ?? ''), ms };
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
      throw new Error(`device 'webgpu' was requested but no WebGPU adapter was found (${result.reason ?? 'unknown reason'}); use --device cpu or auto`);
    }
    default:
      throw new Error(`unknown device ${JSON.stringify(device)}; expected 'cpu', 'webgpu' or 'auto'`);
  }
}

/** Intra-op threads when none are given: one per core the process may use. */
export function defaultThreads(): number {
  return platform.cores();
}

/** More intra-op threads than this many per core only make the threads wait for each other. */
export const MAX_THREADS_PER_CORE = 2;
const threadWarnings = new Set<number>();

/**
 * A checked thread count: a positive integer, capped at MAX_THREADS_PER_CORE × the cores with a
 * warning on stderr (once per value and process).
 */
export function checkThreads(threads: number): number {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
  const cores = platform.cores();
  const limit = MAX_THREADS_PER_CORE * cores;
  if (threads <= limit) return threads;
  if (!threadWarnings.has(threads)) {
    threadWarnings.add(threads);
    platform.warn(`warning: ${threads} threads is more than ${MAX_THREADS_PER_CORE} per core on ${cores} cores; using ${limit}`);
  }
  return limit;
}
