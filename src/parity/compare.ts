// Reference-fixture parity: every fixture case folder holds the reference library's weights,
// inputs and outputs plus `case.json` with a suggested tolerance per output. A case module in
// ./cases/ reproduces the outputs with our implementation; this file compares and reports.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostTensor } from '../onnx/dtype.js';
import { readSafetensors } from '../io/safetensors.js';

export type Tolerance = { rtol: number; atol: number } | 'exact';

export interface ParityRow {
  case: string;
  output: string;
  compared: number;
  maxAbsError: number;
  tolerance: Tolerance;
  pass: boolean;
  note?: string;
}

export interface FixtureCase {
  name: string;
  directory: string;
  description: Record<string, unknown>;
  inputs: Map<string, HostTensor>;
  outputs: Map<string, HostTensor>;
  /** Suggested tolerance of each output from case.json. */
  tolerance(output: string): Tolerance;
}

/** A fixture's tensors file; cases that run no network (checkpoint formats, tokenizers) have none. */
async function readOptionalTensors(path: string): Promise<Map<string, HostTensor>> {
  if (!(await access(path).then(() => true, () => false))) return new Map();
  return readSafetensors(path, { asFloat32: true });
}

export async function loadFixture(fixturesDirectory: string, name: string): Promise<FixtureCase> {
  const directory = join(fixturesDirectory, name);
  const description = JSON.parse(await readFile(join(directory, 'case.json'), 'utf8')) as Record<string, unknown>;
  const outputsDescription = (description['outputs'] ?? {}) as Record<string, { suggested_tolerance?: unknown }>;
  return {
    name,
    directory,
    description,
    inputs: await readOptionalTensors(join(directory, 'inputs.safetensors')),
    outputs: await readOptionalTensors(join(directory, 'outputs.safetensors')),
    tolerance(output) {
      const suggested = outputsDescription[output]?.suggested_tolerance;
      if (suggested === 'exact' || (suggested && typeof suggested === 'object' && 'exact' in suggested && suggested.exact === true)) return 'exact';
      if (suggested && typeof suggested === 'object' && 'rtol' in suggested && 'atol' in suggested) {
        return { rtol: Number(suggested.rtol), atol: Number(suggested.atol) };
      }
      throw new Error(`${name}/case.json: no suggested tolerance for output ${output}`);
    },
  };
}

/** numpy.allclose semantics: |actual − expected| ≤ atol + rtol·|expected| for every element. */
export function compareTensors(caseName: string, output: string, actual: HostTensor, expected: HostTensor, tolerance: Tolerance): ParityRow {
  const row = { case: caseName, output, compared: expected.data.length, tolerance };
  if (actual.shape.join() !== expected.shape.join()) {
    return { ...row, maxAbsError: Infinity, pass: false, note: `shape [${actual.shape.join(', ')}] vs reference [${expected.shape.join(', ')}]` };
  }
  let maxAbsError = 0;
  let pass = true;
  for (let i = 0; i < expected.data.length; i++) {
    const want = Number(expected.data[i]);
    const got = Number(actual.data[i]);
    const error = Math.abs(got - want);
    if (!(error <= maxAbsError)) maxAbsError = Number.isNaN(error) ? Infinity : Math.max(maxAbsError, error);
    const allowed = tolerance === 'exact' ? 0 : tolerance.atol + tolerance.rtol * Math.abs(want);
    if (!(error <= allowed)) pass = false;
  }
  return { ...row, maxAbsError, pass };
}

/** Compares every listed output of a fixture with `actual[name]`, using case.json tolerances. */
export function compareOutputs(fixture: FixtureCase, actual: Readonly<Record<string, HostTensor>>): ParityRow[] {
  return Object.entries(actual).map(([output, tensor]) => {
    const expected = fixture.outputs.get(output);
    if (!expected) throw new Error(`${fixture.name}: the fixture has no output ${output}`);
    return compareTensors(fixture.name, output, tensor, expected, fixture.tolerance(output));
  });
}
