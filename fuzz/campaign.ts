// A fuzz campaign: the cases of every target (an equal share each, round-robin over its seeds),
// made in this process from the run's seed and run on the worker pool; every finding grouped with
// the others of the same signature, the first of each group minimised and written out. Also the
// replay of kept inputs (regression files, a finding to look at again).
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { minimise } from './minimise.js';
import { type CaseResult, type Limits, WorkerPool } from './pool.js';
import { Random } from './random.js';
import { targetNamed } from './targets/index.js';
import type { Target } from './targets/target.js';
import { type FindingKind, type FindingVerdict, type Verdict, findingSignature } from './verdict.js';

export interface MinimiseOptions {
  /** Tests and seconds each finding's minimisation may spend; 0 tests: keep findings as found. */
  minimiseTests: number;
  minimiseSeconds: number;
  /** Where minimised findings are written; none: only reported. */
  out?: string;
}

export interface CampaignOptions extends Limits, MinimiseOptions {
  cases: number;
  seed: number;
  targets: readonly Target[];
  /** Worker processes (at most 2). */
  workers: number;
  /** Called after each case with the number done so far. */
  progress?: (done: number) => void;
}

export interface Finding {
  target: string;
  variant: string;
  verdict: FindingVerdict;
  signature: string;
  /** The case that found it first: reproducible with the same seed. */
  caseIndex: number;
  occurrences: number;
  input: Uint8Array;
  minimised: Uint8Array;
  /** Where it was written, when an output folder was given. */
  file?: string;
  /** The kept input it was replayed from, if it did not come from a case. */
  replayedFrom?: string;
}

export interface TargetTally {
  cases: number;
  accepted: number;
  refused: number;
  findings: number;
  /** Cases per variant. */
  variants: Record<string, number>;
  slowestMs: number;
}

export interface CampaignReport {
  cases: number;
  elapsedMs: number;
  tallies: Record<string, TargetTally>;
  findings: Finding[];
}

interface PlannedCase {
  target: Target;
  variant: string;
  index: number;
  input: Uint8Array;
}

/** Cases in round-robin order over the targets, each target's share split evenly over its seeds. */
async function* planCases(options: CampaignOptions): AsyncGenerator<PlannedCase> {
  const seeds = await Promise.all(options.targets.map((target) => target.seeds()));
  const count = options.targets.length;
  const share = (position: number) => Math.floor(options.cases / count) + (position < options.cases % count ? 1 : 0);
  for (let index = 0; index < share(0); index++) {
    for (const [position, target] of options.targets.entries()) {
      if (index >= share(position)) continue;
      const seed = seeds[position]![index % seeds[position]!.length]!;
      let input: Uint8Array;
      try {
        input = target.mutate(seed, Random.forCase(options.seed, target.name, index));
      } catch (error) {
        throw new Error(`the mutator of ${target.name} failed on case ${index} (seed ${options.seed}): ${(error as Error).message}`);
      }
      yield { target, variant: seed.variant, index, input };
    }
  }
}

/** Whether `verdict` is the same kind of finding (kind and error class) as `expected`. */
function sameKind(verdict: Verdict, expected: FindingVerdict): boolean {
  return verdict.outcome === 'finding' && verdict.kind === expected.kind && verdict.errorClass === expected.errorClass;
}

function findingFileName(finding: { target: string; variant: string; verdict: { kind: FindingKind } }, input: Uint8Array): string {
  const hash = createHash('sha256').update(input).digest('hex').slice(0, 10);
  return `${finding.target}.${finding.variant}.${finding.verdict.kind}.${hash}.bin`;
}

/** Where a finding came from, for its notes: the case that found it, or the file it was replayed from. */
function origin(finding: Finding, seed: number): string {
  if (finding.replayedFrom) return `replayed from ${finding.replayedFrom}`;
  return `first found: case ${finding.caseIndex} of the target with --seed ${seed} (${finding.occurrences} occurrence${finding.occurrences === 1 ? '' : 's'})`;
}

/** Writes the minimised input and, beside it, a note with the verdict, where it came from and the stack. */
async function writeFinding(finding: Finding, out: string, seed: number): Promise<string> {
  await mkdir(out, { recursive: true });
  const file = join(out, findingFileName(finding, finding.minimised));
  const { verdict } = finding;
  const details = [
    `target: ${finding.target}`,
    `variant: ${finding.variant}`,
    `kind: ${verdict.kind}${verdict.errorClass ? ` (${verdict.errorClass})` : ''}`,
    `message: ${verdict.message}`,
    origin(finding, seed),
    `minimised: ${finding.input.length} → ${finding.minimised.length} bytes`,
    '',
    verdict.stack ?? '',
  ];
  await writeFile(file, finding.minimised);
  await writeFile(`${file}.txt`, `${details.join('\n')}\n`);
  return file;
}

