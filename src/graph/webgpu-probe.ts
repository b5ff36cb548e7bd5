// The WebGPU probe's child process (devices.ts): creates and runs a one-node session on the WebGPU
// provider and prints the outcome as one JSON line. It runs apart because Dawn writes its own
// warnings ("Couldn't load Vulkan: …") straight to the process's stderr, which the parent keeps
// clean; a crash inside the driver also stays in the child.
import * as ort from 'onnxruntime-node';
import { Graph } from './graph.js';
import { add } from './ops/elementwise.js';
import { encodeModel } from '../onnx/proto.js';

function probeModel(): Uint8Array {
  const graph = new Graph('webgpu_probe');
  const x = graph.input('x', 'float32', [1]);
  return encodeModel(graph.toModel({ y: add(x, x) }));
}

async function probe(): Promise<{ available: boolean; reason?: string }> {
  try {
    // Severity 3 (errors only): a machine without an adapter is an expected answer, not a warning.
    const session = await ort.InferenceSession.create(probeModel(), { executionProviders: ['webgpu'], logSeverityLevel: 3 });
    try {
      const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });
      if (y?.data[0] !== 2) throw new Error(`WebGPU probe computed ${String(y?.data[0])} for 1 + 1`);
    } finally {
      await session.release();
    }
    return { available: true };
  } catch (error) {
    return { available: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

process.stdout.write(`${JSON.stringify(await probe())}\n`);
