// Option parsers shared by the commands: each turns a flag's text into a value or throws the
// one-line error the CLI prints.
import type { WeightQuantization } from '../pipeline/weights.js';

/** A parser for a flag that must be a positive integer. */
export function positiveInteger(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got '${value}'`);
    return n;
  };
}

/** A flag's integer within [minimum, maximum], or the one-line error naming the flag. */
export function integer(value: string, flag: string, minimum: number, maximum = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < minimum || n > maximum) throw new Error(`${flag} must be an integer from ${minimum} to ${maximum}, got '${value}'`);
  return n;
}

export const DTYPE_HELP = 'weights of the linear layers: float32, or int8 / int4 (quantized at load time for CPU inference; the VAE and convolutions stay float)';

/** `--dtype`: float32 keeps the weights as stored; int8 and int4 quantize the linear layers. */
export function quantizationOf(dtype: string): WeightQuantization | undefined {
  if (dtype === 'float32') return undefined;
  if (dtype === 'int8') return { bits: 8 };
  if (dtype === 'int4') return { bits: 4 };
  throw new Error(`unknown --dtype '${dtype}' (float32, int8 or int4)`);
}
