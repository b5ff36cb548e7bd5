// `npm run bench -- models`: the model zoo's speed (../shared DESIGN §9), one JSON line per case.
//   unet_sd15_forward      SD 1.5-size U-Net forward, CFG batch 2, 64×64 latents, fp32, ours and the
//                          PyTorch mirror (bench/torch/unet_sd15.py) in the same run: ms, ratio
//                          torch_ms / ours_ms, peak RSS of each side.
//   mllm_forward_134       Kosmos-G MLLM at paper size (1.34 B parameters) over the 134-token
//                          "<i> wearing <i>" prompt: ms and peak RSS. No PyTorch reference: the
//                          official decoder is torchscale's, which is not mirrored here.
//   train_step_tiny_<m>    one TrainingStep (forward, backward, AdamW) of each tiny model: ms/step.
// Times are medians after warm-up, with BENCH_THREADS threads on both sides. Every case runs in its
// own child process, so a peak RSS belongs to one case; ours counts from the session's creation on
// (the random initialisation and its save excluded, see resetPeakRss), PyTorch's is its whole process.
// The paper-size cases hold up to ~12 GiB and take minutes; on a shared machine run the group under
// the lock its big jobs share (flock). BENCH_MODELS_QUICK=1 skips them.
//   node --expose-gc dist/bench/models.js CASE…   runs the named cases in this process.
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { timeKosmosGForward } from './models-kosmos-g.js';
import { TINY_TRAIN_MODELS, timeTinyTrainStep } from './models-train.js';
import { benchUNetForward } from './models-unet.js';
import { BENCH_THREADS, round } from './measure.js';

type CaseResult = Record<string, unknown>;

/** Which side's peak RSS a figure covers: the forward's, or (without a peak reset) the whole process's. */
const peakScope = (reset: boolean) => (reset ? 'session and runs' : 'whole process');

async function unetCase(): Promise<CaseResult> {
  const { ours, torch } = await benchUNetForward('fused');
  return {
    model: 'SD 1.5 UNet2DConditionModel, batch 2 (CFG), 4×64×64 latents, 77×768 condition, fp32, fused attention',
    parameters: ours.parameters,
    ours_ms: round(ours.forwardMs),
    torch_ms: round(torch.forwardMs),
    ratio: round(torch.forwardMs / ours.forwardMs),
    ours_runs_ms: ours.forwardRunsMs.map((ms) => round(ms)),
    ours_peak_rss_mib: ours.peakRssMiB,
    ours_peak_rss_covers: peakScope(ours.peakRssReset),
    torch_peak_rss_mib: torch.peakRssMiB,
    ours_init_peak_rss_mib: ours.initPeakRssMiB,
    ours_create_ms: round(ours.createMs),
    threads: { ours: BENCH_THREADS, torch: torch.threads },
    torch_version: torch.torch,
  };
}

async function mllmCase(): Promise<CaseResult> {
  const ours = await timeKosmosGForward('mllm');
  return {
    model: ours.model,
    parameters: ours.parameters,
    ours_ms: round(ours.forwardMs),
    torch_ms: null,
    torch_note: 'no PyTorch reference: the official decoder is torchscale, which has no mirror in bench/torch',
    ours_runs_ms: ours.forwardRunsMs.map((ms) => round(ms)),
    ours_peak_rss_mib: ours.peakRssMiB,
    ours_peak_rss_covers: peakScope(ours.peakRssReset),
    ours_init_peak_rss_mib: ours.initPeakRssMiB,
    ours_create_ms: round(ours.createMs),
    threads: BENCH_THREADS,
  };
}

/** Every case by name; the paper-size ones are skipped by BENCH_MODELS_QUICK. */
const paperCases: Record<string, () => Promise<CaseResult>> = { unet_sd15_forward: unetCase, mllm_forward_134: mllmCase };
const trainCases: Record<string, () => Promise<CaseResult>> = Object.fromEntries(
  TINY_TRAIN_MODELS.map((name) => [`train_step_tiny_${name}`, async () => {
    const timing = await timeTinyTrainStep(name);
    return { ours_ms: round(timing.msPerStep), parameters: timing.parameters, trainable_parameters: timing.trainableParameters, first_loss: timing.firstLoss, threads: BENCH_THREADS };
  }]),
);
const cases = { ...paperCases, ...trainCases };

async function runCase(name: string): Promise<void> {
  const run = cases[name];
  if (!run) throw new Error(`unknown models case ${name}; cases: ${Object.keys(cases).join(', ')}`);
  console.log(JSON.stringify({ case: name, ...(await run()) }));
}

/** Runs one case in a child process and forwards its JSON line; resolves with its exit code. */
function runCaseInChild(name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, '--expose-gc', fileURLToPath(import.meta.url), name], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

export async function runModelsBench(): Promise<void> {
  const quick = process.env['BENCH_MODELS_QUICK'] === '1';
  if (quick) console.error('bench models: BENCH_MODELS_QUICK=1, skipping the paper-size cases');
  const failed: string[] = [];
  for (const name of Object.keys(quick ? trainCases : cases)) if ((await runCaseInChild(name)) !== 0) failed.push(name);
  if (failed.length) throw new Error(`bench models: failed cases: ${failed.join(', ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const name of process.argv.slice(2)) await runCase(name);
}
