// Option parsers shared by the commands: each turns a flag's text into a value or throws the
// one-line error the CLI prints.

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
