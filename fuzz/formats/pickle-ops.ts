// A pickle as a list of opcodes with their argument bytes: parsed from a pickle, written back,
// and built op by op for seeds. Mutations work on this list (an opcode swapped, dropped, repeated,
// its length prefix or integer argument replaced, a global renamed), so they stay pickle-shaped
// and reach the unpickler's semantics rather than its first length check.
import type { Random } from '../random.js';

/** How an opcode's argument is laid out after it. */
type Argument = 'none' | 'u1' | 'u2' | 'u4' | 'i4' | 'u8' | 'f8' | 'line' | 'lines2' | 'bytes-u1' | 'bytes-u4' | 'bytes-i4' | 'bytes-u8';

const ARGUMENTS: Record<number, Argument> = {
  0x80: 'u1', 0x95: 'u8', 0x2e: 'none', 0x28: 'none', 0x30: 'none', 0x31: 'none', 0x32: 'none', 0x4e: 'none', 0x88: 'none', 0x89: 'none',
  0x49: 'line', 0x4a: 'i4', 0x4b: 'u1', 0x4d: 'u2', 0x4c: 'line', 0x8a: 'bytes-u1', 0x8b: 'bytes-i4', 0x46: 'line', 0x47: 'f8',
  0x53: 'line', 0x54: 'bytes-i4', 0x55: 'bytes-u1', 0x56: 'line', 0x58: 'bytes-u4', 0x8c: 'bytes-u1', 0x8d: 'bytes-u8',
  0x42: 'bytes-u4', 0x43: 'bytes-u1', 0x8e: 'bytes-u8', 0x96: 'bytes-u8', 0x5d: 'none', 0x61: 'none', 0x65: 'none', 0x6c: 'none',
  0x29: 'none', 0x74: 'none', 0x85: 'none', 0x86: 'none', 0x87: 'none', 0x7d: 'none', 0x64: 'none', 0x73: 'none', 0x75: 'none',
  0x8f: 'none', 0x90: 'none', 0x91: 'none', 0x67: 'line', 0x68: 'u1', 0x6a: 'u4', 0x70: 'line', 0x71: 'u1', 0x72: 'u4', 0x94: 'none',
  0x63: 'lines2', 0x93: 'none', 0x52: 'none', 0x81: 'none', 0x92: 'none', 0x69: 'lines2', 0x6f: 'none', 0x62: 'none', 0x50: 'line',
  0x51: 'none', 0x82: 'u1', 0x83: 'u2', 0x84: 'i4', 0x97: 'none', 0x98: 'none',
};

export const OPCODES = Object.keys(ARGUMENTS).map(Number);

export interface PickleOp {
  opcode: number;
  /** The argument bytes exactly as they follow the opcode (a length prefix included). */
  argument: Uint8Array;
}

const LENGTH_WIDTH: Partial<Record<Argument, number>> = { 'bytes-u1': 1, 'bytes-u4': 4, 'bytes-i4': 4, 'bytes-u8': 8 };
const FIXED_WIDTH: Partial<Record<Argument, number>> = { u1: 1, u2: 2, u4: 4, i4: 4, u8: 8, f8: 8 };

/** The opcodes of `bytes` up to and including the first STOP; what cannot be parsed ends the list as raw bytes. */
export function parsePickle(bytes: Uint8Array): { ops: PickleOp[]; rest: Uint8Array } {
  const ops: PickleOp[] = [];
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < view.length) {
    const opcode = view[at]!;
    const kind = ARGUMENTS[opcode];
    if (kind === undefined) break;
    let length = FIXED_WIDTH[kind] ?? 0;
    const prefix = LENGTH_WIDTH[kind];
    if (prefix !== undefined) {
      if (at + 1 + prefix > view.length) break;
      length = prefix + Number(prefix === 1 ? view[at + 1]! : prefix === 4 ? view.readUInt32LE(at + 1) : view.readBigUInt64LE(at + 1));
    } else if (kind === 'line' || kind === 'lines2') {
      const first = view.indexOf(0x0a, at + 1);
      const end = first < 0 || kind === 'line' ? first : view.indexOf(0x0a, first + 1);
      if (end < 0) break;
      length = end - at;
    }
    if (at + 1 + length > view.length) break;
    ops.push({ opcode, argument: bytes.slice(at + 1, at + 1 + length) });
    at += 1 + length;
    if (opcode === 0x2e) break;
  }
  return { ops, rest: bytes.slice(at) };
}

