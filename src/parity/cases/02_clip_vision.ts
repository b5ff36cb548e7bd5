// Case 02: transformers CLIPVisionModelWithProjection on the fixture's weights, read by byte offset
// from its model.safetensors; every hidden state, the pooled output, post_layernorm on all tokens
// and the projection.
import { join } from 'node:path';
import { Graph, type Value } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import { externalBindings } from '../../nn/weights.js';
import { encodeModel } from '../../onnx/proto.js';
import { CLIPVisionModel } from '../../models/clip_vision.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const model = await CLIPVisionModel.fromPretrained(fixture.directory);
  const pixelValues = fixture.inputs.get('pixel_values')!;
  const graph = new Graph('clip_vision');
  // A symbolic batch, as pipelines batch images freely.
  const pixels = graph.input('pixel_values', 'float32', ['batch', ...pixelValues.shape.slice(1)]);
  const reader = await openSafetensors(join(fixture.directory, 'model.safetensors'));
  try {
    const { context, externalData } = externalBindings(graph, model, reader);
    const output = model.forward(context, pixels);
    const outputs: Record<string, Value> = {
      last_hidden_state: output.lastHiddenState,
      pooler_output: output.poolerOutput,
      post_layernorm_all_tokens: output.postLayernormTokens,
      image_embeds: output.imageEmbeds!,
    };
    output.hiddenStates.forEach((state, index) => (outputs[`hidden_states.${index}`] = state));
    const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData });
    try {
      return compareOutputs(fixture, await session.run({ pixel_values: pixelValues }));
    } finally {
      await session.release();
    }
  } finally {
    await reader.close();
  }
}
