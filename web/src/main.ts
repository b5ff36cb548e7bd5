// The page served at `/`: wires the image tray, the prompt box, the settings and the gallery to
// the API (docs/server.md), or to the pipeline running in this page (device/: "Run on this
// device", the only choice in a static build). One generation at a time from this page; the
// server queues others'.

import { ApiError, type JobHandlers, type JobStatus, type ModelInfo, apiKey, cancelJob, jobStatus, listModels, onUnauthorized, recentJobs, saveApiKey, staticModel, submit, watchJob } from './api.js';
import { DeviceGenerator, type RgbImage, rgbToPng } from './device/client.js';
import { element } from './dom.js';
import { Gallery } from './gallery.js';
import { ImageTray } from './images.js';
import { PromptEditor } from './prompt-editor.js';
import { type SettingValues, SettingsForm } from './settings.js';
import { ControlForm } from './control.js';

const form = element('form', HTMLFormElement);
const generateButton = element('generate', HTMLButtonElement);
const cancelButton = element('cancel', HTMLButtonElement);
const errorBox = element('error', HTMLElement);
const progress = element('progress', HTMLProgressElement);
const livePreview = element('live-preview', HTMLImageElement);
const previewPlaceholder = element('preview-placeholder', HTMLElement);
const jobStatusLine = element('job-status', HTMLElement);
const keyPanel = element('api-key-panel', HTMLElement);
const keyInput = element('api-key', HTMLInputElement);
const runOn = element('run-on', HTMLSelectElement);
const deviceStatus = element('device-status', HTMLElement);

const tray = new ImageTray(element('image-tray', HTMLElement), element('images-input', HTMLInputElement), element('tray-message', HTMLElement));
const prompt = new PromptEditor(element('prompt', HTMLTextAreaElement), element('prompt-preview', HTMLElement), element('image-count', HTMLElement), element('insert-image', HTMLButtonElement), tray);
const settings = new SettingsForm();
const control = new ControlForm([settings.width, settings.height]);
const gallery = new Gallery(element('gallery', HTMLElement), element('gallery-empty', HTMLElement), reuseSettings, showError);

/** The job this page is following, if any. */
let current: { id: string; stop: () => void } | undefined;
/** The model the page generates with; on this device it is the server's (or the static build's) model folder. */
let model: ModelInfo | undefined;
let device: DeviceGenerator | undefined;
let deviceJobs = 0;
/** `current.id` while a generation runs on this device. */
const DEVICE_JOB = 'device';
let cancelling = false;

/** Shows an API error (with its code), a network error or a message of the page itself. */
function showError(error: unknown): void {
  if (error instanceof ApiError) errorBox.textContent = error.status === 0 ? error.message : `${error.message} (${error.code})`;
  else errorBox.textContent = error instanceof Error ? error.message : String(error);
  errorBox.hidden = false;
}

function clearError(): void {
  errorBox.textContent = '';
  errorBox.hidden = true;
}

function updateButtons(): void {
  generateButton.disabled = current !== undefined || !prompt.matches || prompt.value.trim() === '';
  cancelButton.disabled = current === undefined || current.id === '';
}

function reuseSettings(job: JobStatus): void {
  prompt.value = job.settings.prompt;
  settings.fill(job.settings);
  clearError();
  // The job's input images are not kept by the server, so the tray stays as it is.
  jobStatusLine.textContent = `Settings of the job with seed ${job.settings.seed} restored; the images in the tray are used.`;
}

function finish(message: string): void {
  current?.stop();
  current = undefined;
  cancelling = false;
  jobStatusLine.textContent = message;
  updateButtons();
}

