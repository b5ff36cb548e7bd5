// `npm run bench -- kosmos-g`: the paper-size Kosmos-G end to end on the CPU, random weights
// (init-random --config kosmos-g: open_clip ViT-L/14, XConnector, 24×2048 MLLM, AlignerNet M,
// SD 1.5 U-Net and VAE, 2.83 B parameters): one 512×512 image from "<i> wearing <i>" with two images,
// 50 DPM-Solver++ steps, guidance 6 (CFG batch 2), BENCH_THREADS threads, the pipeline's
// low-memory mode (one network's session at a time). One JSON line:
//   ms          each phase (vision tower, connector, MLLM, aligner — the last two for the prompt and
//               the unconditional pass together —, each U-Net step: median, first (with the session's
//               creation) and total, VAE decode), the whole generate() call, and loading the folder;
//   peak RSS    of the generation's whole process, and of each phase;
//   torch       the same U-Net step (batch 2, 4×64×64, 77×768, fp32) in PyTorch CPU with as many
//               threads: the mirror bench/torch/unet_sd15.py of the `models` group, its median of 3
//               runs after a warm-up, and the ratio torch ms / our median step;
//   targets     U-Net step at least 2× PyTorch's speed; peak RSS under 8 GiB (a 16 GB laptop).
// The folder is written by a child process and the generation runs in another (with glibc's mmap
// threshold fixed, see RELEASING_MALLOC), so each peak RSS is its own process's; PyTorch runs last,
// alone.
// Environment:
//   BENCH_KOSMOS_G_FOLDER=DIR  the folder to use: reused when it exists (init-random of the same
//                              config and dtype), else created there and kept, so that repeated runs do not
//                              write the 11.3 GB again. Without it a temporary folder is created and
//                              removed.
//   BENCH_KOSMOS_G_CONFIG, BENCH_KOSMOS_G_SIZE, BENCH_KOSMOS_G_STEPS, BENCH_KOSMOS_G_DTYPE
//                              init-random config (default kosmos-g), image side (default the U-Net's
//                              sample size), steps (50) and weight storage (float32): smaller runs
//                              to check the bench. PyTorch runs only for the paper config at 512 px,
//                              the work its mirror does.
//   BENCH_KOSMOS_G_DEVICE      cpu (default) or webgpu: where our graphs run. PyTorch CPU is the
//                              comparison for the CPU only (the gpu group compares WebGPU with CUDA).
//   node --no-concurrent-marking dist/bench/kosmos-g.js init|generate …   the child processes.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { ResolvedDevice } from '../src/graph/devices.js';
import { KosmosGPipeline } from '../src/pipeline/kosmos_g_pipeline.js';
import type { GenerationPhase } from '../src/pipeline/phases.js';
import { RANDOM_CONFIGS, RANDOM_DTYPES, type RandomConfigName, type RandomWeightsDtype, createRandomPipeline } from '../src/pipeline/random_pipeline.js';
import { BENCH_THREADS, median, peakRssMiB, resetPeakRss, round } from './measure.js';
import { timeTorchUNetForward } from './models-unet.js';

const PROMPT = '<i> wearing <i>';
const GUIDANCE = 6;
const PAPER_SIZE = 512;
const TARGET_RATIO = 2;
const TARGET_PEAK_MIB = 8 * 1024;

interface BenchSettings {
  config: RandomConfigName;
  dtype: RandomWeightsDtype;
  /** Image side in pixels; undefined: the U-Net's sample size. */
  size: number | undefined;
  steps: number;
  device: ResolvedDevice;
}

function settingsFromEnvironment(): BenchSettings {
  const env = process.env;
  const config = env['BENCH_KOSMOS_G_CONFIG'] ?? 'kosmos-g';
  const dtype = env['BENCH_KOSMOS_G_DTYPE'] ?? 'float32';
  if (!(RANDOM_CONFIGS as readonly string[]).includes(config)) throw new Error(`BENCH_KOSMOS_G_CONFIG must be one of ${RANDOM_CONFIGS.join(', ')}, got '${config}'`);
  if (!(RANDOM_DTYPES as readonly string[]).includes(dtype)) throw new Error(`BENCH_KOSMOS_G_DTYPE must be one of ${RANDOM_DTYPES.join(', ')}, got '${dtype}'`);
  const positive = (name: string): number | undefined => {
    const text = env[name];
    if (text === undefined) return undefined;
    if (!/^[1-9]\d*$/.test(text)) throw new Error(`${name} must be a positive integer, got '${text}'`);
    return Number(text);
  };
  const device = env['BENCH_KOSMOS_G_DEVICE'] ?? 'cpu';
  if (device !== 'cpu' && device !== 'webgpu') throw new Error(`BENCH_KOSMOS_G_DEVICE must be cpu or webgpu, got '${device}'`);
  return { config: config as RandomConfigName, dtype: dtype as RandomWeightsDtype, size: positive('BENCH_KOSMOS_G_SIZE'), steps: positive('BENCH_KOSMOS_G_STEPS') ?? 50, device };
}

