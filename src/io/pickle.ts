// A Python pickle reader that executes nothing. A pickle is a program for a stack machine whose
// GLOBAL/REDUCE opcodes import and call arbitrary Python callables, which is how a malicious
// checkpoint runs code. Here every global is looked up in an allow-list given by the caller; a
// global that is not on it is refused, by name, the moment the opcode is read. Allowed globals
// either build a value in TypeScript (an OrderedDict, a tensor) or become inert placeholders that
// only record their class name, arguments and state (argparse.Namespace, omegaconf configs, numpy
// scalars). The machine is a loop, not a recursion; every length is checked against the bytes
// that remain before anything is allocated, and nesting is bounded where values are walked.
import { describeName, describeValue } from './describe-value.js';

/** A global the pickle named, pushed on the stack; what calling it does is in its rule. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly rule: GlobalRule,
  ) {}

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of an allowed data-only class, kept as its class name, arguments, state and items. */
export class InertObject {
  state: unknown = null;
  /** Items set on it (a dict subclass) and appended to it (a list subclass). */
  readonly items = new Map<unknown, unknown>();
  readonly elements: unknown[] = [];

  constructor(
    readonly className: string,
    readonly args: readonly unknown[],
  ) {}
}

/**
 * What an allowed global may do: `call` builds a value from its arguments (positional, and
 * keyword arguments of NEWOBJ_EX); `inert` makes placeholders when called and is a plain marker
 * otherwise; `reference` may only be named (a storage type inside a persistent id), never called.
 */
export type GlobalRule =
  | { kind: 'call'; call(args: readonly unknown[], kwargs: ReadonlyMap<unknown, unknown>): unknown }
  | { kind: 'inert' }
  | { kind: 'reference' };

export interface PickleLimits {
  /** Deepest nesting of MARK-delimited groups while reading and of containers when walked. */
  maxDepth: number;
  /** Longest integer in a text or binary long opcode, in bytes or digits (Python's own limit is 4,300 digits). */
  maxIntegerLength: number;
  /**
   * Most containers, tuples, globals, objects and memo entries one pickle may create. Each costs
   * one or two opcode bytes in the file but up to a hundred bytes in memory, so this (not the file
   * size) bounds the memory a hostile pickle can take; a checkpoint's pickle makes a few per tensor.
   */
  maxObjects: number;
}

export const DEFAULT_PICKLE_LIMITS: PickleLimits = { maxDepth: 1000, maxIntegerLength: 4300, maxObjects: 4_000_000 };

