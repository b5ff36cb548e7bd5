// What a fuzz target is: a reader of one kind of input, the valid inputs mutation starts from, and
// how to mutate and run one. Seeds and mutation run in the parent (cases are made there, so they
// can be kept and minimised); `run` runs in a worker process, where a crash or a hang only costs
// the worker.
import type { Random } from '../random.js';

/** A valid input: `variant` says which reader (or which file of a folder) the bytes are for. */
export interface Seed {
  variant: string;
  bytes: Uint8Array;
}

export interface Target {
  name: string;
  /** One line for `--help` and the report: what the target reads and through which entry points. */
  description: string;
  /** The valid inputs, the same on every call (built in code or read from the repository). */
  seeds(): Promise<Seed[]>;
  /** A mutation of `seed`, determined by `random` alone. */
  mutate(seed: Seed, random: Random): Uint8Array;
  /**
   * Runs the input as the command line does: written where the reader expects its file (under
   * `scratch`, a folder of the worker's own) and read through the same entry points. Resolves when
   * the input was accepted, throws what the reader threw otherwise.
   */
  run(variant: string, input: Uint8Array, scratch: string): Promise<void>;
}
