// Peak host memory of a generation, estimated from the model configs and the request before any
// graph runs, so that a hostile --size or --num is refused with one line instead of driving the
// machine into swap. The estimate is deliberately simple:
//
//   peak ≈ memory in use now + U-Net and VAE weights (the sessions' copies) + RUNTIME_ALLOWANCE
//          + SAFETY_FACTOR × (U-Net step + VAE decode)
//
//   U-Net step   UNET_LIVE_MAPS float32 feature maps of the first level: batch × block_out_channels[0]
//                × h × w (batch = images, doubled under guidance). Its self-attention is ORT's fused
//                MultiHeadAttention, which the CPU kernel computes in tiles without the L×L map, so
//                the U-Net grows linearly with the pixels.
//   VAE decode   the mid-block's single-head attention scores, (h·w)² per image (a plain
//                MatMul–Softmax: this is the term that grows with the square of the pixels), plus
//                VAE_LIVE_MAPS full-resolution feature maps of block_out_channels[1] channels.
//
// Both terms are summed: ONNX Runtime's arena keeps the U-Net's memory while the VAE decodes.
// The constants come from measured peaks of kosmos-g-mini on the CPU (64 to 768 pixels, 1 to 4
// images), which the estimate exceeds by 1.02× (small images) to 1.5× (512 pixels).
import { platform } from '#platform';

/** The estimate's margin over the measured activations (arena rounding, ORT workspaces, host copies). */
export const SAFETY_FACTOR = 1.5;
/** Default --max-memory: this share of the machine's memory. */
export const DEFAULT_MEMORY_SHARE = 0.5;
/** The sessions' own buffers and the condition encoder's run: about 200 MiB for kosmos-g-mini. */
const RUNTIME_ALLOWANCE = 256 * 2 ** 20;
const UNET_LIVE_MAPS = 64;
const VAE_LIVE_MAPS = 4;
const FLOAT_BYTES = 4;

/** What the estimate reads from the model: the U-Net's and VAE's configs and their parameter counts. */
export interface DiffusionMemoryModel {
  unet: { block_out_channels: readonly number[] };
  vae: { block_out_channels: readonly number[]; mid_block_add_attention: boolean };
  /** Parameters of the U-Net and the VAE (and a ControlNet, when one is used). */
  parameters: number;
}

export interface GenerationRequest {
  width: number;
  height: number;
  numImages: number;
  /** Classifier-free guidance doubles the U-Net's batch. */
  guided: boolean;
  /** A ControlNet runs beside the U-Net at each step: counted as a second U-Net. */
  controlnet: boolean;
}

export interface MemoryEstimate {
  weights: number;
  unetStep: number;
  vaeDecode: number;
  /** Weights, the runtime allowance and the activations with the safety factor: what the generation adds to the process. */
  total: number;
}

export function estimateGenerationMemory(model: DiffusionMemoryModel, request: GenerationRequest): MemoryEstimate {
  const factor = 2 ** (model.vae.block_out_channels.length - 1);
  const latentPixels = (request.width / factor) * (request.height / factor);
  const batch = request.numImages * (request.guided ? 2 : 1);
  const unetMaps = (request.controlnet ? 2 : 1) * UNET_LIVE_MAPS;
  const unetStep = unetMaps * batch * model.unet.block_out_channels[0]! * latentPixels * FLOAT_BYTES;
  const attentionScores = model.vae.mid_block_add_attention ? latentPixels * latentPixels : 0;
  const fullResolutionChannels = model.vae.block_out_channels[Math.min(1, model.vae.block_out_channels.length - 1)]!;
  const featureMaps = VAE_LIVE_MAPS * fullResolutionChannels * request.width * request.height;
  const vaeDecode = request.numImages * (attentionScores + featureMaps) * FLOAT_BYTES;
  const weights = model.parameters * FLOAT_BYTES;
  return { weights, unetStep, vaeDecode, total: weights + RUNTIME_ALLOWANCE + SAFETY_FACTOR * (unetStep + vaeDecode) };
}

/** Half of this machine's memory (DEFAULT_MEMORY_SHARE). */
export function defaultMemoryLimit(): number {
  return Math.floor(platform.totalMemory() * DEFAULT_MEMORY_SHARE);
}

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "4G", "512M", "1.5GiB", "2e9" → bytes (binary units); `flag` names the option in the error. */
export function parseByteSize(text: string, flag: string): number {
  const match = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  const bytes = match ? Math.floor(Number(match[1]) * UNITS[match[2]!.toUpperCase()]!) : NaN;
  if (!(bytes >= 1) || !Number.isSafeInteger(bytes)) throw new Error(`${flag} must be a size in bytes such as 4G, 512M or 2000000000, got '${text}'`);
  return bytes;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  return `${Math.max(1, Math.round(bytes / 2 ** 20))} MiB`;
}

/**
 * Refuses a generation whose estimated peak (`inUse`, the process's memory now, plus the estimate)
 * is over `limit` bytes, before anything is allocated for it.
 */
export function checkGenerationMemory(estimate: MemoryEstimate, request: GenerationRequest, inUse: number, limit: number): void {
  const peak = inUse + estimate.total;
  if (peak <= limit) return;
  const images = `${request.numImages} image${request.numImages === 1 ? '' : 's'} of ${request.width}×${request.height}`;
  throw new Error(
    `${images} would need about ${formatBytes(peak)} of memory (U-Net step ${formatBytes(estimate.unetStep)}, VAE decode ${formatBytes(estimate.vaeDecode)}, ` +
      `×${SAFETY_FACTOR} margin, ${formatBytes(inUse)} in use), over the ${formatBytes(limit)} limit; lower the size or the number of images, or raise --max-memory`,
  );
}
