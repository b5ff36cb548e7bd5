// The fuzzer's only source of randomness: a small seeded generator (mulberry32), one per case,
// derived from the run's seed, the target and the case's index, so that any case can be made again
// on its own and the cases do not depend on which worker ran what first.

export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The generator of case `index` of `target` in a run seeded with `seed` (FNV-1a over the three). */
  static forCase(seed: number, target: string, index: number): Random {
    let hash = 0x811c9dc5;
    for (const byte of Buffer.from(`${seed}/${target}/${index}`, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193);
    return new Random(hash);
  }

  uint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.uint32() / 2 ** 32;
  }

  /** An integer in [0, count). */
  int(count: number): number {
    return Math.floor(this.float() * count);
  }

  /** An integer in [low, high]. */
  between(low: number, high: number): number {
    return low + this.int(high - low + 1);
  }

  chance(probability: number): boolean {
    return this.float() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('cannot pick from an empty list');
    return items[this.int(items.length)]!;
  }

  bytes(count: number): Uint8Array {
    const bytes = new Uint8Array(count);
    for (let i = 0; i < count; i++) bytes[i] = this.uint32() & 0xff;
    return bytes;
  }

  /** Small sizes often, large ones rarely: 2^k − 1 + jitter for k up to `maxBits`. */
  size(maxBits: number): number {
    const bits = this.int(maxBits + 1);
    return this.int(2 ** bits) + (bits > 0 ? 2 ** (bits - 1) : 0);
  }
}
