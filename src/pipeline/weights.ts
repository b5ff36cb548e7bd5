// Pipeline components whose inference graphs read their weights straight from the checkpoint (ONNX
// external data by byte offset, see nn/weights.ts): the module is built from its config.json only
// for its structure and parameter shapes, and the safetensors file stays open beside it.
import { join, platform } from '#platform';
import { Graph } from '../graph/graph.js';
import type { ExternalDataFile } from '../graph/session.js';
import { readConfigJson } from '../io/config-json.js';
import { openSafetensors } from '../io/safetensors-index.js';
import type { SafetensorsReader } from '../io/safetensors.js';
import type { Module, Parameter, TraceContext } from '../nn/module.js';
import { type QuantizedFile, quantizeLinearWeights } from '../nn/quantize.js';
import { type ExternalWeights, externalBindings } from '../nn/weights.js';

/** Weight-only quantization of every linear layer at load time (MatMulNBits blocks, nn/quantize.ts). */
export interface WeightQuantization {
  bits: 4 | 8;
}

let quantizedFiles = 0;

/**
 * The linear weights of `model` quantized from `reader`, under an external-data location no
 * other model of the process uses. Where the platform keeps external data in files (Node), the
 * bytes are written there once and only the path is kept, so they leave the heap.
 */
export async function quantizeModel(name: string, model: Module, reader: SafetensorsReader, quantization: WeightQuantization, tensorName?: (key: string) => string): Promise<QuantizedFile> {
  const location = `quantized-${name}-int${quantization.bits}-${++quantizedFiles}.bin`;
  const quantized = await quantizeLinearWeights(model, reader, { bits: quantization.bits, location, ...(tensorName ? { tensorName } : {}) });
  const stored = await platform.externalBytes(location, quantized.data as Uint8Array);
  return 'folder' in stored ? { ...quantized, data: join(stored.folder, location) } : quantized;
}

/** A model and the checkpoint its graphs read. */
export class BoundModel<M extends Module> {
  /** The external data every graph of this model needs, by location name. */
  readonly externalData: readonly ExternalDataFile[];

  private constructor(
    readonly name: string,
    readonly directory: string,
    readonly model: M,
    readonly reader: SafetensorsReader,
    private readonly bindWeights: (graph: Graph, model: M, reader: SafetensorsReader) => ExternalWeights,
  ) {
    // Binding once into a scratch graph checks every tensor name and shape now, at load time,
    // rather than at the first generation; the location names depend only on the file paths.
    this.externalData = bindWeights(new Graph(`${name}_check`), model, reader).externalData;
  }

  /**
   * Reads `directory/config.json`, builds the model with `build` and binds it to the folder's
   * safetensors (strict: missing tensors, tensors the config does not use and shape mismatches are
   * one-line errors naming the component). Parameter buffers are dropped after the check: graphs
   * read the file, only shapes are kept.
   */
  static async open<M extends Module>(
    name: string,
    directory: string,
    build: (config: Record<string, unknown>) => M,
    bind?: (graph: Graph, model: M, reader: SafetensorsReader) => ExternalWeights,
    options: { quantize?: WeightQuantization | undefined } = {},
  ): Promise<BoundModel<M>> {
    const oneLine = (error: unknown) => new Error(`${name}: ${(error as Error).message.replace(/\s+/g, ' ')}`);
    let model: M;
    try {
      model = build(await readConfigJson(join(directory, 'config.json')));
    } catch (error) {
      throw oneLine(error);
    }
    const reader = await openSafetensors(directory).catch((error: unknown) => {
      throw oneLine(error);
    });
    try {
      // A model with its own binding (the VAE's legacy names) keeps it; the others may read their linear layers quantized.
      const quantized = !bind && options.quantize ? await quantizeModel(name, model, reader, options.quantize) : undefined;
      const bindWeights = bind ?? ((graph: Graph, bound: M, file: SafetensorsReader) => externalBindings(graph, bound, file, quantized ? { quantized } : {}));
      const bound = new BoundModel(name, directory, model, reader, bindWeights);
      releaseParameterData(model);
      return bound;
    } catch (error) {
      await reader.close();
      throw oneLine(error);
    }
  }

  bind(graph: Graph): TraceContext {
    return this.bindWeights(graph, this.model, this.reader).context;
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}

/** Replaces every parameter's buffer by an empty one of the same shape (only shapes are read from here on). */
function releaseParameterData(model: Module): void {
  for (const [, parameter] of model.namedParameters()) {
    const shape = parameter.shape;
    parameter.data = { dtype: parameter.dtype, shape, data: new Float32Array(0) } as typeof parameter.data;
  }
}

/**
 * One trace context over several modules: each parameter resolves through the context of the
 * module that owns it (a U-Net read from its checkpoint and LoRA weights held in memory).
 */
export function mergedContext(graph: Graph, parts: readonly { module: Module; context: TraceContext }[]): TraceContext {
  const owners = new Map(parts.flatMap(({ module, context }) => module.namedParameters().map(([, parameter]) => [parameter, context] as const)));
  const ownerOf = (parameter: Parameter) => {
    const owner = owners.get(parameter);
    if (!owner) throw new Error('a parameter of this graph belongs to none of its modules');
    return owner;
  };
  return {
    graph,
    value: (parameter) => ownerOf(parameter).value(parameter),
    quantized: (parameter) => ownerOf(parameter).quantized?.(parameter),
  };
}
