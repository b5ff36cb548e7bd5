// Pickles and torch checkpoints. `pickle`: a bare pickle through the safe unpickler with the
// data-only globals, then plainValue, as convert reads a checkpoint's training arguments.
// `torch-zip`, `torch-zip64`, `torch-legacy`: a whole `.pt` file through openCheckpointSource (the
// `convert --from` path: archive or pickle stream, storages, state dict, training arguments) with
// every tensor read. Mutations work on opcode lists (fuzz/formats/pickle-ops.ts), on the zip's
// entries and header fields, and on the legacy stream's pickles and storage records.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readEveryTensor } from './safetensors.js';
import { DATA_GLOBALS, plainValue, unpickle } from '../../src/io/pickle.js';
import {
  EMPTY_DICT, EMPTY_TUPLE, MARK, MEMOIZE, type PickleOp, REDUCE, SETITEMS, TUPLE2, bytesOp, float, global, integer, mutateOps, op, parsePickle, pickle, text, writePickle,
} from '../formats/pickle-ops.js';
import { STORAGES, STORAGE_ELEMENT_SIZES, checkpointPickle, legacyHeaderPickles, legacyKeysPickle, legacyStorage } from '../formats/torch-files.js';
import { type ZipEntrySpec, writeZip } from '../formats/zip-writer.js';
import { boundaryInteger, mutateBytes, writeInteger } from '../mutate.js';
import type { Random } from '../random.js';
import type { Seed, Target } from './target.js';

/** Training arguments as fairseq pickles them: a Namespace, an OrderedDict, a set, bytes, a big integer. */
function argumentsPickle(): Uint8Array {
  return pickle(2,
    EMPTY_DICT, MARK,
    text('args'), global('argparse', 'Namespace'), EMPTY_TUPLE, op(0x81), EMPTY_DICT, MARK, text('arch'), text('kosmosg'), text('lr'), float(1e-4), SETITEMS, op(0x62),
    text('order'), global('collections', 'OrderedDict'), op(0x5d), MARK, text('a'), integer(1), TUPLE2, text('b'), integer(-2), TUPLE2, op(0x65), op(0x85), REDUCE,
    text('set'), global('builtins', 'set'), op(0x5d), MARK, integer(1), integer(2), op(0x65), op(0x85), REDUCE,
    text('raw'), bytesOp(Uint8Array.of(0, 255, 7)), text('big'), integer(2n ** 80n), text('none'), op(0x4e),
    SETITEMS,
  );
}

/** Protocol 0, all text opcodes: a dict with a string, ints, a long, a float, unicode and a memo reference. */
const PROTOCOL_0 = Buffer.from("(dp0\nS'a'\np1\nI1\nsS'b'\np2\nL123456789012345678901234567890L\nsS't'\nI01\nsVcaf\\u00e9\np3\nF1.5\nsS'again'\ng1\ns.", 'latin1');

/** Protocol 4: a frame, memoize, STACK_GLOBAL, NEWOBJ_EX, sets and long strings and bytes. */
function protocol4Pickle(): Uint8Array {
  const body: PickleOp[] = [
    EMPTY_DICT, MEMOIZE, MARK,
    text('frozen'), op(0x8f), MEMOIZE, MARK, integer(3), integer(4), op(0x90),
    text('ns'), text('argparse'), text('Namespace'), op(0x93), EMPTY_TUPLE, EMPTY_DICT, op(0x92), MEMOIZE,
    text('long'), op(0x8d, 3, 0, 0, 0, 0, 0, 0, 0, 0x61, 0x62, 0x63), text('bytes'), op(0x8e, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2),
    text('array'), op(0x96, 1, 0, 0, 0, 0, 0, 0, 0, 9), text('long4'), op(0x8b, 2, 0, 0, 0, 0x01, 0x80), text('again'), op(0x68, 1),
    SETITEMS, op(0x2e),
  ];
  const frame = writePickle(body);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(frame.length));
  return Uint8Array.from(Buffer.concat([Uint8Array.of(0x80, 4, 0x95), length, frame]));
}

function zipEntries(data: Uint8Array): ZipEntrySpec[] {
  return [
    { name: 'archive/data.pkl', data },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    ...STORAGES.map(([key, bytes]) => ({ name: `archive/data/${key}`, data: bytes })),
    { name: 'archive/version', data: Buffer.from('3\n') },
  ];
}

function mutatePickleBytes(bytes: Uint8Array, random: Random): Uint8Array {
  const { ops, rest } = parsePickle(bytes);
  for (let round = random.range(1, 3); round > 0; round--) mutateOps(ops, random);
  const written = writePickle(ops, rest);
  return random.chance(0.1) ? mutateBytes(written, random, 2) : written;
}

