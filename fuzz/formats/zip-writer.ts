// Writes "stored" zip archives as torch.save does (entry data aligned to 64 bytes by padding in the
// local headers' extra fields; zip64 records when asked), and records where every header field
// lies, so mutations can set one field of the central directory, a local header or the end record
// to a value that disagrees with the rest.
import type { Field } from './image-layout.js';

export interface ZipEntrySpec {
  name: string | Uint8Array;
  data: Uint8Array;
  /** Compression method and flags as written (torch writes 0 and 0; anything else must be refused). */
  method?: number;
  flags?: number;
}

export interface WrittenZip {
  bytes: Uint8Array;
  /** Every integer field of the local headers, the central directory and the end records. */
  fields: Field[];
}

const ALIGNMENT = 64;

/** Appends little-endian integer fields and raw bytes, remembering where each integer went. */
class Writer {
  readonly parts: Buffer[] = [];
  readonly fields: Field[] = [];
  length = 0;

  integer(width: 2 | 4 | 8, value: number | bigint): this {
    // Values too wide for their field wrap around (a comment over 64 KiB gets a lying length).
    const part = Buffer.alloc(width);
    const bits = BigInt.asUintN(width * 8, BigInt(value));
    if (width === 2) part.writeUInt16LE(Number(bits));
    else if (width === 4) part.writeUInt32LE(Number(bits));
    else part.writeBigUInt64LE(bits);
    // 64-bit fields are mutated through their low and high halves.
    if (width === 8) this.fields.push({ offset: this.length, width: 4, littleEndian: true }, { offset: this.length + 4, width: 4, littleEndian: true });
    else this.fields.push({ offset: this.length, width, littleEndian: true });
    return this.raw(part);
  }

  raw(bytes: Uint8Array): this {
    this.parts.push(Buffer.from(bytes));
    this.length += bytes.length;
    return this;
  }
}

export function writeZip(entries: readonly ZipEntrySpec[], options: { zip64?: boolean; comment?: Uint8Array } = {}): WrittenZip {
  const out = new Writer();
  const central = new Writer();
  const zip64 = options.zip64 ?? false;
  for (const entry of entries) {
    const name = typeof entry.name === 'string' ? Buffer.from(entry.name, 'utf8') : Buffer.from(entry.name);
    const offset = out.length;
    const padding = (ALIGNMENT - ((offset + 30 + name.length + 4) % ALIGNMENT)) % ALIGNMENT;
    const extra = Buffer.alloc(4 + padding);
    extra.writeUInt16LE(0x4246, 0); // torch's padding record id ("FB")
    extra.writeUInt16LE(padding, 2);
    out.integer(4, 0x04034b50).integer(2, 20).integer(2, entry.flags ?? 0).integer(2, entry.method ?? 0).integer(2, 0).integer(2, 0x21);
    out.integer(4, 0).integer(4, entry.data.length).integer(4, entry.data.length).integer(2, name.length).integer(2, extra.length);
    out.raw(name).raw(extra).raw(entry.data);
    const wide = zip64 ? 0xffffffff : undefined;
    const zip64Extra = zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (zip64) {
      zip64Extra.writeUInt16LE(0x0001, 0);
      zip64Extra.writeUInt16LE(24, 2);
      zip64Extra.writeBigUInt64LE(BigInt(entry.data.length), 4);
      zip64Extra.writeBigUInt64LE(BigInt(entry.data.length), 12);
      zip64Extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    central.integer(4, 0x02014b50).integer(2, 0x031e).integer(2, 20).integer(2, entry.flags ?? 0).integer(2, entry.method ?? 0).integer(2, 0).integer(2, 0x21);
    central.integer(4, 0).integer(4, wide ?? entry.data.length).integer(4, wide ?? entry.data.length).integer(2, name.length).integer(2, zip64Extra.length).integer(2, 0);
    central.integer(2, 0).integer(2, 0).integer(4, 0).integer(4, wide ?? offset).raw(name);
    if (zip64) {
      central.fields.push(...[4, 12, 20].map((at) => ({ offset: central.length + at, width: 4 as const, littleEndian: true })));
      central.raw(zip64Extra);
    }
  }
  const directoryOffset = out.length;
  for (const field of central.fields) out.fields.push({ ...field, offset: field.offset + directoryOffset });
  out.raw(Buffer.concat(central.parts));
  const comment = options.comment ?? new Uint8Array(0);
  if (zip64) {
    const recordOffset = out.length;
    out.integer(4, 0x06064b50).integer(8, 44).integer(2, 0x031e).integer(2, 45).integer(4, 0).integer(4, 0);
    out.integer(8, entries.length).integer(8, entries.length).integer(8, central.length).integer(8, directoryOffset);
    out.integer(4, 0x07064b50).integer(4, 0).integer(8, recordOffset).integer(4, 1);
  }
  out.integer(4, 0x06054b50).integer(2, 0).integer(2, 0).integer(2, zip64 ? 0xffff : entries.length).integer(2, zip64 ? 0xffff : entries.length);
  out.integer(4, zip64 ? 0xffffffff : central.length).integer(4, zip64 ? 0xffffffff : directoryOffset).integer(2, comment.length).raw(comment);
  return { bytes: Uint8Array.from(Buffer.concat(out.parts)), fields: out.fields };
}
