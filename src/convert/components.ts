// Writing one component folder of a converted pipeline (config.json + safetensors weights) from a
// checkpoint or a diffusers/transformers model folder. A written component holds exactly the
// tensors its model reads, found by walking the model built from its config: a missing tensor or a
// wrong shape is an error naming the keys, and the source's other tensors under the prefix
// (training buffers, the tied LM head, stage-2 parts) are left out and reported.
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Module } from '../nn/module.js';
import { type DeferredTensor, writeSafetensorsDeferred } from '../io/safetensors.js';
import type { CheckpointSource } from './source.js';

/** How one network is cut out of the checkpoint. */
export interface ComponentPlan {
  /** The pipeline folder's component name (`mllm`, `unet`, …). */
  name: string;
  model: Module;
  /** The config.json contents. */
  config: Record<string, unknown>;
  /** Where the network's tensors sit in the checkpoint (`gpt_model.decoder.`, `diffusion_unet.unet.`). */
  sourcePrefix: string;
  /** Where they sit in the written file: the official prefix the loaders expect, or none for diffusers models. */
  outputPrefix: string;
  weightsFile: string;
  /** The model's name for a checkpoint key below the prefix, where older layouts differ (legacy VAE attention names). */
  modelKey?: (checkpointKey: string) => string;
}

/** Model key → checkpoint key, checked: every parameter present with its shape. */
export function matchTensors(source: CheckpointSource, plan: ComponentPlan): Map<string, string> {
  const byModelKey = new Map<string, string>();
  for (const key of source.tensors.keys()) {
    if (!key.startsWith(plan.sourcePrefix)) continue;
    const inner = key.slice(plan.sourcePrefix.length);
    byModelKey.set(plan.modelKey ? plan.modelKey(inner) : inner, key);
  }
  const matched = new Map<string, string>();
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const [key, parameter] of plan.model.namedParameters()) {
    const checkpointKey = byModelKey.get(key);
    if (!checkpointKey) {
      missing.push(plan.sourcePrefix + key);
      continue;
    }
    const shape = source.tensors.get(checkpointKey)!.shape;
    if (shape.join() !== parameter.shape.join()) mismatched.push(`${checkpointKey} is [${shape.join(', ')}], the ${plan.name} config needs [${parameter.shape.join(', ')}]`);
    matched.set(key, checkpointKey);
  }
  const problems = [
    ...(missing.length ? [`missing ${missing.length} tensor(s): ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''}`] : []),
    ...mismatched.slice(0, 8),
  ];
  if (problems.length) throw new Error(`${source.path}: the ${plan.name} does not match its config (${problems.join('; ')})`);
  return matched;
}

/** Writes `directory/config.json` and the weights, one tensor in memory at a time; returns the checkpoint keys it used. */
export async function writeComponent(directory: string, source: CheckpointSource, plan: ComponentPlan): Promise<string[]> {
  const matched = matchTensors(source, plan);
  const tensors = new Map<string, DeferredTensor>();
  for (const [key, checkpointKey] of matched) {
    const tensor = source.tensors.get(checkpointKey)!;
    tensors.set(plan.outputPrefix + key, { dtype: tensor.dtype, shape: tensor.shape, read: () => tensor.read() });
  }
  await mkdir(directory, { recursive: true });
  await writeFile(join(directory, 'config.json'), `${JSON.stringify(plan.config, null, 2)}\n`);
  await writeSafetensorsDeferred(join(directory, plan.weightsFile), tensors, { metadata: { converted_from: basename(source.path) } });
  return [...matched.values()];
}
