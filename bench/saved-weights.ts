// Paper-size benches run random weights the way a real checkpoint runs: the model is saved to a
// temporary safetensors folder and the inference graph reads the tensors from that file by byte
// offset, onnxruntime loading them from disk itself (a ModelProto is limited to 2 GB, the MLLM's
// file is 5.4 GB, and a JavaScript copy would double the memory). Shared by the models-* benches.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, type Value } from '../src/graph/graph.js';
import { GraphSession } from '../src/graph/session.js';
import { readConfigJson } from '../src/io/config-json.js';
import type { SafetensorsReader } from '../src/io/safetensors.js';
import { openSafetensors } from '../src/io/safetensors-index.js';
import type { Module, TraceContext } from '../src/nn/module.js';
import { type ExternalWeights, externalBindings } from '../src/nn/weights.js';
import { type HostTensor, hostTensor } from '../src/onnx/dtype.js';
import { encodeModel } from '../src/onnx/proto.js';
import { PAPER_CONFIG_DIRECTORY } from '../src/pipeline/random_pipeline.js';
import { BENCH_THREADS, peakRssMiB, resetPeakRss } from './measure.js';

/** A model that writes itself as a checkpoint folder; models whose keys carry a prefix bind to it themselves. */
export interface SavableModel extends Module {
  save(directory: string): Promise<void>;
  externalWeights?(graph: Graph, reader: SafetensorsReader): ExternalWeights;
}

export interface SavedWeights {
  directory: string;
  /** Initialisation and save, in ms. */
  initMs: number;
  /** Peak RSS of the initialisation (host weights and their save), in MiB. */
  initPeakRssMiB: number;
  /** Whether the peak-RSS count restarted after the host weights were dropped (see resetPeakRss). */
  peakRssReset: boolean;
}

/** A paper-size config.json from src/models/configs/ by file name. */
export const readModelConfig = (name: string): Promise<unknown> => readConfigJson(join(PAPER_CONFIG_DIRECTORY, name));

const collectGarbage = (globalThis as { gc?: () => void }).gc;

/**
 * Builds a model, saves it into a temporary folder and drops its host weights (graphs read the file;
 * only the shapes are needed from then on), then runs `use` with the folder, removed afterwards.
 * Run with `node --expose-gc` for the dropped weights to be freed before the session is built.
 */
export async function withSavedWeights<M extends SavableModel, T>(build: () => M | Promise<M>, use: (model: M, saved: SavedWeights) => Promise<T>): Promise<T> {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-bench-'));
  try {
    const started = performance.now();
    const model = await build();
    await model.save(directory);
    const initMs = performance.now() - started;
    const initPeakRssMiB = peakRssMiB();
    // Fresh zero buffers are never touched, so they take no resident memory.
    for (const [, parameter] of model.namedParameters()) parameter.data = hostTensor(parameter.dtype, parameter.shape);
    collectGarbage?.();
    return await use(model, { directory, initMs, initPeakRssMiB, peakRssReset: resetPeakRss() });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

export interface CompiledForward {
  session: GraphSession;
  /** Trace, encode and session creation, in ms. */
  createMs: number;
}

/**
 * Traces `forward` over graph inputs shaped like `feeds` with the weights of `model` bound to its
 * saved file, and creates the session (which links the file and lets onnxruntime read it).
 */
export async function compileSavedForward(
  name: string,
  model: SavableModel,
  directory: string,
  feeds: Readonly<Record<string, HostTensor>>,
  forward: (context: TraceContext, inputs: Record<string, Value>) => Record<string, Value>,
): Promise<CompiledForward> {
  const started = performance.now();
  const reader = await openSafetensors(directory);
  try {
    const graph = new Graph(name);
    const inputs = Object.fromEntries(Object.entries(feeds).map(([input, tensor]) => [input, graph.input(input, tensor.dtype, tensor.shape)]));
    const { context, externalData } = model.externalWeights ? model.externalWeights(graph, reader) : externalBindings(graph, model, reader);
    const session = await GraphSession.create(encodeModel(graph.toModel(forward(context, inputs))), { externalData, threads: BENCH_THREADS });
    return { session, createMs: performance.now() - started };
  } finally {
    await reader.close();
  }
}
