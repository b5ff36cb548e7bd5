// The gallery of finished jobs, newest first: each item shows the job's images, its seed, a
// download link per image and "use these settings again".

import { type JobStatus, imageUrl } from './api.js';

export class Gallery {
  private readonly shown = new Set<string>();

  constructor(
    private readonly container: HTMLElement,
    private readonly empty: HTMLElement,
    private readonly reuse: (job: JobStatus) => void,
    private readonly reportError: (error: unknown) => void,
  ) {}

  /**
   * Adds a finished job at the top (`newest`) or, for the list read at start, at the bottom.
   * `urlOf` turns an entry of `job.images` into a URL an element can show: an API path by
   * default, or the blob URL of an image made on this device as it is.
   */
  add(job: JobStatus, newest: boolean, urlOf: (path: string) => Promise<string> = imageUrl): void {
    if (this.shown.has(job.id) || job.state !== 'done') return;
    this.shown.add(job.id);
    const item = this.item(job, urlOf);
    if (newest) this.container.prepend(item);
    else this.container.append(item);
    this.empty.hidden = true;
  }

  private item(job: JobStatus, urlOf: (path: string) => Promise<string>): HTMLElement {
    const item = document.createElement('article');
    item.className = 'gallery-item';
    item.dataset.id = job.id;

    const images = document.createElement('div');
    images.className = 'images';
    const links = document.createElement('div');
    links.className = 'links';
    job.images.forEach((path, index) => {
      const img = document.createElement('img');
      img.alt = `${job.settings.prompt} (image ${index + 1})`;
      img.title = job.settings.prompt;
      img.width = job.settings.width;
      img.height = job.settings.height;
      const download = document.createElement('a');
      download.className = 'download';
      download.download = `kosmos-g-${job.settings.seed}-${index}.png`;
      download.textContent = job.images.length === 1 ? 'download' : `download ${index + 1}`;
      urlOf(path).then((url) => {
        img.src = url;
        download.href = url;
      }, this.reportError);
      images.append(img);
      links.append(download);
    });

    const caption = document.createElement('div');
    caption.className = 'caption';
    const prompt = document.createElement('p');
    prompt.className = 'prompt';
    prompt.textContent = job.settings.prompt;
    const seed = document.createElement('span');
    seed.className = 'seed';
    seed.textContent = `seed ${job.settings.seed}`;
    const details = document.createElement('span');
    details.className = 'details';
    const seconds = job.timings?.generateMs === undefined ? '' : ` · ${(job.timings.generateMs / 1000).toFixed(1)} s`;
    details.textContent = `${job.settings.steps} steps · ${job.settings.scheduler} · ${job.settings.width}×${job.settings.height}${seconds}`;
    const reuse = document.createElement('button');
    reuse.type = 'button';
    reuse.className = 'reuse small';
    reuse.textContent = 'use these settings again';
    reuse.addEventListener('click', () => this.reuse(job));
    links.append(reuse);
    caption.append(prompt, seed, details, links);

    item.append(images, caption);
    return item;
  }
}
