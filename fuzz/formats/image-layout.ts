// Where the fields and chunks of a PNG, JPEG, WebP or GIF file lie, so that mutations can hit the
// parts decoders trust: dimensions, bit depths, colour types, component and sampling counts, table
// selectors, code sizes, length fields, and whole chunks (removed, repeated, foreign ones added).
// `repair` puts back what would make a decoder stop before the damage (PNG CRCs, the RIFF size).
import { deflateSync } from 'node:zlib';
import type { Random } from '../random.js';

export interface Field {
  offset: number;
  width: 1 | 2 | 4;
  littleEndian: boolean;
  /** Values that mean something for this field (beyond the generic boundary integers). */
  values?: readonly number[];
}

/** A chunk, segment or block: its whole extent and the payload inside it. */
export interface Chunk {
  start: number;
  end: number;
  dataStart: number;
  dataEnd: number;
}

export interface ImageLayout {
  fields: Field[];
  chunks: Chunk[];
  /** Bytes for a chunk the format allows (or nearly), to be inserted between chunks. */
  foreignChunk(random: Random): Uint8Array;
  repair(bytes: Uint8Array): Uint8Array;
}

const DIMENSIONS = [0, 1, 2, 255, 256, 4096, 16383, 16384, 32767, 65535, 100_000, 0x7fffffff, 0x80000000, 0xffffffff];
const identity = (bytes: Uint8Array) => bytes;

