// The fuzzer's randomness: the project's seeded generator (src/util/random.ts), one per case,
// derived from the run's seed, the target and the case's index, so that any case can be made again
// on its own and the cases do not depend on which worker ran what first. Adds what mutations need.
import { Random as SeededRandom, deriveSeed, hashString } from '../src/util/random.js';

export class Random extends SeededRandom {
  /** The generator of case `index` of `target` in a run seeded with `seed`. */
  static forCase(seed: number, target: string, index: number): Random {
    return new Random(deriveSeed(hashString(`${seed}/${target}`), index));
  }

  bytes(count: number): Uint8Array {
    const bytes = new Uint8Array(count);
    for (let i = 0; i < count; i++) bytes[i] = this.nextUint32() & 0xff;
    return bytes;
  }

  /** Small sizes often, large ones rarely: 2^k − 1 + jitter for k up to `maxBits`. */
  size(maxBits: number): number {
    const bits = this.int(maxBits + 1);
    return this.int(2 ** bits) + (bits > 0 ? 2 ** (bits - 1) : 0);
  }
}
