// Runs the PyTorch reference scripts in bench/torch/ with Debian's Python, which carries torch
// (python3-torch); a Python earlier on PATH may lack it. BENCH_PYTHON names another interpreter (a
// GPU machine's Python with a CUDA build of torch).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const python = process.env['BENCH_PYTHON'] ?? '/usr/bin/python3';

/** The path of a script in bench/torch/, from the compiled dist/bench/ or the sources alike. */
export function torchScript(name: string): string {
  return fileURLToPath(new URL(`../../bench/torch/${name}`, import.meta.url));
}

/** Throws with the fix when PyTorch is not importable. */
export async function requireTorch(): Promise<void> {
  try {
    await run(python, ['-c', 'import torch']);
  } catch (error) {
    throw new Error(`PyTorch is needed for the reference: install the Debian package python3-torch (${python} -c "import torch" failed: ${(error as Error).message})`);
  }
}

export interface TorchRunOptions {
  /**
   * Benchmarks let OpenBLAS pick its own kernels: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset
   * for the torch process only. Correctness runs keep the environment as it is.
   */
  benchmark?: boolean;
}

/** Runs `script` with `args` and returns its standard output. */
export async function runTorchScript(script: string, args: readonly string[], options: TorchRunOptions = {}): Promise<string> {
  const env = { ...process.env };
  if (options.benchmark) {
    delete env['OPENBLAS_CORETYPE'];
    delete env['OPENBLAS_L2_SIZE'];
  }
  const { stdout } = await run(python, [torchScript(script), ...args], { env, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}
