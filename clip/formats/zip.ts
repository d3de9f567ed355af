/**
 * A bounded, read-only zip reader for checkpoint archives (TorchScript `.pt`, `torch.save` zips).
 *
 * Reads the central directory (zip64 included), then reads entries on demand from a
 * {@link ByteSource} — a whole file in memory or an open file read by offset, so a 1 GiB
 * checkpoint is never copied whole. Stored and deflated entries are supported. Every size and
 * offset is checked against the source; errors name the file and the byte offset.
 *
 * @module
 */
import { inflateSync } from "fflate";

/** Random-access bytes: an in-memory buffer or an open file. */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Read exactly `length` bytes at `offset` (the caller guarantees the range lies inside). */
  read(offset: number, length: number): Uint8Array;
  /** Release the underlying file, if any. */
  close(): void;
}

/** A {@link ByteSource} over bytes already in memory. */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (offset, length) => bytes.subarray(offset, offset + length),
    close: () => {},
  };
}

/** A {@link ByteSource} reading an open file by offset (synchronous, bounded reads). */
export function fileSource(path: string): ByteSource {
  const file = Deno.openSync(path, { read: true });
  const size = file.statSync().size;
  return {
    size,
    read(offset, length) {
      const out = new Uint8Array(length);
      file.seekSync(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < length) {
        const n = file.readSync(out.subarray(got));
        if (n === null || n === 0) {
          throw new Error(`${path}: unexpected end of file at offset ${offset + got}`);
        }
        got += n;
      }
      return out;
    },
    close: () => file.close(),
  };
}

/** One entry of the central directory. */
export interface ZipEntry {
  /** Entry name (path inside the archive, `/`-separated). */
  name: string;
  /** Compression method: 0 stored, 8 deflate. */
  method: number;
  /** Compressed size in bytes. */
  compressedSize: number;
  /** Uncompressed size in bytes. */
  size: number;
  /** Offset of the local file header. */
  localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD64_SIG = 0x06064b50;
const EOCD64_LOC_SIG = 0x07064b50;
const CDH_SIG = 0x02014b50;
const LFH_SIG = 0x04034b50;
/** Most entries a central directory may list (bounds memory on hostile input). */
const MAX_ENTRIES = 1_000_000;

/** Whether the bytes start with a zip local-file-header (or empty-archive) signature. */
export function isZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b &&
    ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6));
}

/** Reads the entries of a zip archive from a {@link ByteSource}. */
export class ZipReader {
  /** Entries in central-directory order. */
  readonly entries: ZipEntry[] = [];
  readonly #byName = new Map<string, ZipEntry>();
  readonly #src: ByteSource;
  readonly #file: string;

  /**
   * Parse the central directory.
   * @param src the archive bytes
   * @param fileName used in error messages
   */
  constructor(src: ByteSource, fileName: string) {
    this.#src = src;
    this.#file = fileName;
    this.#readDirectory();
  }

