// `kosmos-g serve` as a library call: loads the pipeline into generation threads (or, with a Redis
// URL, queues jobs for `kosmos-g worker` processes: bullmq-queue.ts), opens the results folder, and
// serves the API (routes.ts) and the page (the built web/ folder) with fastify.
import type { Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyMultipart from '@fastify/multipart';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Device } from '../graph/devices.js';
import { DEFAULT_MODEL } from '../pipeline/default_model.js';
import { readPipelineFolder } from '../pipeline/folder.js';
import { acquireRunLock } from '../train/run-lock.js';
import type { World } from '../world/world.js';
import { defaultMemoryLimit } from '../pipeline/memory.js';
import type { WeightQuantization } from '../pipeline/weights.js';
import { ApiFailure } from './errors.js';
import { BullMQQueue } from './bullmq-queue.js';
import { GenerationWorker, type JobEvent, type ModelInfo } from './generation-worker.js';
import { JobStore } from './jobs.js';
import { openModelWorld } from './layout-world.js';
import { ServerMetrics } from './metrics.js';
import { registerModelFiles } from './model-files.js';
import { pipelineKindOf, readModelInfo } from './model-info.js';
import { InProcessQueue, type JobQueue, QueueFullError } from './queue.js';
import { checkRedisUrl } from './redis-jobs.js';
import { registerRoutes } from './routes.js';
import { ASSET_NAME, LIMITS } from './schemas.js';
import { allowedHostNames, checkBinding, checkRequest } from './security.js';
import { GenerationService } from './service.js';

export interface ServeOptions {
  /** Pipeline folder; default the embedded kosmos-g-mini. */
  model?: string;
  /** Results folder. */
  data: string;
  host?: string;
  /** 0: any free port. */
  port?: number;
  apiKey?: string;
  insecure?: boolean;
  allowedHosts?: readonly string[];
  maxQueue?: number;
  concurrency?: number;
  rateLimit?: number;
  maxResults?: number;
  maxBytes?: number;
  maxAgeDays?: number;
  loras?: Readonly<Record<string, string>>;
  controlnets?: Readonly<Record<string, string>>;
  device?: Device;
  /** Sprite cache folder for layout maps (default $KOSMOS_G_CACHE or ~/.cache/kosmos-g). */
  cache?: string;
  /** CPU threads of each generation thread; default the cores but one, shared between them. */
  threads?: number;
  /** Weight-only quantization of the model's linear layers in the generation threads. */
  quantize?: WeightQuantization | undefined;
  maxMemory?: number;
  /**
   * A redis:// URL: jobs are queued there for `kosmos-g worker` processes, and this server starts
   * no generation thread (concurrency, threads and device are then the workers' flags).
   */
  redis?: string;
  /** Where warnings go (default stderr). */
  warn?: (message: string) => void;
  /** Hears every error that became a 500 answer (tests and the fuzzer check there are none). */
  onInternalError?: (error: Error) => void;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  /** Stops taking requests and jobs, finishes the running jobs, records the waiting ones as cancelled. */
  close(): Promise<void>;
}

const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));
const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
  return value;
}

function checkAssets(assets: Readonly<Record<string, string>>, kind: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const [name, path] of Object.entries(assets)) {
    if (!ASSET_NAME.test(name) || name.includes('..')) throw new Error(`${kind} name ${JSON.stringify(name)} must be 1–64 letters, digits, "-", "_" or "."`);
    map.set(name, resolve(path));
  }
  return map;
}

/** Opens the model's world at the first call and reuses it; a failed opening is tried again at the next. */
function lazyWorld(model: string, cacheDir: string | undefined): () => Promise<World | null> {
  let opened: Promise<World | null> | null = null;
  return () =>
    (opened ??= openModelWorld(model, cacheDir).catch((error: unknown) => {
      opened = null;
      throw error;
    }));
}