/**
 * glibc's malloc raises its mmap threshold to the size of each large block freed (up to 32 MB), so
 * the weights of a released session (4 to 64 MB tensors) land on its heap and stay in the process:
 * measured, 3 GB still resident after the condition networks were released. A fixed threshold
 * keeps every block of 128 KiB or more in its own mapping, returned to the system when freed.
 */
export const RELEASING_MALLOC = { MALLOC_MMAP_THRESHOLD_: '131072' };

/** Runs this file in a child Node process with `args` and returns the JSON of its last stdout line (stderr passes through). */
function runChild(args: readonly string[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-concurrent-marking', fileURLToPath(import.meta.url), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...RELEASING_MALLOC, ...process.env },
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code !== 0) reject(new Error(`bench kosmos-g: the ${args[0]} process ${signal ? `was ended by ${signal}` : `exited with code ${code}`}`));
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>);
    });
  });
}

/** The folder's init-random config and dtype, or an error naming what the folder is. */
async function initRandomSettings(directory: string): Promise<string> {
  const index = JSON.parse(await readFile(join(directory, 'model_index.json'), 'utf8')) as { _init_random?: { config?: string; dtype?: string } };
  const made = index._init_random;
  if (!made?.config) throw new Error(`BENCH_KOSMOS_G_FOLDER ${directory} is not an init-random folder`);
  return `${made.config} ${made.dtype ?? 'float32'}`;
}

/** Child: writes the folder and reports how long it took and its process's peak RSS (one network's weights at a time). */
async function initChild(directory: string, config: RandomConfigName, dtype: RandomWeightsDtype): Promise<void> {
  const started = performance.now();
  await createRandomPipeline(directory, { config, dtype, onNetwork: (name, parameters) => console.error(`bench kosmos-g: ${name} written (${(parameters / 1e6).toFixed(1)} M parameters)`) });
  console.log(JSON.stringify({ ms: round(performance.now() - started), peak_rss_mib: peakRssMiB() }));
}

/** Two distinct 256×256 RGB images as PNG bytes (the vision tower resizes them to its 224 px). */
function promptImages(): Promise<Buffer[]> {
  return Promise.all(
    [1, 2].map((phase) => {
      const pixels = Buffer.alloc(256 * 256 * 3);
      for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + phase * 91 + (i >> 10) * phase) % 256;
      return sharp(pixels, { raw: { width: 256, height: 256, channels: 3 } }).png().toBuffer();
    }),
  );
}

