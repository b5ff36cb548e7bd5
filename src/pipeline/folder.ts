// Pipeline folders, laid out like diffusers': `model_index.json` maps each component name to its
// [library, class] pair, and every component lives in a sub-folder of the same name (`config.json`
// + safetensors weights for a model, `scheduler_config.json` for the scheduler, tokenizer files for
// a tokenizer). A Kosmos-G folder holds mllm, vision, connector, aligner, unet, vae, scheduler and
// tokenizer; the plain CLIP-text path (the Stable Diffusion baseline) needs text_encoder and a CLIP
// tokenizer (`clip_tokenizer` beside a Kosmos-G tokenizer, `tokenizer` in a Stable Diffusion folder).
import { platform, join } from '#platform';
import { parsePythonJson } from '../io/config-json.js';
import { parseAlignerConfig } from '../models/aligner.js';
import { parseAutoencoderKLConfig } from '../models/autoencoder_kl.js';
import { parseClipTextConfig } from '../models/clip_text.js';
import { parseKosmosMllmConfig } from '../models/kosmos_mllm.js';
import { parseOpenClipVisionConfig } from '../models/openclip_vision.js';
import { parseUNetConfig } from '../models/unet_2d_condition.js';
import { parseXConnectorConfig } from '../models/xconnector.js';

/** What each component name must be: its classes and how its folder is checked. */
type ComponentKind = 'model' | 'scheduler' | 'clip-tokenizer' | 'tokenizer';

interface ComponentRule {
  kind: ComponentKind;
  /** The classes this project loads for the component. */
  classes: readonly string[];
  /** A model's config.json parser, the one its loader uses (`source` names the file in errors). */
  parseConfig?: (config: unknown, source: string) => unknown;
}

export const SCHEDULER_CLASSES = ['PNDMScheduler', 'DDIMScheduler', 'DPMSolverMultistepScheduler', 'EulerDiscreteScheduler'] as const;

const componentRules: Record<string, ComponentRule> = {
  mllm: { kind: 'model', classes: ['KosmosGMllm'], parseConfig: parseKosmosMllmConfig },
  vision: { kind: 'model', classes: ['OpenClipVisionModel'], parseConfig: parseOpenClipVisionConfig },
  connector: { kind: 'model', classes: ['XConnector'], parseConfig: parseXConnectorConfig },
  aligner: { kind: 'model', classes: ['AlignerNet'], parseConfig: parseAlignerConfig },
  unet: { kind: 'model', classes: ['UNet2DConditionModel'], parseConfig: parseUNetConfig },
  vae: { kind: 'model', classes: ['AutoencoderKL'], parseConfig: parseAutoencoderKLConfig },
  text_encoder: { kind: 'model', classes: ['CLIPTextModel'], parseConfig: parseClipTextConfig },
  scheduler: { kind: 'scheduler', classes: SCHEDULER_CLASSES },
  clip_tokenizer: { kind: 'clip-tokenizer', classes: ['CLIPTokenizer', 'CLIPTokenizerFast'] },
  tokenizer: { kind: 'tokenizer', classes: [] },
};

