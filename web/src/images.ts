// The image tray: the prompt's images, in order, from a file picker, drag-and-drop or the
// clipboard. Each is kept as a data URL, which is what the API takes in its JSON `images`.

export interface TrayImage {
  name: string;
  dataUrl: string;
}

/** The API's limit on one input image (docs/server.md, "Limits"). */
const MAX_IMAGE_BYTES = 16 * 1024 * 1024;

export function readAsDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error ?? new Error(`${file.name} cannot be read`));
    reader.readAsDataURL(file);
  });
}

export class ImageTray {
  private readonly images: TrayImage[] = [];
  /** The server's limit (`/v1/models`); 0 for a text-only model. */
  maxImages = 10;
  private readonly listeners: Array<() => void> = [];
  /** Files read one batch at a time, so images keep the order they were given in. */
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly tray: HTMLElement,
    input: HTMLInputElement,
    private readonly message: HTMLElement,
  ) {
    input.addEventListener('change', () => {
      if (input.files !== null) this.addFiles([...input.files]);
      // Choosing the same file again must fire `change` again.
      input.value = '';
    });
    tray.addEventListener('dragover', (event) => {
      event.preventDefault();
      tray.classList.add('dragging');
    });
    tray.addEventListener('dragleave', () => tray.classList.remove('dragging'));
    tray.addEventListener('drop', (event) => {
      event.preventDefault();
      tray.classList.remove('dragging');
      this.addFiles([...(event.dataTransfer?.files ?? [])]);
    });
    // Pasting anywhere on the page adds the clipboard's images; a text paste is left alone.
    document.addEventListener('paste', (event) => {
      const files = [...(event.clipboardData?.files ?? [])].filter((file) => file.type.startsWith('image/'));
      if (files.length === 0) return;
      event.preventDefault();
      this.addFiles(files);
    });
    this.render();
  }

  get count(): number {
    return this.images.length;
  }

  list(): readonly TrayImage[] {
    return this.images;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Resolves once every file given so far has been read (or refused). */
  settled(): Promise<void> {
    return this.pending;
  }

  addFiles(files: File[]): void {
    this.pending = this.pending.then(() => this.read(files));
  }

  remove(index: number): void {
    this.images.splice(index, 1);
    this.say('');
    this.changed();
  }

  private async read(files: File[]): Promise<void> {
    const refused: string[] = [];
    for (const file of files) {
      if (!file.type.startsWith('image/')) {
        refused.push(`${file.name} is not an image`);
      } else if (file.size > MAX_IMAGE_BYTES) {
        refused.push(`${file.name} is over 16 MiB`);
      } else if (this.maxImages === 0) {
        refused.push(`${file.name} not added: this model takes text only`);
      } else if (this.images.length >= this.maxImages) {
        refused.push(`${file.name} not added: at most ${this.maxImages} images`);
      } else {
        try {
          this.images.push({ name: file.name, dataUrl: await readAsDataUrl(file) });
        } catch (error) {
          refused.push(error instanceof Error ? error.message : String(error));
        }
      }
    }
    this.say(refused.join('; '));
    this.changed();
  }

  private say(text: string): void {
    this.message.textContent = text;
    this.message.classList.toggle('error', text !== '');
  }

  private changed(): void {
    this.render();
    for (const listener of this.listeners) listener();
  }

  private render(): void {
    const items = this.images.map((image, index) => {
      const figure = document.createElement('figure');
      figure.className = 'thumb';
      figure.title = image.name;
      const img = document.createElement('img');
      img.src = image.dataUrl;
      img.alt = `image ${index + 1}: ${image.name}`;
      const number = document.createElement('span');
      number.className = 'number';
      number.textContent = String(index + 1);
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'remove';
      remove.textContent = '×';
      remove.title = `remove image ${index + 1}`;
      remove.setAttribute('aria-label', `remove image ${index + 1}`);
      remove.addEventListener('click', () => this.remove(index));
      figure.append(img, number, remove);
      return figure;
    });
    if (items.length === 0) {
      const empty = document.createElement('p');
      empty.className = 'tray-empty';
      empty.textContent = 'Drop images here';
      items.push(empty);
    }
    this.tray.replaceChildren(...items);
  }
}