// ---- PNG ----------------------------------------------------------------------------------------

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const PNG_TYPES = ['IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'gAMA', 'cHRM', 'sRGB', 'sBIT', 'bKGD', 'hIST', 'pHYs', 'sPLT', 'tIME', 'tEXt', 'eXIf', 'acTL', 'fcTL', 'fdAT', 'xYzA', 'XYZA'];

function pngLayout(bytes: Uint8Array): ImageLayout {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  const chunks: Chunk[] = [];
  for (let at = 8; at + 12 <= view.length; ) {
    const length = view.readUInt32BE(at);
    const type = view.toString('latin1', at + 4, at + 8);
    const end = at + 12 + length;
    if (end > view.length) break;
    fields.push({ offset: at, width: 4, littleEndian: false });
    if (type === 'IHDR') {
      const data = at + 8;
      fields.push(
        { offset: data, width: 4, littleEndian: false, values: DIMENSIONS },
        { offset: data + 4, width: 4, littleEndian: false, values: DIMENSIONS },
        { offset: data + 8, width: 1, littleEndian: false, values: [0, 1, 2, 4, 8, 16, 32] },
        { offset: data + 9, width: 1, littleEndian: false, values: [0, 1, 2, 3, 4, 5, 6, 7] },
        { offset: data + 10, width: 1, littleEndian: false, values: [0, 1] },
        { offset: data + 11, width: 1, littleEndian: false, values: [0, 1] },
        { offset: data + 12, width: 1, littleEndian: false, values: [0, 1, 2] },
      );
    }
    chunks.push({ start: at, end, dataStart: at + 8, dataEnd: at + 8 + length });
    at = end;
  }
  return {
    fields,
    chunks,
    foreignChunk: (random) => {
      const type = random.pick([...PNG_TYPES, 'iCCP', 'zTXt', 'iTXt']);
      // Compressed chunks hold a deflate stream that inflates far beyond its size.
      if (type === 'iCCP' || type === 'zTXt') return pngChunk(type, Buffer.concat([Buffer.from('name\0\0'), deflateSync(Buffer.alloc(random.size(24)))]));
      return pngChunk(type, random.bytes(random.size(10)));
    },
    repair: (damaged) => {
      const out = Buffer.from(damaged);
      for (let at = 8; at + 12 <= out.length; ) {
        const length = out.readUInt32BE(at);
        if (at + 12 + length > out.length) break;
        out.writeUInt32BE(crc32(out.subarray(at + 4, at + 8 + length)), at + 8 + length);
        at += 12 + length;
      }
      return Uint8Array.from(out);
    },
  };
}

// ---- JPEG ---------------------------------------------------------------------------------------

/** Markers without a length: SOI, EOI, RST0–7, TEM. */
const STANDALONE = new Set([0xd8, 0xd9, 0x01, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7]);

function jpegLayout(bytes: Uint8Array): ImageLayout {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  const chunks: Chunk[] = [];
  let at = 2;
  while (at + 4 <= view.length && view[at] === 0xff) {
    const marker = view[at + 1]!;
    if (STANDALONE.has(marker)) {
      at += 2;
      continue;
    }
    const length = view.readUInt16BE(at + 2);
    const data = at + 4;
    let end = at + 2 + length;
    if (end > view.length) break;
    fields.push({ offset: at + 2, width: 2, littleEndian: false });
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      // SOFn: precision, height, width, component count, then (id, sampling factors, quant table) each.
      fields.push(
        { offset: data, width: 1, littleEndian: false, values: [0, 8, 12, 16] },
        { offset: data + 1, width: 2, littleEndian: false, values: DIMENSIONS },
        { offset: data + 3, width: 2, littleEndian: false, values: DIMENSIONS },
        { offset: data + 5, width: 1, littleEndian: false, values: [0, 1, 3, 4, 5, 255] },
      );
      for (let c = data + 6; c + 3 <= end; c += 3) {
        fields.push({ offset: c + 1, width: 1, littleEndian: false, values: [0x00, 0x11, 0x12, 0x21, 0x22, 0x44, 0x41, 0xff] }, { offset: c + 2, width: 1, littleEndian: false, values: [0, 1, 3, 4, 255] });
      }
    } else if (marker === 0xda) {
      // SOS: component selectors and table selectors, spectral selection and approximation; the
      // entropy-coded data runs to the next marker that is not a stuffed byte or a restart.
      for (let c = data + 1; c + 2 <= end - 3; c += 2) fields.push({ offset: c + 1, width: 1, littleEndian: false, values: [0x00, 0x11, 0x44, 0xff] });
      fields.push({ offset: end - 3, width: 1, littleEndian: false, values: [0, 1, 63, 64, 255] }, { offset: end - 2, width: 1, littleEndian: false, values: [0, 63, 64, 255] });
      let scan = end;
      while (scan + 1 < view.length && !(view[scan] === 0xff && view[scan + 1] !== 0 && !(view[scan + 1]! >= 0xd0 && view[scan + 1]! <= 0xd7))) scan++;
      chunks.push({ start: end, end: scan, dataStart: end, dataEnd: scan });
      end = scan;
    } else if (marker === 0xdb || marker === 0xc4) {
      fields.push({ offset: data, width: 1, littleEndian: false, values: [0x00, 0x01, 0x04, 0x10, 0x13, 0xff] });
    } else if (marker === 0xdd) {
      fields.push({ offset: data, width: 2, littleEndian: false, values: [0, 1, 65535] });
    }
    chunks.push({ start: at, end: at + 2 + length, dataStart: data, dataEnd: at + 2 + length });
    at = end;
  }
  return {
    fields,
    chunks,
    foreignChunk: (random) => {
      const marker = random.pick([0xe0, 0xe1, 0xe2, 0xee, 0xfe, 0xdd, 0xc4, 0xdb, 0xc0, 0xc2, 0xda, 0xd0, 0xd9, 0xc8, 0xf7]);
      const payload = marker === 0xe1 ? Buffer.concat([Buffer.from('Exif\0\0II*\0'), random.bytes(random.size(8))]) : random.bytes(random.size(8));
      const out = Buffer.alloc(4 + payload.length);
      out.writeUInt16BE(0xff00 | marker, 0);
      out.writeUInt16BE((payload.length + 2) & 0xffff, 2);
      out.set(payload, 4);
      return out;
    },
    repair: identity,
  };
}

// ---- WebP (RIFF) --------------------------------------------------------------------------------

