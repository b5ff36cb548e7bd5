// The networks of Kosmos-G's condition path at the tensor level (official `KosmosGmodel`):
//   get_image_representation: pixels (N, 3, S, S) → open_clip vision (every token L2-normalised)
//       → XConnector → (N, Q, D) → flattened to (N·Q, D) in prompt order
//   encode_condition: tokens (B, L) with the image latents written into the image-mask positions
//       (scaled by √D with the token embeddings, inside the MLLM) → MLLM final-LN hidden states at
//       every position (B, L, D) → Aligner M with the padding mask tokens == <pad> → (B, 77, d)
// One graph per network, each compiled once per shape signature through the Runtime, with the
// weights read from the component's safetensors file by byte offset (external data). Between two
// networks only activations cross (at most (B, L, D) floats), and a low-memory model releases each
// network's session as soon as it has run, so one network's weights are in memory at a time.
import { join } from '#platform';
import { checkpointInitialized } from '../nn/layers.js';
import { Graph, type Value } from '../graph/graph.js';
import { equal } from '../graph/ops/elementwise.js';
import { reshape } from '../graph/ops/shape.js';
import { type Runtime, shapesOf } from '../graph/runtime.js';
import type { ExternalDataFile } from '../graph/session.js';
import { readConfigJson } from '../io/config-json.js';
import { openSafetensors } from '../io/safetensors-index.js';
import type { SafetensorsReader } from '../io/safetensors.js';
import type { Module, TraceContext } from '../nn/module.js';
import type { QuantizedFile } from '../nn/quantize.js';
import { externalBindings } from '../nn/weights.js';
import type { HostTensor } from '../onnx/dtype.js';
import { ALIGNER_PREFIX, AlignerNet, parseAlignerConfig } from '../models/aligner.js';
import { KOSMOS_MLLM_PREFIX, KosmosGMllm, PAD_INDEX, parseKosmosMllmConfig } from '../models/kosmos_mllm.js';
import { KOSMOS_G_PREFIX, OpenClipVisionModel, parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { XCONNECTOR_PREFIX, XConnector, readXConnectorConfig } from '../models/xconnector.js';
import { type GenerationPhase, type PhaseListener, timedPhase } from './phases.js';
import { type WeightQuantization, quantizeModel } from './weights.js';

/** One network and where its weights are: a safetensors file, sharded index or folder, and the key prefix inside it. */
export interface WeightedComponent<M extends Module> {
  model: M;
  weights: string;
  prefix: string;
}

export interface ConditionComponents {
  vision: WeightedComponent<OpenClipVisionModel>;
  connector: WeightedComponent<XConnector>;
  mllm: WeightedComponent<KosmosGMllm>;
  aligner: WeightedComponent<AlignerNet>;
}

export interface ConditionOutputs {
  /** (B, L, D) MLLM hidden states after the final LayerNorm. */
  hidden: HostTensor;
  /** (B, 77, d) Aligner M output: the U-Net's encoder_hidden_states. */
  condition: HostTensor;
}

async function withReader<T>(weights: string, use: (reader: SafetensorsReader) => T | Promise<T>): Promise<T> {
  const reader = await openSafetensors(weights);
  try {
    return await use(reader);
  } finally {
    await reader.close();
  }
}

/** The external-data files a component's bindings reference (computed once; no tensor is read but for quantizing). */
async function externalFilesOf(component: WeightedComponent<Module>, quantized: QuantizedFile | undefined): Promise<ExternalDataFile[]> {
  return withReader(component.weights, (reader) => externalBindings(new Graph('probe'), component.model, reader, { prefix: component.prefix, ...(quantized ? { quantized } : {}) }).externalData);
}

export interface ConditionModelOptions {
  /** Release each network's session right after it ran (one network's weights in memory at a time, graphs compiled again on every call). */
  lowMemory?: boolean | undefined;
  /** Hold every network's linear layers as MatMulNBits blocks, quantized once at load time. */
  quantize?: WeightQuantization | undefined;
}

/** Per call: who hears how long each network took. */
export interface ConditionRunOptions {
  onPhase?: PhaseListener;
}

type ConditionPhase = Extract<GenerationPhase, 'vision' | 'connector' | 'mllm' | 'aligner'>;

/** Each network's graph scope: the official module names, so node names read like the checkpoint keys. */
const SCOPES: Record<ConditionPhase, string> = { vision: 'img_model', connector: 'img_connector', mllm: 'gpt_model', aligner: 'aligner' };

export class KosmosGConditionModel {
  private constructor(
    readonly components: ConditionComponents,
    private readonly runtime: Runtime,
    private readonly files: Record<ConditionPhase, ExternalDataFile[]>,
    private readonly quantized: Partial<Record<ConditionPhase, QuantizedFile>>,
    private readonly lowMemory: boolean,
  ) {}

  /** Checks that the components fit together, then records where their weights are. */
  static async create(components: ConditionComponents, runtime: Runtime, options: ConditionModelOptions = {}): Promise<KosmosGConditionModel> {
    const { vision, connector, mllm, aligner } = components;
    const width = vision.model.config.vision_cfg.width;
    const dim = mllm.model.config.decoder_embed_dim;
    if (connector.model.config.input_dim !== width) throw new Error(`connector input_dim ${connector.model.config.input_dim} does not match the vision width ${width}`);
    if (connector.model.config.output_dim !== dim) throw new Error(`connector output_dim ${connector.model.config.output_dim} does not match the MLLM width ${dim}`);
    if (aligner.model.config.input_dim !== dim) throw new Error(`aligner input_dim ${aligner.model.config.input_dim} does not match the MLLM width ${dim}`);
    const quantized: Partial<Record<ConditionPhase, QuantizedFile>> = {};
    const files = {} as Record<ConditionPhase, ExternalDataFile[]>;
    for (const phase of Object.keys(SCOPES) as ConditionPhase[]) {
      const component: WeightedComponent<Module> = components[phase];
      const { quantize } = options;
      if (quantize) quantized[phase] = await withReader(component.weights, (reader) => quantizeModel(phase, component.model, reader, quantize, (key) => `${component.prefix}${key}`));
      files[phase] = await externalFilesOf(component, quantized[phase]);
    }
    return new KosmosGConditionModel(components, runtime, files, quantized, options.lowMemory ?? false);
  }

  /** Reads `vision/`, `connector/`, `mllm/` and `aligner/` (config.json + model.safetensors each) of a pipeline folder. */
  static async fromPipelineFolder(directory: string, options: { runtime: Runtime } & ConditionModelOptions): Promise<KosmosGConditionModel> {
    const folder = (name: string) => join(directory, name);
    const visionConfig = parseOpenClipVisionConfig(await readConfigJson(join(folder('vision'), 'config.json')), join(folder('vision'), 'config.json'));
    const visionPrefix = await withReader(folder('vision'), (reader) => (reader.has(`${KOSMOS_G_PREFIX}visual.conv1.weight`) ? KOSMOS_G_PREFIX : ''));
    const connectorConfig = await readXConnectorConfig(folder('connector'));
    const mllmConfigPath = join(folder('mllm'), 'config.json');
    const mllmConfig = parseKosmosMllmConfig(await readConfigJson(mllmConfigPath), mllmConfigPath);
    // torchscale leaves vocab_size at -1 when the dictionary decides; the embedding's rows do then.
    const embeddingKey = `${KOSMOS_MLLM_PREFIX}embed_tokens.weight`;
    const vocab = await withReader(folder('mllm'), (reader) => {
      if (!reader.has(embeddingKey)) throw new Error(`${reader.path}: missing tensors: ${embeddingKey}`);
      return reader.info(embeddingKey).shape[0]!;
    });
    if (mllmConfig.vocab_size > 0 && mllmConfig.vocab_size !== vocab) throw new Error(`${embeddingKey}: checkpoint has ${vocab} rows, config vocab_size is ${mllmConfig.vocab_size}`);
    const alignerConfigPath = join(folder('aligner'), 'config.json');
    const alignerConfig = parseAlignerConfig(await readConfigJson(alignerConfigPath), alignerConfigPath);
    return KosmosGConditionModel.create(
      {
        vision: { model: new OpenClipVisionModel(visionConfig, { random: checkpointInitialized }), weights: folder('vision'), prefix: visionPrefix },
        connector: { model: new XConnector(connectorConfig, { random: checkpointInitialized }), weights: folder('connector'), prefix: XCONNECTOR_PREFIX },
        mllm: { model: new KosmosGMllm({ ...mllmConfig, vocab_size: vocab }, { init: null }), weights: folder('mllm'), prefix: KOSMOS_MLLM_PREFIX },
        aligner: { model: new AlignerNet(alignerConfig, { init: null, reconstruction: false }), weights: folder('aligner'), prefix: ALIGNER_PREFIX },
      },
      options.runtime,
      options,
    );
  }

  /** Q: vectors per image (the connector's latent queries). */
  get queries(): number {
    return this.components.connector.model.config.latent_query_num;
  }

  /** S: the vision tower's input size. */
  get imageSize(): number {
    return this.components.vision.model.config.vision_cfg.image_size;
  }

  /** D: the MLLM width. */
  get hiddenSize(): number {
    return this.components.mllm.model.config.decoder_embed_dim;
  }

  /** Rows of the MLLM's token embedding. */
  get vocabularySize(): number {
    return this.components.mllm.model.config.vocab_size;
  }

  /** (77, d): one condition's shape. */
  get conditionShape(): [number, number] {
    const config = this.components.aligner.model.config;
    return [config.num_queries, config.decoder_embed_dim];
  }

  /** Longest token sequence the aligner's learned positions (2 … L + 1) cover. */
  get maxSequenceLength(): number {
    return this.components.aligner.model.config.position_table_size - 2;
  }

  /**
   * Runs one network's graph on `feeds`: compiled on first use of these shapes (`trace` builds it
   * with the network's weights bound to its file), released right after in a low-memory model.
   */
  private async runNetwork(
    phase: ConditionPhase,
    feeds: Readonly<Record<string, HostTensor>>,
    trace: (context: TraceContext, inputs: Record<string, Value>) => Record<string, Value>,
    options: ConditionRunOptions,
  ): Promise<Record<string, HostTensor>> {
    const component: WeightedComponent<Module> = this.components[phase];
    const key = `kosmos-g/${phase}|${component.weights}`;
    return timedPhase(phase, options.onPhase, async () => {
      const session = await this.runtime.compile(
        key,
        shapesOf(feeds),
        () =>
          withReader(component.weights, (reader) => {
            const graph = new Graph(`kosmos_g_${phase}`);
            const inputs = Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
            const quantized = this.quantized[phase];
            const context = externalBindings(graph, component.model, reader, { prefix: component.prefix, ...(quantized ? { quantized } : {}) }).context;
            return graph.toModel(graph.scope(SCOPES[phase], () => trace(context, inputs)));
          }),
        { externalData: this.files[phase] },
      );
      try {
        return await session.run(feeds);
      } finally {
        if (this.lowMemory) await this.runtime.release(key);
      }
    });
  }

  /** The vision tower: pixel values (N, 3, S, S) → every token's L2-normalised features (N, T, W). */
  async visionFeatures(pixelValues: HostTensor, options: ConditionRunOptions = {}): Promise<HostTensor> {
    const [images] = pixelValues.shape;
    const size = this.imageSize;
    if (pixelValues.dtype !== 'float32' || pixelValues.shape.join() !== [images, 3, size, size].join() || !images) {
      throw new Error(`pixel values must be float32 (N ≥ 1, 3, ${size}, ${size}), got ${pixelValues.dtype} [${pixelValues.shape.join(', ')}]`);
    }
    const vision = this.components.vision.model;
    const { features } = await this.runNetwork('vision', { pixel_values: pixelValues }, (context, inputs) => ({ features: vision.forward(context, inputs['pixel_values']!).features }), options);
    return features!;
  }

  /** The connector: features (N, T, W) → the latents to inject, (N·Q, D) in image order. */
  async connectorLatents(features: HostTensor, options: ConditionRunOptions = {}): Promise<HostTensor> {
    const [images] = features.shape as [number];
    const connector = this.components.connector.model;
    const { image_latents: latents } = await this.runNetwork(
      'connector',
      { features },
      (context, inputs) => ({ image_latents: reshape(connector.forward(context, inputs['features']!), [images * this.queries, this.hiddenSize]) }), // (N, Q, D) → (N·Q, D)
      options,
    );
    return latents!;
  }

  /** get_image_representation: pixel values (N, 3, S, S) → the latents to inject, (N·Q, D) in image order. */
  async imageLatents(pixelValues: HostTensor, options: ConditionRunOptions = {}): Promise<HostTensor> {
    return this.connectorLatents(await this.visionFeatures(pixelValues, options), options);
  }

  /**
   * The MLLM for token rows (B, L) int64, right-padded with `<pad>`; `image` gives the mask (B, L)
   * bool and the latents (N·Q, D) written into its true positions, batch-major. Returns the hidden
   * states after the final LayerNorm at every position, (B, L, D).
   */
  async mllmHidden(tokens: HostTensor, image?: { mask: HostTensor; latents: HostTensor }, options: ConditionRunOptions = {}): Promise<HostTensor> {
    this.checkTokens(tokens);
    const feeds: Record<string, HostTensor> = { tokens };
    if (image) {
      const { mask, latents } = image;
      if (mask.shape.join() !== tokens.shape.join()) throw new Error(`image mask [${mask.shape.join(', ')}] does not match tokens [${tokens.shape.join(', ')}]`);
      let masked = 0;
      for (const flag of mask.data as Uint8Array) if (flag) masked++;
      if (latents.shape.join() !== [masked, this.hiddenSize].join()) {
        throw new Error(`image latents [${latents.shape.join(', ')}] do not fill the ${masked} masked positions (expected [${masked}, ${this.hiddenSize}])`);
      }
      feeds['image_mask'] = { dtype: 'bool', shape: mask.shape, data: mask.data as Uint8Array };
      feeds['image_latents'] = latents;
    }
    const mllm = this.components.mllm.model;
    const { hidden } = await this.runNetwork('mllm', feeds, (context, inputs) => ({ hidden: mllm.forward(context, inputs['tokens']!, inputs['image_mask'], inputs['image_latents']) }), options);
    return hidden!;
  }

  /** Aligner M: the MLLM's hidden states (B, L, D) of `tokens` (B, L), `<pad>` positions masked → the condition (B, 77, d). */
  async alignerCondition(hidden: HostTensor, tokens: HostTensor, options: ConditionRunOptions = {}): Promise<HostTensor> {
    const aligner = this.components.aligner.model;
    const { condition } = await this.runNetwork(
      'aligner',
      { hidden, tokens },
      (context, inputs) => ({ condition: aligner.forward(context, inputs['hidden']!, equal(inputs['tokens']!, PAD_INDEX)) }), // padding (B, L) → (B, 77, d)
      options,
    );
    return condition!;
  }

  /** encode_condition: the MLLM and the aligner over token rows (see `mllmHidden`). */
  async encodeTokens(tokens: HostTensor, image?: { mask: HostTensor; latents: HostTensor }, options: ConditionRunOptions = {}): Promise<ConditionOutputs> {
    const hidden = await this.mllmHidden(tokens, image, options);
    return { hidden, condition: await this.alignerCondition(hidden, tokens, options) };
  }

  private checkTokens(tokens: HostTensor): void {
    const [batch, length] = tokens.shape as [number, number];
    if (tokens.dtype !== 'int64' || tokens.shape.length !== 2 || !batch || !length) throw new Error(`tokens must be int64 (B, L), got ${tokens.dtype} [${tokens.shape.join(', ')}]`);
    if (length > this.maxSequenceLength) throw new Error(`the token sequence has ${length} positions; this aligner's position table allows at most ${this.maxSequenceLength}`);
    const vocabulary = BigInt(this.vocabularySize);
    if ((tokens.data as BigInt64Array).some((id) => id < 0n || id >= vocabulary)) throw new Error(`token ids must lie in [0, ${vocabulary}) (the MLLM's vocabulary)`);
  }
}
