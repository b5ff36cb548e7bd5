// Case 03: Kosmos-G's vision tower (open_clip ViT with torchscale ts_attn, ln_post on all tokens,
// per-token L2 norm). Once with the official key names read by byte offset from model.safetensors,
// once loaded from the stock open_clip layout (in_proj split into q/k/v) and embedded in the graph.
import { join } from 'node:path';
import { Graph, type Value } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import { type TraceContext, constantBindings } from '../../nn/module.js';
import { type ExternalWeights, externalBindings } from '../../nn/weights.js';
import type { HostTensor } from '../../onnx/dtype.js';
import { encodeModel } from '../../onnx/proto.js';
import { OpenClipVisionModel } from '../../models/openclip_vision.js';
import { type FixtureCase, type ParityRow, compareOutputs, compareTensors } from '../compare.js';

async function runTower(
  model: OpenClipVisionModel,
  pixelValues: HostTensor,
  bind: (graph: Graph) => { context: TraceContext; externalData?: ExternalWeights['externalData'] },
): Promise<Record<string, HostTensor>> {
  const graph = new Graph('kosmosg_vision');
  // A symbolic batch, as Kosmos-G batches the images of a prompt freely.
  const pixels = graph.input('pixel_values', 'float32', ['batch', ...pixelValues.shape.slice(1)]);
  const { context, externalData } = bind(graph);
  const output = model.forward(context, pixels);
  const outputs: Record<string, Value> = {
    features: output.features,
    features_before_l2norm: output.featuresBeforeNormalize,
    embeddings_after_ln_pre: output.embeddings,
  };
  output.blockOutputs.forEach((block, index) => (outputs[`block_output.${index}`] = block));
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData });
  try {
    return await session.run({ pixel_values: pixelValues });
  } finally {
    await session.release();
  }
}

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const pixelValues = fixture.inputs.get('pixel_values')!;
  const official = await OpenClipVisionModel.fromPretrained(fixture.directory);
  const reader = await openSafetensors(join(fixture.directory, 'model.safetensors'));
  let officialOutputs: Record<string, HostTensor>;
  try {
    officialOutputs = await runTower(official, pixelValues, (graph) => externalBindings(graph, official, reader));
  } finally {
    await reader.close();
  }
  const openClip = await OpenClipVisionModel.fromPretrained(fixture.directory, { checkpoint: 'model.open_clip_layout.safetensors' });
  const openClipOutputs = await runTower(openClip, pixelValues, (graph) => ({ context: constantBindings(graph, openClip) }));
  return [
    ...compareOutputs(fixture, officialOutputs),
    ...Object.entries(openClipOutputs).map(([name, tensor]) =>
      compareTensors(fixture.name, `${name} (open_clip layout)`, tensor, fixture.outputs.get(name)!, fixture.tolerance(name)),
    ),
  ];
}
