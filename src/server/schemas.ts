// The API's shapes as zod schemas: they validate requests, type the handlers, and are turned into
// the OpenAPI document (openapi.ts), so the three cannot disagree. Field names are the library's
// camelCase options (KosmosGGenerateOptions), except `guidance` (guidanceScale), as the page and
// AUTOMATIC1111-style clients call it.
import { z } from 'zod';
import { SCHEDULER_CHOICES } from '../pipeline/diffusion.js';
import { layoutSceneSchema } from '../world/layout-scene.js';

/** Limits a request is held to before anything is decoded or queued (docs/server.md, "Limits"). */
export const LIMITS = {
  /** The official demo's limit. */
  maxImages: 10,
  maxImageBytes: 16 * 1024 * 1024,
  maxImagePixels: 16 * 1024 * 1024,
  maxPromptLength: 2000,
  maxSteps: 150,
  maxSide: 1024,
  maxNumImages: 4,
  /** A whole request: ten images of 16 MiB as base64 would not fit, but ten large photos do. */
  maxBodyBytes: 64 * 1024 * 1024,
} as const;

/** An asset's name: letters, digits, `-`, `_` and `.`, never a path (the server's flags and requests alike). */
export const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** An asset the server was started with, by name. */
const assetName = z
  .string()
  .regex(ASSET_NAME, 'an asset name is 1–64 letters, digits, "-", "_" or "." and names a LoRA or ControlNet the server was started with')
  .refine((name) => !name.includes('..'), 'an asset name is a name, not a path');

/** A data URL of an image in a format the decoder reads (sharp: PNG, JPEG, WebP, GIF). */
export const imageDataUrl = z
  .string()
  .regex(/^data:image\/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=\s]*$/, 'an image is a base64 data URL of a PNG, JPEG, WebP or GIF (data:image/png;base64,…)')
  .max(Math.ceil((LIMITS.maxImageBytes * 4) / 3) + 64, `an image is at most ${LIMITS.maxImageBytes / 1024 / 1024} MiB`);

const seed = z.number().int().min(0).max(2 ** 32 - 1);

const cannyPreprocess = z.strictObject({ kind: z.literal('canny'), low: z.number().min(0).max(2048).optional(), high: z.number().min(0).max(2048).optional() });
const layoutPreprocess = z.strictObject({ kind: z.literal('layout'), scene: layoutSceneSchema.describe("1 to 3 subjects, each a concept and style of the model's world (its world.json) at a position and size") });
const controlPreprocess = z.discriminatedUnion('kind', [cannyPreprocess, layoutPreprocess]);

export const generationRequestSchema = z.strictObject({
  prompt: z.string().max(LIMITS.maxPromptLength).describe('text with one <i> per image, in order'),
  images: z.array(imageDataUrl).max(LIMITS.maxImages).optional().describe('one image per <i> (JSON requests; multipart sends files in the field "images")'),
  negativePrompt: z.string().max(LIMITS.maxPromptLength).optional(),
  steps: z.number().int().min(1).max(LIMITS.maxSteps).optional(),
  guidance: z.number().min(0).max(50).optional().describe('classifier-free guidance scale; ≤ 1 runs the conditional branch alone'),
  scheduler: z.enum(SCHEDULER_CHOICES).optional(),
  seed: seed.optional().describe('random when absent, and reported'),
  numImages: z.number().int().min(1).max(LIMITS.maxNumImages).optional(),
  width: z.number().int().min(8).max(LIMITS.maxSide).optional(),
  height: z.number().int().min(8).max(LIMITS.maxSide).optional(),
  lora: z.strictObject({ name: assetName, scale: z.number().min(-4).max(4).optional() }).optional(),
  controlnet: z
    .strictObject({
      name: assetName,
      image: imageDataUrl.optional().describe('the control image (JSON requests; multipart sends a file in the field "controlImage"); none with a layout preprocess'),
      scale: z.number().min(0).max(4).optional(),
      preprocess: controlPreprocess
        .optional()
        .describe('canny: the map is the Canny edges of the image (cv2.Canny thresholds; 100 and 200 by default); layout: the server draws the layout map of a world scene (no image; the map is square, at the world\'s scene size); absent: the image is the map'),
    })
    .optional()
    .describe('the output size follows the control image (or layout map) where width and height are left out; given both, they must have its aspect ratio'),
});
export type GenerationRequest = z.output<typeof generationRequestSchema>;

export const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const apiErrorSchema = z.object({ code: z.string(), message: z.string() });
export type ApiError = z.output<typeof apiErrorSchema>;
export const errorResponseSchema = z.object({ error: apiErrorSchema });

/** What a job was run with, defaults filled in: the sidecar's and the page's "use again" source. */
export const jobSettingsSchema = z.object({
  model: z.string(),
  prompt: z.string(),
  negativePrompt: z.string(),
  images: z.number().int().describe('how many input images the prompt had'),
  steps: z.number().int(),
  guidance: z.number(),
  scheduler: z.enum(SCHEDULER_CHOICES),
  seed,
  numImages: z.number().int(),
  width: z.number().int(),
  height: z.number().int(),
  lora: z.object({ name: z.string(), scale: z.number() }).nullable(),
  controlnet: z.object({ name: z.string(), scale: z.number(), preprocess: controlPreprocess.optional().describe('how the map was made; a layout records its scene, sizes filled in') }).nullable(),
});
export type JobSettings = z.output<typeof jobSettingsSchema>;

export const jobStatusSchema = z.object({
  id: z.string(),
  state: z.enum(JOB_STATES),
  queuePosition: z.number().int().nullable().describe('0: next to run; null once it left the queue'),
  step: z.number().int(),
  totalSteps: z.number().int(),
  createdAt: z.string(),
  timings: z.object({ queuedMs: z.number().optional(), generateMs: z.number().optional() }),
  settings: jobSettingsSchema,
  images: z.array(z.string()).describe('URLs of the PNGs, once done'),
  warnings: z.array(z.string()),
  error: apiErrorSchema.optional(),
});
export type JobStatus = z.output<typeof jobStatusSchema>;

export const submittedSchema = z.object({ id: z.string(), queuePosition: z.number().int(), seed });
export const jobListSchema = z.object({ generations: z.array(jobStatusSchema) });
export const listQuerySchema = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(50) });
export const jobIdSchema = z.strictObject({ id: z.string().regex(/^[0-9a-f]{32}$/, 'not a generation id') });
export const imageNameSchema = z.strictObject({ name: z.string().regex(/^[0-9a-f]{32}-\d{1,2}\.(png|json)$/, 'not an image name') });

export const modelsSchema = z.object({
  models: z.array(
    z.object({
      id: z.string(),
      pipeline: z.enum(['kosmos-g', 'clip-text']),
      defaults: z.object({ steps: z.number(), guidance: z.number(), scheduler: z.enum(SCHEDULER_CHOICES), width: z.number(), height: z.number(), numImages: z.number() }),
      sizeMultiple: z.number(),
      schedulers: z.array(z.enum(SCHEDULER_CHOICES)),
      loras: z.array(z.string()),
      controlnets: z.array(z.string()),
      limits: z.object({ maxImages: z.number(), maxSteps: z.number(), maxSide: z.number(), maxNumImages: z.number(), maxPromptLength: z.number() }),
    }),
  ),
});
export type ModelsResponse = z.output<typeof modelsSchema>;

export const healthSchema = z.object({ status: z.literal('ok'), queued: z.number(), running: z.number() });
