// A tiny random-weight pipeline folder per test process (init-random's `tiny` config), removed at exit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';

export const scratch = mkdtempSync(join(tmpdir(), 'kosmos-g-pipeline-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

let tiny: Promise<string> | undefined;

/** The folder of a `tiny` pipeline (seed 0), created on first use. */
export function tinyPipeline(): Promise<string> {
  tiny ??= (async () => {
    const directory = join(scratch, 'tiny');
    await createRandomPipeline(directory, { config: 'tiny', seed: 0 });
    return directory;
  })();
  return tiny;
}

export function sameBytes(a: Uint8Array | Float32Array, b: Uint8Array | Float32Array): boolean {
  return a.length === b.length && a.every((value, index) => Object.is(value, b[index]));
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
