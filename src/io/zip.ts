// A minimal, read-only zip reader for torch's checkpoint archives: torch writes every entry
// uncompressed ("stored"), aligns entry data with padding in the local headers' extra fields, and
// switches to zip64 records past 4 GiB. Only the central directory is read when opening; an
// entry's bytes are fetched when asked for. Everything a hostile archive could claim (entry
// counts, sizes, offsets) is checked against the file before anything is allocated for it.
// Compressed and encrypted entries are refused: torch never writes them.
import type { ByteSource } from './byte-source.js';
import { describeName } from './describe-value.js';

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY = 0x06064b50;
const CENTRAL_HEADER = 0x02014b50;
const LOCAL_HEADER = 0x04034b50;
const ZIP64_EXTRA = 0x0001;
/** The end record is 22 bytes followed by a comment of at most 65,535 bytes. */
const END_RECORD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const CENTRAL_HEADER_SIZE = 46;
const LOCAL_HEADER_SIZE = 30;

export interface ZipLimits {
  /** Largest central directory read into memory (default 256 MiB: millions of entries). */
  maxCentralDirectoryBytes: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxCentralDirectoryBytes: 256 * 2 ** 20 };

export interface ZipEntry {
  name: string;
  size: number;
  /** Where the entry's local header starts; its data follows the header's name and extra field. */
  localHeaderOffset: number;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A 64-bit little-endian field that must fit a JavaScript safe integer (no real file is 8 PiB). */
function uint64(data: DataView, offset: number, what: string, label: string): number {
  const value = data.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${label}: zip ${what} ${value} is out of range`);
  return Number(value);
}

interface Directory {
  entries: number;
  offset: number;
  size: number;
  /** Where the records after the central directory begin (its end must not pass them). */
  end: number;
}

export class ZipArchive {
  private readonly byName: ReadonlyMap<string, ZipEntry>;

  private constructor(
    readonly source: ByteSource,
    entries: ZipEntry[],
  ) {
    this.byName = new Map(entries.map((entry) => [entry.name, entry]));
  }

  /** Reads and checks the central directory of the archive in `source`. */
  static async open(source: ByteSource, limits: ZipLimits = DEFAULT_ZIP_LIMITS): Promise<ZipArchive> {
    const directory = await findDirectory(source);
    if (directory.size > limits.maxCentralDirectoryBytes) {
      throw new Error(`${source.label}: zip central directory of ${directory.size} bytes exceeds the limit of ${limits.maxCentralDirectoryBytes}`);
    }
    if (directory.entries * CENTRAL_HEADER_SIZE > directory.size) {
      throw new Error(`${source.label}: zip central directory of ${directory.size} bytes cannot hold the ${directory.entries} entries it claims`);
    }
    const bytes = await source.read(directory.offset, directory.size);
    return new ZipArchive(source, parseCentralDirectory(source, bytes, directory));
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** The absolute file offset of an entry's data, read from its local header. */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const label = `${this.source.label}: zip entry ${describeName(entry.name)}`;
    if (entry.localHeaderOffset + LOCAL_HEADER_SIZE > this.source.size) throw new Error(`${label}: local header lies past the end of the file`);
    const header = view(await this.source.read(entry.localHeaderOffset, LOCAL_HEADER_SIZE));
    if (header.getUint32(0, true) !== LOCAL_HEADER) throw new Error(`${label}: no local header at byte ${entry.localHeaderOffset}`);
    const start = entry.localHeaderOffset + LOCAL_HEADER_SIZE + header.getUint16(26, true) + header.getUint16(28, true);
    if (start + entry.size > this.source.size) {
      throw new Error(`${label}: its ${entry.size} bytes at ${start} run past the end of the ${this.source.size}-byte file (truncated?)`);
    }
    return start;
  }

  /** The whole entry in memory (for small entries such as a pickle). */
  async read(entry: ZipEntry): Promise<Uint8Array> {
    return this.source.read(await this.dataOffset(entry), entry.size);
  }
}

/** The end-of-central-directory record (and its zip64 form when the fields overflow). */
async function findDirectory(source: ByteSource): Promise<Directory> {
  const label = source.label;
  const tailLength = Math.min(source.size, END_RECORD_SIZE + MAX_COMMENT);
  const tailStart = source.size - tailLength;
  const tail = view(await source.read(tailStart, tailLength));
  // Scan backwards for a signature whose comment length reaches exactly to the end of the file, so
  // random bytes that happen to contain the signature are not taken for the record.
  let record = -1;
  for (let at = tailLength - END_RECORD_SIZE; at >= 0; at--) {
    if (tail.getUint32(at, true) === END_OF_CENTRAL_DIRECTORY && at + END_RECORD_SIZE + tail.getUint16(at + 20, true) === tailLength) {
      record = at;
      break;
    }
  }
  if (record < 0) throw new Error(`${label}: no zip end-of-central-directory record (the file is truncated, or not a zip archive)`);
  const recordStart = tailStart + record;
  const disk = tail.getUint16(record + 4, true);
  const entries16 = tail.getUint16(record + 10, true);
  const size32 = tail.getUint32(record + 12, true);
  const offset32 = tail.getUint32(record + 16, true);
  if (entries16 !== 0xffff && size32 !== 0xffffffff && offset32 !== 0xffffffff) {
    if (disk !== 0) throw new Error(`${label}: multi-disk zip archives are not supported`);
    return checkDirectory(label, { entries: entries16, size: size32, offset: offset32, end: recordStart });
  }
  const locatorAt = record - 20;
  if (locatorAt < 0 || tail.getUint32(locatorAt, true) !== ZIP64_LOCATOR) throw new Error(`${label}: zip64 fields without a zip64 locator (corrupt archive)`);
  const zip64At = uint64(tail, locatorAt + 8, 'zip64 record offset', label);
  if (zip64At + 56 > tailStart + locatorAt) throw new Error(`${label}: zip64 end record offset ${zip64At} is out of range`);
  const zip64 = view(await source.read(zip64At, 56));
  if (zip64.getUint32(0, true) !== ZIP64_END_OF_CENTRAL_DIRECTORY) throw new Error(`${label}: no zip64 end-of-central-directory record at byte ${zip64At}`);
  if (zip64.getUint32(16, true) !== 0) throw new Error(`${label}: multi-disk zip archives are not supported`);
  return checkDirectory(label, {
    entries: uint64(zip64, 32, 'entry count', label),
    size: uint64(zip64, 40, 'central directory size', label),
    offset: uint64(zip64, 48, 'central directory offset', label),
    end: zip64At,
  });
}

function checkDirectory(label: string, directory: Directory): Directory {
  if (directory.offset + directory.size > directory.end) {
    throw new Error(`${label}: zip central directory [${directory.offset}, ${directory.offset + directory.size}) overlaps its end record at ${directory.end} (corrupt or truncated)`);
  }
  return directory;
}

function parseCentralDirectory(source: ByteSource, bytes: Uint8Array, directory: Directory): ZipEntry[] {
  const label = source.label;
  const data = view(bytes);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries: ZipEntry[] = [];
  const seen = new Set<string>();
  let at = 0;
  for (let index = 0; index < directory.entries; index++) {
    const fail = (problem: string): never => {
      throw new Error(`${label}: zip central directory entry ${index}: ${problem}`);
    };
    if (at + CENTRAL_HEADER_SIZE > bytes.length || data.getUint32(at, true) !== CENTRAL_HEADER) fail('missing or cut short (corrupt archive)');
    const flags = data.getUint16(at + 8, true);
    const method = data.getUint16(at + 10, true);
    let compressed = data.getUint32(at + 20, true);
    let size = data.getUint32(at + 24, true);
    const nameLength = data.getUint16(at + 28, true);
    const extraLength = data.getUint16(at + 30, true);
    const commentLength = data.getUint16(at + 32, true);
    let localHeaderOffset = data.getUint32(at + 42, true);
    const nameStart = at + CENTRAL_HEADER_SIZE;
    const next = nameStart + nameLength + extraLength + commentLength;
    if (next > bytes.length) fail('runs past the end of the central directory');
    let name = '';
    try {
      name = decoder.decode(bytes.subarray(nameStart, nameStart + nameLength));
    } catch {
      fail('its name is not UTF-8');
    }
    const shown = describeName(name);
    // zip64 extended information holds, in this order, each 32-bit field that overflowed.
    const extra = view(bytes.subarray(nameStart + nameLength, nameStart + nameLength + extraLength));
    for (let field = 0; field + 4 <= extra.byteLength; ) {
      const id = extra.getUint16(field, true);
      const length = extra.getUint16(field + 2, true);
      if (field + 4 + length > extra.byteLength) fail(`${shown}: extra field runs past its end`);
      if (id === ZIP64_EXTRA) {
        let cursor = field + 4;
        const take = (): number => {
          if (cursor + 8 > field + 4 + length) fail(`${shown}: zip64 extra field too short`);
          const value = uint64(extra, cursor, `${shown} zip64 field`, label);
          cursor += 8;
          return value;
        };
        if (size === 0xffffffff) size = take();
        if (compressed === 0xffffffff) compressed = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      field += 4 + length;
    }
    if (flags & 1) fail(`${shown} is encrypted`);
    if (method !== 0) fail(`${shown} is compressed (method ${method}); torch checkpoints store entries uncompressed`);
    if (compressed !== size) fail(`${shown} is stored but its compressed size ${compressed} differs from its size ${size}`);
    if (localHeaderOffset + LOCAL_HEADER_SIZE + size > directory.offset) fail(`${shown}: its ${size} bytes at ${localHeaderOffset} run into the central directory`);
    if (seen.has(name)) fail(`${shown} appears twice`);
    seen.add(name);
    entries.push({ name, size, localHeaderOffset });
    at = next;
  }
  return entries;
}
