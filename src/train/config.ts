// Training configuration files: the settings every stage shares (seed, steps, batch, optimizer,
// schedule, clipping, weight EMA, checkpoint/plot/sample cadence), validated with zod and
// extended by each stage with its own model, data and loss sections. Unknown keys are errors, so a
// typo never silently falls back to a default. The hash of the parsed config ties checkpoints to
// their run.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { readConfigJson } from '../io/config-json.js';

const positiveInteger = z.number().int().positive();
const nonNegativeInteger = z.number().int().nonnegative();

const optimizerSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('adamw'),
    beta1: z.number().min(0).lt(1).optional(),
    beta2: z.number().min(0).lt(1).optional(),
    eps: z.number().positive().optional(),
    weightDecay: z.number().min(0).optional(),
  }),
  z.strictObject({
    kind: z.literal('sgd'),
    momentum: z.number().min(0).lt(1).optional(),
    weightDecay: z.number().min(0).optional(),
  }),
]);

const scheduleSchema = z
  .strictObject({
    kind: z.enum(['constant', 'linear', 'polynomial', 'cosine']),
    learningRate: z.number().positive(),
    warmupSteps: nonNegativeInteger.optional(),
    totalSteps: positiveInteger.optional(),
    finalLearningRate: z.number().min(0).optional(),
    power: z.number().positive().optional(),
  })
  .superRefine((schedule, issues) => {
    if (schedule.kind !== 'constant' && (schedule.totalSteps ?? 0) <= (schedule.warmupSteps ?? 0)) {
      issues.addIssue({ code: 'custom', path: ['totalSteps'], message: `a ${schedule.kind} schedule needs totalSteps greater than warmupSteps` });
    }
  });

/** Weight EMA (diffusers' EMAModel schedule, see emaDecayAt in src/graph/optim.ts). */
const emaSchema = z.strictObject({
  decay: z.number().gt(0).lt(1),
  warmupSteps: nonNegativeInteger.optional(),
});

/**
 * A model section checked by the model's own config parser (the one `fromPretrained` uses): its
 * error becomes a zod issue at that path, its result the section's parsed value.
 */
export function modelConfigSchema<T>(parse: (json: unknown, source: string) => T, section: string) {
  return z.record(z.string(), z.unknown()).transform((json, context): T => {
    try {
      return parse(json, section);
    } catch (error) {
      context.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  });
}

/** Settings shared by every stage; a stage extends this object with its own sections. */
export const baseConfigSchema = z.strictObject({
  /** Seeds parameter initialisation, data order, noise and dropout. */
  seed: nonNegativeInteger,
  /** Optimisation steps of the whole run (a budget may stop earlier; --resume continues). */
  steps: positiveInteger,
  batchSize: positiveInteger,
  optimizer: optimizerSchema,
  schedule: scheduleSchema,
  /** Clip gradients to this global L2 norm. */
  maxGradNorm: z.number().positive().optional(),
  /**
   * Keep an exponential moving average of the trainable parameters; sample grids, `train export`
   * and `initFrom` of this run then use it. Optional with no default, so configs without it keep
   * their hash.
   */
  ema: emaSchema.optional(),
  /** Write a checkpoint every this many steps (and at the end, at the budget, and on SIGINT/SIGTERM). */
  checkpointEvery: positiveInteger,
  /** Also write one when this many minutes passed since the last, whatever the step. */
  checkpointMinutes: z.number().positive().optional(),
  /** Complete checkpoints kept on disk; older ones are deleted once a newer one is in place. */
  keepCheckpoints: positiveInteger.default(2),
  /** Rewrite the loss-curve PNG every this many steps. */
  plotEvery: positiveInteger.default(50),
  /** Write a sample grid every this many steps (0: only at the end). */
  sampleEvery: nonNegativeInteger.default(500),
  /**
   * Fine-tuning: a run folder (its newest checkpoint) or one checkpoint folder whose parameters
   * replace the initial ones at step 0. Keys and shapes must match the stage's model exactly; the
   * optimizer state, the step count and the schedule start fresh.
   */
  initFrom: z.string().min(1).optional(),
  /**
   * Keys that start fresh at step 0 although `initFrom` holds them, their shapes in the source not
   * checked: a warm start across a changed interface, e.g. a U-Net's conv_in and conv_out when the
   * VAE's latent channels change while every inner layer carries over.
   */
  initFromExcept: z.array(z.string().min(1)).min(1).optional(),
}).superRefine((config, issues) => {
  // A schedule that ends before the run would train its last steps at the final learning rate
  // (0 by default) without a word.
  const { kind, totalSteps, finalLearningRate } = config.schedule;
  if (kind !== 'constant' && totalSteps !== undefined && totalSteps < config.steps) {
    issues.addIssue({
      code: 'custom',
      path: ['schedule', 'totalSteps'],
      message: `totalSteps ${totalSteps} is less than steps ${config.steps}: the last ${config.steps - totalSteps} steps would train at the final learning rate ${finalLearningRate ?? 0}; set it to at least steps`,
    });
  }
  if (config.initFromExcept !== undefined && config.initFrom === undefined) {
    issues.addIssue({ code: 'custom', path: ['initFromExcept'], message: 'initFromExcept only applies with initFrom' });
  }
});

export type BaseConfig = z.output<typeof baseConfigSchema>;

/** Validates `json` against a stage's schema; errors name the file and every offending path. */
export function parseConfig<S extends z.ZodType<BaseConfig>>(schema: S, json: unknown, source: string): z.output<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new Error(`${source}: invalid training config:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export async function readConfig<S extends z.ZodType<BaseConfig>>(schema: S, path: string): Promise<z.output<S>> {
  return parseConfig(schema, await readConfigJson(path), path);
}

/** JSON with object keys sorted at every level, so equal configs serialise identically. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, item]) => item !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** SHA-256 (hex) of the parsed config's canonical JSON: defaults filled in, key order irrelevant. */
export function configHash(config: unknown): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex');
}
