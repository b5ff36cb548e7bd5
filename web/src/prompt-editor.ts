// The prompt box: a plain textarea, a preview line under it in which each `<i>` shows as the
// thumbnail of its image (in order), and the counter of placeholders against images. The
// placeholder is exactly the three characters `<i>`, as the pipeline splits on it
// (src/pipeline/prompt.ts); anything similar is ordinary text.

import type { ImageTray } from './images.js';

const PLACEHOLDER = '<i>';

export class PromptEditor {
  private readonly listeners: Array<() => void> = [];
  /** False for a text-only model, whose prompts are plain text (`<i>` included). */
  private interleaved = true;

  constructor(
    private readonly textarea: HTMLTextAreaElement,
    private readonly preview: HTMLElement,
    private readonly counter: HTMLElement,
    insertButton: HTMLButtonElement,
    private readonly tray: ImageTray,
  ) {
    textarea.addEventListener('input', () => this.changed());
    tray.onChange(() => this.changed());
    insertButton.addEventListener('click', () => this.insertPlaceholder());
    this.render();
  }

  get value(): string {
    return this.textarea.value;
  }

  set value(prompt: string) {
    this.textarea.value = prompt;
    this.changed();
  }

  get placeholders(): number {
    return this.textarea.value.split(PLACEHOLDER).length - 1;
  }

  /** True when every `<i>` has its image and every image its `<i>` (always, for a text-only model). */
  get matches(): boolean {
    return !this.interleaved || this.placeholders === this.tray.count;
  }

  /** Sets whether `<i>` takes an image (Kosmos-G) or is plain text (a text-only model), and the length limit. */
  configure(interleaved: boolean, maxLength: number): void {
    this.interleaved = interleaved;
    this.textarea.maxLength = maxLength;
    this.changed();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Puts `<i>` at the cursor (replacing any selection), with spaces around it where needed. */
  private insertPlaceholder(): void {
    const { selectionStart, selectionEnd, value } = this.textarea;
    const before = value.slice(0, selectionStart);
    const after = value.slice(selectionEnd);
    const text = `${before === '' || /\s$/.test(before) ? '' : ' '}${PLACEHOLDER}${/^\s/.test(after) ? '' : ' '}`;
    this.textarea.setRangeText(text, selectionStart, selectionEnd, 'end');
    this.textarea.focus();
    this.changed();
  }

  private changed(): void {
    this.render();
    for (const listener of this.listeners) listener();
  }

  private render(): void {
    this.preview.hidden = !this.interleaved;
    this.counter.hidden = !this.interleaved;
    const segments = this.textarea.value.split(PLACEHOLDER);
    const images = this.tray.list();
    const nodes: Node[] = [];
    segments.forEach((text, index) => {
      if (text !== '') nodes.push(document.createTextNode(text));
      if (index === segments.length - 1) return;
      const image = images[index];
      if (image === undefined) {
        const missing = document.createElement('span');
        missing.className = 'token missing';
        missing.textContent = '<i>?';
        missing.title = `placeholder ${index + 1} has no image`;
        nodes.push(missing);
      } else {
        const thumb = document.createElement('img');
        thumb.className = 'token';
        thumb.src = image.dataUrl;
        thumb.alt = `image ${index + 1}`;
        thumb.title = `image ${index + 1}: ${image.name}`;
        nodes.push(thumb);
      }
    });
    if (segments.length === 1 && segments[0] === '') {
      const hint = document.createElement('span');
      hint.className = 'hint';
      hint.textContent = 'Each <i> in the prompt takes the next image of the tray.';
      nodes.push(hint);
    }
    this.preview.replaceChildren(...nodes);

    const placeholders = segments.length - 1;
    const count = images.length;
    const text = `${placeholders} <i> / ${count} image${count === 1 ? '' : 's'}`;
    this.counter.textContent = this.matches ? `${text}: they match` : `${text}: the prompt needs one <i> per image, in order`;
    this.counter.classList.toggle('error', !this.matches);
  }
}
