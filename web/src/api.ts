// The page's client of the HTTP API (docs/server.md): JSON requests with the optional API key,
// the API's `{error: {code, message}}` turned into ApiError, and a job's progress through
// server-sent events, or by polling when a key is set.

export interface ErrorBody {
  code: string;
  message: string;
}

/** An error answer of the API, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export interface ModelDefaults {
  steps: number;
  guidance: number;
  scheduler: string;
  width: number;
  height: number;
  numImages: number;
}

export interface ModelLimits {
  maxImages: number;
  maxSteps: number;
  maxSide: number;
  maxNumImages: number;
  maxPromptLength: number;
}

/**
 * How the server makes the ControlNet map: Canny edges of the control image (cv2.Canny thresholds),
 * or the layout map of a world scene (no control image; docs/server.md describes the scene).
 */
export type ControlPreprocess = { kind: 'canny'; low?: number; high?: number } | { kind: 'layout'; scene: unknown };

export interface ModelInfo {
  id: string;
  /** `clip-text`: a plain text-to-image folder, which takes no images. */
  pipeline: 'kosmos-g' | 'clip-text';
  defaults: ModelDefaults;
  /** Width and height must be multiples of this (the VAE's factor). */
  sizeMultiple: number;
  schedulers: string[];
  loras: string[];
  controlnets: string[];
  limits: ModelLimits;
}

/** The settings a job ran with, as `GET /v1/generations/:id` reports them. */
export interface JobSettings {
  prompt: string;
  negativePrompt: string;
  images: number;
  steps: number;
  guidance: number;
  scheduler: string;
  seed: number;
  numImages: number;
  width: number;
  height: number;
  lora: { name: string; scale: number } | null;
  controlnet?: { name: string; scale: number; preprocess?: ControlPreprocess } | null;
  model: string;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobStatus {
  id: string;
  state: JobState;
  /** null once the job left the queue. */
  queuePosition: number | null;
  step: number;
  totalSteps: number;
  createdAt: string;
  timings?: { queuedMs?: number; generateMs?: number };
  settings: JobSettings;
  images: string[];
  error?: ErrorBody;
}

export interface GenerationRequest {
  prompt: string;
  images: string[];
  negativePrompt?: string;
  steps?: number;
  guidance?: number;
  scheduler?: string;
  seed?: number;
  numImages?: number;
  width?: number;
  height?: number;
  lora?: { name: string; scale: number };
  /** Without width and height, the size follows the control image (or the layout map). */
  controlnet?: { name: string; image?: string; scale: number; preprocess?: ControlPreprocess };
}

export interface Submitted {
  id: string;
  queuePosition: number;
  seed: number;
}

const KEY_STORAGE = 'kosmos-g-api-key';

export function apiKey(): string | null {
  return localStorage.getItem(KEY_STORAGE);
}

export function saveApiKey(key: string): void {
  if (key === '') localStorage.removeItem(KEY_STORAGE);
  else localStorage.setItem(KEY_STORAGE, key);
}

let unauthorizedListener: () => void = () => {};

/** Called on every 401, so the page can ask for the key. */
export function onUnauthorized(listener: () => void): void {
  unauthorizedListener = listener;
}

function authHeaders(): Record<string, string> {
  const key = apiKey();
  return key === null ? {} : { Authorization: `Bearer ${key}` };
}

async function call(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, 'network', `the server cannot be reached (${error instanceof Error ? error.message : String(error)})`);
  }
  if (response.status === 401) unauthorizedListener();
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as { error?: Partial<ErrorBody> };
    if (parsed.error?.message !== undefined) return new ApiError(response.status, parsed.error.code ?? 'error', parsed.error.message);
  } catch {
    // Not JSON (a proxy's error page, say): the status line below says enough.
  }
  return new ApiError(response.status, 'http', `${response.status} ${response.statusText}`.trim());
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  return (await (await call(method, path, body)).json()) as T;
}

export async function listModels(): Promise<ModelInfo[]> {
  return (await json<{ models: ModelInfo[] }>('GET', '/v1/models')).models;
}

/**
 * The model of a static build (`npm run build:web`): `site.json` beside the page describes it as
 * `/v1/models` would; null when the page is not a static build.
 */
export async function staticModel(): Promise<ModelInfo | null> {
  const response = await fetch('site.json').catch(() => null);
  if (!response?.ok) return null;
  return ((await response.json()) as { models: ModelInfo[] }).models[0] ?? null;
}