export interface PickleOptions {
  /** For messages: the file and the part of it being read. */
  label: string;
  /** The allowed globals by `module.name`. */
  globals: ReadonlyMap<string, GlobalRule>;
  /** Resolves a persistent id (torch's storages); without one, persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  limits?: Partial<PickleLimits>;
}

/** The pickle ended before its STOP opcode: the input is truncated (or more bytes are needed). */
export class PickleTruncatedError extends Error {}

// Python 2 module names that protocol ≤ 2 pickles use, as Python 3's unpickler maps them (fix_imports).
const PYTHON2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** `bytes` as a JavaScript number when it is a safe integer, else a bigint (two's complement little-endian). */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return narrow(value);
}

function narrow(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Reads one pickle from `bytes` at `start`; returns its value and the offset just past its STOP. */
export function unpickle(bytes: Uint8Array, options: PickleOptions, start = 0): { value: unknown; end: number } {
  const limits = { ...DEFAULT_PICKLE_LIMITS, ...options.limits };
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const label = options.label;
  let at = start;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let objects = 0;

  const fail = (problem: string): never => {
    throw new Error(`${label}: ${problem}`);
  };
  const made = <T>(value: T): T => {
    if (++objects > limits.maxObjects) fail(`the pickle creates more than ${limits.maxObjects} objects`);
    return value;
  };
  const need = (count: number): number => {
    if (count > bytes.length - at) {
      throw new PickleTruncatedError(`${label}: an opcode at byte ${at} needs ${count} bytes, but the pickle ends ${bytes.length - at} bytes later (truncated, or a false length)`);
    }
    const position = at;
    at += count;
    return position;
  };
  const take = (count: number): Uint8Array => bytes.subarray(need(count), at);
  const u8 = () => data.getUint8(need(1));
  const u16 = () => data.getUint16(need(2), true);
  const u32 = () => data.getUint32(need(4), true);
  const i32 = () => data.getInt32(need(4), true);
  const u64 = (): number => {
    const value = data.getBigUint64(need(8), true);
    // `need` then refuses any length beyond the bytes that remain, before anything is allocated.
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`a length of ${value} bytes is out of range`);
    return Number(value);
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, at);
    if (end < 0) throw new PickleTruncatedError(`${label}: the pickle ends inside a text line (truncated?)`);
    const text = Buffer.from(bytes.buffer, bytes.byteOffset + at, end - at).toString('latin1');
    at = end + 1;
    return text;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail(`opcode at byte ${at - 1} pops an empty stack`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`opcode at byte ${at - 1} needs a value on an empty stack`);
    return stack[stack.length - 1];
  };
  // popMark replaces `stack`: never call it inside `stack.push(…)`, whose receiver is taken first.
  const popMark = (): unknown[] => {
    const items = stack;
    const outer = marks.pop();
    if (!outer) fail(`opcode at byte ${at - 1} needs a MARK, and there is none`);
    stack = outer!;
    return items;
  };
  const text = (count: number): string => {
    const raw = take(count);
    try {
      return textDecoder.decode(raw);
    } catch {
      return fail(`a string at byte ${at - count} is not valid UTF-8`);
    }
  };
  const integerText = (digits: string): number | bigint => {
    if (digits.length > limits.maxIntegerLength) fail(`an integer of ${digits.length} digits exceeds the limit of ${limits.maxIntegerLength}`);
    if (!/^[-+]?\d+$/.test(digits)) fail(`malformed integer ${JSON.stringify(digits.slice(0, 40))}`);
    return narrow(BigInt(digits));
  };
  const resolveGlobal = (module: string, name: string): PickleGlobal => {
    const mapped = PYTHON2_MODULES[module] ?? module;
    const qualified = `${mapped}.${name}`;
    const rule = options.globals.get(qualified);
    const written = describeName(mapped === module ? qualified : `${module}.${name} (${qualified})`);
    if (!rule) fail(`refusing the global ${written}: it is not on the allow-list of tensor, storage, container and inert config classes (a pickle can run code through any other)`);
    return made(new PickleGlobal(mapped, name, rule!));
  };
  const call = (callable: unknown, args: unknown, kwargs: ReadonlyMap<unknown, unknown> = new Map()): unknown => {
    if (!(callable instanceof PickleGlobal)) fail(`opcode at byte ${at - 1} calls a ${describe(callable)}, not an allowed global`);
    const global = callable as PickleGlobal;
    if (!Array.isArray(args)) fail(`the arguments of ${global.qualifiedName} are a ${describe(args)}, not a tuple`);
    switch (global.rule.kind) {
      case 'call': {
        let value: unknown;
        try {
          value = global.rule.call(args as unknown[], kwargs);
        } catch (error) {
          return fail(`${global.qualifiedName}: ${(error as Error).message}`);
        }
        return made(value);
      }
      case 'inert':
        return made(new InertObject(global.qualifiedName, args as unknown[]));
      case 'reference':
        return fail(`${global.qualifiedName} may be named but not called`);
    }
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (items.length % 2) fail('SETITEMS with an odd number of values');
    const map = target instanceof InertObject ? target.items : target instanceof Map ? target : fail(`setting items on a ${describe(target)}`);
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
  };
  const append = (target: unknown, items: unknown[]): void => {
    const list = target instanceof InertObject ? target.elements : Array.isArray(target) ? target : fail(`appending to a ${describe(target)}`);
    for (const item of items) list.push(item);
  };
  const persistent = (pid: unknown): unknown => {
    if (!options.persistentLoad) fail('a persistent id appears, but this pickle may not have any');
    return options.persistentLoad!(pid);
  };