function webpLayout(bytes: Uint8Array): ImageLayout {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [{ offset: 4, width: 4, littleEndian: true }];
  const chunks: Chunk[] = [];
  for (let at = 12; at + 8 <= view.length; ) {
    const fourcc = view.toString('latin1', at, at + 4);
    const size = view.readUInt32LE(at + 4);
    const data = at + 8;
    const end = data + size + (size % 2);
    if (data + size > view.length) break;
    fields.push({ offset: at + 4, width: 4, littleEndian: true });
    if (fourcc === 'VP8X') {
      // Flags, then the canvas width − 1 and height − 1 as 24-bit integers (split into 16 + 8 bits here).
      fields.push(
        { offset: data, width: 1, littleEndian: true, values: [0, 0x02, 0x04, 0x08, 0x10, 0x20, 0x3e, 0xff] },
        { offset: data + 4, width: 2, littleEndian: true, values: DIMENSIONS },
        { offset: data + 6, width: 1, littleEndian: true, values: [0, 0xff] },
        { offset: data + 7, width: 2, littleEndian: true, values: DIMENSIONS },
        { offset: data + 9, width: 1, littleEndian: true, values: [0, 0xff] },
      );
    } else if (fourcc === 'VP8 ') {
      // Frame tag, then 14-bit width and height with 2 scale bits each.
      fields.push(
        { offset: data, width: 1, littleEndian: true, values: [0x00, 0x01, 0x10, 0x50, 0xff] },
        { offset: data + 6, width: 2, littleEndian: true, values: [0, 1, 0x3fff, 0x4001, 0xffff] },
        { offset: data + 8, width: 2, littleEndian: true, values: [0, 1, 0x3fff, 0x4001, 0xffff] },
      );
    } else if (fourcc === 'VP8L') {
      // Signature 0x2f, then width − 1 (14 bits), height − 1 (14 bits), alpha, version (3 bits).
      fields.push({ offset: data, width: 1, littleEndian: true, values: [0x2f, 0] }, { offset: data + 1, width: 4, littleEndian: true, values: [0, 0x0fffffff, 0xffffffff, 0x20000000] });
    }
    chunks.push({ start: at, end: Math.min(end, view.length), dataStart: data, dataEnd: data + size });
    at = end;
  }
  return {
    fields,
    chunks,
    foreignChunk: (random) => {
      const payload = random.bytes(random.size(9));
      const out = Buffer.alloc(8 + payload.length + (payload.length % 2));
      out.write(random.pick(['VP8X', 'VP8 ', 'VP8L', 'ALPH', 'ANIM', 'ANMF', 'ICCP', 'EXIF', 'XMP ', 'JUNK']), 0, 'latin1');
      out.writeUInt32LE(payload.length, 4);
      out.set(payload, 8);
      return out;
    },
    repair: (damaged) => {
      const out = Buffer.from(damaged);
      if (out.length >= 8) out.writeUInt32LE(out.length - 8, 4);
      return Uint8Array.from(out);
    },
  };
}

// ---- GIF ----------------------------------------------------------------------------------------

function gifLayout(bytes: Uint8Array): ImageLayout {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [
    { offset: 6, width: 2, littleEndian: true, values: DIMENSIONS },
    { offset: 8, width: 2, littleEndian: true, values: DIMENSIONS },
    { offset: 10, width: 1, littleEndian: true, values: [0x00, 0x80, 0x87, 0xf7, 0xff] },
  ];
  const chunks: Chunk[] = [];
  const table = (packed: number) => (packed & 0x80 ? 3 * 2 ** ((packed & 7) + 1) : 0);
  const subBlocks = (from: number): number => {
    let at = from;
    while (at < view.length && view[at] !== 0) {
      fields.push({ offset: at, width: 1, littleEndian: true, values: [0, 1, 255] });
      at += 1 + view[at]!;
    }
    return at + 1;
  };
  let at = 13 + table(view[10] ?? 0);
  while (at < view.length && view[at] !== 0x3b) {
    const start = at;
    if (view[at] === 0x21) at = subBlocks(at + 2);
    else if (view[at] === 0x2c && at + 10 <= view.length) {
      for (const offset of [1, 3, 5, 7]) fields.push({ offset: at + offset, width: 2, littleEndian: true, values: DIMENSIONS });
      fields.push({ offset: at + 9, width: 1, littleEndian: true, values: [0x00, 0x40, 0x80, 0x87, 0xff] });
      at += 10 + table(view[at + 9]!);
      fields.push({ offset: at, width: 1, littleEndian: true, values: [0, 1, 2, 8, 11, 12, 13, 255] });
      at = subBlocks(at + 1);
    } else break;
    chunks.push({ start, end: Math.min(at, view.length), dataStart: start, dataEnd: Math.min(at, view.length) });
  }
  return {
    fields: fields.filter((field) => field.offset + field.width <= view.length),
    chunks,
    foreignChunk: (random) => {
      const data = random.bytes(random.size(8));
      const blocks: number[] = [];
      for (let i = 0; i < data.length; i += 255) blocks.push(Math.min(255, data.length - i), ...data.subarray(i, i + 255));
      const head = random.pick([[0x21, 0xf9, 4, 1, 0, 0, 0xff, 0], [0x21, 0xfe], [0x21, 0xff, 11, ...Buffer.from('NETSCAPE2.0')], [0x21, 0x01], [0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 8]]);
      return Uint8Array.from([...head, ...blocks, 0]);
    },
    repair: identity,
  };
}

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif';

export const imageLayouts: Record<ImageFormat, (bytes: Uint8Array) => ImageLayout> = { png: pngLayout, jpeg: jpegLayout, webp: webpLayout, gif: gifLayout };
