// Small torch.save checkpoints built op by op, in both formats torch writes: the zip archive
// (`archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`, `archive/version`) and the legacy
// stream of pickles followed by the storages. They hold what fairseq checkpoints hold: a `model`
// state dict with float32 and float16 tensors, a transposed view sharing a storage (through the
// memo), a Parameter, and an argparse Namespace of training arguments.
import {
  APPENDS, BINPERSID, BUILD, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, MARK, NEWOBJ, NEWTRUE, NONE, type PickleOp, REDUCE, SETITEMS, TUPLE, TUPLE2,
  float, global, integer, op, pickle, text,
} from './pickle-ops.js';

const BINPUT = (index: number) => op(0x71, index);
const BINGET = (index: number) => op(0x68, index);

/** An empty OrderedDict, as torch passes for backward hooks. */
const orderedDict = (): PickleOp[] => [global('collections', 'OrderedDict'), EMPTY_TUPLE, REDUCE];
const tuple = (...values: number[]): PickleOp[] => [MARK, ...values.map(integer), TUPLE];

/** A persistent id: the zip format's 5-tuple, the legacy format's 6-tuple with a null view. */
function storage(format: 'zip' | 'legacy', type: string, key: string, numel: number): PickleOp[] {
  return [MARK, text('storage'), global('torch', type), text(key), text('cpu'), integer(numel), ...(format === 'legacy' ? [NONE] : []), TUPLE, BINPERSID];
}

function rebuild(storageOps: PickleOp[], offset: number, shape: number[], stride: number[]): PickleOp[] {
  return [global('torch._utils', '_rebuild_tensor_v2'), MARK, ...storageOps, integer(offset), ...tuple(...shape), ...tuple(...stride), op(0x89), ...orderedDict(), TUPLE, REDUCE];
}

/** The checkpoint object: {'model': OrderedDict(weight, weight_t, bias, scale), 'args': Namespace(lr, layers), 'extra': [...]}. */
export function checkpointPickle(format: 'zip' | 'legacy'): Uint8Array {
  const model: PickleOp[] = [
    text('weight'), ...rebuild([...storage(format, 'FloatStorage', '0', 6), BINPUT(1)], 0, [2, 3], [3, 1]),
    text('weight_t'), ...rebuild([BINGET(1)], 0, [3, 2], [1, 3]),
    text('bias'), ...rebuild(storage(format, 'HalfStorage', '1', 4), 1, [3], [1]),
    text('scale'), global('torch._utils', '_rebuild_parameter'), MARK, ...rebuild(storage(format, 'FloatStorage', '2', 1), 0, [], []), NEWTRUE, ...orderedDict(), TUPLE, REDUCE,
  ];
  const args: PickleOp[] = [global('argparse', 'Namespace'), EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, MARK, text('lr'), float(0.001), text('layers'), integer(2), SETITEMS, BUILD];
  return pickle(2,
    EMPTY_DICT, MARK,
    text('model'), ...orderedDict(), MARK, ...model, SETITEMS,
    text('args'), ...args,
    text('extra'), EMPTY_LIST, MARK, integer(1), integer(2n ** 70n), NONE, ...tuple(4, 5), integer(6), integer(7), TUPLE2, APPENDS,
    SETITEMS,
  );
}

/** The storages' bytes, little-endian: key 0 float32 × 6, key 1 float16 × 4, key 2 float32 × 1. */
export const STORAGES: [string, Uint8Array][] = [
  ['0', new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer)],
  ['1', new Uint8Array(Uint16Array.from([0x3c00, 0x4000, 0xc000, 0x7e00]).buffer)],
  ['2', new Uint8Array(Float32Array.from([0.5]).buffer)],
];

/** The legacy format's leading pickles: the magic number, the protocol version and the system info. */
export function legacyHeaderPickles(): Uint8Array[] {
  const sysInfo = pickle(2, EMPTY_DICT, MARK, text('protocol_version'), integer(1001), text('little_endian'), NEWTRUE, text('type_sizes'), EMPTY_DICT, MARK, text('int'), integer(4), text('long'), integer(4), SETITEMS, SETITEMS);
  return [pickle(2, integer(0x1950a86a20f9469cfc6cn)), pickle(2, integer(1001)), sysInfo];
}

/** The legacy format's trailing storage list pickle. */
export function legacyKeysPickle(): Uint8Array {
  return pickle(2, EMPTY_LIST, MARK, ...STORAGES.map(([key]) => text(key)), APPENDS);
}

/** A legacy storage record: its element count (8 bytes, little-endian), then its bytes. */
export function legacyStorage(bytes: Uint8Array, elementSize: number): Uint8Array {
  const count = Buffer.alloc(8);
  count.writeBigInt64LE(BigInt(bytes.length / elementSize));
  return Uint8Array.from(Buffer.concat([count, bytes]));
}

export const STORAGE_ELEMENT_SIZES: Record<string, number> = { '0': 4, '1': 2, '2': 4 };
