// Model configs and pipeline folders. Each network's `config.json` (the shipped models' own, as
// seeds) is read as the loaders read it: readConfigJson, then its class's parser, whose multi-line
// schema report the loaders print as one line. `scheduler_config.json` is read as generation reads
// it: readConfigJson, schedulerFromConfig, then the default 50-step schedule. `model_index.json` is
// checked by readPipelineFolder in a folder laid out like the shipped model's (its small files
// copied, its weights replaced by empty files of the same names).
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConfigJson } from '../../src/io/config-json.js';
import { parseAlignerConfig } from '../../src/models/aligner.js';
import { parseAutoencoderKLConfig } from '../../src/models/autoencoder_kl.js';
import { parseClipTextConfig } from '../../src/models/clip_text.js';
import { parseKosmosMllmConfig } from '../../src/models/kosmos_mllm.js';
import { parseOpenClipVisionConfig } from '../../src/models/openclip_vision.js';
import { parseUNetConfig } from '../../src/models/unet_2d_condition.js';
import { parseXConnectorConfig } from '../../src/models/xconnector.js';
import { readPipelineFolder } from '../../src/pipeline/folder.js';
import { type SchedulerConfig, schedulerFromConfig } from '../../src/schedulers/index.js';
import { mutateJson } from '../json-mutate.js';
import type { Seed, Target } from './target.js';
import { withLinesJoined } from '../verdict.js';

export const MODELS = fileURLToPath(new URL('../../../models/', import.meta.url));
const PIPELINES = ['kosmos-g-mini', 'world-sd-mini'];

const parsers: Record<string, (config: unknown, source: string) => unknown> = {
  mllm: parseKosmosMllmConfig,
  vision: parseOpenClipVisionConfig,
  connector: parseXConnectorConfig,
  aligner: parseAlignerConfig,
  unet: parseUNetConfig,
  vae: parseAutoencoderKLConfig,
  text_encoder: parseClipTextConfig,
};

/** Generation's default number of steps. */
const DEFAULT_STEPS = 50;
/** Files up to this size are copied into the pipeline folder; larger ones (weights) become empty files. */
const COPIED_FILE_BYTES = 64 * 1024;

/** A copy of a shipped pipeline folder's layout under `scratch`, made once per worker. */
const layouts = new Map<string, Promise<string>>();

function pipelineLayout(model: string, scratch: string): Promise<string> {
  const key = join(scratch, model);
  let made = layouts.get(key);
  if (!made) {
    made = (async () => {
      for (const component of await readdir(join(MODELS, model), { withFileTypes: true })) {
        if (!component.isDirectory()) continue;
        await mkdir(join(key, component.name), { recursive: true });
        for (const file of await readdir(join(MODELS, model, component.name))) {
          const from = join(MODELS, model, component.name, file);
          const info = await stat(from);
          if (!info.isFile()) continue;
          if (info.size <= COPIED_FILE_BYTES) await copyFile(from, join(key, component.name, file));
          else await writeFile(join(key, component.name, file), '');
        }
      }
      return key;
    })();
    layouts.set(key, made);
  }
  return made;
}

export const configsTarget: Target = {
  name: 'configs',
  description: "config.json of every network (each class's parser), scheduler_config.json (scheduler and its schedule) and model_index.json (readPipelineFolder)",
  async seeds(): Promise<Seed[]> {
    const seeds: Seed[] = [];
    for (const model of PIPELINES) {
      for (const component of Object.keys(parsers)) {
        const path = join(MODELS, model, component, 'config.json');
        const bytes = await readFile(path).catch(() => null);
        if (bytes) seeds.push({ variant: component, bytes: Uint8Array.from(bytes) });
      }
      seeds.push({ variant: 'scheduler', bytes: Uint8Array.from(await readFile(join(MODELS, model, 'scheduler', 'scheduler_config.json'))) });
      seeds.push({ variant: `model-index-${model}`, bytes: Uint8Array.from(await readFile(join(MODELS, model, 'model_index.json'))) });
    }
    return seeds;
  },
  mutate(seed, random) {
    return Buffer.from(mutateJson(Buffer.from(seed.bytes).toString('utf8'), random));
  },
  async run(variant, input, scratch) {
    if (variant.startsWith('model-index-')) {
      const folder = await pipelineLayout(variant.slice('model-index-'.length), scratch);
      await writeFile(join(folder, 'model_index.json'), input);
      await readPipelineFolder(folder);
      return;
    }
    const path = join(scratch, variant === 'scheduler' ? 'scheduler_config.json' : 'config.json');
    await writeFile(path, input);
    const config = await readConfigJson(path);
    if (variant === 'scheduler') {
      schedulerFromConfig(config as SchedulerConfig).setTimesteps(DEFAULT_STEPS);
      return;
    }
    try {
      parsers[variant]!(config, path);
    } catch (error) {
      throw withLinesJoined(error);
    }
  },
};
