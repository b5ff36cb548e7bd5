// Case 04: diffusers UNet2DConditionModel (scalar and per-sample timesteps), its PEFT LoRA at scale
// 0.7 (run-time extra matmuls and fused into the weights), and ControlNetModel residuals feeding the
// U-Net at conditioning scales 1.0 and 0.5. Weights are read from the fixture's safetensors files as
// external data; inputs are graph inputs.
import { checkpointInitialized } from '../../nn/layers.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Graph, type Value } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import type { SafetensorsReader } from '../../io/safetensors.js';
import { constantBindings, type TraceContext } from '../../nn/module.js';
import { type ExternalWeights, externalBindings } from '../../nn/weights.js';
import type { HostTensor } from '../../onnx/dtype.js';
import { encodeModel } from '../../onnx/proto.js';
import { concat } from '../../graph/ops/shape.js';
import { ControlNetModel, parseControlNetConfig } from '../../models/controlnet.js';
import { LoraAdapter } from '../../models/lora.js';
import { UNet2DConditionModel, parseUNetConfig } from '../../models/unet_2d_condition.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

type Feeds = Record<string, HostTensor>;

/** Traces `build` over graph inputs made from `feeds`, runs it once and returns the named outputs. */
async function runGraph(
  feeds: Feeds,
  build: (graph: Graph, inputs: Record<string, Value>) => { outputs: Record<string, Value>; externalData: ExternalWeights['externalData'] },
): Promise<Record<string, HostTensor>> {
  const graph = new Graph('unet_parity');
  const inputs = Object.fromEntries(Object.entries(feeds).map(([name, tensor]) => [name, graph.input(name, tensor.dtype, tensor.shape)]));
  const { outputs, externalData } = build(graph, inputs);
  const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData });
  try {
    const used = new Set(session.inputNames);
    return await session.run(Object.fromEntries(Object.entries(feeds).filter(([name]) => used.has(name))));
  } finally {
    await session.release();
  }
}

const readJson = async (path: string): Promise<unknown> => JSON.parse(await readFile(path, 'utf8'));

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const input = (name: string): HostTensor => {
    const tensor = fixture.inputs.get(name);
    if (!tensor) throw new Error(`${fixture.name}: no input ${name}`);
    return tensor;
  };
  const feeds: Feeds = {
    sample: input('sample'),
    timestep: input('timestep'),
    timestep_batch: input('timestep_batch'),
    encoder_hidden_states: input('encoder_hidden_states'),
    controlnet_cond: input('controlnet_cond'),
  };
  const unet = new UNet2DConditionModel(parseUNetConfig(await readJson(join(fixture.directory, 'config.json'))), checkpointInitialized);
  const controlnet = new ControlNetModel(parseControlNetConfig(await readJson(join(fixture.directory, 'controlnet_config.json'))), checkpointInitialized);
  const unetWeights = await openSafetensors(join(fixture.directory, 'model.safetensors'));
  const controlnetWeights = await openSafetensors(join(fixture.directory, 'controlnet.safetensors'));
  const loraFile = await openSafetensors(join(fixture.directory, 'lora.safetensors'));
  const readers: SafetensorsReader[] = [unetWeights, controlnetWeights, loraFile];
  try {
    const lora = await LoraAdapter.fromSafetensors(unet, loraFile);
    const loraScale = 0.7;

    const results = await runGraph(feeds, (graph, inputs) => {
      const unetBinding = externalBindings(graph, unet, unetWeights);
      const controlnetBinding = externalBindings(graph, controlnet, controlnetWeights);
      const context = unetBinding.context;
      const loraContext: TraceContext = constantBindings(graph, lora);
      const sample = inputs['sample']!;
      const states = inputs['encoder_hidden_states']!;
      const controlImage = concat([inputs['controlnet_cond']!, inputs['controlnet_cond']!], 0); // (2, 3, H, W): both CFG halves
      const outputs: Record<string, Value> = {
        noise_pred: graph.scope('unet', () => unet.forward(context, sample, inputs['timestep']!, states)),
        noise_pred_timestep_batch: graph.scope('unet_timestep_batch', () => unet.forward(context, sample, inputs['timestep_batch']!, states)),
        noise_pred_lora: graph.scope('unet_lora', () =>
          unet.forward(context, sample, inputs['timestep']!, states, { adapter: lora.runtime(unet, loraContext, loraScale) }),
        ),
      };
      for (const [suffix, scale] of [['', 1], ['_scale_0_5', 0.5]] as const) {
        const residuals = graph.scope(`controlnet${suffix}`, () =>
          controlnet.forward(controlnetBinding.context, sample, inputs['timestep']!, states, controlImage, { conditioningScale: scale }),
        );
        outputs[`noise_pred_controlnet${suffix}`] = graph.scope(`unet_controlnet${suffix}`, () =>
          unet.forward(context, sample, inputs['timestep']!, states, {
            downBlockAdditionalResiduals: residuals.downBlockResiduals,
            midBlockAdditionalResidual: residuals.midBlockResidual,
          }),
        );
        if (scale === 1) {
          residuals.downBlockResiduals.forEach((residual, index) => (outputs[`controlnet_down_residual.${index}`] = residual));
          outputs['controlnet_mid_residual'] = residuals.midBlockResidual;
        }
      }
      return { outputs, externalData: [...unetBinding.externalData, ...controlnetBinding.externalData] };
    });

    // The same LoRA fused into the weights: W + scale·(alpha/r)·B·A, run without any adapter.
    const fused = new UNet2DConditionModel(unet.config, checkpointInitialized);
    fused.loadStateDict(Object.fromEntries(await unetWeights.readAll({ asFloat32: true })));
    lora.fuseInto(fused, loraScale);
    const merged = await runGraph(feeds, (graph, inputs) => ({
      outputs: { noise_pred_lora_merged: fused.forward(constantBindings(graph, fused), inputs['sample']!, inputs['timestep']!, inputs['encoder_hidden_states']!) },
      externalData: [],
    }));
    return compareOutputs(fixture, { ...results, ...merged });
  } finally {
    await Promise.all(readers.map((reader) => reader.close()));
  }
}
