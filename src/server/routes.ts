// The HTTP routes: thin handlers that parse with the zod schemas and call the service. Uploads are
// read into memory (multipart files or JSON data URLs) and never touch the disk.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { decodeDataUrl } from '../pipeline/images.js';
import { ApiFailure } from './errors.js';
import type { JobStore } from './jobs.js';
import type { ServerMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { type GenerationRequest, LIMITS, generationRequestSchema, imageNameSchema, jobIdSchema, listQuerySchema } from './schemas.js';
import type { GenerationService, StreamEvent, Uploads } from './service.js';

export interface RouteContext {
  service: GenerationService;
  store: JobStore;
  metrics: ServerMetrics;
  version: string;
  /** Submissions per minute per client. */
  rateLimit: number;
}

/** zod's issues as one line: `steps: Too big: expected number to be <=150; prompt: …`. */
function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : 'body'}: ${issue.message}`).join('; ');
}

function parse<S extends z.ZodType>(schema: S, value: unknown, code = 'invalid_request'): z.output<S> {
  const result = schema.safeParse(value);
  // A malformed id or image name names nothing the server has.
  if (!result.success) throw new ApiFailure(code === 'not_found' ? 404 : 400, code, describeIssues(result.error));
  return result.data;
}

const NUMERIC_FIELDS = new Set(['steps', 'guidance', 'seed', 'numImages', 'width', 'height']);
const JSON_FIELDS = new Set(['lora', 'controlnet']);

/** A multipart form's fields as the JSON request they stand for, and its files as uploads. */
async function readMultipart(request: FastifyRequest): Promise<{ body: Record<string, unknown>; uploads: Uploads }> {
  try {
    return await readParts(request);
  } catch (error) {
    if (error instanceof ApiFailure) throw error;
    // The multipart plugin's limit errors carry their status (413); the parser's own (a body that
    // ends mid-part, a broken header) carry none.
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 413) throw new ApiFailure(413, 'too_large', `${(error as Error).message} (at most ${LIMITS.maxImages} files of ${LIMITS.maxImageBytes / 1024 / 1024} MiB)`);
    throw new ApiFailure(400, 'invalid_multipart', `malformed multipart body: ${(error as Error).message}`);
  }
}

async function readParts(request: FastifyRequest): Promise<{ body: Record<string, unknown>; uploads: Uploads }> {
  const body: Record<string, unknown> = {};
  const uploads: Uploads = { images: [] };
  for await (const part of request.parts({ limits: { fileSize: LIMITS.maxImageBytes, files: LIMITS.maxImages + 1, fields: 20, fieldSize: 64 * 1024 } })) {
    if (part.type === 'file') {
      const bytes = await part.toBuffer();
      if (part.fieldname === 'images') uploads.images.push(bytes);
      else if (part.fieldname === 'controlImage' && !uploads.controlImage) uploads.controlImage = bytes;
      else throw new ApiFailure(400, 'invalid_request', `unexpected file field ${JSON.stringify(part.fieldname)} (images go in "images", the control image in "controlImage")`);
      if (uploads.images.length > LIMITS.maxImages) throw new ApiFailure(400, 'too_many_images', `at most ${LIMITS.maxImages} images per request`);
      continue;
    }
    const value = String(part.value);
    if (part.fieldname in body) throw new ApiFailure(400, 'invalid_request', `field ${JSON.stringify(part.fieldname)} was sent twice`);
    if (NUMERIC_FIELDS.has(part.fieldname)) body[part.fieldname] = value.trim() === '' ? undefined : Number(value);
    else if (JSON_FIELDS.has(part.fieldname)) {
      try {
        body[part.fieldname] = JSON.parse(value) as unknown;
      } catch {
        throw new ApiFailure(400, 'invalid_request', `field ${part.fieldname} must be JSON, e.g. {"name": "…", "scale": 1}`);
      }
    } else body[part.fieldname] = value;
  }
  return { body, uploads };
}

async function readSubmission(request: FastifyRequest): Promise<{ body: GenerationRequest; uploads: Uploads }> {
  if (request.isMultipart()) {
    const { body, uploads } = await readMultipart(request);
    if ('images' in body) throw new ApiFailure(400, 'invalid_request', 'in a multipart request, images are files in the field "images"');
    const parsed = parse(generationRequestSchema, body);
    if (parsed.controlnet?.image) throw new ApiFailure(400, 'invalid_request', 'in a multipart request, the control image is a file in the field "controlImage"');
    return { body: parsed, uploads };
  }
  if (request.body === undefined || request.body === null) throw new ApiFailure(400, 'invalid_request', 'send a JSON body or a multipart form');
  const images = (request.body as { images?: unknown }).images;
  if (Array.isArray(images) && images.length > LIMITS.maxImages) throw new ApiFailure(400, 'too_many_images', `at most ${LIMITS.maxImages} images per request, got ${images.length}`);
  const body = parse(generationRequestSchema, request.body);
  const control = body.controlnet?.image;
  return { body, uploads: { images: (body.images ?? []).map((url, index) => decodeDataUrl(url, `image ${index + 1}`)), ...(control ? { controlImage: decodeDataUrl(control, 'the control image') } : {}) } };
}

function writeEvent(reply: FastifyReply, event: StreamEvent): void {
  reply.raw.write(`event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`);
}

const FINAL_EVENTS = new Set<StreamEvent['event']>(['done', 'error', 'cancelled']);

export function registerRoutes(app: FastifyInstance, context: RouteContext): void {
  const { service, store, metrics } = context;

  app.post('/v1/generations', { config: { rateLimit: { max: context.rateLimit, timeWindow: '1 minute' } } }, async (request, reply) => {
    const { body, uploads } = await readSubmission(request);
    const submitted = await service.submit(body, uploads);
    return reply.code(202).send(submitted);
  });

  app.get('/v1/generations', async (request) => {
    const { limit } = parse(listQuerySchema, request.query);
    return { generations: service.list(limit) };
  });

  app.get('/v1/generations/:id', async (request) => {
    const { id } = parse(jobIdSchema, request.params, 'not_found');
    const status = service.status(id);
    if (!status) throw new ApiFailure(404, 'not_found', `no generation ${id}`);
    return status;
  });

  app.delete('/v1/generations/:id', async (request) => {
    const { id } = parse(jobIdSchema, request.params, 'not_found');
    return service.cancel(id);
  });

  app.get('/v1/generations/:id/events', async (request, reply) => {
    const { id } = parse(jobIdSchema, request.params, 'not_found');
    if (!service.status(id)) throw new ApiFailure(404, 'not_found', `no generation ${id}`);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-content-type-options': 'nosniff' });
    // A comment every 15 s keeps proxies from closing an idle stream.
    const keepAlive = setInterval(() => reply.raw.write(': keep-alive\n\n'), 15_000);
    let unsubscribe = () => {};
    const end = () => {
      clearInterval(keepAlive);
      unsubscribe();
      reply.raw.end();
    };
    unsubscribe = service.subscribe(id, (event) => {
      writeEvent(reply, event);
      if (FINAL_EVENTS.has(event.event)) queueMicrotask(end);
    });
    request.raw.on('close', end);
  });

  app.get('/v1/images/:name', async (request, reply) => {
    const { name } = parse(imageNameSchema, request.params, 'not_found');
    const path = store.imagePath(name);
    const size = path ? await stat(path).then((s) => s.size, () => undefined) : undefined;
    if (!path || size === undefined) throw new ApiFailure(404, 'not_found', `no image ${name}`);
    return reply
      .type(name.endsWith('.png') ? 'image/png' : 'application/json; charset=utf-8')
      .header('content-length', size)
      .header('cache-control', 'private, max-age=31536000, immutable')
      .header('content-disposition', `inline; filename="${name}"`)
      .send(createReadStream(path));
  });

  app.get('/v1/models', async () => service.models());
  app.get('/healthz', async () => ({ status: 'ok' as const, queued: service.waiting, running: service.running }));
  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));
  const document = openApiDocument(context.version);
  app.get('/openapi.json', async () => document);
}
