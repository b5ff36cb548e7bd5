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
