// Shared by the U-Net, LoRA and ControlNet tests: a tiny config in the fixture's layout and a
// one-shot graph runner.
import { Graph, type Value } from '../../src/graph/graph.js';
import { GraphSession } from '../../src/graph/session.js';
import { type Module, type TraceContext, constantBindings } from '../../src/nn/module.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { encodeModel } from '../../src/onnx/proto.js';

/** The fixture's layout with one layer per block and an 8-wide condition: fast enough for finite differences. */
export const tinyUNetConfig = {
  in_channels: 4,
  out_channels: 4,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [8, 16],
  layers_per_block: 1,
  norm_num_groups: 4,
  cross_attention_dim: 8,
  attention_head_dim: 2,
};

/** Runs `build` once over graph inputs made from `feeds`, with every parameter inlined. */
export async function runModel(model: Module, feeds: Record<string, HostTensor>, build: (context: TraceContext, inputs: Record<string, Value>) => Record<string, Value>) {
  const graph = new Graph('test');
  const inputs = Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
  const session = await GraphSession.create(encodeModel(graph.toModel(build(constantBindings(graph, model), inputs))));
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