function follow(id: string): JobHandlers {
  return {
    queued(position) {
      jobStatusLine.textContent = position === 0 ? 'Queued: next to run' : `Queued: ${position} job${position === 1 ? '' : 's'} ahead`;
    },
    started(totalSteps) {
      progress.max = Math.max(totalSteps, 1);
      progress.value = 0;
      jobStatusLine.textContent = 'Running';
    },
    step(step, totalSteps, preview) {
      progress.max = Math.max(totalSteps, 1);
      progress.value = step;
      jobStatusLine.textContent = `Step ${step} / ${totalSteps}`;
      if (preview !== undefined) {
        livePreview.src = preview;
        livePreview.hidden = false;
        previewPlaceholder.hidden = true;
      }
    },
    done() {
      progress.value = progress.max;
      jobStatus(id).then(
        (job) => {
          gallery.add(job, true);
          const seconds = job.timings?.generateMs;
          finish(seconds === undefined ? 'Done' : `Done in ${(seconds / 1000).toFixed(1)} s (seed ${job.settings.seed})`);
        },
        (error: unknown) => {
          showError(error);
          finish('Done, but its result cannot be read');
        },
      );
    },
    failed(error) {
      showError(`${error.message} (${error.code})`);
      finish('Failed');
    },
    cancelled() {
      finish('Cancelled');
    },
  };
}

function showPreview(image: RgbImage): void {
  void rgbToPng(image).then((blob) => {
    if (livePreview.src.startsWith('blob:')) URL.revokeObjectURL(livePreview.src);
    livePreview.src = URL.createObjectURL(blob);
    livePreview.hidden = false;
    previewPlaceholder.hidden = true;
  });
}

/** One generation in this page: the model is downloaded (or read from the cache) on first use. */
async function generateOnDevice(values: SettingValues): Promise<void> {
  current = { id: DEVICE_JOB, stop: () => {} };
  updateButtons();
  try {
    device ??= new DeviceGenerator(new URL('device-worker.js', location.href));
    const loaded = await device.load(new URL('model/', location.href).href, 'auto', (path, done, total, cached) => {
      jobStatusLine.textContent = `${cached ? 'Reading the model from the cache' : 'Downloading the model'}: ${path.replace(/^\/model\//, '')} ${(done / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`;
      progress.max = Math.max(total, 1);
      progress.value = done;
    });
    deviceStatus.textContent = `${model?.id ?? 'model'} on ${loaded.backend === 'webgpu' ? 'WebGPU' : `WebAssembly, ${loaded.threads} thread${loaded.threads === 1 ? '' : 's'}`}`;
    const seed = values.seed ?? Math.floor(Math.random() * 2 ** 32);
    const { lora: _lora, seed: _seed, ...sampling } = values;
    jobStatusLine.textContent = 'Running on this device';
    const result = await device.generate({ prompt: prompt.value, images: tray.list().map((image) => image.dataUrl), ...sampling, seed, previewEvery: 5 }, (step, steps, preview) => {
      progress.max = Math.max(steps, 1);
      progress.value = step;
      jobStatusLine.textContent = `Step ${step} / ${steps} on this device`;
      if (preview) showPreview(preview);
    });
    const urls = await Promise.all(result.images.map(async (image) => URL.createObjectURL(await rgbToPng(image))));
    const job: JobStatus = {
      id: `device-${++deviceJobs}`,
      state: 'done',
      queuePosition: null,
      step: values.steps,
      totalSteps: values.steps,
      createdAt: new Date().toISOString(),
      timings: { generateMs: result.generateMs },
      settings: { ...values, prompt: prompt.value, images: tray.list().length, seed: result.seed, lora: null, model: model?.id ?? '' },
      images: urls,
    };
    gallery.add(job, true, async (url) => url);
    finish(`Done on this device in ${(result.generateMs / 1000).toFixed(1)} s (seed ${result.seed})`);
  } catch (error) {
    if (current?.id === DEVICE_JOB && cancelling) finish('Cancelled');
    else {
      showError(error);
      finish('Failed');
    }
  }
}