/** One change to the entry list: dropped, repeated, renamed, compressed, encrypted, resized, reordered. */
function mutateEntries(entries: ZipEntrySpec[], random: Random): void {
  const index = random.int(entries.length);
  const entry = entries[index]!;
  switch (random.int(6)) {
    case 0:
      entries.splice(index, 1);
      break;
    case 1:
      entries.splice(random.int(entries.length + 1), 0, { ...entry });
      break;
    case 2:
      entry.name = random.pick<string | Uint8Array>(['archive/data.pkl', 'other/data.pkl', 'data.pkl', 'archive/data/9', 'archive/byteorder', '../archive/data/0', '', Uint8Array.of(0x61, 0xff, 0xfe), 'archive/data/0\u0000']);
      break;
    case 3:
      if (random.chance(0.5)) entry.method = random.pick([8, 12, 99, 0xffff]);
      else entry.flags = random.pick([1, 8, 0x41, 0xffff]);
      break;
    case 4:
      entry.data = random.chance(0.3) && entry.name === 'archive/byteorder' ? Buffer.from(random.pick(['big', '', 'LITTLE', 'little\n'])) : mutateBytes(entry.data, random, 2);
      break;
    default:
      entries.reverse();
  }
}

function mutateZip(zip64: boolean, random: Random): Uint8Array {
  let data = checkpointPickle('zip');
  const entries = zipEntries(data);
  const choice = random.int(6);
  if (choice <= 2) data = entries[0]!.data = mutatePickleBytes(data, random);
  else if (choice === 3) mutateEntries(entries, random);
  const comment = random.chance(0.05) ? random.bytes(random.size(16)) : undefined;
  const written = writeZip(entries, { zip64, ...(comment ? { comment } : {}) });
  const bytes = written.bytes;
  if (choice === 4) {
    const field = random.pick(written.fields);
    writeInteger(bytes, field.offset, field.width, boundaryInteger(random), true);
  }
  return choice === 5 ? mutateBytes(bytes, random) : bytes;
}

/** Sections of a legacy file: three header pickles, the object, the key list, then each storage record. */
function legacySections(): Uint8Array[] {
  return [...legacyHeaderPickles(), checkpointPickle('legacy'), legacyKeysPickle(), ...STORAGES.map(([key, bytes]) => legacyStorage(bytes, STORAGE_ELEMENT_SIZES[key]!))];
}

function mutateLegacy(random: Random): Uint8Array {
  const sections = legacySections();
  const choice = random.int(6);
  if (choice <= 2) sections[3] = mutatePickleBytes(sections[3]!, random);
  else if (choice === 3) {
    const index = random.pick([0, 1, 2, 4]);
    sections[index] = mutatePickleBytes(sections[index]!, random);
  } else if (choice === 4) {
    const index = random.range(5, sections.length - 1);
    const record = sections[index]!.slice();
    if (random.chance(0.6)) writeInteger(record, 0, 8, boundaryInteger(random), true);
    sections[index] = random.chance(0.5) ? record : record.subarray(0, random.int(record.length));
    if (random.chance(0.2)) sections.splice(index, 1);
  }
  const bytes = Uint8Array.from(Buffer.concat(sections));
  return choice === 5 ? mutateBytes(bytes, random) : bytes;
}

export const picklesTarget: Target = {
  name: 'pickles',
  description: 'pickles (safe unpickler, data-only globals, plainValue) and torch .pt files in zip, zip64 and legacy form, through openCheckpointSource',
  async seeds(): Promise<Seed[]> {
    return [
      { variant: 'pickle', bytes: argumentsPickle() },
      { variant: 'pickle', bytes: Uint8Array.from(PROTOCOL_0) },
      { variant: 'pickle', bytes: protocol4Pickle() },
      { variant: 'torch-zip', bytes: writeZip(zipEntries(checkpointPickle('zip'))).bytes },
      { variant: 'torch-zip64', bytes: writeZip(zipEntries(checkpointPickle('zip')), { zip64: true }).bytes },
      { variant: 'torch-legacy', bytes: Uint8Array.from(Buffer.concat(legacySections())) },
    ];
  },
  mutate(seed, random) {
    switch (seed.variant) {
      case 'pickle':
        return mutatePickleBytes(seed.bytes, random);
      case 'torch-legacy':
        return mutateLegacy(random);
      default:
        return mutateZip(seed.variant === 'torch-zip64', random);
    }
  },
  async run(variant, input, scratch) {
    if (variant === 'pickle') {
      plainValue(unpickle(input, { label: 'pickle', globals: DATA_GLOBALS }).value);
      return;
    }
    const path = join(scratch, 'checkpoint.pt');
    await writeFile(path, input);
    await readEveryTensor(path);
  },
};
