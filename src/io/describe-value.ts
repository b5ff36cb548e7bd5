// Untrusted values quoted in error messages: a reader's error must stay one short line whatever the
// input holds. JSON.stringify alone is not enough for that: it overflows the stack on deeply nested
// arrays, throws on bigints (a pickle's long integers) and quotes megabytes as readily as bytes.

/** Longest quotation of a value, in characters, before it is cut with "…". */
const MAX_QUOTED = 120;
/** Deepest nesting quoted; deeper containers are written as […] / {…}. */
const MAX_DEPTH = 8;

/**
 * `value` as compact JSON (as JSON.stringify writes plain values; bigints as their digits, NaN and
 * infinities by name, Maps as objects), cut to about `maxLength` characters.
 */
export function describeValue(value: unknown, maxLength = MAX_QUOTED): string {
  let out = '';
  const full = () => out.length > maxLength;
  const write = (item: unknown, depth: number): void => {
    if (full()) return;
    if (typeof item === 'string') out += JSON.stringify(item.length > maxLength ? item.slice(0, maxLength) : item);
    else if (typeof item === 'number' || typeof item === 'bigint' || typeof item === 'boolean' || item === null || item === undefined) out += String(item);
    else if (Array.isArray(item) || item instanceof Set) {
      if (depth >= MAX_DEPTH) out += '[…]';
      else {
        out += '[';
        let first = true;
        for (const element of item) {
          if (full()) break;
          out += first ? '' : ',';
          first = false;
          write(element, depth + 1);
        }
        out += ']';
      }
    } else if (typeof item === 'object') {
      if (depth >= MAX_DEPTH) out += '{…}';
      else {
        out += '{';
        let first = true;
        for (const [key, element] of item instanceof Map ? item : Object.entries(item)) {
          if (full()) break;
          out += `${first ? '' : ','}${JSON.stringify(String(key))}:`;
          first = false;
          write(element, depth + 1);
        }
        out += '}';
      }
    } else out += typeof item;
  };
  write(value, 0);
  return full() ? `${out.slice(0, maxLength)}…` : out;
}

/** A name from the input (a global, an entry, a key) as it is when it is printable ASCII and short, quoted and escaped otherwise. */
export function describeName(name: string): string {
  return /^[\x20-\x7e]{0,120}$/.test(name) ? name : describeValue(name);
}

/** Text shown in full (a path the user gave) with its control characters escaped, so that it stays on one line. */
export function escapeControlCharacters(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A list of numbers already checked (a shape) as "[a, b, c]", its first 16 only when it is longer. */
export function describeNumbers(values: readonly (number | bigint)[]): string {
  return `[${values.slice(0, 16).join(', ')}${values.length > 16 ? `, … (${values.length} in all)` : ''}]`;
}

/** A message from elsewhere (JSON.parse's, which quotes the broken text) as one line. */
export function oneLine(message: string): string {
  return message.replace(/\s+/g, ' ').trim();
}
