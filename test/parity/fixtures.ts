// Locating the reference fixtures from compiled tests (dist/test/<dir>/ → repository root → ../shared).
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import assert from 'node:assert/strict';
import { runParityCase } from '../../src/parity/registry.js';

export const fixturesDirectory = resolve(fileURLToPath(new URL('../../../', import.meta.url)), '..', 'shared', 'fixtures');

/** Runs one parity case and asserts that it is covered, runs, and passes on every output. */
export async function assertParity(caseName: string): Promise<void> {
  const report = await runParityCase(fixturesDirectory, caseName);
  assert.ok(report.covered, `${caseName} has no parity case module`);
  assert.equal(report.error, undefined, `${caseName}: ${report.error}`);
  assert.ok(report.rows.length > 0, `${caseName}: nothing compared`);
  const failing = report.rows.filter((row) => !row.pass).map((row) => `${row.output} (max |err| ${row.maxAbsError}${row.note ? `, ${row.note}` : ''})`);
  assert.deepEqual(failing, [], `${caseName}: outputs out of tolerance`);
}
