// The ControlNet fields of the form, shown when the server has ControlNets: which one, how its map
// is made (Canny edges of a control image, the image itself, or the layout of a world scene the
// server draws, described in JSON instead of an image) and the conditioning scale. With a
// ControlNet the output size follows the control image, so the width and height fields are
// disabled and not sent.

import type { GenerationRequest, ModelInfo } from './api.js';
import { element } from './dom.js';
import { readAsDataUrl } from './images.js';

export class ControlForm {
  private readonly section = element('control-settings', HTMLElement);
  private readonly model = element('controlnet', HTMLSelectElement);
  private readonly preprocess = element('control-preprocess', HTMLSelectElement);
  private readonly image = element('control-image', HTMLInputElement);
  private readonly scene = element('control-scene', HTMLTextAreaElement);
  private readonly scale = element('control-scale', HTMLInputElement);
  private readonly hint = element('control-hint', HTMLElement);
  /** The picked control image, once read. */
  private dataUrl: Promise<string> | null = null;

  constructor(private readonly sizeInputs: readonly HTMLInputElement[]) {
    this.model.addEventListener('change', () => this.updateSize());
    this.preprocess.addEventListener('change', () => this.updateSource());
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
    const scale = Number(this.scale.value);
    if (this.scale.value.trim() === '' || !Number.isFinite(scale)) return 'the control scale must be a number';
    const chosen = { name: this.model.value, scale };
    if (this.preprocess.value === 'layout') {
      try {
        return { ...chosen, preprocess: { kind: 'layout', scene: JSON.parse(this.scene.value) as unknown } };
      } catch (error) {
        return `the layout scene is not JSON: ${(error as Error).message.replace(/\s+/g, ' ')}`;
      }
    }
    if (this.dataUrl === null) return 'a ControlNet needs a control image';
    return { ...chosen, image: await this.dataUrl, ...(this.preprocess.value === 'canny' ? { preprocess: { kind: 'canny' as const } } : {}) };
  }

  private updateSize(): void {
    for (const input of this.sizeInputs) input.disabled = this.active;
    this.hint.hidden = !this.active;
  }

  /** A layout is described in the scene box; the other maps come from the image. */
  private updateSource(): void {
    const layout = this.preprocess.value === 'layout';
    this.image.closest('label')!.hidden = layout;
    this.scene.closest('label')!.hidden = !layout;
  }
}
