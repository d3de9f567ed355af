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
  /** CRC-32 of the uncompressed data, as the central directory records it. */
  crc32: number;
  /** Whether the entry is a symbolic link (Unix mode in the external attributes). */
  symlink: boolean;
}

// CRC-32 (IEEE 802.3, reflected, as zip uses), slicing-by-8. Hand-written: fflate keeps its CRC
// private and the platform has none; it is a few lines and checked against known values.
const CRC_TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k][n] = (t[0][t[k - 1][n] & 0xff] ^ (t[k - 1][n] >>> 8)) >>> 0;
  }
  return t;
})();

/**
 * CRC-32 of `bytes` (zip's checksum). Pass the previous result as `crc` to continue over
 * several chunks.
 *
 * @example
 * ```ts
 * crc32(new TextEncoder().encode("123456789")); // 0xcbf43926
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 8 <= n; i += 8) {
    c ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    c = t7[c & 0xff] ^ t6[(c >>> 8) & 0xff] ^ t5[(c >>> 16) & 0xff] ^ t4[c >>> 24] ^
      t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < n; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Largest deflate expansion accepted (deflate's own maximum is about 1032:1). */
const MAX_RATIO = 1100;

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
      const crc = v.getUint32(p + 16, true);
      const external = v.getUint32(p + 38, true);
      const madeBy = v.getUint16(p + 4, true) >>> 8;
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
      // Unix (3) and macOS (19) hosts keep the file mode in the high 16 bits.
      const symlink = (madeBy === 3 || madeBy === 19) &&
        ((external >>> 16) & 0o170000) === 0o120000;
      const entry = {
        name,
        method,
        compressedSize: csize,
        size: usize,
        localHeaderOffset: lho,
        crc32: crc,
        symlink,
      };
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

  /** Offset of an entry's data, after its local header (checked against the archive). */
  #dataOffset(name: string): { e: ZipEntry; dataOff: number } {
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
    if (e.method === 0 && e.size !== e.compressedSize) {
      this.#fail(`entry ${name}: stored entry with differing sizes`, e.localHeaderOffset);
    }
    // Deflate expands at most ~1032:1; a larger claim is a corrupt header, not a reason to allocate.
    if (e.method === 8 && e.size > e.compressedSize * MAX_RATIO + 1024) {
      this.#fail(
        `entry ${name}: implausible size ${e.size} for ${e.compressedSize} bytes`,
        dataOff,
      );
    }
    return { e, dataOff };
  }

  #checkCrc(e: ZipEntry, crc: number, dataOff: number): void {
    if (crc !== e.crc32) {
      this.#fail(
        `entry ${e.name}: CRC-32 mismatch (0x${crc.toString(16)}, directory says ` +
          `0x${e.crc32.toString(16)}): the archive is corrupt; download it again`,
        dataOff,
      );
    }
  }

  /**
   * Read and (if needed) inflate one entry, whole, checking its size and CRC-32. Throws naming
   * the file, entry and offset. For large entries prefer {@link ZipReader.chunks}.
   */
  read(name: string): Uint8Array {
    const { e, dataOff } = this.#dataOffset(name);
    const raw = this.#src.read(dataOff, e.compressedSize);
    if (e.method === 0) {
      this.#checkCrc(e, crc32(raw), dataOff);
      return raw;
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
    this.#checkCrc(e, crc32(got), dataOff);
    return got;
  }

  /**
   * Stream one entry's uncompressed bytes in chunks (never the whole entry in memory). Inflating
   * past the declared size stops at once (zip bombs); the size and CRC-32 are checked at the end,
   * so a consumer must treat the data as unverified until the iteration completes.
   */
  async *chunks(name: string, chunkSize = 1 << 16): AsyncGenerator<Uint8Array> {
    const { e, dataOff } = this.#dataOffset(name);
    const src = this.#src;
    let crc = 0;
    let total = 0;
    if (e.method === 0) {
      for (let o = 0; o < e.size; o += chunkSize) {
        const c = src.read(dataOff + o, Math.min(chunkSize, e.size - o)).slice();
        crc = crc32(c, crc);
        total += c.length;
        yield c;
      }
    } else {
      let o = 0;
      const input = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (o >= e.compressedSize) return ctl.close();
          const n = Math.min(chunkSize, e.compressedSize - o);
          ctl.enqueue(src.read(dataOff + o, n).slice());
          o += n;
        },
      });
      const out = input.pipeThrough(
        new DecompressionStream("deflate-raw") as unknown as TransformStream<
          Uint8Array,
          Uint8Array
        >,
      );
      const it = out[Symbol.asyncIterator]();
      try {
        while (true) {
          let r: IteratorResult<Uint8Array>;
          try {
            r = await it.next();
          } catch (err) {
            this.#fail(`entry ${name}: corrupt deflate data (${(err as Error).message})`, dataOff);
          }
          if (r.done) break;
          total += r.value.length;
          if (total > e.size) {
            this.#fail(
              `entry ${name}: inflates past its declared ${e.size} bytes (corrupt or a zip bomb)`,
              dataOff,
            );
          }
          crc = crc32(r.value, crc);
          yield r.value;
        }
      } finally {
        await it.return?.();
      }
    }
    if (total !== e.size) {
      this.#fail(`entry ${name}: inflated to ${total} bytes, expected ${e.size}`, dataOff);
    }
    this.#checkCrc(e, crc, dataOff);
  }

  /** Close the underlying source. */
  close(): void {
    this.#src.close();
  }
}
