// Where a generation's time goes, network by network. A phase is one network's share of the work:
// compiling its graph (first use of a shape), its runs, and in a low-memory pipeline the release of
// its session. The condition encoder reports vision, connector, mllm and aligner (mllm and aligner
// twice under guidance: prompt, then unconditional), the sampler reports unet (the whole denoising
// loop, previews included) and vae (each decode).
export type GenerationPhase = 'vision' | 'connector' | 'mllm' | 'aligner' | 'unet' | 'vae';

export interface PhaseInfo {
  phase: GenerationPhase;
  ms: number;
}

export type PhaseListener = (info: PhaseInfo) => void;

/** Runs `work` and reports its wall time as `phase` to `listener` (when there is one). */
export async function timedPhase<T>(phase: GenerationPhase, listener: PhaseListener | undefined, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const result = await work();
  listener?.({ phase, ms: performance.now() - started });
  return result;
}
