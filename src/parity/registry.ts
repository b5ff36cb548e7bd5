// Which fixture case is reproduced by which module. Case modules live in ./cases/<case>.ts and
// export `runCase(fixture)`; a case whose module does not exist yet is reported as not covered.
import { readdir } from 'node:fs/promises';
import { type FixtureCase, type ParityRow, loadFixture } from './compare.js';

export interface CaseModule {
  runCase(fixture: FixtureCase): Promise<ParityRow[]>;
}

export interface CaseReport {
  case: string;
  covered: boolean;
  rows: ParityRow[];
  error?: string;
}

async function importCase(name: string): Promise<CaseModule | null> {
  try {
    return (await import(`./cases/${name}.js`)) as CaseModule;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes(`cases/${name}.js`)) return null;
    throw error;
  }
}

/** Fixture case folders (`NN_name`) in `fixturesDirectory`, optionally filtered by substring. */
export async function listCases(fixturesDirectory: string, filter?: string): Promise<string[]> {
  const entries = await readdir(fixturesDirectory, { withFileTypes: true });
  return entries
    .filter((entry) => entry.isDirectory() && /^\d\d_/.test(entry.name))
    .map((entry) => entry.name)
    .filter((name) => !filter || name.includes(filter))
    .sort();
}

export async function runParityCase(fixturesDirectory: string, name: string): Promise<CaseReport> {
  const module = await importCase(name);
  if (!module) return { case: name, covered: false, rows: [] };
  try {
    const fixture = await loadFixture(fixturesDirectory, name);
    return { case: name, covered: true, rows: await module.runCase(fixture) };
  } catch (error) {
    return { case: name, covered: true, rows: [], error: error instanceof Error ? error.message : String(error) };
  }
}
