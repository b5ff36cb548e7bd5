// Seeded standard normal noise that is bit-identical on every platform: the noise of
// `latent_dist.sample()` and the initial latents of sampling, reproducible from a seed alone.
import type { HostTensor } from '../onnx/dtype.js';

/**
 * Standard normal noise of `shape` (float32, row-major) that is bit-identical on every platform for
 * a given seed. The uniform stream is xoshiro128** seeded through splitmix32 (32-bit integer
 * arithmetic only); normals come in pairs from Marsaglia's polar method, whose logarithm is
 * computed here from + − × ÷ alone (Math.log may differ between engines; IEEE-754 basic operations
 * and the square root are correctly rounded everywhere). The seed is a non-negative safe integer.
 */
export function gaussianNoise(seed: number, shape: readonly number[]): HostTensor {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`noise seed must be a non-negative safe integer, got ${seed}`);
  const next = xoshiro128StarStar(seed);
  const count = shape.reduce((p, q) => p * q, 1);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    let u: number;
    let v: number;
    let s: number;
    do {
      // Uniform in (−1, 1) on a grid of 2^-31, never 0 (so s > 0); every value is exact in double precision.
      u = (next() + 0.5) / 2 ** 31 - 1;
      v = (next() + 0.5) / 2 ** 31 - 1;
      s = u * u + v * v;
    } while (s >= 1);
    const factor = Math.sqrt((-2 * naturalLog(s)) / s);
    data[i] = u * factor;
    if (i + 1 < count) data[i + 1] = v * factor;
  }
  return { dtype: 'float32', shape: [...shape], data };
}

/** xoshiro128** (Blackman and Vigna) returning unsigned 32-bit integers; state from splitmix32 of the seed's two 32-bit halves. */
function xoshiro128StarStar(seed: number): () => number {
  let mixer = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32) >>> 0, 0x85ebca6b);
  const splitmix32 = (): number => {
    mixer = (mixer + 0x9e3779b9) | 0;
    let z = mixer;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
  const state = [splitmix32(), splitmix32(), splitmix32(), splitmix32()];
  const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));
  return () => {
    const result = Math.imul(rotl(Math.imul(state[1]!, 5), 7), 9) >>> 0;
    const t = state[1]! << 9;
    state[2]! ^= state[0]!;
    state[3]! ^= state[1]!;
    state[1]! ^= state[2]!;
    state[0]! ^= state[3]!;
    state[2]! ^= t;
    state[3] = rotl(state[3]!, 11);
    return result;
  };
}

/**
 * ln x for 0 < x < 1 from basic operations: x = m·2^e with m in [√½, √2] (exact scaling by 2), then
 * ln m = 2·atanh((m−1)/(m+1)) by its series (|z| ≤ 0.172, 12 terms reach 1e-17).
 */
function naturalLog(x: number): number {
  let mantissa = x;
  let exponent = 0;
  while (mantissa < Math.SQRT1_2) {
    mantissa *= 2;
    exponent -= 1;
  }
  const z = (mantissa - 1) / (mantissa + 1);
  const zSquared = z * z;
  let series = 0;
  for (let k = 23; k >= 1; k -= 2) series = series * zSquared + 1 / k;
  return 2 * z * series + exponent * Math.LN2;
}
