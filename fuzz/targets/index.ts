// The fuzz targets by name: every real one runs by default; the canary only when named.
import { canaryTarget } from './canary.js';
import { configsTarget } from './configs.js';
import { httpTarget } from './http.js';
import { imagesTarget } from './images.js';
import { picklesTarget } from './pickles.js';
import { promptsTarget } from './prompts.js';
import { safetensorsTarget } from './safetensors.js';
import type { Target } from './target.js';
import { tokenizersTarget } from './tokenizers.js';

export const DEFAULT_TARGETS: readonly Target[] = [safetensorsTarget, picklesTarget, imagesTarget, configsTarget, tokenizersTarget, promptsTarget, httpTarget];

const byName = new Map<string, Target>([...DEFAULT_TARGETS, canaryTarget].map((target) => [target.name, target]));

export function targetNamed(name: string): Target {
  const target = byName.get(name);
  if (!target) throw new Error(`unknown fuzz target ${JSON.stringify(name)} (choose from ${[...byName.keys()].join(', ')})`);
  return target;
}
