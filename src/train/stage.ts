// What a training stage (VAE, CLIP-mini, U-Net-mini, …) gives the generic runner: its config
// schema, and, once built from a config, the initial parameters, the batch layout, the loss graph,
// the batch of any step, sample grids and the export of trained parameters.
import type { z } from 'zod';
import type { ResolvedDevice } from '../graph/devices.js';
import type { LossContext, TensorSpec } from '../graph/train-step.js';
import type { Value } from '../graph/graph.js';
import type { HostTensor } from '../onnx/dtype.js';
import type { BaseConfig } from './config.js';

export interface StageEnvironment {
  device: ResolvedDevice;
  threads: number;
  /** Progress messages (world loading, sprite rendering) for the user. */
  report: (message: string) => void;
}

export interface StageInstance {
  /** Initial parameter values, a pure function of the config (its seed included). */
  parameters: Record<string, HostTensor>;
  /** Keys to train; all when absent. */
  trainable?: readonly string[];
  /**
   * Parameters a fine-tune may add to its source's (a new training-only head): when `initFrom`
   * lacks them they keep their initial values. Every other key must be in the source.
   */
  addedByFineTune?: readonly string[];
  /** Parameters `exportModel` does not write: a fine-tune from a model folder starts them fresh. */
  trainingOnly?: readonly string[];
  /** Parameters exempt from weight decay. */
  noWeightDecay?: (key: string) => boolean;
  batchSpec: Readonly<Record<string, TensorSpec>>;
  loss: (context: LossContext) => Value;
  /**
   * The batch of 1-based `step`: a pure function of the config and the step, so a resumed run
   * needs no data state beyond the step count.
   */
  batch(step: number): Promise<Record<string, HostTensor>>;
  /** A PNG showing what the parameters do now (reconstructions, generations). */
  sampleGrid(parameters: Readonly<Record<string, HostTensor>>): Promise<Buffer>;
  release(): Promise<void>;
}

export interface StageDefinition<C extends BaseConfig = BaseConfig> {
  /** The `train <name>` subcommand and the `stage` field of its configs. */
  name: string;
  description: string;
  schema: z.ZodType<C>;
  build(config: C, environment: StageEnvironment): Promise<StageInstance>;
  /**
   * The layouts `exportModel` can write, the default first (`train export --format`); absent: one
   * layout, and a format asked for is refused.
   */
  exportFormats?: readonly string[];
  /** Writes trained parameters as a loadable model folder (e.g. diffusers layout, fp16), in `format` when the stage has several. */
  exportModel(config: C, parameters: Readonly<Record<string, HostTensor>>, directory: string, format?: string): Promise<void>;
  /** Reads a folder `exportModel` wrote back as float32 parameters (for `initFrom`), less `trainingOnly`. */
  importModel(config: C, directory: string): Promise<Record<string, HostTensor>>;
}