export function submit(request: GenerationRequest): Promise<Submitted> {
  return json<Submitted>('POST', '/v1/generations', request);
}

export function jobStatus(id: string): Promise<JobStatus> {
  return json<JobStatus>('GET', `/v1/generations/${encodeURIComponent(id)}`);
}

export async function recentJobs(limit: number): Promise<JobStatus[]> {
  return (await json<{ generations: JobStatus[] }>('GET', `/v1/generations?limit=${limit}`)).generations;
}

export async function cancelJob(id: string): Promise<void> {
  await call('DELETE', `/v1/generations/${encodeURIComponent(id)}`);
}

/**
 * A URL an `<img>` or `<a download>` can use for an image path of the API. Without a key that is
 * the path itself; with one, the element could not send the header, so the bytes are fetched here
 * and handed over as a blob URL.
 */
export async function imageUrl(path: string): Promise<string> {
  if (apiKey() === null) return path;
  return URL.createObjectURL(await (await call('GET', path)).blob());
}

export interface JobHandlers {
  queued(position: number): void;
  started(totalSteps: number): void;
  /** `preview`: a small PNG data URL of the current estimate, when the server sent one. */
  step(step: number, totalSteps: number, preview: string | undefined): void;
  done(images: string[]): void;
  failed(error: ErrorBody): void;
  cancelled(): void;
}

/** Follows a job until it ends; the returned function stops following. */
export function watchJob(id: string, handlers: JobHandlers): () => void {
  // EventSource cannot send an Authorization header, so with a key the job is polled instead,
  // and then there are no live previews (the status carries none).
  return apiKey() === null ? streamJob(id, handlers) : pollJob(id, handlers);
}

function streamJob(id: string, handlers: JobHandlers): () => void {
  const source = new EventSource(`/v1/generations/${encodeURIComponent(id)}/events`);
  let stopPolling: (() => void) | undefined;
  const stop = () => {
    source.close();
    stopPolling?.();
  };
  const data = (event: Event): Record<string, unknown> => JSON.parse((event as MessageEvent<string>).data) as Record<string, unknown>;
  source.addEventListener('queued', (event) => handlers.queued(Number(data(event).queuePosition ?? 0)));
  source.addEventListener('started', (event) => handlers.started(Number(data(event).totalSteps ?? 0)));
  source.addEventListener('step', (event) => {
    const { step, totalSteps, preview } = data(event);
    handlers.step(Number(step), Number(totalSteps), typeof preview === 'string' ? preview : undefined);
  });
  source.addEventListener('done', (event) => {
    source.close();
    handlers.done((data(event).images as string[] | undefined) ?? []);
  });
  source.addEventListener('cancelled', () => {
    source.close();
    handlers.cancelled();
  });
  // The API's own `error` event and a broken connection share the name: only the first has data.
  source.addEventListener('error', (event) => {
    source.close();
    if (event instanceof MessageEvent && typeof event.data === 'string') {
      const { code, message } = JSON.parse(event.data) as Partial<ErrorBody>;
      handlers.failed({ code: code ?? 'error', message: message ?? 'the generation failed' });
    } else {
      // The stream broke (or the server closed it early): the job's status still tells the end.
      stopPolling = pollJob(id, handlers);
    }
  });
  return stop;
}

const POLL_MS = 500;

function pollJob(id: string, handlers: JobHandlers): () => void {
  let stopped = false;
  let timer: number | undefined;
  let lastState: JobState | undefined;
  let lastStep = -1;
  const tick = async () => {
    if (stopped) return;
    let status: JobStatus;
    try {
      status = await jobStatus(id);
    } catch (error) {
      if (stopped) return;
      const { code, message } = error instanceof ApiError ? error : new ApiError(0, 'network', String(error));
      handlers.failed({ code, message });
      return;
    }
    if (stopped) return;
    switch (status.state) {
      case 'queued':
        handlers.queued(status.queuePosition ?? 0);
        break;
      case 'running':
        if (lastState !== 'running') handlers.started(status.totalSteps);
        if (status.step !== lastStep) handlers.step(status.step, status.totalSteps, undefined);
        lastStep = status.step;
        break;
      case 'done':
        handlers.done(status.images);
        return;
      case 'failed':
        handlers.failed(status.error ?? { code: 'failed', message: 'the generation failed' });
        return;
      case 'cancelled':
        handlers.cancelled();
        return;
    }
    lastState = status.state;
    timer = window.setTimeout(() => void tick(), POLL_MS);
  };
  void tick();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
