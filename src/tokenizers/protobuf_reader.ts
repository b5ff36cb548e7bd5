// A minimal protobuf wire-format reader: enough to walk a message's fields (varints, 32/64-bit
// fixed values, length-delimited bytes) and skip the ones a caller does not know. Field numbers and
// meanings belong to the caller (see sentencepiece.ts for SentencePiece's ModelProto).

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

export type ProtoField =
  | { field: number; wire: typeof WIRE_VARINT; value: bigint }
  | { field: number; wire: typeof WIRE_FIXED64; value: DataView }
  | { field: number; wire: typeof WIRE_LENGTH_DELIMITED; value: Uint8Array }
  | { field: number; wire: typeof WIRE_FIXED32; value: DataView };

const textDecoder = new TextDecoder('utf-8', { fatal: true });

export class ProtoReader {
  private position = 0;

  constructor(
    private readonly bytes: Uint8Array,
    /** Names the message in errors ("ModelProto.pieces[3]"). */
    private readonly where: string,
  ) {}

  private fail(message: string): never {
    throw new Error(`${this.where}: ${message} at byte ${this.position}`);
  }

  private varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.position >= this.bytes.length) this.fail('truncated varint');
      const byte = this.bytes[this.position++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return BigInt.asUintN(64, result);
    }
    this.fail('varint longer than 10 bytes');
  }

  private take(length: number): Uint8Array {
    if (length < 0 || this.position + length > this.bytes.length) this.fail(`field of ${length} bytes runs past the end (${this.bytes.length} bytes)`);
    const view = this.bytes.subarray(this.position, this.position + length);
    this.position += length;
    return view;
  }

  /** Every field of the message, in wire order. */
  *fields(): Generator<ProtoField> {
    while (this.position < this.bytes.length) {
      const key = this.varint();
      const field = Number(key >> 3n);
      const wire = Number(key & 7n);
      if (field === 0) this.fail('field number 0');
      switch (wire) {
        case WIRE_VARINT:
          yield { field, wire, value: this.varint() };
          break;
        case WIRE_FIXED64: {
          const bytes = this.take(8);
          yield { field, wire, value: new DataView(bytes.buffer, bytes.byteOffset, 8) };
          break;
        }
        case WIRE_LENGTH_DELIMITED: {
          const length = this.varint();
          if (length > BigInt(this.bytes.length)) this.fail(`field of ${length} bytes runs past the end (${this.bytes.length} bytes)`);
          yield { field, wire, value: this.take(Number(length)) };
          break;
        }
        case WIRE_FIXED32: {
          const bytes = this.take(4);
          yield { field, wire, value: new DataView(bytes.buffer, bytes.byteOffset, 4) };
          break;
        }
        default:
          this.fail(`unsupported wire type ${wire} (field ${field})`);
      }
    }
  }
}

type WireValue = { [WIRE_VARINT]: bigint; [WIRE_FIXED64]: DataView; [WIRE_LENGTH_DELIMITED]: Uint8Array; [WIRE_FIXED32]: DataView };

/** A field's value if it has the expected wire type; the error names the field otherwise. */
export function expectWire<W extends ProtoField['wire']>(entry: ProtoField, wire: W, name: string): WireValue[W] {
  if (entry.wire !== wire) throw new Error(`${name}: wire type ${entry.wire}, expected ${wire}`);
  return entry.value as WireValue[W];
}

export function protoString(entry: ProtoField, name: string): string {
  const bytes = expectWire(entry, WIRE_LENGTH_DELIMITED, name);
  try {
    return textDecoder.decode(bytes);
  } catch (error) {
    throw new Error(`${name}: not valid UTF-8 (${(error as Error).message})`);
  }
}

export function protoFloat(entry: ProtoField, name: string): number {
  return expectWire(entry, WIRE_FIXED32, name).getFloat32(0, true);
}

/** int32/enum/bool varint; negative int32 values arrive as 64-bit two's complement. */
export function protoInt(entry: ProtoField, name: string): number {
  return Number(BigInt.asIntN(64, expectWire(entry, WIRE_VARINT, name)));
}
