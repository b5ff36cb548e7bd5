// The tiny Kosmos-G training chain the stage tests run: a random `init-random --config tiny`
// pipeline folder supplies every frozen part (vision tower, tokenizer, text encoder, U-Net, VAE)
// and the networks stages 2 and 3 start from, and each stage gets a config of a few steps.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRandomPipeline, TINY_CONFIGS } from '../../src/pipeline/random_pipeline.js';
import { loadKosmosTokenizer } from '../../src/tokenizers/kosmos_tokenizer.js';

export const TINY_CONCEPTS = ['cat', 'dog', 'teapot', 'rocket', 'red-apple', 'guitar'];

const optimizer = { kind: 'adamw', beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.01 };

function common(seed: number, steps: number, batchSize: number) {
  return {
    seed,
    steps,
    batchSize,
    optimizer,
    schedule: { kind: 'polynomial', learningRate: 1e-3, warmupSteps: 1, totalSteps: steps, finalLearningRate: 0, power: 1 },
    maxGradNorm: 2,
    checkpointEvery: 2,
    keepCheckpoints: 2,
    plotEvery: 2,
    sampleEvery: steps,
  };
}

export interface TinyChain {
  /** The random pipeline folder. */
  pipeline: string;
  /** Config files by stage name. */
  configs: { 'kosmos-lm': string; 'kosmos-align': string; 'kosmos-instruct': string };
}

/** Writes the random pipeline and the three stage configs under `directory`; `dropout` 0 makes losses deterministic functions of the batch. */
export async function createTinyChain(directory: string, options: { dropout?: number } = {}): Promise<TinyChain> {
  await mkdir(directory, { recursive: true });
  const pipeline = join(directory, 'pipeline');
  await createRandomPipeline(pipeline, { config: 'tiny', seed: 3 });
  const vocabulary = (await loadKosmosTokenizer(join(pipeline, 'tokenizer'))).vocabularySize;
  const dropout = options.dropout ?? 0.1;
  if (dropout !== TINY_CONFIGS.mllm.dropout) {
    // Stage 3 reads the networks' configs from the folder.
    const mllmConfig = join(pipeline, 'mllm', 'config.json');
    const connectorConfig = join(pipeline, 'connector', 'config.json');
    await writeFile(mllmConfig, JSON.stringify({ ...JSON.parse(await readFile(mllmConfig, 'utf8')), dropout, attention_dropout: dropout }));
    await writeFile(connectorConfig, JSON.stringify({ ...JSON.parse(await readFile(connectorConfig, 'utf8')), attention_dropout: dropout }));
  }
  const data = (seed: number) => ({ seed, splits: ['train'], concepts: TINY_CONCEPTS });
  const lm = {
    stage: 'kosmos-lm',
    ...common(21, 4, 3),
    vision: join(pipeline, 'vision'),
    tokenizer: join(pipeline, 'tokenizer'),
    connector: { ...TINY_CONFIGS.connector, attention_dropout: dropout },
    mllm: { ...TINY_CONFIGS.mllm, vocab_size: vocabulary, dropout, attention_dropout: dropout },
    sequenceLength: 160,
    imagesPerBatch: 4,
    data: data(31),
    previewCount: 2,
  };
  const align = {
    stage: 'kosmos-align',
    ...common(22, 4, 3),
    kosmosG: pipeline,
    decoder: pipeline,
    aligner: TINY_CONFIGS.aligner,
    sequenceLength: 128,
    data: data(32),
    preview: { count: 2, steps: 2, guidanceScale: 3 },
  };
  const instruct = {
    stage: 'kosmos-instruct',
    ...common(23, 4, 3),
    kosmosG: pipeline,
    decoder: pipeline,
    sequenceLength: 160,
    imagesPerBatch: 5,
    data: data(33),
    preview: { perKind: 1, steps: 2, guidanceScale: 3 },
  };
  const configs = {
    'kosmos-lm': join(directory, 'kosmos-lm-tiny.json'),
    'kosmos-align': join(directory, 'kosmos-align-tiny.json'),
    'kosmos-instruct': join(directory, 'kosmos-instruct-tiny.json'),
  };
  await writeFile(configs['kosmos-lm'], JSON.stringify(lm, null, 2));
  await writeFile(configs['kosmos-align'], JSON.stringify(align, null, 2));
  await writeFile(configs['kosmos-instruct'], JSON.stringify(instruct, null, 2));
  return { pipeline, configs };
}
