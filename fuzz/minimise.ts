// Shrinks a finding's input while it still reproduces the same kind of finding: first by halving
// every long repetition at once (deep nesting is a run of "[" and a run of "]", which no single
// cut can shorten and keep balanced; a long prompt is a repeated word), then by JSON structure when
// the input is a JSON document (members and elements removed one at a time, written back
// compactly), then by delta debugging over lines, then over bytes (cutting ever smaller pieces,
// keeping every cut after which the finding remains). A budget of tests and time bounds the work,
// since a hang costs a whole time cap per test.
import { parsePythonJson } from '../src/io/config-json.js';
import { type Json, pythonJson } from './json-mutate.js';

export interface MinimiseBudget {
  /** Most candidate inputs run. */
  tests: number;
  /** performance.now() after which no more tests start. */
  deadline: number;
}

type Reproduces = (candidate: Uint8Array) => Promise<boolean>;

class Budgeted {
  tests = 0;

  constructor(
    private readonly reproduces: Reproduces,
    private readonly budget: MinimiseBudget,
  ) {}

  get exhausted(): boolean {
    return this.tests >= this.budget.tests || performance.now() > this.budget.deadline;
  }

  async test(candidate: Uint8Array): Promise<boolean> {
    if (this.exhausted) return false;
    this.tests++;
    return this.reproduces(candidate);
  }
}

/** Delta debugging over `units`, trying to remove one of n pieces at a time (complements only). */
async function deltaDebug<T>(units: T[], join: (units: T[]) => Uint8Array, check: Budgeted): Promise<T[]> {
  let current = units;
  let pieces = 2;
  while (current.length >= 2 && !check.exhausted) {
    const size = Math.ceil(current.length / pieces);
    let reduced = false;
    for (let start = 0; start < current.length; start += size) {
      const complement = [...current.slice(0, start), ...current.slice(start + size)];
      if (await check.test(join(complement))) {
        current = complement;
        pieces = Math.max(pieces - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (pieces >= current.length) break;
      pieces = Math.min(current.length, pieces * 2);
    }
  }
  return current;
}

/** Removes object members and array elements, outermost first, while the finding remains. */
async function shrinkJson(root: Json, check: Budgeted): Promise<Json> {
  const write = (value: Json) => Buffer.from(pythonJson(value));
  let changed = true;
  while (changed && !check.exhausted) {
    changed = false;
    const queue: Json[] = [root];
    while (queue.length && !check.exhausted) {
      const node = queue.shift()!;
      if (typeof node !== 'object' || node === null) continue;
      const keys = Array.isArray(node) ? node.map((_, index) => index).reverse() : Object.keys(node);
      for (const key of keys) {
        const removed = Array.isArray(node) ? node.splice(key as number, 1) : [node[key as string]!];
        if (!Array.isArray(node)) delete node[key as string];
        if (await check.test(write(root))) {
          changed = true;
          continue;
        }
        if (Array.isArray(node)) node.splice(key as number, 0, ...removed);
        else Object.defineProperty(node, key, { value: removed[0], enumerable: true, writable: true, configurable: true });
      }
      queue.push(...(Array.isArray(node) ? node : Object.values(node)));
    }
  }
  return root;
}

/** Fewest repetitions of a unit that count as a run worth halving. */
const MIN_REPEATS = 32;
const MAX_UNIT = 16;

/** `input` with every run of a 1–16-byte unit repeated at least MIN_REPEATS times cut to half its repetitions; null when there is none. */
function halveRepeats(input: Uint8Array): Uint8Array | null {
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const kept: Buffer[] = [];
  let copiedTo = 0;
  for (let at = 0; at < bytes.length; ) {
    let best = { unit: 0, count: 0 };
    for (let unit = 1; unit <= MAX_UNIT; unit++) {
      let count = 1;
      while (at + (count + 1) * unit <= bytes.length && bytes.compare(bytes, at, at + unit, at + count * unit, at + (count + 1) * unit) === 0) count++;
      if (count >= MIN_REPEATS && count * unit > best.count * best.unit) best = { unit, count };
    }
    if (best.count === 0) {
      at++;
      continue;
    }
    kept.push(bytes.subarray(copiedTo, at + Math.ceil(best.count / 2) * best.unit));
    at += best.count * best.unit;
    copiedTo = at;
  }
  if (kept.length === 0) return null;
  kept.push(bytes.subarray(copiedTo));
  return Uint8Array.from(Buffer.concat(kept));
}

function jsonOf(input: Uint8Array): Json | undefined {
  try {
    return parsePythonJson(Buffer.from(input).toString('utf8')) as Json;
  } catch {
    return undefined;
  }
}

/** The smallest input found that still reproduces (the input itself when nothing smaller does). */
export async function minimise(input: Uint8Array, reproduces: Reproduces, budget: MinimiseBudget): Promise<Uint8Array> {
  const check = new Budgeted(reproduces, budget);
  let best = input;
  for (let halved = halveRepeats(best); halved && (await check.test(halved)); halved = halveRepeats(best)) best = halved;
  const json = jsonOf(best);
  if (json !== undefined && typeof json === 'object' && json !== null) {
    try {
      const compact = Buffer.from(pythonJson(json));
      if (await check.test(compact)) best = Buffer.from(pythonJson(await shrinkJson(json, check)));
    } catch (error) {
      // Nesting too deep to write back recursively: such a document is shrunk as text only.
      if (!(error instanceof RangeError)) throw error;
    }
  }
  const lines = Buffer.from(best).toString('latin1').split(/(?<=\n)/);
  if (lines.length > 2) best = Buffer.from((await deltaDebug(lines, (kept) => Buffer.from(kept.join(''), 'latin1'), check)).join(''), 'latin1');
  const bytes = await deltaDebug([...best], (kept) => Uint8Array.from(kept), check);
  return Uint8Array.from(bytes);
}