  for (;;) {
    const opcode = u8();
    switch (opcode) {
      case 0x80: { // PROTO
        const protocol = u8();
        if (protocol > 5) fail(`pickle protocol ${protocol} is not supported (at most 5)`);
        break;
      }
      case 0x95: // FRAME: only groups the bytes that follow
        u64();
        break;
      case 0x2e: // STOP
        if (marks.length) fail('STOP inside an unclosed MARK');
        return { value: pop(), end: at };
      case 0x28: // MARK
        if (marks.length >= limits.maxDepth) fail(`MARK groups nested deeper than ${limits.maxDepth}`);
        marks.push(stack);
        stack = made([]);
        break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x49: { // INT (text; protocol 0 writes booleans as I01 / I00)
        const digits = line();
        stack.push(digits === '01' ? true : digits === '00' ? false : integerText(digits));
        break;
      }
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4c: stack.push(integerText(line().replace(/L$/, ''))); break; // LONG (text)
      case 0x8a: stack.push(decodeLong(take(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const length = i32();
        if (length < 0 || length > limits.maxIntegerLength) fail(`a ${length}-byte integer exceeds the limit of ${limits.maxIntegerLength} bytes`);
        stack.push(decodeLong(take(length)));
        break;
      }
      case 0x46: { // FLOAT (text)
        const value = Number(line());
        if (Number.isNaN(value)) fail('malformed float');
        stack.push(value);
        break;
      }
      case 0x47: stack.push(data.getFloat64(need(8), false)); break; // BINFLOAT (big-endian)
      case 0x53: stack.push(decodePython2String(line(), fail)); break; // STRING (text repr)
      case 0x54: { // BINSTRING
        const length = i32();
        if (length < 0) fail('negative BINSTRING length');
        stack.push(text(length));
        break;
      }
      case 0x55: stack.push(text(u8())); break; // SHORT_BINSTRING
      case 0x56: stack.push(decodeRawUnicodeEscape(line(), fail)); break; // UNICODE (raw-unicode-escape)
      case 0x58: stack.push(text(u32())); break; // BINUNICODE
      case 0x8c: stack.push(text(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(text(u64())); break; // BINUNICODE8
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: // BINBYTES8
      case 0x96: stack.push(take(u64()).slice()); break; // BYTEARRAY8
      case 0x5d: stack.push(made([])); break; // EMPTY_LIST
      case 0x61: { const item = pop(); append(top(), [item]); break; } // APPEND
      case 0x65: { const items = popMark(); append(top(), items); break; } // APPENDS
      case 0x6c: { const items = popMark(); stack.push(made(items)); break; } // LIST
      case 0x29: stack.push(made([])); break; // EMPTY_TUPLE
      case 0x74: { const items = popMark(); stack.push(made(items)); break; } // TUPLE
      case 0x85: stack.push(made([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push(made([pop(), b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push(made([pop(), b, c])); break; } // TUPLE3
      case 0x7d: stack.push(made(new Map())); break; // EMPTY_DICT
      case 0x64: { const map = made(new Map()); setItems(map, popMark()); stack.push(map); break; } // DICT
      case 0x73: { const value = pop(); const key = pop(); setItems(top(), [key, value]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x8f: stack.push(made(new Set())); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark();
        const set = top();
        if (!(set instanceof Set)) fail(`adding items to a ${describe(set)}`);
        for (const item of items) (set as Set<unknown>).add(item);
        break;
      }
      case 0x91: { const items = popMark(); stack.push(made(new Set(items))); break; } // FROZENSET
      case 0x67: stack.push(memoGet(memo, integerText(line()), fail)); break; // GET
      case 0x68: stack.push(memoGet(memo, u8(), fail)); break; // BINGET
      case 0x6a: stack.push(memoGet(memo, u32(), fail)); break; // LONG_BINGET
      case 0x70: memo.set(made(Number(integerText(line()))), top()); break; // PUT
      case 0x71: memo.set(made(u8()), top()); break; // BINPUT
      case 0x72: memo.set(made(u32()), top()); break; // LONG_BINPUT
      case 0x94: memo.set(made(memo.size), top()); break; // MEMOIZE
      case 0x63: { const module = line(); stack.push(resolveGlobal(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); stack.push(call(pop(), args)); break; } // REDUCE
      case 0x81: { const args = pop(); stack.push(call(pop(), args)); break; } // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map)) fail('NEWOBJ_EX keyword arguments are not a dict');
        stack.push(call(pop(), args, kwargs as Map<unknown, unknown>));
        break;
      }
      case 0x69: { const module = line(); const global = resolveGlobal(module, line()); const args = popMark(); stack.push(call(global, args)); break; } // INST
      case 0x6f: { const [callable, ...args] = popMark(); stack.push(call(callable, args)); break; } // OBJ
      case 0x62: build(pop(), top(), fail); break; // BUILD
      case 0x50: stack.push(persistent(line())); break; // PERSID
      case 0x51: stack.push(persistent(pop())); break; // BINPERSID
      default:
        fail(`unsupported pickle opcode 0x${opcode.toString(16).padStart(2, '0')} at byte ${at - 1} (extension registry and out-of-band buffers are not read)`);
    }
  }
}

function memoGet(memo: Map<number, unknown>, index: number | bigint, fail: (problem: string) => never): unknown {
  const key = Number(index);
  if (!memo.has(key)) fail(`memo entry ${index} is read before it is written`);
  return memo.get(key);
}

/** BUILD: state goes into a placeholder; a dict's instance attributes (a state dict's `_metadata` version table) are not items and are dropped. */
function build(state: unknown, target: unknown, fail: (problem: string) => never): void {
  if (target instanceof InertObject) target.state = state;
  else if (!(target instanceof Map)) fail(`BUILD on a ${describe(target)}`);
}

function describe(value: unknown): string {
  if (value instanceof PickleGlobal) return `global ${value.qualifiedName}`;
  if (value instanceof InertObject) return `${value.className} object`;
  if (value === null) return 'None';
  if (Array.isArray(value)) return 'tuple or list';
  if (value instanceof Map) return 'dict';
  return value?.constructor?.name ?? typeof value;
}

/** Protocol 0 STRING: a Python 2 str repr ('...' or "...") with backslash escapes, as UTF-8 (torch.load's encoding). */
function decodePython2String(repr: string, fail: (problem: string) => never): string {
  const quote = repr[0];
  if (repr.length < 2 || (quote !== "'" && quote !== '"') || repr[repr.length - 1] !== quote) fail('malformed STRING opcode');
  const escapes: Record<string, number> = { n: 10, t: 9, r: 13, '\\': 92, "'": 39, '"': 34, a: 7, b: 8, f: 12, v: 11, '0': 0 };
  const bytes: number[] = [];
  const body = repr.slice(1, -1);
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== '\\') {
      bytes.push(body.charCodeAt(i) & 0xff);
      continue;
    }
    const next = body[++i] ?? '';
    if (next === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) {
      bytes.push(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (Object.hasOwn(escapes, next)) bytes.push(escapes[next]!);
    else fail(`unsupported escape ${describeValue(`\\${next}`)} in a STRING opcode`);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Protocol 0 UNICODE: latin-1 text with \uXXXX and \UXXXXXXXX escapes. */
function decodeRawUnicodeEscape(raw: string, fail: (problem: string) => never): string {
  return raw.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, short: string | undefined, long: string | undefined) => {
    const codePoint = parseInt((short ?? long)!, 16);
    return codePoint <= 0x10ffff ? String.fromCodePoint(codePoint) : fail(`\\U${long} is not a Unicode code point`);
  });
}

// ---- the data-only globals any checkpoint may name ------------------------------------------------

const inert: GlobalRule = { kind: 'inert' };
const reference: GlobalRule = { kind: 'reference' };

/** Text to bytes for the encodings pickles use (protocol 2 writes `bytes` as `_codecs.encode(text, 'latin1')`). */
function encodeText(args: readonly unknown[]): Uint8Array {
  const [text, encoding = 'utf-8'] = args;
  if (typeof text !== 'string' || typeof encoding !== 'string') throw new Error('_codecs.encode needs (str, encoding)');
  const normalized = encoding.toLowerCase().replace(/[-_]/g, '');
  if (normalized === 'latin1' || normalized === 'iso88591') return Uint8Array.from(Buffer.from(text, 'latin1'));
  if (normalized === 'utf8') return Uint8Array.from(Buffer.from(text, 'utf8'));
  throw new Error(`_codecs.encode: encoding ${JSON.stringify(encoding)} is not supported`);
}

function mapOf(args: readonly unknown[]): Map<unknown, unknown> {
  const [pairs] = args;
  if (pairs === undefined || pairs === null) return new Map();
  if (!Array.isArray(pairs) || !pairs.every((pair) => Array.isArray(pair) && pair.length === 2)) throw new Error('OrderedDict needs a list of (key, value) pairs');
  return new Map(pairs as [unknown, unknown][]);
}

/**
 * Containers, byte strings and the configuration classes fairseq checkpoints carry beside the
 * weights (argparse and omegaconf configs, numpy scalars and arrays in `extra_state`, fairseq's
 * meters). The classes stay inert placeholders: nothing of theirs is run.
 */
export const DATA_GLOBALS: ReadonlyMap<string, GlobalRule> = new Map<string, GlobalRule>([
  ['collections.OrderedDict', { kind: 'call', call: mapOf }],
  // The default factory is never called: missing keys are never looked up here.
  ['collections.defaultdict', { kind: 'call', call: () => new Map() }],
  ['builtins.set', { kind: 'call', call: (args) => new Set((args[0] as unknown[] | undefined) ?? []) }],
  ['builtins.frozenset', { kind: 'call', call: (args) => new Set((args[0] as unknown[] | undefined) ?? []) }],
  ['builtins.bytearray', { kind: 'call', call: (args) => (args.length === 0 ? new Uint8Array(0) : args[0] instanceof Uint8Array ? args[0].slice() : encodeText(args)) }],
  ['_codecs.encode', { kind: 'call', call: encodeText }],
  ...['dict', 'list', 'tuple', 'int', 'float', 'str', 'bool', 'object'].map((name): [string, GlobalRule] => [`builtins.${name}`, reference]),
  ['typing.Any', reference],
  ...[
    'argparse.Namespace',
    'omegaconf.dictconfig.DictConfig',
    'omegaconf.listconfig.ListConfig',
    'omegaconf.base.ContainerMetadata',
    'omegaconf.base.Metadata',
    ...['AnyNode', 'StringNode', 'IntegerNode', 'FloatNode', 'BooleanNode', 'EnumNode', 'BytesNode', 'PathNode'].map((node) => `omegaconf.nodes.${node}`),
    ...['numpy.core.multiarray', 'numpy._core.multiarray'].flatMap((module) => [`${module}.scalar`, `${module}._reconstruct`]),
    'numpy.ndarray',
    'numpy.dtype',
    ...['AverageMeter', 'TimeMeter', 'StopwatchMeter', 'MetersDict'].map((meter) => `fairseq.logging.meters.${meter}`),
  ].map((name): [string, GlobalRule] => [name, inert]),
]);

function stateField(object: InertObject, field: string): unknown {
  return object.state instanceof Map ? object.state.get(field) : null;
}

/** How a placeholder's configuration is unwrapped: a Namespace is its attributes, an omegaconf container its `_content`, a node its `_val`. */
const UNWRAP: ReadonlyMap<string, (object: InertObject) => unknown> = new Map([
  ['argparse.Namespace', (object: InertObject) => object.state],
  ['omegaconf.dictconfig.DictConfig', (object: InertObject) => stateField(object, '_content')],
  ['omegaconf.listconfig.ListConfig', (object: InertObject) => stateField(object, '_content')],
  ...['AnyNode', 'StringNode', 'IntegerNode', 'FloatNode', 'BooleanNode', 'EnumNode', 'BytesNode', 'PathNode'].map(
    (node): [string, (object: InertObject) => unknown] => [`omegaconf.nodes.${node}`, (object) => stateField(object, '_val')],
  ),
]);

/** Most values plainValue copies out: configurations hold thousands. */
export const DEFAULT_PLAIN_ITEMS = 200_000;

/**
 * A JSON-like copy of an unpickled value, for reading configurations: dicts become objects, the
 * config placeholders their contents; other placeholders and objects (tensors) become
 * `{ __class__: name }`, bytes `{ __bytes__: length }`. Deeper nesting than `maxDepth` (a cycle
 * made through the memo, or a nesting bomb) is an error, and so is a copy of more than `maxItems`
 * values: the memo lets a pickle of a few hundred bytes hold each of 40 nested lists twice, which
 * is 2^40 values once copied.
 */
export function plainValue(value: unknown, maxDepth = DEFAULT_PICKLE_LIMITS.maxDepth, maxItems = DEFAULT_PLAIN_ITEMS): unknown {
  let items = 0;
  const convert = (item: unknown, depth: number): unknown => {
    if (depth > maxDepth) throw new Error(`a pickled value is nested deeper than ${maxDepth} levels (or refers to itself)`);
    if (++items > maxItems) throw new Error(`a pickled value holds more than ${maxItems} values once its shared parts are copied out`);
    if (item === null || typeof item === 'boolean' || typeof item === 'number' || typeof item === 'string') return item;
    if (typeof item === 'bigint') return item.toString();
    if (item instanceof Uint8Array) return { __bytes__: item.length };
    if (Array.isArray(item)) return item.map((element) => convert(element, depth + 1));
    if (item instanceof Set) return [...item].map((element) => convert(element, depth + 1));
    // A key that is a container (a tuple) is described, not String()ed: that recurses without a bound.
    if (item instanceof Map) return Object.fromEntries([...item].map(([key, element]) => [typeof key === 'object' && key !== null ? describeValue(key) : String(key), convert(element, depth + 1)]));
    if (item instanceof PickleGlobal) return { __global__: item.qualifiedName };
    if (item instanceof InertObject) {
      const unwrap = UNWRAP.get(item.className);
      return unwrap ? convert(unwrap(item), depth + 1) : { __class__: item.className };
    }
    return { __class__: (item as object).constructor?.name ?? typeof item };
  };
  return convert(value, 0);
}
