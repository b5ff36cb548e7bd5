// `kosmos-g train STAGE` as a child process for the resume tests: one thread, no progress output,
// the world tests' sprite cache (small, rendered once per machine), and SIGKILL as soon as
// `killWhen` holds (polled every 2 ms), to stop a run at an arbitrary point.
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const WORLD_TEST_CACHE = join(tmpdir(), 'kosmos-g-world-test-cache');

export interface FinishedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export function trainCli(stage: string, config: string, out: string, extra: string[], killWhen?: () => boolean): Promise<FinishedRun> {
  const child = spawn(process.execPath, [cli, 'train', stage, '--config', config, '--out', out, '--threads', '1', '--progress', 'none', ...extra], {
    env: { ...process.env, KOSMOS_G_CACHE: WORLD_TEST_CACHE },
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const poll = killWhen
    ? setInterval(() => {
        if (killWhen()) child.kill('SIGKILL');
      }, 2)
    : undefined;
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      resolve({ code, signal, stderr });
    });
  });
}
