// Case 01: transformers CLIPTextModelWithProjection on the fixture's weights, read by byte offset
// from its model.safetensors; every hidden state, the pooled output and the projection.
import { join } from 'node:path';
import { Graph, type Value } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import { externalBindings } from '../../nn/weights.js';
import { encodeModel } from '../../onnx/proto.js';
import { CLIPTextModel } from '../../models/clip_text.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const model = await CLIPTextModel.fromPretrained(fixture.directory);
  const inputIds = fixture.inputs.get('input_ids')!;
  const graph = new Graph('clip_text');
  // A symbolic batch, as pipelines batch prompts freely.
  const ids = graph.input('input_ids', 'int64', ['batch', ...inputIds.shape.slice(1)]);
  const reader = await openSafetensors(join(fixture.directory, 'model.safetensors'));
  try {
    const { context, externalData } = externalBindings(graph, model, reader);
    const output = model.forward(context, ids);
    const outputs: Record<string, Value> = {
      last_hidden_state: output.lastHiddenState,
      pooler_output: output.poolerOutput,
      penultimate_hidden_state: output.hiddenStates.at(-2)!,
      text_embeds: output.textEmbeds!,
    };
    output.hiddenStates.forEach((state, index) => (outputs[`hidden_states.${index}`] = state));
    const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData });
    try {
      return compareOutputs(fixture, await session.run({ input_ids: inputIds }));
    } finally {
      await session.release();
    }
  } finally {
    await reader.close();
  }
}
