// Structure-aware mutation of JSON documents (config.json, model_index.json, vocab.json,
// tokenizer.json, a safetensors header, an index's weight_map): a value somewhere in the tree is
// replaced, removed, duplicated, retyped or wrapped; keys are added that plain objects handle
// badly (`__proto__`, `constructor`); numbers become huge, negative, fractional, NaN or infinite,
// written as Python's json module writes them (bare NaN / Infinity), which the config reader accepts.
import { parsePythonJson } from '../src/io/config-json.js';
import { BOUNDARY_INTEGERS, mutateText } from './mutate.js';
import type { Random } from './random.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Deep nesting is carried through the tree as a marker string and written out only as text, since
 * structuredClone and a recursive writer could not hold it: `NESTING + depth` becomes that many
 * nested arrays (odd depths) or objects (even depths) around a 0.
 */
const NESTING = '\u0000nesting:';

const ODD_NUMBERS = [-1, -0, 0.5, -2.5, 1e-320, 1e21, 1e308, -1e308, 2 ** 63, 2 ** 64, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
const ODD_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '', ' ', 'length', '0', '__metadata__', '_class_name', 'ünï\u0000'];

function isObject(value: Json): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every container in the tree with the key or index of each of its children. */
function slots(root: Json): { parent: Json[] | { [key: string]: Json }; key: string | number }[] {
  const found: { parent: Json[] | { [key: string]: Json }; key: string | number }[] = [];
  const stack: Json[] = [root];
  while (stack.length) {
    const value = stack.pop()!;
    if (Array.isArray(value)) value.forEach((child, index) => (found.push({ parent: value, key: index }), stack.push(child)));
    else if (isObject(value)) for (const [key, child] of Object.entries(value)) found.push({ parent: value, key }), stack.push(child);
  }
  return found;
}

function oddNumber(random: Random, near: Json): number {
  if (typeof near === 'number' && random.chance(0.4)) return random.pick([near + 1, near - 1, near * 2, -near, near / 3, near * 1e6, Math.floor(near / 2)]);
  return random.chance(0.5) ? random.pick(BOUNDARY_INTEGERS) * random.pick([1, -1]) : random.pick(ODD_NUMBERS);
}

/** A value to put in place of `old`: another type, an edge of the same type, or a large structure. */
export function oddValue(random: Random, old: Json): Json {
  switch (random.int(10)) {
    case 0:
    case 1:
    case 2:
      return oddNumber(random, old);
    case 3:
      return random.pick([null, true, false, '', '0', '1e999', 'NaN', 'x'.repeat(random.size(14))]);
    case 4:
      return typeof old === 'number' ? String(old) : typeof old === 'string' && old !== '' && !Number.isNaN(Number(old)) ? Number(old) : old === null ? 0 : null;
    case 5:
      return random.chance(0.5) ? [old] : { value: old };
    case 6:
      return random.pick([[], {}, [old, old], [1, 2, 3], [[]]]);
    case 7:
      // Very long arrays: lengths, shapes, merges, vocabularies.
      return Array.from({ length: random.size(17) }, (_, i) => (random.chance(0.5) ? i : old));
    case 8:
      return `${NESTING}${random.size(17)}`;
    default:
      return mutateText(typeof old === 'string' ? old : JSON.stringify(old) ?? '', random, 4096);
  }
}

/** Applies one structural change somewhere in `root` (in place, except when the root itself is replaced). */
function mutateTree(root: Json, random: Random): Json {
  const places = slots(root);
  if (places.length === 0 || random.chance(0.03)) return oddValue(random, root);
  const { parent, key } = random.pick(places);
  const read = (): Json => (Array.isArray(parent) ? parent[key as number]! : parent[key as string]!);
  switch (random.int(6)) {
    case 0:
    case 1:
    case 2: {
      const value = oddValue(random, read());
      if (Array.isArray(parent)) parent[key as number] = value;
      else Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
      break;
    }
    case 3:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
      break;
    case 4:
      if (Array.isArray(parent)) parent.splice(key as number, 0, ...Array.from({ length: random.size(6) }, read));
      else Object.defineProperty(parent, random.chance(0.5) ? random.pick(ODD_KEYS) : `${key}_${random.int(4)}`, { value: read(), enumerable: true, writable: true, configurable: true });
      break;
    default: {
      // Another entry's value, so that related fields disagree (offsets, ids, shapes).
      const other = random.pick(places);
      const value = Array.isArray(other.parent) ? other.parent[other.key as number]! : other.parent[other.key as string]!;
      if (Array.isArray(parent)) parent[key as number] = structuredClone(value);
      else Object.defineProperty(parent, key, { value: structuredClone(value), enumerable: true, writable: true, configurable: true });
    }
  }
  return root;
}