export function writePickle(ops: readonly PickleOp[], rest: Uint8Array = new Uint8Array(0)): Uint8Array {
  return Uint8Array.from(Buffer.concat([...ops.flatMap((op) => [Uint8Array.of(op.opcode), op.argument]), rest]));
}

// ---- building seeds -----------------------------------------------------------------------------

/** An opcode with its argument bytes as given. */
export const op = (opcode: number, ...argument: number[]): PickleOp => ({ opcode, argument: Uint8Array.from(argument) });

export const PROTO = (version: number) => op(0x80, version);
export const STOP = op(0x2e);
export const MARK = op(0x28);
export const NONE = op(0x4e);
export const EMPTY_DICT = op(0x7d);
export const EMPTY_LIST = op(0x5d);
export const EMPTY_TUPLE = op(0x29);
export const SETITEMS = op(0x75);
export const SETITEM = op(0x73);
export const APPENDS = op(0x65);
export const TUPLE = op(0x74);
export const TUPLE2 = op(0x86);
export const REDUCE = op(0x52);
export const BUILD = op(0x62);
export const NEWOBJ = op(0x81);
export const BINPERSID = op(0x51);
export const NEWTRUE = op(0x88);
export const MEMOIZE = op(0x94);

export function text(value: string): PickleOp {
  const bytes = Buffer.from(value, 'utf8');
  return bytes.length < 256 ? op(0x8c, bytes.length, ...bytes) : op(0x58, ...u32(bytes.length), ...bytes);
}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value >>> 0);
  return out;
}

export function integer(value: number | bigint): PickleOp {
  if (typeof value === 'number' && value >= 0 && value < 256) return op(0x4b, value);
  if (typeof value === 'number' && value >= 0 && value < 65536) return op(0x4d, value & 0xff, value >> 8);
  if (typeof value === 'number' && value >= -(2 ** 31) && value < 2 ** 31) return op(0x4a, ...u32(value));
  // LONG1: little-endian two's complement, as short as it goes.
  let rest = BigInt(value);
  const bytes: number[] = [];
  do {
    bytes.push(Number(rest & 0xffn));
    rest >>= 8n;
  } while (!(rest === 0n && !(bytes.at(-1)! & 0x80)) && !(rest === -1n && bytes.at(-1)! & 0x80));
  return op(0x8a, bytes.length, ...bytes);
}

export function float(value: number): PickleOp {
  const out = Buffer.alloc(8);
  out.writeDoubleBE(value);
  return op(0x47, ...out);
}

export function global(module: string, name: string): PickleOp {
  return op(0x63, ...Buffer.from(`${module}\n${name}\n`, 'latin1'));
}

export function bytesOp(value: Uint8Array): PickleOp {
  return op(0x43, value.length, ...value);
}

/** Protocol-2 frame: PROTO, the body, STOP. */
export function pickle(protocol: number, ...body: PickleOp[]): Uint8Array {
  return writePickle([PROTO(protocol), ...body, STOP]);
}

// ---- mutating -----------------------------------------------------------------------------------

/** Globals worth naming: allowed ones with odd arguments, torch's, and ones that must be refused. */
const GLOBALS: readonly [string, string][] = [
  ['collections', 'OrderedDict'], ['collections', 'defaultdict'], ['builtins', 'set'], ['__builtin__', 'set'], ['builtins', 'frozenset'], ['builtins', 'bytearray'],
  ['_codecs', 'encode'], ['builtins', 'dict'], ['argparse', 'Namespace'], ['omegaconf.dictconfig', 'DictConfig'], ['numpy.core.multiarray', '_reconstruct'],
  ['torch._utils', '_rebuild_tensor_v2'], ['torch._utils', '_rebuild_parameter'], ['torch._tensor', '_rebuild_from_type_v2'], ['torch', 'FloatStorage'],
  ['torch', 'HalfStorage'], ['torch', 'ShortStorage'], ['torch', 'Size'], ['torch', 'Tensor'], ['os', 'system'], ['builtins', 'eval'], ['posix', 'system'],
  ['', ''], ['collections', ''], ['torch._utils', '_rebuild_tensor_v2\u00ff'],
];

const LENGTHS = [0, 1, 255, 256, 0x7fffffff, 0x80000000, 0xffffffff, 2 ** 53, 2 ** 63];

