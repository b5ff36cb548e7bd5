// `npm run bench -- gpu`: the GPU path, run once on a machine with a GPU (onnxruntime-node's bundled
// WebGPU execution provider: Dawn over Vulkan on Linux, so the Vulkan loader must be installed) and a
// CUDA build of PyTorch for the comparison. Each part prints one JSON line (`bench: 'gpu'`, `part`),
// or its error, and the parts after it still run:
//   doctor   `kosmos-g doctor --device webgpu`: the adapter, and 100 training steps through the engine;
//   mini     kosmos-g-mini, "<i> on a beach" + its example cat, 50 DPM-Solver++ steps, on the CPU and
//            on the GPU, each in its own process: load, first generation (with the sessions'
//            compilation), the median of the next ones, each phase, and the GPU image's PSNR and
//            condition cosine against the CPU's (same seed);
//   train    kosmos-g-mini's stage 3 (configs/train/kosmos-instruct-mini.json from the shipped
//            folder) for a few steps on the GPU and on the CPU: median step after the first,
//            with the data time apart;
//   paper    the paper-size image (the kosmos-g group: init-random --config kosmos-g, 512 px, two
//            images, 50 steps) on the GPU, per phase;
//   torch    the SD 1.5 U-Net step (batch 2, 64×64 latents) in PyTorch CUDA, fp32 (TF32 off) and
//            fp16, and the ratio to our GPU U-Net step from `paper`.
// Environment: BENCH_GPU_DEVICE (webgpu; cpu checks the bench on a machine without a GPU),
// BENCH_GPU_PARTS (a comma list of the parts above; default all), BENCH_GPU_TRAIN_STEPS (12),
// BENCH_PYTHON (the Python with CUDA torch), and the kosmos-g group's BENCH_KOSMOS_G_* for `paper`.
//   node --no-concurrent-marking dist/bench/gpu.js mini cpu|webgpu OUT   the mini part's child.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type ResolvedDevice, probeWebGpu } from '../src/graph/devices.js';
import { DEFAULT_MODEL } from '../src/pipeline/default_model.js';
import { measureVariant, spawnVariant, variantFidelity } from './generation-child.js';
import { runKosmosGBench } from './kosmos-g.js';
import { BENCH_THREADS, median, round } from './measure.js';
import { requireTorch, runTorchScript } from './torch-process.js';

const PARTS = ['doctor', 'mini', 'train', 'paper', 'torch'] as const;
type Part = (typeof PARTS)[number];

const MINI_SAMPLING = { steps: 50, guidanceScale: 3, seed: 1, scheduler: 'dpm++' as const };
const MINI_RUNS = 3;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const INSTRUCT_CONFIG = fileURLToPath(new URL('../../configs/train/kosmos-instruct-mini.json', import.meta.url));
const WORLD_MODEL = fileURLToPath(new URL('../../models/world-sd-mini', import.meta.url));

interface GpuSettings {
  device: ResolvedDevice;
  parts: Part[];
  trainSteps: number;
}

function settingsFromEnvironment(): GpuSettings {
  const env = process.env;
  const device = env['BENCH_GPU_DEVICE'] ?? 'webgpu';
  if (device !== 'webgpu' && device !== 'cpu') throw new Error(`BENCH_GPU_DEVICE must be webgpu or cpu, got '${device}'`);
  const parts = (env['BENCH_GPU_PARTS'] ?? PARTS.join(',')).split(',');
  const unknown = parts.filter((part) => !(PARTS as readonly string[]).includes(part));
  if (unknown.length) throw new Error(`BENCH_GPU_PARTS: unknown part ${unknown.join(', ')}; parts: ${PARTS.join(', ')}`);
  const steps = env['BENCH_GPU_TRAIN_STEPS'] ?? '12';
  if (!/^[1-9]\d*$/.test(steps) || Number(steps) < 2) throw new Error(`BENCH_GPU_TRAIN_STEPS must be an integer of at least 2, got '${steps}'`);
  return { device, parts: parts as Part[], trainSteps: Number(steps) };
}

/** Runs the CLI with `args`; its exit code, time and output (stdout and stderr as they came). */
function runCli(args: readonly string[]): Promise<{ code: number | null; seconds: number; output: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--no-concurrent-marking', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, seconds: round((performance.now() - started) / 1000), output }));
  });
}

async function doctorPart(settings: GpuSettings): Promise<Record<string, unknown>> {
  const { code, seconds, output } = await runCli(['doctor', '--device', settings.device, '--steps', '100']);
  return { ok: code === 0, code, seconds, report: output.trim().split('\n') };
}

