// A protobuf message as a tree of fields (nested messages parsed where their bytes parse), written
// back with optional false length prefixes. Mutations of SentencePiece models go through it: a
// varint or float set to an edge value, a string emptied, duplicated or made invalid UTF-8, a field
// dropped, repeated, renumbered or given another wire type, a length prefix that lies.
import { ProtoReader, type ProtoField } from '../../src/tokenizers/protobuf_reader.js';
import type { Random } from '../random.js';

export interface TreeField {
  field: number;
  wire: number;
  /** Varint value, the raw bytes of a fixed or length-delimited value, or the fields of a nested message. */
  value: bigint | Uint8Array | TreeField[];
  /** Added to the written length prefix of a length-delimited field (a lying prefix). */
  lengthError?: number;
}

const MAX_NESTING = 3;

export function parseTree(bytes: Uint8Array, depth = 0): TreeField[] {
  const fields: TreeField[] = [];
  for (const entry of new ProtoReader(bytes, 'seed').fields() as Iterable<ProtoField>) {
    if (entry.wire === 2) {
      let nested: TreeField[] | null = null;
      // Pieces' strings rarely parse as messages; when one does not, it stays bytes.
      if (depth < MAX_NESTING && entry.value.length > 0) {
        try {
          nested = parseTree(entry.value, depth + 1);
        } catch {
          nested = null;
        }
      }
      fields.push({ field: entry.field, wire: 2, value: nested ?? entry.value.slice() });
    } else if (entry.wire === 0) fields.push({ field: entry.field, wire: 0, value: entry.value });
    else fields.push({ field: entry.field, wire: entry.wire, value: new Uint8Array(entry.value.buffer.slice(entry.value.byteOffset, entry.value.byteOffset + entry.value.byteLength)) });
  }
  return fields;
}

function varint(value: bigint): number[] {
  let rest = BigInt.asUintN(64, value);
  const out: number[] = [];
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return out;
}

export function writeTree(fields: readonly TreeField[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const { field, wire, value, lengthError = 0 } of fields) {
    parts.push(Uint8Array.from(varint((BigInt(field) << 3n) | BigInt(wire & 7))));
    if (typeof value === 'bigint') parts.push(Uint8Array.from(varint(value)));
    else {
      const body = Array.isArray(value) ? writeTree(value) : value;
      if (wire === 2) parts.push(Uint8Array.from(varint(BigInt(Math.max(0, body.length + lengthError)))));
      parts.push(body);
    }
  }
  return Uint8Array.from(Buffer.concat(parts));
}

/** Every field list in the tree (the root and each nested message), with the fields in it. */
function lists(root: TreeField[]): TreeField[][] {
  const found: TreeField[][] = [root];
  for (let i = 0; i < found.length; i++) for (const field of found[i]!) if (Array.isArray(field.value)) found.push(field.value);
  return found;
}

const VARINTS = [0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 99n, 0x7fffffffn, 0xffffffffn, 2n ** 63n, 2n ** 64n - 1n, -1n, -(2n ** 31n)];
const FLOATS = [Number.NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1e-45, 0, -0];
const STRINGS = ['', '▁', '<unk>', '<s>', '<0x41>', '<0x100>', 'ab', 'a'.repeat(300), '\u0000', 'nmt_nfkc', 'nfkc', 'identity', 'nfkc_cf', 'nmt_nfkc_cf'];

/** One change somewhere in the tree (in place). */
export function mutateTree(root: TreeField[], random: Random): void {
  const list = random.pick(lists(root));
  if (list.length === 0) {
    list.push({ field: random.range(1, 40), wire: 0, value: random.pick(VARINTS) });
    return;
  }
  const index = random.int(list.length);
  const entry = list[index]!;
  switch (random.int(8)) {
    case 0:
    case 1:
      if (typeof entry.value === 'bigint') entry.value = random.pick(VARINTS);
      else if (entry.wire === 5) entry.value = new Uint8Array(Float32Array.of(random.pick(FLOATS)).buffer);
      else if (!Array.isArray(entry.value)) {
        const other = random.pick(list);
        entry.value = random.chance(0.3) && other.value instanceof Uint8Array ? other.value : random.chance(0.2) ? Uint8Array.of(0xff, 0xc0, 0x80) : Buffer.from(random.pick(STRINGS));
      } else entry.value = random.chance(0.5) ? [] : entry.value.slice(0, random.int(entry.value.length));
      break;
    case 2:
      list.splice(index, 1);
      break;
    case 3:
      list.splice(random.int(list.length + 1), 0, ...Array.from({ length: random.size(4) + 1 }, () => structuredClone(entry)));
      break;
    case 4:
      entry.field = random.pick([0, 1, 2, 3, 4, 5, 24, 35, 536870911, random.range(1, 60)]);
      break;
    case 5:
      entry.wire = random.pick([0, 1, 2, 3, 4, 5, 6, 7]);
      break;
    case 6:
      entry.lengthError = random.pick([-1, 1, 2, 1000, 2 ** 31]);
      if (entry.wire !== 2) entry.wire = 2;
      if (typeof entry.value === 'bigint') entry.value = Uint8Array.of(Number(entry.value & 0xffn));
      break;
    default:
      // A field the reader acts on: byte fallback, whitespace as suffix, the normalizer rule, a BYTE or USER_DEFINED piece.
      list.push(
        random.pick<TreeField>([
          { field: 2, wire: 2, value: [{ field: random.pick([3, 24, 35]), wire: 0, value: random.pick(VARINTS) }] },
          { field: 3, wire: 2, value: [{ field: random.pick([1, 3, 4, 5]), wire: 2, value: Buffer.from(random.pick(STRINGS)) }] },
          { field: 1, wire: 2, value: [{ field: 1, wire: 2, value: Buffer.from(random.pick(STRINGS)) }, { field: 3, wire: 0, value: random.pick([4n, 5n, 6n, 3n, 2n]) }] },
        ]),
      );
  }
}
