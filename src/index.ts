// The library: `import { KosmosGPipeline, DEFAULT_MODEL } from 'kosmos-g'`.
export { KosmosGPipeline, type KosmosGGenerateOptions, type KosmosGLoadOptions } from './pipeline/kosmos_g_pipeline.js';
export type { GenerationPhase, PhaseInfo } from './pipeline/phases.js';
export { TextToImagePipeline, type TextToImageOptions, type GenerationResult, type PipelineLoadOptions } from './pipeline/text_to_image.js';
export { DEFAULT_MODEL } from './pipeline/default_model.js';
export { encodePng, imageGrid, gridLayout } from './pipeline/image_output.js';
export { SCHEDULER_CHOICES, type SchedulerChoice, type GeneratedImage, type StepInfo, type SamplingOptions } from './pipeline/diffusion.js';
export { describePipeline, type PipelineInfo } from './pipeline/info.js';
export { createRandomPipeline, RANDOM_CONFIGS, RANDOM_DTYPES, type RandomPipelineOptions } from './pipeline/random_pipeline.js';
export { convertKosmosG, type ConvertOptions, type ConversionReport } from './convert/kosmos_g.js';
