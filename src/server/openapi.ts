// The OpenAPI 3.1 document at /openapi.json, generated from the zod schemas that validate the
// requests (schemas.ts), so the document cannot drift from what the server accepts.
import { z } from 'zod';
import {
  apiErrorSchema,
  errorResponseSchema,
  generationRequestSchema,
  healthSchema,
  jobListSchema,
  jobStatusSchema,
  modelsSchema,
  submittedSchema,
} from './schemas.js';

const json = (schema: z.ZodType, io: 'input' | 'output' = 'output') => z.toJSONSchema(schema, { io, unrepresentable: 'any' });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const content = (name: string) => ({ 'application/json': { schema: ref(name) } });
const error = (description: string) => ({ description, content: content('Error') });
const idParameter = { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9a-f]{32}$' } };

export function openApiDocument(version: string): Record<string, unknown> {
  const request = json(generationRequestSchema, 'input') as { properties: Record<string, unknown> };
  // Multipart: the same fields as text, the images as files.
  const multipart = {
    type: 'object',
    properties: {
      ...Object.fromEntries(Object.keys(request.properties).filter((key) => key !== 'images').map((key) => [key, { type: 'string' }])),
      images: { type: 'array', items: { type: 'string', format: 'binary' } },
      controlImage: { type: 'string', format: 'binary' },
    },
    required: ['prompt'],
  };
  return {
    openapi: '3.1.0',
    info: { title: 'kosmos-g', version, description: 'Image generation from interleaved text-and-image prompts (Kosmos-G).' },
    components: {
      schemas: {
        GenerationRequest: request,
        Submitted: json(submittedSchema),
        JobStatus: json(jobStatusSchema),
        JobList: json(jobListSchema),
        Models: json(modelsSchema),
        Health: json(healthSchema),
        Error: json(errorResponseSchema),
        ApiError: json(apiErrorSchema),
      },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'only when the server was started with --api-key' } },
    },
    security: [{}, { bearer: [] }],
    paths: {
      '/v1/generations': {
        post: {
          summary: 'Queue a generation',
          requestBody: { required: true, content: { 'application/json': { schema: ref('GenerationRequest') }, 'multipart/form-data': { schema: multipart } } },
          responses: {
            202: { description: 'queued', content: content('Submitted') },
            400: error('invalid request'),
            401: error('missing or wrong API key'),
            403: error('cross-origin request or foreign Host'),
            413: error('body or image too large'),
            429: error('queue full or rate limited (see Retry-After)'),
            503: error('the Redis queue is unreachable (serve --redis)'),
          },
        },
        get: {
          summary: 'Recent generations, newest first',
          parameters: [{ name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } }],
          responses: { 200: { description: 'the list', content: content('JobList') } },
        },
      },
      '/v1/generations/{id}': {
        get: { summary: 'A generation\'s status', parameters: [idParameter], responses: { 200: { description: 'status', content: content('JobStatus') }, 404: error('unknown id') } },
        delete: {
          summary: 'Cancel a queued or running generation',
          parameters: [idParameter],
          responses: { 200: { description: 'cancelled', content: content('JobStatus') }, 404: error('unknown id'), 409: error('already finished'), 503: error('the Redis queue is unreachable (serve --redis)') },
        },
      },
      '/v1/generations/{id}/events': {
        get: {
          summary: 'Server-sent events: queued, started, step (with a preview), done, error, cancelled',
          parameters: [idParameter],
          responses: { 200: { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, 404: error('unknown id') },
        },
      },
      '/v1/images/{name}': {
        get: {
          summary: 'A generated PNG (settings in its tEXt "parameters" chunk) or its JSON sidecar',
          parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9a-f]{32}-\\d{1,2}\\.(png|json)$' } }],
          responses: { 200: { description: 'the file', content: { 'image/png': {}, 'application/json': {} } }, 404: error('unknown image') },
        },
      },
      '/v1/models': { get: { summary: 'The loaded model, its defaults, assets and limits', responses: { 200: { description: 'models', content: content('Models') } } } },
      '/healthz': { get: { summary: 'Liveness and queue size', security: [{}], responses: { 200: { description: 'ok', content: content('Health') } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'text exposition format', content: { 'text/plain': {} } } } } },
    },
  };
}
