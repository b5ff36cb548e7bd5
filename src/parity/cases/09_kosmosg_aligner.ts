// Case 09: the official AlignerNet — M (encoder_proj + 77 learned queries through a non-causal
// decoder), N (reconstruction) and the stage-2 losses. Weights are read from the fixture's
// safetensors by byte offset, as in any inference graph.
import { Graph, type Value } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { reshape } from '../../graph/ops/shape.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import type { HostTensor } from '../../onnx/dtype.js';
import { encodeModel } from '../../onnx/proto.js';
import { AlignerNet } from '../../models/aligner.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

function fixtureInput(fixture: FixtureCase, name: string): HostTensor {
  const tensor = fixture.inputs.get(name);
  if (!tensor) throw new Error(`${fixture.name}: no input ${name}`);
  return tensor;
}

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const model = await AlignerNet.fromPretrained(fixture.directory);
  const reader = await openSafetensors(fixture.directory);
  try {
    const condition = fixtureInput(fixture, 'condition');
    const clipTarget = fixtureInput(fixture, 'clip_target');
    // The official mask is bool src_tokens.eq(1); the fixture stores it as uint8 with the same bytes.
    const paddingBytes = fixtureInput(fixture, 'padding_mask');
    const padding: HostTensor = { dtype: 'bool', shape: paddingBytes.shape, data: paddingBytes.data as Uint8Array };
    const tokens = fixtureInput(fixture, 'src_tokens');
    if (!Array.from(tokens.data as BigInt64Array).every((token, i) => (token === 1n) === (padding.data[i] === 1))) {
      throw new Error(`${fixture.name}: padding_mask is not src_tokens == 1`);
    }

    const graph = new Graph('aligner');
    const weights = model.externalWeights(graph, reader);
    const context = weights.context;
    const conditionValue = graph.input('condition', 'float32', condition.shape);
    const paddingValue = graph.input('padding_mask', 'bool', padding.shape);
    const targetValue = graph.input('clip_target', 'float32', clipTarget.shape);
    const { encoderOut, output } = model.encode(context, conditionValue, paddingValue);
    const reconstruction = model.reconstruct(context, output, condition.shape[1]!);
    const losses = model.stage2Losses(context, conditionValue, paddingValue, targetValue);
    const outputs: Record<string, Value> = {
      M_output: output,
      M_encoder_out: encoderOut,
      N_output: reconstruction,
      // The reference reports the scalar losses as shape (1,).
      mse_loss: reshape(losses.mseLoss, [1]),
      rec_loss: reshape(losses.recLoss, [1]),
    };
    const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData: weights.externalData });
    try {
      const results = await session.run({ condition, padding_mask: padding, clip_target: clipTarget });
      return compareOutputs(fixture, results);
    } finally {
      await session.release();
    }
  } finally {
    await reader.close();
  }
}
