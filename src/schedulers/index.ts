// Scheduler construction from a diffusers `scheduler_config.json` (by `_class_name`) or by the
// short names the command line uses.
import type { Scheduler, SchedulerConfig } from './common.js';
import { DDIMScheduler } from './ddim.js';
import { DPMSolverMultistepScheduler } from './dpmsolver_multistep.js';
import { EulerDiscreteScheduler } from './euler_discrete.js';
import { PNDMScheduler } from './pndm.js';

export type { Scheduler, SchedulerConfig, StepOutput } from './common.js';
export { DDPMScheduler } from './ddpm.js';
export { DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler };

const byClassName: Record<string, new (config: SchedulerConfig) => Scheduler> = {
  DDIMScheduler,
  DPMSolverMultistepScheduler,
  EulerDiscreteScheduler,
  PNDMScheduler,
};

export const schedulerNames = { 'dpm++': 'DPMSolverMultistepScheduler', ddim: 'DDIMScheduler', pndm: 'PNDMScheduler', euler: 'EulerDiscreteScheduler' } as const;
export type SchedulerName = keyof typeof schedulerNames;

/** A scheduler from a diffusers config; `className` overrides `_class_name` (diffusers' from_config on another class). */
export function schedulerFromConfig(config: SchedulerConfig, className = config._class_name): Scheduler {
  if (!className) throw new Error('scheduler config has no _class_name');
  const constructor = byClassName[className];
  if (!constructor) throw new Error(`unknown scheduler ${className} (supported: ${Object.keys(byClassName).join(', ')})`);
  return new constructor(config);
}

/** A scheduler by its command-line name (dpm++, ddim, pndm, euler) over the model's training config. */
export function schedulerByName(name: string, config: SchedulerConfig): Scheduler {
  if (!(name in schedulerNames)) throw new Error(`unknown scheduler ${name} (choose ${Object.keys(schedulerNames).join(', ')})`);
  return schedulerFromConfig(config, schedulerNames[name as SchedulerName]);
}