/**
 * JSON text with non-finite numbers written as Python writes them (NaN, Infinity, -Infinity).
 * Throws a RangeError once the text would pass `maxLength` characters (values shared by many
 * parents are written out each time, so a small tree can stand for an enormous text).
 */
export function pythonJson(value: Json, indent = 0, maxLength = Infinity): string {
  const parts: string[] = [];
  let length = 0;
  const emit = (text: string) => {
    length += text.length;
    if (length > maxLength) throw new RangeError(`the JSON text would be longer than ${maxLength} characters`);
    parts.push(text);
  };
  const write = (item: Json, depth: number): void => {
    const pad = indent ? `\n${' '.repeat(indent * (depth + 1))}` : '';
    const close = indent ? `\n${' '.repeat(indent * depth)}` : '';
    if (typeof item === 'number') emit(Number.isFinite(item) ? JSON.stringify(item) : Number.isNaN(item) ? 'NaN' : item > 0 ? 'Infinity' : '-Infinity');
    else if (Array.isArray(item) || isObject(item)) {
      const entries: [string | null, Json][] = Array.isArray(item) ? item.map((element) => [null, element]) : Object.entries(item);
      const [open, end] = Array.isArray(item) ? ['[', ']'] : ['{', '}'];
      if (entries.length === 0) return emit(open + end);
      emit(open);
      entries.forEach(([key, element], index) => {
        emit(`${index ? ',' : ''}${pad}${key === null ? '' : `${JSON.stringify(key)}:${indent ? ' ' : ''}`}`);
        write(element, depth + 1);
      });
      emit(close + end);
    } else if (typeof item === 'string' && item.startsWith(NESTING)) {
      const depth = Number(item.slice(NESTING.length));
      emit(depth % 2 ? `${'['.repeat(depth)}0${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`);
    } else emit(JSON.stringify(item));
  };
  write(value, 0);
  return parts.join('');
}

/** Text-level damage that a parse-and-rewrite cannot express: duplicate keys, trailing garbage, a BOM, cuts. */
function mutateJsonSyntax(text: string, random: Random): string {
  switch (random.int(5)) {
    case 0: {
      // Repeat the first member of some object: JSON.parse keeps the last one.
      const at = text.indexOf('{"', random.int(text.length));
      const end = at < 0 ? -1 : text.indexOf(',', at);
      return at < 0 || end < 0 ? text : text.slice(0, end + 1) + text.slice(at + 1, end + 1) + text.slice(end + 1);
    }
    case 1:
      return text + random.pick([',', '}', ']', ' garbage', '\u0000', '{}', '\n{"a": 1}']);
    case 2:
      return '\ufeff' + text;
    case 3:
      return text.slice(0, random.int(text.length + 1));
    default:
      return mutateText(text, random, text.length + 1024, 2);
  }
}

/**
 * Most values a mutated document may hold, a value shared by several parents counted each time:
 * repeated duplication of a long array would otherwise grow the text without bound.
 */
const MAX_VALUES = 300_000;
/** Longest mutated document, in characters (indentation of deep, long arrays adds up quickly). */
const MAX_TEXT = 4_000_000;

function largerThan(root: Json, limit: number): boolean {
  let count = 0;
  const stack: Json[] = [root];
  while (stack.length) {
    const value = stack.pop()!;
    if (++count > limit) return true;
    const children = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : [];
    for (const child of children) stack.push(child);
  }
  return false;
}

/** A mutation of a JSON document given as text: mostly structural, sometimes syntactic. */
export function mutateJson(text: string, random: Random): string {
  let tree: Json;
  try {
    tree = parsePythonJson(text) as Json;
  } catch {
    return mutateJsonSyntax(text, random);
  }
  for (let round = random.range(1, 3); round > 0; round--) {
    tree = mutateTree(tree, random);
    if (largerThan(tree, MAX_VALUES)) return mutateJsonSyntax(text, random);
  }
  let written: string;
  try {
    written = pythonJson(tree, random.chance(0.5) ? 2 : 0, MAX_TEXT);
  } catch {
    return mutateJsonSyntax(text, random);
  }
  return random.chance(0.15) ? mutateJsonSyntax(written, random) : written;
}