  #fail(msg: string, offset: number): never {
    throw new Error(`${this.#file}: zip: ${msg} at offset ${offset}`);
  }

  #view(offset: number, length: number): DataView {
    if (offset < 0 || length < 0 || offset + length > this.#src.size) {
      this.#fail(`truncated (need ${length} bytes, file has ${this.#src.size})`, offset);
    }
    const b = this.#src.read(offset, length);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  #u64(v: DataView, at: number, where: number): number {
    const x = v.getBigUint64(at, true);
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) this.#fail("64-bit value out of range", where + at);
    return Number(x);
  }

  #readDirectory(): void {
    const size = this.#src.size;
    if (size < 22) this.#fail("file too small for a zip archive", 0);
    // The end-of-central-directory record lies in the last 22 + 65535 bytes.
    const tailLen = Math.min(size, 22 + 0xffff);
    const tailStart = size - tailLen;
    const tail = this.#src.read(tailStart, tailLen);
    const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === EOCD_SIG) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) this.#fail("end of central directory not found (truncated archive?)", size);
    const eocdOff = tailStart + eocd;
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOff = tv.getUint32(eocd + 16, true);
    if (count === 0xffff || cdSize === 0xffffffff || cdOff === 0xffffffff) {
      const locOff = eocdOff - 20;
      const loc = this.#view(locOff, 20);
      if (loc.getUint32(0, true) !== EOCD64_LOC_SIG) this.#fail("zip64 locator missing", locOff);
      const e64Off = this.#u64(loc, 8, locOff);
      const e64 = this.#view(e64Off, 56);
      if (e64.getUint32(0, true) !== EOCD64_SIG) this.#fail("bad zip64 end record", e64Off);
      count = this.#u64(e64, 32, e64Off);
      cdSize = this.#u64(e64, 40, e64Off);
      cdOff = this.#u64(e64, 48, e64Off);
    }
    if (count > MAX_ENTRIES) this.#fail(`too many entries (${count})`, eocdOff);
    if (cdOff + cdSize > size) {
      this.#fail(`central directory (${cdSize} bytes at ${cdOff}) beyond end of file`, eocdOff);
    }
    const cd = this.#src.read(cdOff, cdSize);
    const v = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const dec = new TextDecoder("utf-8", { fatal: false });
    let p = 0;
    for (let i = 0; i < count; i++) {
      const at = cdOff + p;
      if (p + 46 > cdSize) this.#fail("central directory truncated", at);
      if (v.getUint32(p, true) !== CDH_SIG) this.#fail("bad central directory signature", at);
      const method = v.getUint16(p + 10, true);
      let csize = v.getUint32(p + 20, true);
      let usize = v.getUint32(p + 24, true);
      const nameLen = v.getUint16(p + 28, true);
      const extraLen = v.getUint16(p + 30, true);
      const commentLen = v.getUint16(p + 32, true);
      let lho = v.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) {
        this.#fail("central directory entry overruns the directory", at);
      }
      const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // zip64 extended information extra field (id 1): present values in fixed order.
      let q = p + 46 + nameLen;
      const extraEnd = q + extraLen;
      while (q + 4 <= extraEnd) {
        const id = v.getUint16(q, true);
        const len = v.getUint16(q + 2, true);
        if (q + 4 + len > extraEnd) this.#fail("extra field overruns its entry", cdOff + q);
        if (id === 1) {
          let r = q + 4;
          const take = (): number => {
            if (r + 8 > q + 4 + len) this.#fail("zip64 extra field too short", cdOff + r);
            const x = this.#u64(v, r, cdOff);
            r += 8;
            return x;
          };
          if (usize === 0xffffffff) usize = take();
          if (csize === 0xffffffff) csize = take();
          if (lho === 0xffffffff) lho = take();
        }
        q += 4 + len;
      }
      if (method !== 0 && method !== 8) {
        this.#fail(`entry ${name}: unsupported compression method ${method}`, at);
      }
      if (lho + 30 > size || lho + csize > size) {
        this.#fail(`entry ${name}: data (${csize} bytes at ${lho}) beyond end of file`, at);
      }
      const entry = { name, method, compressedSize: csize, size: usize, localHeaderOffset: lho };
      this.entries.push(entry);
      this.#byName.set(name, entry);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** Whether an entry of that name exists. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The entry of that name, or undefined. */
  entry(name: string): ZipEntry | undefined {
    return this.#byName.get(name);
  }

  /** Read and (if needed) inflate one entry. Throws naming the file, entry and offset. */
  read(name: string): Uint8Array {
    const e = this.#byName.get(name);
    if (!e) throw new Error(`${this.#file}: zip: no entry ${name}`);
    const h = this.#view(e.localHeaderOffset, 30);
    if (h.getUint32(0, true) !== LFH_SIG) {
      this.#fail(`entry ${name}: bad local header signature`, e.localHeaderOffset);
    }
    const dataOff = e.localHeaderOffset + 30 + h.getUint16(26, true) + h.getUint16(28, true);
    if (dataOff + e.compressedSize > this.#src.size) {
      this.#fail(
        `entry ${name}: data (${e.compressedSize} bytes) beyond end of file (truncated?)`,
        dataOff,
      );
    }
    const raw = this.#src.read(dataOff, e.compressedSize);
    if (e.method === 0) {
      if (e.size !== e.compressedSize) {
        this.#fail(`entry ${name}: stored entry with differing sizes`, e.localHeaderOffset);
      }
      return raw;
    }
    // Deflate expands at most ~1032:1; a larger claim is a corrupt header, not a reason to allocate.
    if (e.size > e.compressedSize * 1100 + 1024) {
      this.#fail(
        `entry ${name}: implausible size ${e.size} for ${e.compressedSize} bytes`,
        dataOff,
      );
    }
    const out = new Uint8Array(e.size);
    let got: Uint8Array;
    try {
      got = inflateSync(raw, { out });
    } catch (err) {
      this.#fail(`entry ${name}: corrupt deflate data (${(err as Error).message})`, dataOff);
    }
    if (got.length !== e.size) {
      this.#fail(`entry ${name}: inflated to ${got.length} bytes, expected ${e.size}`, dataOff);
    }
    return got;
  }

  /** Close the underlying source. */
  close(): void {
    this.#src.close();
  }
}
