// `npm run fuzz -- --cases N --seed S [--targets a,b] [--time-ms T] [--memory-mb M] [--out DIR]`:
// a fuzz campaign over the readers of untrusted input (see fuzz/targets/), with a table of cases
// and findings per target at the end and every finding minimised into --out. `--replay FILE...`
// runs kept inputs (findings, regression files) again instead. Exits with 1 when anything is found.
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { positiveInteger } from '../src/cli/arguments.js';
import { type CampaignReport, replay, runCampaign } from './campaign.js';
import { DEFAULT_TARGETS, targetNamed } from './targets/index.js';
import type { FindingVerdict } from './verdict.js';

interface Flags {
  cases: number;
  seed: number;
  targets?: string;
  timeMs: number;
  memoryMb: number;
  out: string;
  workers: number;
  minimise: boolean;
  replay?: string[];
}

/** A finding's kind, class and message on one line (messages that are findings may span several). */
function describe(verdict: FindingVerdict): string {
  return `${verdict.kind}${verdict.errorClass ? ` ${verdict.errorClass}` : ''}: ${JSON.stringify(verdict.message).slice(1, -1)}`;
}

function table(report: CampaignReport): string {
  const rows = Object.entries(report.tallies).map(([name, tally]) => [name, tally.cases, tally.accepted, tally.refused, tally.findings, Math.round(tally.slowestMs)]);
  const header = ['target', 'cases', 'accepted', 'refused cleanly', 'findings', 'slowest ms'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => String(row[column]).length)));
  return [header, ...rows].map((row) => row.map((cell, column) => String(cell).padStart(widths[column]!)).join('  ')).join('\n');
}

async function main(flags: Flags): Promise<number> {
  const limits = { timeMs: flags.timeMs, memoryMb: flags.memoryMb };
  const minimising = { minimiseTests: flags.minimise ? 400 : 0, minimiseSeconds: 120, out: flags.out };
  if (flags.replay) {
    const files = await Promise.all(flags.replay.map(async (path) => ({ path, input: Uint8Array.from(await readFile(path)) })));
    const results = await replay(files, { ...limits, ...minimising });
    for (const { path, verdict, finding } of results) {
      const detail = verdict.outcome === 'finding' ? `${describe(verdict)}\n  minimised to ${finding!.minimised.length} bytes: ${finding!.file}` : verdict.outcome === 'refused' ? verdict.message : '';
      process.stdout.write(`${path}: ${verdict.outcome}${detail ? ` — ${detail}` : ''}\n`);
    }
    return results.some(({ verdict }) => verdict.outcome === 'finding') ? 1 : 0;
  }
  const targets = flags.targets ? flags.targets.split(',').map((name) => targetNamed(name.trim())) : DEFAULT_TARGETS;
  const every = Math.max(1, Math.round(flags.cases / 20));
  const report = await runCampaign({
    ...limits,
    cases: flags.cases,
    seed: flags.seed,
    targets,
    workers: flags.workers,
    ...minimising,
    progress: (done) => {
      if (done % every === 0) process.stderr.write(`fuzz: ${done}/${flags.cases} cases\n`);
    },
  });
  process.stdout.write(`${report.cases} cases in ${(report.elapsedMs / 1000).toFixed(1)} s (seed ${flags.seed})\n${table(report)}\n`);
  for (const finding of report.findings) {
    process.stdout.write(`\n${finding.target}/${finding.variant} (${finding.occurrences}×, first case ${finding.caseIndex}): ${describe(finding.verdict)}\n  minimised to ${finding.minimised.length} bytes: ${finding.file}\n`);
  }
  if (report.findings.length === 0) process.stdout.write('no findings\n');
  return report.findings.length ? 1 : 0;
}

const program = new Command()
  .name('fuzz')
  .description(`Structure-aware fuzzing of the readers of untrusted input. Targets: ${DEFAULT_TARGETS.map((target) => `\n  ${target.name}: ${target.description}`).join('')}`)
  .option('--cases <n>', 'cases in all, shared equally by the targets', positiveInteger('--cases'), 2000)
  .option('--seed <n>', 'seed of the run (the same seed makes the same cases)', positiveInteger('--seed'), 1)
  .option('--targets <names>', 'comma-separated targets (default: all but the canary)')
  .option('--time-ms <n>', 'time cap per case', positiveInteger('--time-ms'), 10_000)
  .option('--memory-mb <n>', 'resident memory cap per worker process', positiveInteger('--memory-mb'), 1024)
  .option('--workers <n>', 'worker processes, 1 or 2', positiveInteger('--workers'), 2)
  .option('--out <dir>', 'where minimised findings are written', 'runs/fuzz')
  .option('--no-minimise', 'keep findings as found')
  .option('--replay <files...>', 'run kept inputs (named <target>.<variant>.…) again instead of a campaign; those still findings are minimised into --out')
  .showHelpAfterError();

program.parse(process.argv);
main(program.opts<Flags>()).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fuzz: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