/** Shrinks the finding's input (see minimise.ts) on the pool while it reproduces the same kind of finding. */
async function shrink(finding: Finding, pool: WorkerPool, options: MinimiseOptions): Promise<void> {
  if (options.minimiseTests <= 0) return;
  const budget = { tests: options.minimiseTests, deadline: performance.now() + options.minimiseSeconds * 1000 };
  finding.minimised = await minimise(finding.input, async (candidate) => sameKind((await pool.run(finding.target, finding.variant, candidate)).verdict, finding.verdict), budget);
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignReport> {
  const started = performance.now();
  const workers = Math.min(2, Math.max(1, options.workers));
  const pool = new WorkerPool(workers, options);
  const tallies: Record<string, TargetTally> = Object.fromEntries(options.targets.map((target) => [target.name, { cases: 0, accepted: 0, refused: 0, findings: 0, variants: {}, slowestMs: 0 }]));
  const bySignature = new Map<string, Finding>();
  let done = 0;
  const record = (planned: PlannedCase, result: CaseResult) => {
    const tally = tallies[planned.target.name]!;
    tally.cases++;
    tally.variants[planned.variant] = (tally.variants[planned.variant] ?? 0) + 1;
    tally.slowestMs = Math.max(tally.slowestMs, result.elapsedMs);
    const { verdict } = result;
    if (verdict.outcome === 'accepted') tally.accepted++;
    else if (verdict.outcome === 'refused') tally.refused++;
    else {
      tally.findings++;
      const signature = findingSignature(planned.target.name, planned.variant, verdict);
      const known = bySignature.get(signature);
      if (known) known.occurrences++;
      else bySignature.set(signature, { target: planned.target.name, variant: planned.variant, verdict, signature, caseIndex: planned.index, occurrences: 1, input: planned.input, minimised: planned.input });
    }
    done++;
    options.progress?.(done);
  };
  try {
    const cases = planCases(options);
    // Each lane takes the next planned case when its last one is done (the generator is shared).
    const lane = async () => {
      for (let next = await cases.next(); !next.done; next = await cases.next()) record(next.value, await pool.run(next.value.target.name, next.value.variant, next.value.input));
    };
    await Promise.all(Array.from({ length: workers }, lane));
    for (const finding of bySignature.values()) {
      await shrink(finding, pool, options);
      if (options.out) finding.file = await writeFinding(finding, options.out, options.seed);
    }
  } finally {
    await pool.close();
  }
  return { cases: done, elapsedMs: performance.now() - started, tallies, findings: [...bySignature.values()] };
}

/** A kept input's target and variant, from its file name (`<target>.<variant>.<anything>`). */
export function describeKeptInput(path: string): { target: Target; variant: string } {
  const [target, variant] = basename(path).split('.');
  if (!target || !variant) throw new Error(`${path}: a kept fuzz input is named <target>.<variant>.<...>`);
  return { target: targetNamed(target), variant };
}

/**
 * Runs kept inputs again, each in a worker, and gives each one's verdict; an input that is still a
 * finding is minimised and written out as a campaign's findings are.
 */
export async function replay(files: readonly { path: string; input: Uint8Array }[], options: Limits & MinimiseOptions): Promise<{ path: string; verdict: Verdict; finding?: Finding }[]> {
  const pool = new WorkerPool(1, options);
  try {
    const results: { path: string; verdict: Verdict; finding?: Finding }[] = [];
    for (const { path, input } of files) {
      const { target, variant } = describeKeptInput(path);
      const { verdict } = await pool.run(target.name, variant, input);
      if (verdict.outcome !== 'finding') {
        results.push({ path, verdict });
        continue;
      }
      const finding: Finding = { target: target.name, variant, verdict, signature: findingSignature(target.name, variant, verdict), caseIndex: -1, occurrences: 1, input, minimised: input, replayedFrom: path };
      await shrink(finding, pool, options);
      if (options.out) finding.file = await writeFinding(finding, options.out, 0);
      results.push({ path, verdict, finding });
    }
    return results;
  } finally {
    await pool.close();
  }
}
