// What a pipeline folder holds, for `kosmos-g info`: each component's class, its parameter count
// and tensor dtypes (read from the safetensors headers only), and its size on disk. A folder is
// described only after it loads exactly as `generate` loads it, so `info` refuses what `generate`
// refuses.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openSafetensors } from '../io/safetensors-index.js';
import { type PipelineFolder, readPipelineFolder } from './folder.js';
import { KosmosGPipeline } from './kosmos_g_pipeline.js';
import { TextToImagePipeline } from './text_to_image.js';

export interface ComponentInfo {
  name: string;
  library: string;
  className: string;
  /** Elements over all tensors of the weights (null for schedulers and tokenizers). */
  parameters: number | null;
  /** Tensor count per safetensors dtype (F32, F16, …). */
  dtypes: Record<string, number>;
  bytesOnDisk: number;
}

export interface PipelineInfo {
  directory: string;
  className: string;
  components: ComponentInfo[];
  totalParameters: number;
  totalBytes: number;
}

async function folderBytes(directory: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) total += await folderBytes(path);
    else if (entry.isFile()) total += (await stat(path)).size;
  }
  return total;
}

/** Parameters and tensor dtypes of a model folder's weights, from the safetensors headers alone (null: no weights). */
export async function weightSummary(directory: string): Promise<{ parameters: number; dtypes: Record<string, number> } | null> {
  const files = await readdir(directory);
  if (!files.some((file) => file.endsWith('.safetensors') || file.endsWith('.safetensors.index.json'))) return null;
  const reader = await openSafetensors(directory);
  try {
    let parameters = 0;
    const dtypes: Record<string, number> = {};
    for (const name of reader.names()) {
      const info = reader.info(name);
      parameters += info.shape.reduce((p, q) => p * q, 1);
      dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
    }
    return { parameters, dtypes };
  } finally {
    await reader.close();
  }
}

/**
 * Loads every pipeline `generate` can run from the folder, with `generate`'s own loaders (the folder,
 * each component's config, its weights against the config, the tokenizers, the widths between
 * components), then releases them: the Kosmos-G pipeline of a KosmosGPipeline folder, the CLIP-text
 * pipeline of any other folder or of one that lists a text_encoder. Nothing is compiled or run.
 */
export async function validatePipelineFolder(directory: string): Promise<PipelineFolder> {
  const folder = await readPipelineFolder(directory);
  const loaders: ((directory: string) => Promise<{ dispose(): Promise<void> }>)[] = [];
  const kosmosG = folder.className === 'KosmosGPipeline';
  if (kosmosG) loaders.push((path) => KosmosGPipeline.fromPretrained(path, { device: 'cpu' }));
  if (!kosmosG || folder.components.has('text_encoder')) loaders.push((path) => TextToImagePipeline.fromPretrained(path, { device: 'cpu' }));
  for (const load of loaders) await (await load(directory)).dispose();
  return folder;
}

export async function describePipeline(directory: string): Promise<PipelineInfo> {
  const folder = await validatePipelineFolder(directory);
  const components: ComponentInfo[] = [];
  for (const component of folder.components.values()) {
    const weights = await weightSummary(component.directory);
    components.push({
      name: component.name,
      library: component.library,
      className: component.className,
      parameters: weights?.parameters ?? null,
      dtypes: weights?.dtypes ?? {},
      bytesOnDisk: await folderBytes(component.directory),
    });
  }
  return {
    directory,
    className: folder.className,
    components,
    totalParameters: components.reduce((total, component) => total + (component.parameters ?? 0), 0),
    totalBytes: components.reduce((total, component) => total + component.bytesOnDisk, 0),
  };
}

/** 1234 → "1.23 k", 1.9e9 → "1.90 G". */
export function formatCount(value: number): string {
  const units = ['', ' k', ' M', ' G'];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1000 && unit < units.length - 1) {
    scaled /= 1000;
    unit++;
  }
  return unit === 0 ? String(value) : `${scaled.toFixed(2)}${units[unit]}`;
}

/** Bytes in KiB/MiB/GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let scaled = bytes;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${scaled.toFixed(1)} ${units[unit]}`;
}

/** The info as aligned text lines. */
export function formatPipelineInfo(info: PipelineInfo): string[] {
  const rows = info.components.map((component) => [
    component.name,
    component.className,
    component.parameters === null ? '-' : formatCount(component.parameters),
    Object.entries(component.dtypes).map(([dtype, count]) => `${dtype}×${count}`).join(' ') || '-',
    formatBytes(component.bytesOnDisk),
  ]);
  const header = ['component', 'class', 'parameters', 'dtypes (tensors)', 'on disk'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [
    `${info.directory}: ${info.className}`,
    line(header),
    ...rows.map(line),
    `total: ${formatCount(info.totalParameters)} parameters, ${formatBytes(info.totalBytes)} on disk`,
  ];
}
