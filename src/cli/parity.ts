// `kosmos-g parity`: reproduces every reference fixture and prints one row per compared output.
// Exits non-zero when any output is out of tolerance, a case fails to run, or a case is not covered.
import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listCases, runParityCase } from '../parity/registry.js';

/** `shared/fixtures` beside the package (dist/src/cli/ → the package root → ../shared), whatever the working folder. */
const DEFAULT_FIXTURES = fileURLToPath(new URL('../../../../shared/fixtures', import.meta.url));

function formatTolerance(tolerance: { rtol: number; atol: number } | 'exact'): string {
  return tolerance === 'exact' ? 'exact' : `rtol ${tolerance.rtol.toExponential(1)} atol ${tolerance.atol.toExponential(1)}`;
}

export function registerParityCommand(program: Command): void {
  program
    .command('parity')
    .description('compare every model, tokenizer and scheduler with the reference fixtures')
    .option('--fixtures <dir>', 'reference fixtures folder (default: ../shared/fixtures beside the package)')
    .option('--case <filter>', 'only cases whose folder name contains this')
    .option('--json', 'one JSON line per row instead of a table')
    .action(async (options: { fixtures?: string; case?: string; json?: boolean }) => {
      const fixtures = options.fixtures === undefined ? DEFAULT_FIXTURES : resolve(options.fixtures);
      if (!(await stat(fixtures).catch(() => null))?.isDirectory()) throw new Error(`the fixtures folder ${fixtures} does not exist; pass --fixtures DIR`);
      const cases = await listCases(fixtures, options.case);
      if (cases.length === 0) throw new Error(`no fixture cases in ${fixtures}${options.case ? ` matching ${options.case}` : ''}`);
      let failures = 0;
      const print = (fields: Record<string, unknown>, line: string) => console.log(options.json ? JSON.stringify(fields) : line);
      for (const name of cases) {
        const report = await runParityCase(fixtures, name);
        if (!report.covered) {
          failures++;
          print({ case: name, status: 'not covered' }, `${name.padEnd(24)} not covered`);
          continue;
        }
        if (report.error) {
          failures++;
          print({ case: name, status: 'error', error: report.error }, `${name.padEnd(24)} ERROR ${report.error}`);
          continue;
        }
        for (const row of report.rows) {
          if (!row.pass) failures++;
          const line = `${name.padEnd(24)} ${row.output.padEnd(34)} n=${String(row.compared).padEnd(7)} max|err| ${row.maxAbsError.toExponential(2)}  ${formatTolerance(row.tolerance).padEnd(26)} ${row.pass ? 'pass' : 'FAIL'}${row.note ? ` (${row.note})` : ''}`;
          print({ ...row, status: row.pass ? 'pass' : 'fail' }, line);
        }
      }
      if (failures > 0) {
        process.exitCode = 1;
        console.error(`parity: ${failures} failing or uncovered item(s)`);
      }
    });
}