/** model_index.json entries of a Kosmos-G folder's networks; the tokenizer's and scheduler's depend on the folder. */
export const KOSMOS_G_NETWORK_ENTRIES: Readonly<Record<string, readonly [string, string]>> = {
  vision: ['kosmos_g', 'OpenClipVisionModel'],
  connector: ['kosmos_g', 'XConnector'],
  mllm: ['kosmos_g', 'KosmosGMllm'],
  aligner: ['kosmos_g', 'AlignerNet'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};

/** The components each pipeline reads. */
export const KOSMOS_G_COMPONENTS = ['tokenizer', 'vision', 'connector', 'mllm', 'aligner', 'unet', 'vae', 'scheduler'] as const;
export const DIFFUSION_COMPONENTS = ['unet', 'vae', 'scheduler'] as const;

/** Weight files a model folder may hold, as `openSafetensors` looks for them. */
const WEIGHT_FILES = ['model.safetensors', 'diffusion_pytorch_model.safetensors'];

export interface PipelineComponent {
  name: string;
  library: string;
  className: string;
  directory: string;
}

export interface PipelineFolder {
  directory: string;
  /** `_class_name` of model_index.json (KosmosGPipeline, StableDiffusionPipeline). */
  className: string;
  components: ReadonlyMap<string, PipelineComponent>;
}

/** Component names of a pipeline; `[null, null]` entries (disabled components, as diffusers writes them) are left out. */
export type ModelIndex = { _class_name: string } & Record<string, unknown>;

const exists = (path: string) => platform.pathKind(path);

/** What is missing from one component folder, as `name/file` phrases (empty when complete). */
async function missingFiles(component: PipelineComponent, kind: ComponentKind): Promise<string[]> {
  if ((await exists(component.directory)) !== 'directory') return [`${component.name}/`];
  const files = await platform.listDirectory(component.directory);
  const need = (file: string) => (files.includes(file) ? [] : [`${component.name}/${file}`]);
  switch (kind) {
    case 'model': {
      const weights = files.some((file) => WEIGHT_FILES.includes(file) || file.endsWith('.safetensors.index.json'));
      return [...need('config.json'), ...(weights ? [] : [`${component.name}/${WEIGHT_FILES.join(' or ')}`])];
    }
    case 'scheduler':
      return need('scheduler_config.json');
    case 'clip-tokenizer':
      return [...need('vocab.json'), ...need('merges.txt')];
    case 'tokenizer':
      return files.length ? [] : [`${component.name}/ (empty)`];
  }
}

/**
 * Why a model component's config.json is refused, in one line naming the file: not JSON, or not
 * what its class's parser accepts (numbers that cannot go together among them); null when it is
 * accepted or absent (absence is reported as a missing file).
 */
async function configProblem(component: PipelineComponent, parseConfig: (config: unknown, source: string) => unknown): Promise<string | null> {
  const path = join(component.directory, 'config.json');
  if ((await exists(path)) !== 'file') return null;
  try {
    parseConfig(parsePythonJson(await platform.readText(path), path), path);
    return null;
  } catch (error) {
    return (error as Error).message.replace(/\s+/g, ' ');
  }
}

/** A component name that is one plain folder inside the pipeline folder (no separators, not `.` or `..`). */
const COMPONENT_NAME = /^[A-Za-z0-9][\w.-]*$/;

function ruleFor(name: string, className: string, pipelineClass: string): ComponentRule | undefined {
  // In a Stable Diffusion folder `tokenizer` is the CLIP tokenizer.
  if (name === 'tokenizer' && (className === 'CLIPTokenizer' || className === 'CLIPTokenizerFast' || pipelineClass === 'StableDiffusionPipeline')) {
    return componentRules['clip_tokenizer'];
  }
  // Own entries only: a component named `constructor` or `toString` has no rule.
  return Object.hasOwn(componentRules, name) ? componentRules[name] : undefined;
}

/**
 * Reads `model_index.json` and checks every component it lists: the class must be one this project
 * loads, the folder must hold its files and a model's config.json must satisfy its class's parser. Problems
 * of one kind are reported together in one line. Components this project does not use (a Stable
 * Diffusion folder's safety_checker, feature_extractor) need their folder but are otherwise ignored;
 * `[null, null]` entries (disabled components) need none.
 */
export async function readPipelineFolder(directory: string): Promise<PipelineFolder> {
  if ((await exists(directory)) !== 'directory') throw new Error(`model folder ${directory} does not exist`);
  const indexPath = join(directory, 'model_index.json');
  let text: string;
  try {
    text = await platform.readText(indexPath);
  } catch {
    throw new Error(`${directory} is not a pipeline folder: model_index.json is missing`);
  }
  let index: unknown;
  try {
    index = parsePythonJson(text, indexPath);
  } catch (error) {
    throw new Error(`${indexPath}: ${(error as Error).message.replace(/\s+/g, ' ')}`);
  }
  if (typeof index !== 'object' || index === null || Array.isArray(index)) throw new Error(`${indexPath}: expected a JSON object`);
  const record = index as Record<string, unknown>;
  const pipelineClass = typeof record['_class_name'] === 'string' ? record['_class_name'] : '';
  if (!pipelineClass) throw new Error(`${indexPath}: _class_name is missing`);

  const components = new Map<string, PipelineComponent>();
  const problems: string[] = [];
  const missing: string[] = [];
  const unreadable: string[] = [];
  for (const [name, entry] of Object.entries(record)) {
    if (name.startsWith('_')) continue;
    if (Array.isArray(entry) && entry.length === 2 && entry[0] === null && entry[1] === null) continue;
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') {
      problems.push(`${name}: expected [library, class], got ${JSON.stringify(entry)}`);
      continue;
    }
    if (!COMPONENT_NAME.test(name)) {
      problems.push(`${JSON.stringify(name)} is not a component folder name`);
      continue;
    }
    const [library, className] = entry as [string, string];
    const rule = ruleFor(name, className, pipelineClass);
    if (!rule) {
      if ((await exists(join(directory, name))) !== 'directory') missing.push(`${name}/`);
      continue;
    }
    if (rule.classes.length && !rule.classes.includes(className)) {
      problems.push(`${name}: class ${className} is not supported (expected ${rule.classes.join(' or ')})`);
      continue;
    }
    const component = { name, library, className, directory: join(directory, name) };
    missing.push(...(await missingFiles(component, rule.kind)));
    const problem = rule.parseConfig ? await configProblem(component, rule.parseConfig) : null;
    if (problem) unreadable.push(problem);
    components.set(name, component);
  }
  if (problems.length) throw new Error(`${indexPath}: ${problems.join('; ')}`);
  if (missing.length) throw new Error(`model folder ${directory} is incomplete: missing ${missing.join(', ')}`);
  if (unreadable.length) throw new Error(unreadable.join('; '));
  return { directory, className: pipelineClass, components };
}

/** The named components, or one error naming every one that model_index.json does not list. */
export function requireComponents(folder: PipelineFolder, names: readonly string[], purpose: string): Map<string, PipelineComponent> {
  const absent = names.filter((name) => !folder.components.has(name));
  if (absent.length) throw new Error(`model folder ${folder.directory} cannot be used for ${purpose}: model_index.json lists no ${absent.join(', ')}`);
  return new Map(names.map((name) => [name, folder.components.get(name)!]));
}

/** The CLIP tokenizer of the CLIP-text path: `clip_tokenizer` when present, else a CLIP `tokenizer`. */
export function clipTokenizerComponent(folder: PipelineFolder): PipelineComponent | undefined {
  const dedicated = folder.components.get('clip_tokenizer');
  if (dedicated) return dedicated;
  const tokenizer = folder.components.get('tokenizer');
  return tokenizer && ruleFor('tokenizer', tokenizer.className, folder.className)?.kind === 'clip-tokenizer' ? tokenizer : undefined;
}
