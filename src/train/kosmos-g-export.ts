// The rest of a Kosmos-G pipeline folder around the trained networks: the frozen decoder's U-Net,
// VAE and scheduler copied from the text-to-image folder they came from, its world description and attribution when it has them, and the
// model_index.json that names every component (diffusers' layout), so the folder a stage exports
// loads like any other pipeline folder.
import { access, cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KOSMOS_G_NETWORK_ENTRIES } from '../pipeline/folder.js';

/** The components of a Kosmos-G folder, as `model_index.json` names them. */
export const KOSMOS_G_MODEL_INDEX = {
  _class_name: 'KosmosGPipeline',
  tokenizer: ['kosmos_g', 'MiniKosmosTokenizer'],
  ...KOSMOS_G_NETWORK_ENTRIES,
  scheduler: ['diffusers', 'PNDMScheduler'],
};

/** Copies `tokenizer/`, `vision/`, `connector/` and `mllm/` of an earlier stage's export. */
export async function copyKosmosGComponents(source: string, directory: string): Promise<void> {
  for (const name of ['tokenizer', 'vision', 'connector', 'mllm']) await cp(join(source, name), join(directory, name), { recursive: true });
}

/** Copies the decoder's `unet/`, `vae/`, `scheduler/`, `world.json` and attribution, then writes model_index.json. */
export async function writeKosmosGPipeline(directory: string, decoder: string): Promise<void> {
  for (const name of ['unet', 'vae', 'scheduler']) await cp(join(decoder, name), join(directory, name), { recursive: true });
  for (const file of ['world.json', 'ATTRIBUTION.md']) {
    const present = await access(join(decoder, file)).then(() => true, () => false);
    if (present) await cp(join(decoder, file), join(directory, file));
  }
  await writeFile(join(directory, 'model_index.json'), `${JSON.stringify(KOSMOS_G_MODEL_INDEX, null, 2)}\n`);
}
