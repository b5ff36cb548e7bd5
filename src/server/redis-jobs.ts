// What `serve --redis` (bullmq-queue.ts) and `kosmos-g worker` (queue-worker.ts) share: the Redis
// URL's checks, the BullMQ queue's name, and the JSON forms a job, its progress and its result take
// in Redis. Bytes travel as base64. A job carries no SharedArrayBuffer: it is cancelled through a
// Redis key its worker reads between steps.
import { Redis } from 'ioredis';
import sharp from 'sharp';
import type { GeneratedImage } from '../pipeline/diffusion.js';
import type { JobRequest } from './generation-worker.js';

export const QUEUE_NAME = 'generations';
/** BullMQ's key prefix (its default is "bull"): a shared Redis shows whose keys these are. */
export const KEY_PREFIX = 'kosmos-g';
/** Set by the server to stop a job; read by its worker before it starts and after every step. */
export const cancelKey = (id: string): string => `${KEY_PREFIX}:cancel:${id}`;
/** A cancel key outlives any job; it only has to be gone eventually if nobody reads it. */
export const CANCEL_TTL_SECONDS = 86_400;

/** A URL as it may be printed: the password replaced by ***. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

/** Checks the text of `--redis`: a redis:// (or TLS rediss://) URL with a host. */
export function checkRedisUrl(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !['redis:', 'rediss:'].includes(parsed.protocol) || !parsed.hostname) {
    throw new Error(`--redis must be a redis:// or rediss:// URL such as redis://:PASSWORD@10.0.0.5:6379, got '${redactedUrl(url)}'`);
  }
}

/**
 * BullMQ's connection options. Blocking readers (a worker, the server's event reader) retry a
 * command forever, across reconnections; the server's queue fails a command at once while Redis is
 * down, so a submission is answered 503 instead of hanging.
 */
export function connectionOptions(url: string, use: 'blocking' | 'fail-fast'): { url: string; maxRetriesPerRequest: null } | { url: string; enableOfflineQueue: false } {
  return use === 'blocking' ? { url, maxRetriesPerRequest: null } : { url, enableOfflineQueue: false };
}

/** A client for our own keys (cancel flags, the events stream's end); it reconnects by itself. */
export function commandClient(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 3 });
  // Reconnection is ioredis's; a failed command is reported where it was sent.
  client.on('error', () => {});
  return client;
}

/** Refuses to start against a Redis that does not answer, with one line naming it (never its password). */
export async function checkRedisReachable(url: string): Promise<void> {
  checkRedisUrl(url);
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  let lastError: Error | undefined;
  client.on('error', (error: Error) => (lastError = error));
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    const reason = (lastError ?? (error as Error)).message.replaceAll(url, redactedUrl(url));
    throw new Error(`cannot reach Redis at ${redactedUrl(url)}: ${reason}`);
  } finally {
    client.disconnect();
  }
}

/** Raw RGB pixels, as JSON. */
export interface WireImage {
  width: number;
  height: number;
  /** base64 of width × height × 3 bytes. */
  data: string;
}

export function toWireImage(image: GeneratedImage): WireImage {
  return { width: image.width, height: image.height, data: Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength).toString('base64') };
}

export function fromWireImage(wire: WireImage): GeneratedImage {
  const data = new Uint8Array(Buffer.from(wire.data, 'base64'));
  if (!Number.isSafeInteger(wire.width) || !Number.isSafeInteger(wire.height) || data.byteLength !== wire.width * wire.height * 3) {
    throw new Error(`a ${wire.width}×${wire.height} image from a worker holds ${data.byteLength} bytes, not ${wire.width * wire.height * 3}`);
  }
  return { width: wire.width, height: wire.height, data };
}

/** A preview no larger than `side` on its longer edge: a full-size one per step would swell Redis's event stream. */
export async function shrinkPreview(image: GeneratedImage, side: number): Promise<WireImage> {
  if (Math.max(image.width, image.height) <= side) return toWireImage(image);
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(side, side, { fit: 'inside' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return toWireImage({ width: info.width, height: info.height, data });
}

/** A job as BullMQ stores it (the job's BullMQ id is its own id). */
export type WireJob = Omit<JobRequest, 'images' | 'controlnet' | 'cancel'> & {
  images: string[];
  controlnet: (Omit<NonNullable<JobRequest['controlnet']>, 'image'> & { image: string }) | null;
};

const base64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const bytes = (text: string) => new Uint8Array(Buffer.from(text, 'base64'));

export function toWireJob(job: JobRequest): WireJob {
  const { cancel: _cancel, images, controlnet, ...rest } = job;
  return { ...rest, images: images.map(base64), controlnet: controlnet && { ...controlnet, image: base64(controlnet.image) } };
}

export function fromWireJob(wire: WireJob, cancel: SharedArrayBuffer): JobRequest {
  return { ...wire, images: wire.images.map(bytes), controlnet: wire.controlnet && { ...wire.controlnet, image: bytes(wire.controlnet.image) }, cancel };
}

/** What a worker reports while it runs a job (BullMQ's job progress). */
export type WireProgress = { type: 'started'; totalSteps: number } | { type: 'step'; step: number; totalSteps: number; preview?: WireImage };

/** A job's return value: its images, or word that it stopped because it was cancelled. */
export type WireResult = { type: 'done'; images: WireImage[]; seed: number; warnings: string[]; generateMs: number } | { type: 'cancelled' };
