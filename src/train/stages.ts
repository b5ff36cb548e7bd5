// The training stages the `train` command offers, by name.
import type { BaseConfig } from './config.js';
import type { StageDefinition } from './stage.js';
import { clipStage } from './clip.js';
import { controlnetStage } from './controlnet.js';
import { judgeDinoStage } from './judge-dino.js';
import { kosmosAlignStage } from './kosmos-align.js';
import { kosmosInstructStage } from './kosmos-instruct.js';
import { kosmosLmStage } from './kosmos-lm.js';
import { loraStage } from './lora.js';
import { unetStage } from './unet.js';
import { vaeStage } from './vae.js';

export const TRAINING_STAGES: readonly StageDefinition<BaseConfig>[] = [
  vaeStage as unknown as StageDefinition<BaseConfig>,
  clipStage as unknown as StageDefinition<BaseConfig>,
  unetStage as unknown as StageDefinition<BaseConfig>,
  kosmosLmStage as unknown as StageDefinition<BaseConfig>,
  kosmosAlignStage as unknown as StageDefinition<BaseConfig>,
  kosmosInstructStage as unknown as StageDefinition<BaseConfig>,
  judgeDinoStage as unknown as StageDefinition<BaseConfig>,
  loraStage as unknown as StageDefinition<BaseConfig>,
  controlnetStage as unknown as StageDefinition<BaseConfig>,
];

export function findStage(name: string): StageDefinition<BaseConfig> {
  const stage = TRAINING_STAGES.find((candidate) => candidate.name === name);
  if (!stage) throw new Error(`unknown training stage '${name}'; expected one of ${TRAINING_STAGES.map((s) => s.name).join(', ')}`);
  return stage;
}