async function generate(): Promise<void> {
  clearError();
  await tray.settled();
  if (!prompt.matches) return updateButtons();
  const values = settings.read();
  if (typeof values === 'string') return showError(values);
  const controlnet = await control.read();
  if (typeof controlnet === 'string') return showError(controlnet);
  if (runOn.value === 'device') {
    if (controlnet) return showError('ControlNets run on the server; choose "Run on: the server" or no ControlNet');
    return generateOnDevice(values);
  }
  progress.max = 1;
  progress.value = 0;
  livePreview.hidden = true;
  livePreview.removeAttribute('src');
  previewPlaceholder.hidden = false;
  previewPlaceholder.textContent = 'Waiting for the first preview…';
  jobStatusLine.textContent = 'Submitting';
  // Claimed before the request, so a second click cannot submit twice.
  current = { id: '', stop: () => {} };
  updateButtons();
  try {
    // With a ControlNet the server sizes the output from the control image.
    const { width, height, ...rest } = values;
    const request = controlnet ? { ...rest, controlnet } : values;
    const { id, seed } = await submit({ prompt: prompt.value, images: tray.list().map((image) => image.dataUrl), ...request });
    jobStatusLine.textContent = `Submitted (seed ${seed})`;
    current = { id, stop: watchJob(id, follow(id)) };
    updateButtons();
  } catch (error) {
    showError(error);
    finish('');
  }
}

async function cancel(): Promise<void> {
  if (current === undefined || current.id === '') return;
  if (current.id === DEVICE_JOB) {
    // A run inside the worker cannot be interrupted, so the worker goes; the next generation
    // starts a new one, which reads the model back from the browser's cache.
    cancelling = true;
    device?.terminate();
    device = undefined;
    return;
  }
  cancelButton.disabled = true;
  try {
    await cancelJob(current.id);
  } catch (error) {
    showError(error);
    cancelButton.disabled = false;
  }
}

/** Reads the model's defaults and the recent results; run at start and after a key is entered. */
async function load(): Promise<void> {
  clearError();
  try {
    // A static build has no API: it generates on this device only.
    const built = await staticModel();
    [model] = built ? [built] : await listModels();
    if (model === undefined) throw new Error('the server lists no model');
    if (built) {
      runOn.value = 'device';
      runOn.querySelector('option[value="server"]')?.remove();
    }
    // The page runs the Kosmos-G pipeline only; a text-only model is generated on the server.
    if (model.pipeline !== 'kosmos-g') runOn.querySelector('option[value="device"]')?.remove();
    settings.applyModel(model);
    control.applyModel(model);
    // A text-only (clip-text) model takes no images: no tray, and `<i>` is plain text.
    const interleaved = model.pipeline === 'kosmos-g';
    element('images-field', HTMLElement).hidden = !interleaved;
    element('insert-image', HTMLButtonElement).hidden = !interleaved;
    tray.maxImages = interleaved ? model.limits.maxImages : 0;
    prompt.configure(interleaved, model.limits.maxPromptLength);
    element('model-name', HTMLElement).textContent = model.id;
    if (!built) for (const job of await recentJobs(20)) gallery.add(job, false);
    document.body.dataset.ready = 'true';
  } catch (error) {
    showError(error);
  }
}

onUnauthorized(() => {
  keyPanel.hidden = false;
  keyInput.value = apiKey() ?? '';
  keyInput.focus();
});
element('api-key-save', HTMLButtonElement).addEventListener('click', () => {
  saveApiKey(keyInput.value.trim());
  keyPanel.hidden = true;
  void load();
});
keyInput.addEventListener('keydown', (event) => {
  if (event.key === 'Enter') {
    event.preventDefault();
    element('api-key-save', HTMLButtonElement).click();
  }
});

form.addEventListener('submit', (event) => {
  event.preventDefault();
  void generate();
});
cancelButton.addEventListener('click', () => void cancel());
prompt.onChange(updateButtons);
updateButtons();
void load();
