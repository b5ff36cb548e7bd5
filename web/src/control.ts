// The ControlNet fields of the form, shown when the server has ControlNets: which one, the control
// image (read into a data URL when picked), whether the server makes the map from it (Canny edges)
// or it is the map, and the conditioning scale. With a ControlNet the output size follows the
// control image, so the width and height fields are disabled and not sent.

import type { GenerationRequest, ModelInfo } from './api.js';
import { element } from './dom.js';
import { readAsDataUrl } from './images.js';

export class ControlForm {
  private readonly section = element('control-settings', HTMLElement);
  private readonly model = element('controlnet', HTMLSelectElement);
  private readonly preprocess = element('control-preprocess', HTMLSelectElement);
  private readonly image = element('control-image', HTMLInputElement);
  private readonly scale = element('control-scale', HTMLInputElement);
  private readonly hint = element('control-hint', HTMLElement);
  /** The picked control image, once read. */
  private dataUrl: Promise<string> | null = null;

  constructor(private readonly sizeInputs: readonly HTMLInputElement[]) {
    this.model.addEventListener('change', () => this.updateSize());
    this.image.addEventListener('change', () => {
      const file = this.image.files?.[0];
      this.dataUrl = file ? readAsDataUrl(file) : null;
    });
  }

  applyModel(model: ModelInfo): void {
    this.model.replaceChildren(new Option('none', ''), ...model.controlnets.map((name) => new Option(name, name)));
    this.section.hidden = model.controlnets.length === 0;
    this.updateSize();
  }

  /** Whether a ControlNet is chosen (its size then follows the control image). */
  get active(): boolean {
    return this.model.value !== '';
  }

  /** The request's `controlnet`, undefined without one, or the message saying what is missing. */
  async read(): Promise<GenerationRequest['controlnet'] | string | undefined> {
    if (!this.active) return undefined;
    if (this.dataUrl === null) return 'a ControlNet needs a control image';
    const scale = Number(this.scale.value);
    if (this.scale.value.trim() === '' || !Number.isFinite(scale)) return 'the control scale must be a number';
    return { name: this.model.value, image: await this.dataUrl, scale, ...(this.preprocess.value === 'canny' ? { preprocess: { kind: 'canny' as const } } : {}) };
  }

  private updateSize(): void {
    for (const input of this.sizeInputs) input.disabled = this.active;
    this.hint.hidden = !this.active;
  }
}
