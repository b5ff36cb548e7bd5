// Case 07: the official Kosmos-G MLLM (gpt.py LMDecoder on torchscale) with image features written
// into the image-mask positions, plus the null prompt [<s>]. Weights are read from the fixture's
// safetensors by byte offset, as in any inference graph.
import { Graph, type Value } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import type { HostTensor } from '../../onnx/dtype.js';
import { encodeModel } from '../../onnx/proto.js';
import { KosmosGMllm } from '../../models/kosmos_mllm.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

function fixtureInput(fixture: FixtureCase, name: string): HostTensor {
  const tensor = fixture.inputs.get(name);
  if (!tensor) throw new Error(`${fixture.name}: no input ${name}`);
  return tensor;
}

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const model = await KosmosGMllm.fromPretrained(fixture.directory);
  const reader = await openSafetensors(fixture.directory);
  try {
    const tokens = fixtureInput(fixture, 'src_tokens');
    // The official mask is bool; the fixture stores it as uint8 with the same bytes.
    const maskBytes = fixtureInput(fixture, 'img_gpt_input_mask');
    const mask: HostTensor = { dtype: 'bool', shape: maskBytes.shape, data: maskBytes.data as Uint8Array };
    const features = fixtureInput(fixture, 'img_features');
    const nullTokens = fixtureInput(fixture, 'null_src_tokens');

    const run = async (build: (graph: Graph, context: ReturnType<KosmosGMllm['externalWeights']>['context']) => Record<string, Value>, feeds: Record<string, HostTensor>) => {
      const graph = new Graph('kosmos_mllm');
      const weights = model.externalWeights(graph, reader);
      const outputs = build(graph, weights.context);
      const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData: weights.externalData });
      try {
        return await session.run(feeds);
      } finally {
        await session.release();
      }
    };

    const prompt = await run(
      (graph, context) => {
        const tokenValue = graph.input('src_tokens', 'int64', tokens.shape);
        const maskValue = graph.input('img_gpt_input_mask', 'bool', mask.shape);
        const featureValue = graph.input('img_features', 'float32', features.shape);
        const trace = model.trace(context, tokenValue, { mask: maskValue, features: featureValue });
        const outputs: Record<string, Value> = {
          hidden: trace.hidden,
          embedding_output: trace.embeddingOutput,
          positions: trace.positions,
          logits: model.logits(context, trace.hidden),
        };
        trace.layerOutputs.forEach((value, index) => (outputs[`layer_output.${index}`] = value));
        return outputs;
      },
      { src_tokens: tokens, img_gpt_input_mask: mask, img_features: features },
    );
    const unconditional = await run(
      (graph, context) => ({ null_hidden: model.forward(context, graph.input('null_src_tokens', 'int64', nullTokens.shape)) }),
      { null_src_tokens: nullTokens },
    );
    return compareOutputs(fixture, { ...prompt, ...unconditional });
  } finally {
    await reader.close();
  }
}
