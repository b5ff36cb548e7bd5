// The networks of Kosmos-G's condition path at the tensor level (official `KosmosGmodel`):
//   get_image_representation: pixels (N, 3, S, S) → open_clip vision (every token L2-normalised)
//       → XConnector → (N, Q, D) → flattened to (N·Q, D) in prompt order
//   encode_condition: tokens (B, L) with the image latents written into the image-mask positions
//       (scaled by √D with the token embeddings, inside the MLLM) → MLLM final-LN hidden states at
//       every position (B, L, D) → Aligner M with the padding mask tokens == <pad> → (B, 77, d)
// Two graphs, each compiled once per shape signature through the Runtime, with the weights read
// from the components' safetensors files by byte offset (external data).
import { join } from '#platform';
import { checkpointInitialized } from '../nn/layers.js';
import { Graph, type Value } from '../graph/graph.js';
import { equal } from '../graph/ops/elementwise.js';
import { reshape } from '../graph/ops/shape.js';
import type { Runtime } from '../graph/runtime.js';
import type { ExternalDataFile } from '../graph/session.js';
import { readConfigJson } from '../io/config-json.js';
import { openSafetensors } from '../io/safetensors-index.js';
import type { SafetensorsReader } from '../io/safetensors.js';
import { type Module, type TraceContext } from '../nn/module.js';
import { externalBindings } from '../nn/weights.js';
import type { HostTensor } from '../onnx/dtype.js';
import { ALIGNER_PREFIX, AlignerNet, parseAlignerConfig } from '../models/aligner.js';
import { KOSMOS_MLLM_PREFIX, KosmosGMllm, PAD_INDEX, parseKosmosMllmConfig } from '../models/kosmos_mllm.js';
import { KOSMOS_G_PREFIX, OpenClipVisionModel, parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { XCONNECTOR_PREFIX, XConnector, readXConnectorConfig } from '../models/xconnector.js';

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

/** The external-data files a component's bindings reference (computed once, no tensor is read). */
async function externalFilesOf(component: WeightedComponent<Module>): Promise<ExternalDataFile[]> {
  return withReader(component.weights, (reader) => externalBindings(new Graph('probe'), component.model, reader, { prefix: component.prefix }).externalData);
}

function mergeExternalFiles(lists: readonly ExternalDataFile[][]): ExternalDataFile[] {
  const byLocation = new Map<string, ExternalDataFile>();
  for (const file of lists.flat()) byLocation.set(file.path, file);
  return [...byLocation.values()];
}

export class KosmosGConditionModel {
  private readonly imageFiles: ExternalDataFile[];
  private readonly textFiles: ExternalDataFile[];

  private constructor(
    readonly components: ConditionComponents,
    private readonly runtime: Runtime,
    files: { vision: ExternalDataFile[]; connector: ExternalDataFile[]; mllm: ExternalDataFile[]; aligner: ExternalDataFile[] },
  ) {
    this.imageFiles = mergeExternalFiles([files.vision, files.connector]);
    this.textFiles = mergeExternalFiles([files.mllm, files.aligner]);
  }

  /** Checks that the components fit together, then records where their weights are. */
  static async create(components: ConditionComponents, runtime: Runtime): Promise<KosmosGConditionModel> {
    const { vision, connector, mllm, aligner } = components;
    const width = vision.model.config.vision_cfg.width;
    const dim = mllm.model.config.decoder_embed_dim;
    if (connector.model.config.input_dim !== width) throw new Error(`connector input_dim ${connector.model.config.input_dim} does not match the vision width ${width}`);
    if (connector.model.config.output_dim !== dim) throw new Error(`connector output_dim ${connector.model.config.output_dim} does not match the MLLM width ${dim}`);
    if (aligner.model.config.input_dim !== dim) throw new Error(`aligner input_dim ${aligner.model.config.input_dim} does not match the MLLM width ${dim}`);
    const files = {
      vision: await externalFilesOf(vision),
      connector: await externalFilesOf(connector),
      mllm: await externalFilesOf(mllm),
      aligner: await externalFilesOf(aligner),
    };
    return new KosmosGConditionModel(components, runtime, files);
  }

  /** Reads `vision/`, `connector/`, `mllm/` and `aligner/` (config.json + model.safetensors each) of a pipeline folder. */
  static async fromPipelineFolder(directory: string, options: { runtime: Runtime }): Promise<KosmosGConditionModel> {
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

  private bind(graph: Graph, component: WeightedComponent<Module>, reader: SafetensorsReader): TraceContext {
    return externalBindings(graph, component.model, reader, { prefix: component.prefix }).context;
  }

  /** get_image_representation: pixel values (N, 3, S, S) → the latents to inject, (N·Q, D) in image order. */
  async imageLatents(pixelValues: HostTensor): Promise<HostTensor> {
    const { vision, connector } = this.components;
    const [images] = pixelValues.shape;
    const size = this.imageSize;
    if (pixelValues.dtype !== 'float32' || pixelValues.shape.join() !== [images, 3, size, size].join() || !images) {
      throw new Error(`pixel values must be float32 (N ≥ 1, 3, ${size}, ${size}), got ${pixelValues.dtype} [${pixelValues.shape.join(', ')}]`);
    }
    const session = await this.runtime.compile(
      `kosmos-g/image-latents|${vision.weights}|${connector.weights}`,
      { pixel_values: pixelValues.shape },
      () =>
        withReader(vision.weights, (visionReader) =>
          withReader(connector.weights, (connectorReader) => {
            const graph = new Graph('kosmos_g_image_latents');
            const pixels = graph.input('pixel_values', 'float32', pixelValues.shape);
            const features = graph.scope('img_model', () => vision.model.forward(this.bind(graph, vision, visionReader), pixels).features); // (N, T, W)
            const latents = graph.scope('img_connector', () => connector.model.forward(this.bind(graph, connector, connectorReader), features)); // (N, Q, D)
            return graph.toModel({ image_latents: reshape(latents, [images * this.queries, this.hiddenSize]) }); // (N·Q, D)
          }),
        ),
      { externalData: this.imageFiles },
    );
    const { image_latents: latents } = await session.run({ pixel_values: pixelValues });
    return latents!;
  }

  /**
   * encode_condition for token rows (B, L) int64, right-padded with `<pad>`; `image` gives the
   * mask (B, L) bool and the latents (N·Q, D) written into its true positions, batch-major.
   */
  async encodeTokens(tokens: HostTensor, image?: { mask: HostTensor; latents: HostTensor }): Promise<ConditionOutputs> {
    const { mllm, aligner } = this.components;
    const [batch, length] = tokens.shape as [number, number];
    if (tokens.dtype !== 'int64' || tokens.shape.length !== 2 || !batch || !length) throw new Error(`tokens must be int64 (B, L), got ${tokens.dtype} [${tokens.shape.join(', ')}]`);
    if (length > this.maxSequenceLength) throw new Error(`the token sequence has ${length} positions; this aligner's position table allows at most ${this.maxSequenceLength}`);
    const vocabulary = BigInt(this.vocabularySize);
    if ((tokens.data as BigInt64Array).some((id) => id < 0n || id >= vocabulary)) throw new Error(`token ids must lie in [0, ${vocabulary}) (the MLLM's vocabulary)`);
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
    const withImages = image !== undefined;
    const session = await this.runtime.compile(
      `kosmos-g/condition${withImages ? '+images' : ''}|${mllm.weights}|${aligner.weights}`,
      Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, tensor.shape])),
      () =>
        withReader(mllm.weights, (mllmReader) =>
          withReader(aligner.weights, (alignerReader) => {
            const graph = new Graph('kosmos_g_condition');
            const tokenValue = graph.input('tokens', 'int64', tokens.shape);
            const mask = withImages ? graph.input('image_mask', 'bool', tokens.shape) : undefined;
            const latents = withImages ? graph.input('image_latents', 'float32', feeds['image_latents']!.shape) : undefined;
            const hidden = graph.scope('gpt_model', () => mllm.model.forward(this.bind(graph, mllm, mllmReader), tokenValue, mask, latents)); // (B, L, D)
            const padding = equal(tokenValue, PAD_INDEX); // (B, L)
            const condition: Value = graph.scope('aligner', () => aligner.model.forward(this.bind(graph, aligner, alignerReader), hidden, padding)); // (B, 77, d)
            return graph.toModel({ hidden, condition });
          }),
        ),
      { externalData: this.textFiles },
    );
    const outputs = await session.run(feeds);
    return { hidden: outputs['hidden']!, condition: outputs['condition']! };
  }
}
