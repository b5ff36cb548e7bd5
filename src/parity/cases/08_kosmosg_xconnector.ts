// Fixture 08: the Kosmos-G XConnector (official connector.py with fairseq attention semantics), tiny.
// One inference graph with the weights read from the fixture by byte offset computes the dense
// projection of the image tokens and the latents of each image.
import { Graph } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { encodeModel } from '../../onnx/proto.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import { XConnector } from '../../models/xconnector.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const model = await XConnector.fromPretrained(fixture.directory);
  const features = fixture.inputs.get('image_features');
  if (!features) throw new Error(`${fixture.name}: no input image_features`);
  const graph = new Graph('xconnector');
  const imageTokens = graph.input('image_features', 'float32', features.shape);
  const reader = await openSafetensors(fixture.directory);
  try {
    const { context, externalData } = model.externalWeights(graph, reader);
    const outputs = { dense: model.project(context, imageTokens), latents: model.forward(context, imageTokens) };
    const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData });
    try {
      return compareOutputs(fixture, await session.run({ image_features: features }));
    } finally {
      await session.release();
    }
  } finally {
    await reader.close();
  }
}
