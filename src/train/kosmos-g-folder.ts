// Kosmos-G networks read back from a pipeline folder (what the stages export, or a converted
// official checkpoint): `vision/`, `connector/`, `mllm/` and optionally `aligner/`, each loaded
// strictly by its own model file, gathered under the official keys of one KosmosGNetworks.
import { join } from 'node:path';
import { AlignerNet } from '../models/aligner.js';
import { KosmosGMllm } from '../models/kosmos_mllm.js';
import { OpenClipVisionModel } from '../models/openclip_vision.js';
import { XConnector } from '../models/xconnector.js';
import { checkpointInitialized } from '../nn/layers.js';
import type { HostTensor } from '../onnx/dtype.js';
import { KosmosGNetworks } from './kosmos-g-networks.js';

function prefixed(prefix: string, tensors: Readonly<Record<string, HostTensor>>): Record<string, HostTensor> {
  return Object.fromEntries(Object.entries(tensors).map(([key, tensor]) => [prefix + key, tensor]));
}

/** The networks of a pipeline folder as float32 parameters; `aligner: false` leaves aligner M out. */
export async function readKosmosGComponents(directory: string, options: { aligner: boolean }): Promise<KosmosGNetworks> {
  const vision = await OpenClipVisionModel.fromPretrained(join(directory, 'vision'));
  const connector = await XConnector.fromPretrained(join(directory, 'connector'));
  const mllm = await KosmosGMllm.fromPretrained(join(directory, 'mllm'));
  const aligner = options.aligner ? await AlignerNet.fromPretrained(join(directory, 'aligner'), { reconstruction: false }) : null;
  const networks = new KosmosGNetworks(
    { vision: vision.config, connector: connector.config, mllm: mllm.config, ...(aligner ? { aligner: aligner.config } : {}) },
    checkpointInitialized,
  );
  networks.loadStateDict({
    ...prefixed('img_model.', vision.stateDict()),
    ...prefixed('img_connector.', connector.stateDict()),
    ...prefixed('gpt_model.decoder.', mllm.stateDict()),
    ...(aligner ? prefixed('aligner.', aligner.stateDict()) : {}),
  });
  return networks;
}