/** Child: loads the folder with the low-memory option and generates once, timing every phase. */
async function generateChild(directory: string, size: number | undefined, steps: number, device: ResolvedDevice): Promise<void> {
  const images = await promptImages();
  resetPeakRss();
  const loadStarted = performance.now();
  const pipeline = await KosmosGPipeline.fromPretrained(directory, { device, threads: BENCH_THREADS, lowMemory: true });
  const loadMs = performance.now() - loadStarted;
  const phasePeaks: Record<string, number> = { load: peakRssMiB() };
  const phaseMs: Partial<Record<GenerationPhase, number>> = {};
  const phaseCalls: Partial<Record<GenerationPhase, number>> = {};
  const stepEnds: number[] = [];
  let lastPhaseEnd = performance.now();
  resetPeakRss();
  const started = performance.now();
  try {
    const { settings } = await pipeline.generate({
      prompt: PROMPT,
      images,
      steps,
      guidanceScale: GUIDANCE,
      scheduler: 'dpm++',
      seed: 0,
      ...(size ? { width: size, height: size } : {}),
      onStep: () => stepEnds.push(performance.now()),
      onPhase: ({ phase, ms }) => {
        phaseMs[phase] = (phaseMs[phase] ?? 0) + ms;
        phaseCalls[phase] = (phaseCalls[phase] ?? 0) + 1;
        // The peak since the previous phase ended belongs to this one (the work between phases is bookkeeping).
        phasePeaks[phase] = Math.max(phasePeaks[phase] ?? 0, peakRssMiB());
        resetPeakRss();
        if (phase !== 'unet' && phase !== 'vae') lastPhaseEnd = performance.now();
      },
    });
    const totalMs = performance.now() - started;
    // Step i ends at stepEnds[i]; the first starts when the condition encoding ended.
    const stepMs = stepEnds.map((end, index) => end - (index ? stepEnds[index - 1]! : lastPhaseEnd));
    const { encoder, diffusion } = pipeline;
    const parts = encoder.model.components;
    const parameters = {
      vision: parts.vision.model.parameterCount(),
      connector: parts.connector.model.parameterCount(),
      mllm: parts.mllm.model.parameterCount(),
      aligner: parts.aligner.model.parameterCount(),
      unet: diffusion.unet.model.parameterCount(),
      vae: diffusion.vae.model.parameterCount(),
    };
    const stats = pipeline.runtime.stats;
    console.log(JSON.stringify({
      size: settings.width,
      steps: settings.steps,
      parameters: { ...parameters, total: Object.values(parameters).reduce((sum, count) => sum + count, 0) },
      ms: {
        load: round(loadMs),
        vision: round(phaseMs.vision ?? 0),
        connector: round(phaseMs.connector ?? 0),
        mllm: round(phaseMs.mllm ?? 0),
        aligner: round(phaseMs.aligner ?? 0),
        unet_step_median: round(median(stepMs)),
        unet_step_first: round(stepMs[0]!),
        unet_total: round(phaseMs.unet ?? 0),
        vae_decode: round(phaseMs.vae ?? 0),
        total: round(totalMs),
      },
      phase_calls: phaseCalls,
      unet_steps_ms: stepMs.map((ms) => round(ms)),
      graphs_compiled: stats.misses,
      session_create_ms: round(stats.createMs),
      peak_rss_mib: Math.max(...Object.values(phasePeaks), peakRssMiB()),
      phase_peak_rss_mib: phasePeaks,
    }));
  } finally {
    await pipeline.dispose();
  }
}

/** The bench with the environment's settings; the gpu group overrides some of them. */
export async function runKosmosGBench(overrides: Partial<BenchSettings> = {}): Promise<Record<string, unknown>> {
  const settings = { ...settingsFromEnvironment(), ...overrides };
  const given = process.env['BENCH_KOSMOS_G_FOLDER'];
  const scratch = given ? null : await mkdtemp(join(tmpdir(), 'kosmos-g-bench-paper-'));
  const directory = given ?? join(scratch!, settings.config);
  try {
    const exists = await stat(directory).then(() => true, () => false);
    if (exists) {
      const made = await initRandomSettings(directory);
      const wanted = `${settings.config} ${settings.dtype}`;
      if (made !== wanted) throw new Error(`BENCH_KOSMOS_G_FOLDER ${directory} holds an init-random ${made} folder, not ${wanted}`);
    }
    const init = exists ? { reused: true } : { reused: false, ...(await runChild(['init', directory, settings.config, settings.dtype])) };
    const ours = await runChild(['generate', directory, String(settings.size ?? ''), String(settings.steps), settings.device]);
    const oursStep = (ours['ms'] as { unet_step_median: number }).unet_step_median;
    const paperWork = settings.config === 'kosmos-g' && ours['size'] === PAPER_SIZE && settings.device === 'cpu';
    const torch = paperWork ? await timeTorchUNetForward(3) : null;
    const ratio = torch ? round(torch.forwardMs / oursStep) : null;
    const peak = ours['peak_rss_mib'] as number;
    const record = {
      bench: 'kosmos-g',
      model: `init-random ${settings.config}, ${settings.dtype} safetensors`,
      device: settings.device,
      prompt: PROMPT,
      images: 2,
      scheduler: 'dpm++',
      guidance: GUIDANCE,
      threads: BENCH_THREADS,
      low_memory: true,
      ...ours,
      init,
      torch: torch && { unet_step_ms: torch.forwardMs, peak_rss_mib: torch.peakRssMiB, threads: torch.threads, version: torch.torch, parameters: torch.parameters },
      unet_step_ratio_torch_over_ours: ratio,
      targets: {
        unet_step_2x_torch: ratio === null ? null : ratio >= TARGET_RATIO,
        peak_rss_under_8_gib: peak < TARGET_PEAK_MIB,
      },
    };
    console.log(JSON.stringify(record));
    return record;
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, directory, ...rest] = process.argv.slice(2);
  if (mode === 'init') await initChild(directory!, rest[0] as RandomConfigName, rest[1] as RandomWeightsDtype);
  else if (mode === 'generate') await generateChild(directory!, rest[0] ? Number(rest[0]) : undefined, Number(rest[1]), rest[2] as ResolvedDevice);
  else await runKosmosGBench();
}