/**
 * Requests Node's HTTP parser refuses never reach fastify: answered here in the API's error shape
 * (fastify's default answers `{error, message, statusCode}`), and the connection closed.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (!socket.writable) return void socket.destroy();
  const [status, reason, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'the request\'s headers are too large']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'the request took too long to arrive']
        : [400, 'Bad Request', `malformed HTTP request (${error.code ?? 'parse error'})`];
  const body = JSON.stringify({ error: { code: 'bad_request', message } });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const warn = options.warn ?? ((message: string) => process.stderr.write(`${message}\n`));
  const host = options.host ?? '127.0.0.1';
  const security = { host, apiKey: options.apiKey, insecure: options.insecure, allowedHosts: options.allowedHosts };
  checkBinding(security);
  const concurrency = positive(options.concurrency ?? 1, 'concurrency');
  const maxQueue = positive(options.maxQueue ?? 32, 'max-queue');
  const rateLimit = positive(options.rateLimit ?? 120, 'rate-limit');
  const { redis } = options;
  if (redis !== undefined) checkRedisUrl(redis);
  const model = options.model ?? DEFAULT_MODEL;
  const folder = await readPipelineFolder(model);
  const pipeline = pipelineKindOf(folder);
  const loras = checkAssets(options.loras ?? {}, 'LoRA');
  const controlnets = checkAssets(options.controlnets ?? {}, 'ControlNet');

  const bounds = { maxResults: positive(options.maxResults ?? 1000, 'max-results'), maxBytes: options.maxBytes ?? 2 * 1024 ** 3, maxAgeMs: (options.maxAgeDays ?? 30) * 86_400_000 };
  // Two servers on one results folder would each take the other's unfinished jobs for a crash's.
  const lock = await acquireRunLock(resolve(options.data), warn, { holder: 'server', advice: 'stop it, or serve with another --data' });
  const workers: GenerationWorker[] = [];
  const modelName = options.model === undefined ? 'kosmos-g-mini' : basename(resolve(model));
  let store: JobStore;
  let service: GenerationService;
  let metrics: ServerMetrics;
  try {
    // Jobs in Redis outlive this server: the queue settles the unfinished ones (bullmq-queue.ts).
    store = await JobStore.open(resolve(options.data), bounds, warn, { keepUnfinished: redis !== undefined });
    let info: ModelInfo;
    // With Redis the workers load the pipeline; this server only checks requests against its configs.
    if (redis !== undefined) info = await readModelInfo(folder);
    else {
      // One core is left to the event loop, so the API answers quickly while images are made (on two
      // cores, two ORT threads and the main thread fighting for them put /healthz's p99 past 50 ms).
      const threads = options.threads ?? Math.max(1, Math.floor((availableParallelism() - 1) / concurrency));
      for (let index = 0; index < concurrency; index++) workers.push(await GenerationWorker.start({ model, pipeline, device: options.device ?? 'cpu', threads, quantize: options.quantize }));
      info = workers[0]!.info;
    }
    metrics = new ServerMetrics(() => store.countByState());
    service = new GenerationService({ modelName, pipeline, info, loras, controlnets, maxMemory: options.maxMemory ?? defaultMemoryLimit(), layoutWorld: lazyWorld(model, options.cache) }, store, metrics);
    const onEvent = (event: JobEvent) => service.handle(event);
    const queue: JobQueue = redis !== undefined ? await BullMQQueue.open({ url: redis, capacity: maxQueue, onEvent, warn }, store) : new InProcessQueue(workers, maxQueue, onEvent);
    service.attach(queue);
  } catch (error) {
    await Promise.all(workers.map((worker) => worker.close()));
    lock.release();
    throw error;
  }

  const app = Fastify({
    bodyLimit: LIMITS.maxBodyBytes,
    logger: false,
    return503OnClosing: true,
    clientErrorHandler: answerClientError,
    // Errors of fastify's own routing (a URL that is not valid percent-encoding, a bad content
    // type header) in the API's shape too.
    frameworkErrors: (error, _request, reply) => {
      void (reply as unknown as FastifyReply).code(error.statusCode ?? 400).send({ error: { code: 'bad_request', message: error.message } });
    },
  });
  const hosts = allowedHostNames(security);
  app.addHook('onRequest', async (request) => checkRequest({ method: request.method, url: request.url, headers: request.headers }, security, hosts));
  app.setErrorHandler((error: FastifyError | ApiFailure | QueueFullError, _request, reply) => {
    if (error instanceof ApiFailure) {
      for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
      return reply.code(error.status).send({ error: { code: error.code, message: error.message } });
    }
    if (error instanceof QueueFullError) {
      return reply.code(429).header('retry-after', String(service.retryAfterSeconds())).send({ error: { code: 'queue_full', message: error.message } });
    }
    const status = (error as FastifyError).statusCode ?? 500;
    if (status >= 500) {
      warn(`kosmos-g serve: ${error.stack ?? error.message}`);
      options.onInternalError?.(error);
    }
    const code = status === 413 ? 'too_large' : status === 429 ? 'rate_limited' : status >= 500 ? 'internal' : 'invalid_request';
    return reply.code(status).send({ error: { code, message: status >= 500 ? 'internal server error' : error.message } });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` } }));
  await app.register(fastifyRateLimit, {
    global: false,
    // A client that closed its socket has no address left; it still counts, under one key.
    keyGenerator: (request) => request.ip ?? 'unknown',
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, error: 'rate_limited', message: `at most ${context.max} submissions per ${context.after}; retry in ${Math.ceil(context.ttl / 1000)} s` }),
  });
  await app.register(fastifyMultipart, { limits: { fileSize: LIMITS.maxImageBytes } });
  await app.register(fastifyStatic, { root: WEB_ROOT, prefix: '/', index: 'index.html', wildcard: false, dotfiles: 'deny' });
  await registerModelFiles(app, resolve(model));
  registerRoutes(app, { service, store, metrics, version: VERSION, rateLimit });

  let address: string;
  try {
    address = await app.listen({ host, port: options.port ?? 7860 });
  } catch (error) {
    await service.shutdown();
    await Promise.all(workers.map((worker) => worker.close()));
    lock.release();
    throw new Error(`cannot listen on ${host}:${options.port ?? 7860}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let closing: Promise<void> | null = null;
  return {
    url: address,
    app,
    close: () =>
      (closing ??= (async () => {
        // Stop new work first, so nothing is accepted that shutdown would then cancel.
        const serverClosed = app.close();
        await service.shutdown();
        await Promise.all(workers.map((worker) => worker.close()));
        await serverClosed;
        lock.release();
      })()),
  };
}
