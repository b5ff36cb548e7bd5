// Crash-isolated SVG rasterisation: a pool of resvg child processes, with sharp (librsvg) as the
// fallback for icons that make resvg abort or fail.
import { fork, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import sharp from 'sharp';
import type { RgbaImage } from './image.js';
import type { RenderReply, RenderRequest } from './render-child.js';

/** Icons on which resvg-js 2.6.2 aborts the process; they go straight to sharp. */
export const KNOWN_RESVG_CRASHERS: ReadonlySet<string> = new Set([
  'noto:package',
  'noto:rainbow-flag',
  'noto-v1:ambulance',
  'noto-v1:bullet-train',
  'noto-v1:cocktail-glass',
  'noto-v1:hot-beverage',
  'noto-v1:lady-beetle',
  'noto-v1:man-lifting-weights',
  'noto-v1:person-lifting-weights',
  'noto-v1:woman-juggling-dark-skin-tone',
]);

export interface RenderJob {
  key: string;
  svg: string;
  size: number;
  /** Render with sharp without trying resvg. */
  preferSharp?: boolean;
}

export interface RenderOutcome {
  images: Map<string, RgbaImage>;
  /** Keys rendered by sharp, with the reason. */
  fallbacks: Map<string, string>;
}

export interface RenderOptions {
  workers?: number;
  onRendered?: (key: string) => void;
}

export async function renderWithSharp(svg: string, size: number): Promise<RgbaImage> {
  const viewBox = /viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"/.exec(svg);
  const nativeWidth = viewBox ? Number(viewBox[1]) : size;
  const density = Math.min(2400, Math.max(1, (72 * size) / nativeWidth));
  const { data, info } = await sharp(Buffer.from(svg), { density })
    .resize(size, size, { fit: 'contain', background: { r: 0, g: 0, b: 0, alpha: 0 } })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

const CHILD_PATH = new URL('./render-child.js', import.meta.url);

export async function renderSvgs(jobs: readonly RenderJob[], options: RenderOptions = {}): Promise<RenderOutcome> {
  const images = new Map<string, RgbaImage>();
  const fallbacks = new Map<string, string>();
  const viaSharp = async (job: RenderJob, reason: string): Promise<void> => {
    images.set(job.key, await renderWithSharp(job.svg, job.size));
    fallbacks.set(job.key, reason);
    options.onRendered?.(job.key);
  };
  const queue: RenderJob[] = [];
  for (const job of jobs) {
    if (job.preferSharp) await viaSharp(job, 'known resvg crash');
    else queue.push(job);
  }
  const workerCount = Math.max(1, Math.min(options.workers ?? Math.min(4, cpus().length), queue.length));
  let next = 0;
  const runWorker = (): Promise<void> =>
    new Promise((resolve, reject) => {
      let child: ChildProcess | null = null;
      let current: RenderJob | null = null;
      let settled = false;
      const finish = (error?: Error): void => {
        if (settled) return;
        settled = true;
        child?.removeAllListeners();
        child?.kill();
        if (error) reject(error);
        else resolve();
      };
      const dispatch = (): void => {
        if (next >= queue.length) {
          current = null;
          finish();
          return;
        }
        current = queue[next++] as RenderJob;
        const request: RenderRequest = { key: current.key, svg: current.svg, size: current.size };
        (child as ChildProcess).send(request);
      };
      const spawn = (): void => {
        const proc = fork(CHILD_PATH, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
        proc.stderr?.resume();
        child = proc;
        proc.on('message', (reply: RenderReply) => {
          const job = current;
          if (!job || reply.key !== job.key) return;
          if ('error' in reply) {
            viaSharp(job, `resvg error: ${reply.error}`).then(dispatch, (e: unknown) => finish(e as Error));
            return;
          }
          images.set(job.key, { width: reply.width, height: reply.height, data: new Uint8Array(reply.pixels) });
          options.onRendered?.(job.key);
          dispatch();
        });
        proc.on('exit', (code, signal) => {
          if (settled || child !== proc) return;
          const job = current;
          if (!job) return;
          // resvg aborted on this icon: render it with sharp and carry on in a fresh child.
          viaSharp(job, `resvg exited (${signal ?? code})`).then(
            () => {
              spawn();
              dispatch();
            },
            (e: unknown) => finish(e as Error),
          );
        });
        proc.on('error', (e) => finish(new Error(`renderer child process failed: ${e.message}`)));
      };
      spawn();
      dispatch();
    });
  await Promise.all(Array.from({ length: queue.length > 0 ? workerCount : 0 }, runWorker));
  return { images, fallbacks };
}
