// The generation settings of the form: filled with the model's defaults from `GET /v1/models`,
// read into the API's request fields, and refilled from a finished job's `settings`.

import type { JobSettings, ModelInfo } from './api.js';
import { element } from './dom.js';

/** The request fields the settings give (the prompt and the images come from elsewhere). */
export interface SettingValues {
  negativePrompt: string;
  steps: number;
  guidance: number;
  scheduler: string;
  /** Absent: the server draws one. */
  seed?: number;
  numImages: number;
  width: number;
  height: number;
  lora?: { name: string; scale: number };
}

export class SettingsForm {
  readonly negativePrompt = element('negative-prompt', HTMLTextAreaElement);
  readonly steps = element('steps', HTMLInputElement);
  readonly guidance = element('guidance', HTMLInputElement);
  readonly scheduler = element('scheduler', HTMLSelectElement);
  readonly seed = element('seed', HTMLInputElement);
  readonly numImages = element('num-images', HTMLInputElement);
  readonly width = element('width', HTMLInputElement);
  readonly height = element('height', HTMLInputElement);
  private readonly lora = element('lora', HTMLSelectElement);
  private readonly loraScale = element('lora-scale', HTMLInputElement);
  private readonly loraSettings = element('lora-settings', HTMLElement);

  /** Sets the model's defaults, its schedulers and LoRAs, and the server's limits on the inputs. */
  applyModel(model: ModelInfo): void {
    const { defaults, limits } = model;
    this.scheduler.replaceChildren(...model.schedulers.map((name) => new Option(name, name)));
    this.steps.value = String(defaults.steps);
    this.guidance.value = String(defaults.guidance);
    this.scheduler.value = defaults.scheduler;
    this.numImages.value = String(defaults.numImages);
    this.width.value = String(defaults.width);
    this.height.value = String(defaults.height);

    this.steps.max = String(limits.maxSteps);
    this.numImages.max = String(limits.maxNumImages);
    for (const input of [this.width, this.height]) {
      input.max = String(limits.maxSide);
      input.min = String(model.sizeMultiple);
      input.step = String(model.sizeMultiple);
    }
    this.negativePrompt.maxLength = limits.maxPromptLength;

    this.lora.replaceChildren(new Option('none', ''), ...model.loras.map((name) => new Option(name, name)));
    this.loraSettings.hidden = model.loras.length === 0;
  }

  /** The values to send, or the message saying which field is wrong. */
  read(): SettingValues | string {
    const problems: string[] = [];
    const number = (input: HTMLInputElement, name: string, whole: boolean): number => {
      const value = Number(input.value);
      const ok = input.value.trim() !== '' && (whole ? Number.isInteger(value) : Number.isFinite(value));
      if (!ok) problems.push(`${name} must be ${whole ? 'a whole number' : 'a number'}`);
      return value;
    };
    const values: SettingValues = {
      negativePrompt: this.negativePrompt.value,
      steps: number(this.steps, 'steps', true),
      guidance: number(this.guidance, 'guidance', false),
      scheduler: this.scheduler.value,
      numImages: number(this.numImages, 'the number of images', true),
      width: number(this.width, 'the width', true),
      height: number(this.height, 'the height', true),
    };
    if (this.seed.value.trim() !== '') values.seed = number(this.seed, 'the seed', true);
    if (this.lora.value !== '') values.lora = { name: this.lora.value, scale: number(this.loraScale, 'the LoRA scale', false) };
    return problems[0] ?? values;
  }

  /** Fills the form with a job's settings ("use these settings again"), its seed included. */
  fill(settings: JobSettings): void {
    this.negativePrompt.value = settings.negativePrompt;
    this.steps.value = String(settings.steps);
    this.guidance.value = String(settings.guidance);
    if ([...this.scheduler.options].some((option) => option.value === settings.scheduler)) this.scheduler.value = settings.scheduler;
    this.seed.value = String(settings.seed);
    this.numImages.value = String(settings.numImages);
    this.width.value = String(settings.width);
    this.height.value = String(settings.height);
    const lora = settings.lora;
    if (lora !== null && [...this.lora.options].some((option) => option.value === lora.name)) {
      this.lora.value = lora.name;
      this.loraScale.value = String(lora.scale);
    } else {
      this.lora.value = '';
    }
  }
}
