// Runs the built command line (`node dist/src/cli/main.js …`) as a user does, for the end-to-end
// tests: exit code, standard output and standard error, never a thrown error.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const run = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [main, ...args], { env: options.env ?? { ...process.env, NO_COLOR: '1' }, ...(options.cwd ? { cwd: options.cwd } : {}) });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as CliResult;
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The command failed with exactly one line on standard error, `kosmos-g: <message>`, matching `message`. */
export function assertOneLineError(result: CliResult, message: RegExp): void {
  assert.notEqual(result.code, 0, result.stderr);
  assert.match(result.stderr, /^kosmos-g: [^\n]+\n$/, result.stderr);
  assert.match(result.stderr.slice('kosmos-g: '.length, -1), message);
}