function withLength(kind: Argument, length: number, body: Uint8Array): Uint8Array {
  const width = LENGTH_WIDTH[kind]!;
  const prefix = Buffer.alloc(width);
  if (width === 1) prefix[0] = length & 0xff;
  else if (width === 4) prefix.writeUInt32LE(length >>> 0);
  else prefix.writeBigUInt64LE(BigInt.asUintN(64, BigInt(length)));
  return Uint8Array.from(Buffer.concat([prefix, body]));
}

/** An argument for `opcode`: random, with a false length prefix, or a boundary integer. */
function argumentFor(opcode: number, random: Random): Uint8Array {
  const kind = ARGUMENTS[opcode] ?? 'none';
  const fixed = FIXED_WIDTH[kind];
  if (fixed !== undefined) return random.chance(0.5) ? random.bytes(fixed) : new Uint8Array(fixed).fill(random.pick([0, 0xff, 0x7f, 0x80]));
  if (kind in LENGTH_WIDTH) {
    const body = random.bytes(random.size(8));
    return withLength(kind, random.chance(0.6) ? body.length : random.pick(LENGTHS), body);
  }
  if (kind === 'line') return Buffer.from(`${random.pick(['0', '01', '-1', '99999999999999999999999', 'x', "'a'", "'\\x'", '\\U00110000', '1e999', 'nan', ''])}\n`, 'latin1');
  if (kind === 'lines2') {
    const [module, name] = random.pick(GLOBALS);
    return Buffer.from(`${module}\n${name}\n`, 'latin1');
  }
  return new Uint8Array(0);
}

/** One structural change to an opcode list (in place). */
export function mutateOps(ops: PickleOp[], random: Random): void {
  const index = random.int(ops.length);
  const target = ops[index];
  switch (random.int(10)) {
    case 0:
      ops.splice(index, 1);
      break;
    case 1:
      ops.splice(index, 0, ...Array.from({ length: random.size(4) + 1 }, () => ops[random.int(ops.length)]!));
      break;
    case 2: {
      const opcode = random.chance(0.9) ? random.pick(OPCODES) : random.int(256);
      ops.splice(index, 0, { opcode, argument: argumentFor(opcode, random) });
      break;
    }
    case 3:
      if (target) ops[index] = { opcode: random.pick(OPCODES), argument: target.argument };
      break;
    case 4:
      // An integer argument (a shape, stride, offset, numel, memo index) set to a boundary value.
      if (target) ops[index] = random.chance(0.7) ? integer(random.pick([0, 1, -1, 2 ** 31 - 1, 2 ** 32, 2 ** 53, -(2 ** 53), 2n ** 64n, 2n ** 200n])) : float(random.pick([Number.NaN, Infinity, -0, 1e308]));
      break;
    case 5:
      if (target && ARGUMENTS[target.opcode] !== undefined && ARGUMENTS[target.opcode]! in LENGTH_WIDTH) {
        const kind = ARGUMENTS[target.opcode]!;
        ops[index] = { opcode: target.opcode, argument: withLength(kind, random.pick(LENGTHS), target.argument.subarray(LENGTH_WIDTH[kind]!)) };
      }
      break;
    case 6:
      ops.splice(index, 0, random.chance(0.5) ? global(...random.pick(GLOBALS)) : text(random.pick(GLOBALS)[random.int(2)]!));
      break;
    case 7: {
      // Nesting: many MARKs, or a list inside a list inside a list.
      const depth = random.size(12);
      const nest = random.chance(0.5) ? Array.from({ length: depth }, () => MARK) : Array.from({ length: depth }, () => EMPTY_LIST).concat(Array.from({ length: depth }, () => op(0x61)));
      ops.splice(index, 0, ...nest);
      break;
    }
    case 8: {
      // A memo bomb as a key and value: each list holds the previous one twice, so a walk over the
      // value that does not share visits 2^depth lists while the pickle stays a few hundred bytes.
      const memo = (opcode: number, index: number) => op(opcode, ...u32(index));
      const bomb: PickleOp[] = [text('bomb'), EMPTY_LIST, memo(0x72, 1000)];
      for (let level = 0, depth = random.range(8, 48); level < depth; level++) {
        bomb.push(MARK, memo(0x6a, 1000 + level), memo(0x6a, 1000 + level), op(0x6c), memo(0x72, 1001 + level));
      }
      ops.splice(index, 0, ...bomb);
      break;
    }
    default: {
      // Swap two ops.
      const other = random.int(ops.length);
      if (target && ops[other]) [ops[index], ops[other]] = [ops[other]!, target];
    }
  }
}