async function miniPart(settings: GpuSettings): Promise<Record<string, unknown>> {
  const out = await mkdtemp(join(tmpdir(), 'kosmos-g-gpu-bench-'));
  try {
    const variants: Record<string, unknown> = {};
    for (const device of ['cpu', settings.device] as const) {
      if (device in variants) continue;
      const result = await spawnVariant(fileURLToPath(import.meta.url), ['mini', device, out]);
      variants[device] = {
        load_ms: round(result.loadMs), first_generate_ms: round(result.firstGenerateMs), generate_ms: round(result.generateMs),
        phase_ms: result.phaseMs, peak_rss_mib: result.peakRssMiB,
      };
    }
    const fidelity = settings.device === 'cpu' ? null : await variantFidelity(out, settings.device, 'cpu');
    return { model: DEFAULT_MODEL, sampling: MINI_SAMPLING, runs: MINI_RUNS, threads: BENCH_THREADS, ...variants, ...(fidelity ? { fidelity_vs_cpu: fidelity } : {}) };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** A few stage-3 steps of kosmos-g-mini on `device`: the median compute and data time per step after the first. */
async function trainSteps(device: ResolvedDevice, steps: number, scratch: string): Promise<Record<string, unknown>> {
  const config = JSON.parse(await readFile(INSTRUCT_CONFIG, 'utf8')) as Record<string, unknown>;
  const schedule = config['schedule'] as Record<string, unknown>;
  const path = join(scratch, `instruct-${device}.json`);
  await writeFile(path, JSON.stringify({
    ...config, kosmosG: DEFAULT_MODEL, decoder: WORLD_MODEL, steps,
    schedule: { ...schedule, warmupSteps: 1, totalSteps: steps }, checkpointEvery: steps, sampleEvery: 0, plotEvery: steps,
  }));
  const run = join(scratch, `run-${device}`);
  const { code, seconds, output } = await runCli(['train', 'kosmos-instruct', '--config', path, '--out', run, '--device', device, '--threads', String(BENCH_THREADS)]);
  if (code !== 0) throw new Error(`train kosmos-instruct on ${device} exited with code ${code}: ${output.trim().split('\n').slice(-3).join(' | ')}`);
  const log = (await readFile(join(run, 'log.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { step: number; loss: number; computeMs: number; dataMs: number });
  const after = log.slice(1);
  return {
    steps: log.length, seconds, first_step_compute_ms: round(log[0]!.computeMs),
    compute_ms_median: round(median(after.map((entry) => entry.computeMs))), data_ms_median: round(median(after.map((entry) => entry.dataMs))),
    loss_first: round(log[0]!.loss), loss_last: round(log.at(-1)!.loss),
  };
}

async function trainPart(settings: GpuSettings): Promise<Record<string, unknown>> {
  const scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-gpu-train-'));
  try {
    const config = JSON.parse(await readFile(INSTRUCT_CONFIG, 'utf8')) as { batchSize: number };
    const results: Record<string, unknown> = { config: 'configs/train/kosmos-instruct-mini.json', batch: config.batchSize, threads: BENCH_THREADS };
    for (const device of [settings.device, 'cpu'] as const) if (!(device in results)) results[device] = await trainSteps(device, settings.trainSteps, scratch);
    return results;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

interface TorchCudaTiming {
  forwardMs: number;
  peakDeviceMiB: number;
  gpu: string;
  torch: string;
}

async function torchPart(paperStepMs: number | null): Promise<Record<string, unknown>> {
  await requireTorch();
  const timings: Record<string, TorchCudaTiming> = {};
  for (const dtype of ['float32', 'float16']) timings[dtype] = JSON.parse(await runTorchScript('unet_sd15.py', ['10', '3', '1', 'cuda', dtype], { benchmark: true })) as TorchCudaTiming;
  const ratio = (torchMs: number) => (paperStepMs === null ? null : round(torchMs / paperStepMs));
  return {
    model: 'SD 1.5 UNet2DConditionModel, batch 2 (CFG), 4×64×64 latents, 77×768 condition',
    gpu: timings['float32']!.gpu, torch: timings['float32']!.torch,
    cuda_fp32: { step_ms: timings['float32']!.forwardMs, peak_device_mib: timings['float32']!.peakDeviceMiB },
    cuda_fp16: { step_ms: timings['float16']!.forwardMs, peak_device_mib: timings['float16']!.peakDeviceMiB },
    ours_step_ms: paperStepMs,
    // Above 1 ours is faster; our step is the pipeline's (scheduler included), PyTorch's the bare forward.
    ratio_torch_fp32_over_ours: ratio(timings['float32']!.forwardMs),
    ratio_torch_fp16_over_ours: ratio(timings['float16']!.forwardMs),
  };
}

export async function runGpuBench(): Promise<void> {
  const settings = settingsFromEnvironment();
  let paperStepMs: number | null = null;
  const parts: Record<Part, () => Promise<Record<string, unknown>>> = {
    doctor: () => doctorPart(settings),
    mini: () => miniPart(settings),
    train: () => trainPart(settings),
    paper: async () => {
      const record = await runKosmosGBench({ device: settings.device });
      paperStepMs = (record['ms'] as { unet_step_median: number }).unet_step_median;
      return { unet_step_ms: paperStepMs, see: 'the kosmos-g line above' };
    },
    torch: () => torchPart(paperStepMs),
  };
  // Without an adapter every part but the PyTorch one would fail, the paper part only after writing 11 GB.
  const probe = settings.device === 'webgpu' ? await probeWebGpu() : null;
  if (probe && !probe.available) console.log(JSON.stringify({ bench: 'gpu', part: 'probe', device: settings.device, error: `no WebGPU adapter: ${probe.reason}; only doctor and torch run` }));
  for (const part of settings.parts) {
    if (probe && !probe.available && part !== 'doctor' && part !== 'torch') continue;
    const started = performance.now();
    try {
      const result = await parts[part]();
      console.log(JSON.stringify({ bench: 'gpu', part, device: settings.device, host_cpu: cpus()[0]?.model, seconds: round((performance.now() - started) / 1000), ...result }));
    } catch (error) {
      // A child's own last words (a Python traceback's last line) say more than the command line that failed.
      const stderr = (error as { stderr?: string }).stderr?.trim();
      console.log(JSON.stringify({ bench: 'gpu', part, device: settings.device, error: stderr ? stderr.split('\n').at(-1) : (error as Error).message }));
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, device, out] = process.argv.slice(2);
  if (mode !== 'mini' || (device !== 'cpu' && device !== 'webgpu') || !out) throw new Error('usage: gpu.js mini cpu|webgpu OUT');
  await measureVariant(device, DEFAULT_MODEL, out, { device, threads: BENCH_THREADS }, MINI_SAMPLING, MINI_RUNS);
}
