// Format-blind mutations: on bytes (bit flips, boundary integers written over fields at random
// places, cuts, insertions, repeated runs, truncation) and on text (strings that tokenizers and
// the prompt parser treat specially, unusual code points, long repeats). Format-aware mutators
// (fuzz/targets/*) apply these on top of their structural ones, so every format also sees noise.
import type { Random } from './random.js';

/** Integers at the edges of the widths a format stores (counts, lengths, offsets, dimensions). */
export const BOUNDARY_INTEGERS: readonly number[] = [
  0, 1, 2, 3, 7, 8, 16, 64, 127, 128, 255, 256, 1000, 4096, 0x7fff, 0x8000, 0xffff, 0x10000, 0xffffff, 0x7fffffff,
  0x80000000, 0xffffffff, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2 ** 53,
];

/** Writes `value` (a boundary integer, or its negation) as a `width`-byte integer at `offset`. */
export function writeInteger(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: number | bigint, littleEndian: boolean): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bits = BigInt.asUintN(width * 8, BigInt(value));
  if (width === 1) view.setUint8(offset, Number(bits));
  else if (width === 2) view.setUint16(offset, Number(bits), littleEndian);
  else if (width === 4) view.setUint32(offset, Number(bits), littleEndian);
  else view.setBigUint64(offset, bits, littleEndian);
}

export function boundaryInteger(random: Random): number {
  const value = random.pick(BOUNDARY_INTEGERS) + random.pick([0, 0, 0, -1, 1]);
  return random.chance(0.15) ? -value : value;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

type ByteMutation = (bytes: Uint8Array, random: Random) => Uint8Array;

const byteMutations: ByteMutation[] = [
  // Flip one bit.
  (bytes, random) => {
    if (bytes.length === 0) return bytes;
    const copy = bytes.slice();
    copy[random.int(copy.length)]! ^= 1 << random.int(8);
    return copy;
  },
  // A random byte.
  (bytes, random) => {
    if (bytes.length === 0) return bytes;
    const copy = bytes.slice();
    copy[random.int(copy.length)] = random.pick([0, 0xff, 0x7f, 0x80, random.int(256)]);
    return copy;
  },
  // A boundary integer over whatever field lies at a random offset.
  (bytes, random) => {
    const width = random.pick([1, 2, 4, 8] as const);
    if (bytes.length < width) return bytes;
    const copy = bytes.slice();
    writeInteger(copy, random.int(copy.length - width + 1), width, boundaryInteger(random), random.chance(0.7));
    return copy;
  },
  // Cut a range out.
  (bytes, random) => {
    const start = random.int(bytes.length + 1);
    return concat(bytes.subarray(0, start), bytes.subarray(Math.min(bytes.length, start + 1 + random.size(10))));
  },
  // Insert random bytes.
  (bytes, random) => {
    const at = random.int(bytes.length + 1);
    return concat(bytes.subarray(0, at), random.bytes(1 + random.size(6)), bytes.subarray(at));
  },
  // Copy a range of the input elsewhere in it (repeats structures: chunks, entries, opcodes).
  (bytes, random) => {
    const start = random.int(bytes.length + 1);
    const piece = bytes.subarray(start, start + 1 + random.size(8));
    const at = random.int(bytes.length + 1);
    return concat(bytes.subarray(0, at), piece, bytes.subarray(at));
  },
  // A long run of one byte.
  (bytes, random) => {
    const at = random.int(bytes.length + 1);
    return concat(bytes.subarray(0, at), new Uint8Array(random.size(16)).fill(random.pick([0, 0xff, 0x20, 0x41, 0x28, random.int(256)])), bytes.subarray(at));
  },
  // Truncate.
  (bytes, random) => bytes.slice(0, random.int(bytes.length + 1)),
];

/** One to `maxRounds` format-blind byte mutations of a copy of `bytes` (which stay as they are). */
export function mutateBytes(bytes: Uint8Array, random: Random, maxRounds = 4): Uint8Array {
  // A plain Uint8Array: on a Buffer, slice() would be a view, and the mutations would write into the seed.
  let result: Uint8Array = new Uint8Array(bytes);
  for (let round = random.range(1, maxRounds); round > 0; round--) result = random.pick(byteMutations)(result, random);
  return result;
}

/** Strings that mean something to the prompt parser, the tokenizers or text cleaning, and code points that are rarely handled. */
export const SPECIAL_STRINGS: readonly string[] = [
  '<i>', '<i', 'i>', '< i>', '<I>', '<image>', '</image>', '<s>', '</s>', '<unk>', '<pad>', '<|startoftext|>', '<|endoftext|>', '</w>',
  '\u0000', '\ud800', '\udfff', '\ud83d', '\ufffd', '\ufeff', '\u200b', '\u200d', '\u2581', '\u0301\u0301\u0301', '\u202e', '\uff5e', '\ufb01',
  '👩‍👩‍👧', '🇫🇷', '東京の猫', 'Ã©', 'â€™', '&amp;amp;', '&#x110000;', '&#xD800;', '&#0;', '&', '\r\n', '\t', '    ', "'s", "'ll", '0123456789',
  '\u{10ffff}', '\u{e0001}', 'ǅ', 'İ', 'ß', '\u0345', 'ﬃ', '\u1680', '\u00a0', '\u3000',
];

/** A string of a random code point from anywhere in Unicode, lone surrogates included. */
function randomCodePoint(random: Random): string {
  const code = random.pick([random.int(0x80), random.int(0x800), random.int(0x10000), random.int(0x110000)]);
  return code >= 0xd800 && code <= 0xdfff ? String.fromCharCode(code) : String.fromCodePoint(code);
}

type TextMutation = (text: string, random: Random, maxLength: number) => string;

const textMutations: TextMutation[] = [
  (text, random) => {
    const at = random.int(text.length + 1);
    return text.slice(0, at) + random.pick(SPECIAL_STRINGS) + text.slice(at);
  },
  (text, random) => {
    const at = random.int(text.length + 1);
    return text.slice(0, at) + randomCodePoint(random) + text.slice(at + random.int(2));
  },
  (text, random) => {
    const start = random.int(text.length + 1);
    return text.slice(0, start) + text.slice(start + 1 + random.size(6));
  },
  // A piece of the text (or a special string) repeated, up to the length cap.
  (text, random, maxLength) => {
    const start = random.int(text.length + 1);
    const piece = random.chance(0.5) ? text.slice(start, start + 1 + random.size(4)) : random.pick(SPECIAL_STRINGS);
    const times = Math.max(1, Math.min(random.size(16), Math.floor(maxLength / Math.max(1, piece.length))));
    return text.slice(0, start) + piece.repeat(times) + text.slice(start);
  },
  (text, random) => (random.chance(0.5) ? text.toUpperCase() : text.normalize(random.pick(['NFC', 'NFD', 'NFKC', 'NFKD']))),
];

/** One to `maxRounds` text mutations, the result cut to `maxLength` UTF-16 units. */
export function mutateText(text: string, random: Random, maxLength: number, maxRounds = 4): string {
  let result = text;
  for (let round = random.range(1, maxRounds); round > 0; round--) result = random.pick(textMutations)(result, random, maxLength);
  return result.slice(0, maxLength);
}
