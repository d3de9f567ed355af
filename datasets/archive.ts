/**
 * Safe archive extraction for dataset downloads: tar (plain or gzip, streamed; ustar, pax and GNU
 * long names), zip (entry by entry through `clip/formats/zip.ts`) and single-file `.gz`.
 *
 * Safety: entry names are normalised and must stay inside the destination (no absolute paths, no
 * `..`, no NUL); symbolic and hard links, devices and FIFOs are skipped and reported; the number of
 * entries, each entry's size and the total size are bounded; tar header checksums are verified.
 * Errors name the archive and the byte offset.
 *
 * @module
 */
import { fileSource, ZipReader } from "../clip/formats/zip.ts";

/** Limits and callbacks of the extractors. */
export interface ExtractOptions {
  /** Largest total extracted size, bytes (default 256 GiB). */
  maxTotalBytes?: number;
  /** Largest single entry, bytes (default 16 GiB). */
  maxEntryBytes?: number;
  /** Most entries (default 5,000,000). */
  maxEntries?: number;
  /** Called with the number of archive (compressed) bytes consumed so far. */
  onProgress?: (archiveBytesRead: number) => void;
}

/** What an extraction did. */
export interface ExtractResult {
  /** Regular files written. */
  files: number;
  /** Directories created from directory entries. */
  dirs: number;
  /** Bytes written. */
  bytes: number;
  /** Entries skipped (links, devices, …) as `"name (reason)"`. */
  skipped: string[];
}

/** Error for malformed or unsafe archives; names the archive and byte offset. */
export class ArchiveError extends Error {
  /** Build `"<archive>: <msg> (at byte <offset>)"`. */
  constructor(archive: string, offset: number, message: string) {
    super(`${archive}: ${message} (at byte ${offset})`);
    this.name = "ArchiveError";
  }
}

const DEFAULTS = {
  maxTotalBytes: 256 * 2 ** 30,
  maxEntryBytes: 16 * 2 ** 30,
  maxEntries: 5_000_000,
};

/**
 * Normalise an archive entry name to a safe relative path (`a/b/c`), or return null for the
 * archive root (`./`). Throws on absolute paths, `..` components, NUL bytes and backslashes that
 * would act as separators on Windows.
 */
export function safeEntryPath(name: string): string | null {
  if (name.includes("\0")) throw new Error(`entry name contains NUL: ${JSON.stringify(name)}`);
  if (name.includes("\\")) {
    throw new Error(`entry name contains a backslash: ${JSON.stringify(name)}`);
  }
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) {
    throw new Error(`absolute entry name: ${JSON.stringify(name)}`);
  }
  const parts: string[] = [];
  for (const p of name.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") throw new Error(`entry name escapes the destination: ${JSON.stringify(name)}`);
    parts.push(p);
  }
  return parts.length ? parts.join("/") : null;
}

/** Buffered reader over an async byte stream, tracking the offset consumed. */
class ChunkReader {
  #it: AsyncIterator<Uint8Array>;
  #cur: Uint8Array = new Uint8Array(0);
  #pos = 0;
  /** Bytes consumed so far. */
  offset = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#it = stream[Symbol.asyncIterator]();
  }

  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#cur.length) {
      const r = await this.#it.next();
      if (r.done) return false;
      this.#cur = r.value;
      this.#pos = 0;
    }
    return true;
  }

  /** Read up to `n` bytes (fewer only at end of stream). */
  async read(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n && await this.#fill()) {
      const take = Math.min(n - o, this.#cur.length - this.#pos);
      out.set(this.#cur.subarray(this.#pos, this.#pos + take), o);
      this.#pos += take;
      o += take;
    }
    this.offset += o;
    return o === n ? out : out.subarray(0, o);
  }

  /** Pass the next `n` bytes to `sink` chunk by chunk; returns how many were available. */
  async pipe(n: number, sink: (chunk: Uint8Array) => Promise<void>): Promise<number> {
    let o = 0;
    while (o < n && await this.#fill()) {
      const take = Math.min(n - o, this.#cur.length - this.#pos);
      await sink(this.#cur.subarray(this.#pos, this.#pos + take));
      this.#pos += take;
      o += take;
      this.offset += take;
    }
    return o;
  }

  /** Stop reading (releases the stream). */
  async cancel(): Promise<void> {
    await this.#it.return?.();
  }
}

function octal(h: Uint8Array, at: number, len: number): number {
  if (h[at] & 0x80) {
    // GNU base-256 for large sizes.
    let v = h[at] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + h[at + i];
    return v;
  }
  let s = "";
  for (let i = at; i < at + len; i++) {
    const c = h[i];
    if (c === 0 || c === 0x20) {
      if (s.length) break;
      continue;
    }
    if (c < 0x30 || c > 0x37) return NaN;
    s += String.fromCharCode(c);
  }
  return s.length ? parseInt(s, 8) : 0;
}

function cstr(h: Uint8Array, at: number, len: number): string {
  const sub = h.subarray(at, at + len);
  const z = sub.indexOf(0);
  return new TextDecoder().decode(z < 0 ? sub : sub.subarray(0, z));
}

function parsePax(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const text = new TextDecoder().decode(data);
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(" ", i);
    if (sp < 0) break;
    const len = parseInt(text.slice(i, sp), 10);
    if (!(len > 0)) break;
    const rec = text.slice(sp + 1, i + len - 1); // drop trailing \n
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

async function ensureDir(path: string, made: Set<string>): Promise<void> {
  if (made.has(path)) return;
  await Deno.mkdir(path, { recursive: true });
  made.add(path);
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * Extract a tar stream into `dest` (created if needed). `archiveName` is used in messages.
 * The stream must already be decompressed; see {@linkcode extractTarFile} for files.
 */
export async function extractTarStream(
  stream: ReadableStream<Uint8Array>,
  dest: string,
  archiveName: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const lim = { ...DEFAULTS, ...opts };
  const r = new ChunkReader(stream);
  const res: ExtractResult = { files: 0, dirs: 0, bytes: 0, skipped: [] };
  const made = new Set<string>();
  await ensureDir(dest, made);
  let longName: string | null = null;
  let pax = new Map<string, string>();
  let entries = 0;
  const fail: (off: number, msg: string) => never = (off, msg) => {
    throw new ArchiveError(archiveName, off, msg);
  };
  try {
    while (true) {
      const at = r.offset;
      const h = await r.read(512);
      if (h.length === 0) break; // EOF without end blocks: tolerated, like GNU tar
      if (h.length < 512) fail(at, "truncated tar header");
      if (h.every((b) => b === 0)) break; // end-of-archive block
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
      const stored = octal(h, 148, 8);
      if (stored !== sum) fail(at, `tar header checksum mismatch (not a tar file, or corrupt)`);
      const type = String.fromCharCode(h[156] || 0x30);
      let size = octal(h, 124, 12);
      if (!Number.isFinite(size) || size < 0) fail(at + 124, "bad size field in tar header");
      if (pax.has("size")) size = Number(pax.get("size"));
      if (++entries > lim.maxEntries) fail(at, `more than ${lim.maxEntries} entries`);
      if (size > lim.maxEntryBytes) fail(at, `entry of ${size} bytes exceeds the per-entry limit`);
      const padded = Math.ceil(size / 512) * 512;
      const dataAt = r.offset;

      // Metadata entries that modify the next header.
      if (type === "L" || type === "x" || type === "g" || type === "K") {
        if (size > 1 << 20) fail(at, `metadata entry of ${size} bytes is too large`);
        const data = await r.read(padded);
        if (data.length < padded) fail(dataAt + data.length, "truncated tar metadata entry");
        if (type === "L") longName = cstr(data, 0, size);
        else if (type === "x") pax = parsePax(data.subarray(0, size));
        continue;
      }

      let name = longName ?? pax.get("path") ?? (() => {
        const base = cstr(h, 0, 100);
        const magic = cstr(h, 257, 6);
        const prefix = magic.startsWith("ustar") ? cstr(h, 345, 155) : "";
        return prefix ? `${prefix}/${base}` : base;
      })();
      longName = null;
      pax = new Map();
      let rel: string | null;
      try {
        rel = safeEntryPath(name);
      } catch (e) {
        fail(at, (e as Error).message);
      }
      name = rel ?? ".";
      const target = rel === null ? dest : `${dest}/${rel}`;

      if (type === "0" || type === "7") {
        if (rel === null) fail(at, "regular file entry without a name");
        if (res.bytes + size > lim.maxTotalBytes) {
          fail(at, `extracted size would exceed the limit of ${lim.maxTotalBytes} bytes`);
        }
        await ensureDir(parentOf(target), made);
        const f = await Deno.open(target, { write: true, create: true, truncate: true });
        let got: number;
        try {
          got = await r.pipe(size, async (chunk) => {
            let w = 0;
            while (w < chunk.length) w += await f.write(chunk.subarray(w));
          });
        } finally {
          f.close();
        }
        if (got < size) fail(r.offset, `truncated tar entry ${name}: ${got} of ${size} bytes`);
        res.files++;
        res.bytes += size;
        const pad = padded - size;
        if (pad) {
          const p = await r.read(pad);
          if (p.length < pad) fail(r.offset, "truncated tar padding");
        }
      } else if (type === "5") {
        await ensureDir(target, made);
        res.dirs++;
        if (padded) await r.read(padded);
      } else {
        const why = type === "1"
          ? "hard link"
          : type === "2"
          ? "symbolic link"
          : type === "3" || type === "4"
          ? "device"
          : type === "6"
          ? "fifo"
          : `type ${JSON.stringify(type)}`;
        res.skipped.push(`${name} (${why})`);
        if (padded) {
          const got = await r.pipe(padded, () => Promise.resolve());
          if (got < padded) fail(r.offset, "truncated tar entry");
        }
      }
      opts.onProgress?.(r.offset);
    }
  } finally {
    await r.cancel();
  }
  return res;
}

/** Count bytes flowing through a stream, reporting the running total. */
function counting(onBytes: (n: number) => void): TransformStream<Uint8Array, Uint8Array> {
  let n = 0;
  return new TransformStream({
    transform(chunk, ctl) {
      n += chunk.length;
      onBytes(n);
      ctl.enqueue(chunk);
    },
  });
}

async function head(path: string, n: number): Promise<Uint8Array> {
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(n);
    const got = (await f.read(buf)) ?? 0;
    return buf.subarray(0, got);
  } finally {
    f.close();
  }
}

/** Whether bytes start with the gzip magic. */
export function isGzip(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/**
 * Extract a tar or tar.gz file (gzip detected from its magic) into `dest`, streaming: memory use
 * does not grow with the archive.
 */
export async function extractTarFile(
  path: string,
  dest: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const gz = isGzip(await head(path, 2));
  const file = await Deno.open(path, { read: true });
  let stream: ReadableStream<Uint8Array> = file.readable;
  if (opts.onProgress) stream = stream.pipeThrough(counting(opts.onProgress));
  if (gz) {
    stream = stream.pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    );
  }
  const inner = { ...opts, onProgress: undefined };
  try {
    return await extractTarStream(stream, dest, path, inner);
  } catch (e) {
    if (e instanceof ArchiveError) throw e;
    // Decompression errors surface from the stream.
    throw new ArchiveError(path, 0, `cannot read archive: ${(e as Error).message}`);
  }
}

/** Extract a zip file into `dest`, one entry at a time (through `clip/formats/zip.ts`). */
export async function extractZipFile(
  path: string,
  dest: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const lim = { ...DEFAULTS, ...opts };
  const src = fileSource(path);
  const res: ExtractResult = { files: 0, dirs: 0, bytes: 0, skipped: [] };
  const made = new Set<string>();
  try {
    let zip: ZipReader;
    try {
      zip = new ZipReader(src, path);
    } catch (e) {
      throw new ArchiveError(path, 0, (e as Error).message);
    }
    if (zip.entries.length > lim.maxEntries) {
      throw new ArchiveError(path, 0, `more than ${lim.maxEntries} entries`);
    }
    // Check every name and size before writing anything.
    let total = 0;
    const plan: { name: string; rel: string | null; dir: boolean }[] = [];
    for (const e of zip.entries) {
      let rel: string | null;
      try {
        rel = safeEntryPath(e.name);
      } catch (err) {
        throw new ArchiveError(path, e.localHeaderOffset, (err as Error).message);
      }
      if (e.size > lim.maxEntryBytes) {
        throw new ArchiveError(
          path,
          e.localHeaderOffset,
          `entry ${e.name} of ${e.size} bytes exceeds the per-entry limit`,
        );
      }
      total += e.size;
      if (total > lim.maxTotalBytes) {
        throw new ArchiveError(
          path,
          e.localHeaderOffset,
          `extracted size would exceed ${lim.maxTotalBytes} bytes`,
        );
      }
      plan.push({ name: e.name, rel, dir: e.name.endsWith("/") });
    }
    await ensureDir(dest, made);
    for (const p of plan) {
      if (p.rel === null) continue;
      const target = `${dest}/${p.rel}`;
      if (p.dir) {
        await ensureDir(target, made);
        res.dirs++;
        continue;
      }
      const entry = zip.entry(p.name)!;
      let data: Uint8Array;
      try {
        data = zip.read(p.name);
      } catch (err) {
        throw new ArchiveError(path, entry.localHeaderOffset, (err as Error).message);
      }
      if (data.length !== entry.size) {
        throw new ArchiveError(
          path,
          entry.localHeaderOffset,
          `entry ${p.name} inflated to ${data.length} bytes, directory says ${entry.size}`,
        );
      }
      await ensureDir(parentOf(target), made);
      await Deno.writeFile(target, data);
      res.files++;
      res.bytes += data.length;
      opts.onProgress?.(entry.localHeaderOffset + entry.compressedSize);
    }
  } finally {
    src.close();
  }
  return res;
}

/**
 * Decompress a single-file `.gz` to `destFile` (streaming), bounded by `maxTotalBytes`.
 */
export async function gunzipFile(
  path: string,
  destFile: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const lim = { ...DEFAULTS, ...opts };
  const file = await Deno.open(path, { read: true });
  let stream: ReadableStream<Uint8Array> = file.readable;
  if (opts.onProgress) stream = stream.pipeThrough(counting(opts.onProgress));
  stream = stream.pipeThrough(
    new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
  await Deno.mkdir(parentOf(destFile), { recursive: true });
  const out = await Deno.open(destFile, { write: true, create: true, truncate: true });
  let n = 0;
  try {
    for await (const chunk of stream) {
      n += chunk.length;
      if (n > lim.maxTotalBytes) {
        throw new ArchiveError(path, 0, `decompressed size exceeds ${lim.maxTotalBytes} bytes`);
      }
      let w = 0;
      while (w < chunk.length) w += await out.write(chunk.subarray(w));
    }
  } catch (e) {
    if (e instanceof ArchiveError) throw e;
    throw new ArchiveError(path, 0, `corrupt gzip stream: ${(e as Error).message}`);
  } finally {
    out.close();
  }
  return { files: 1, dirs: 0, bytes: n, skipped: [] };
}

/** Archive kinds {@linkcode extractArchive} handles. */
export type ArchiveKind = "tar" | "tar.gz" | "zip" | "gz";

/** Guess an archive's kind from its name (`.tar`, `.tar.gz`/`.tgz`, `.zip`, `.gz`). */
export function archiveKind(name: string): ArchiveKind | null {
  const n = name.toLowerCase();
  if (n.endsWith(".tar.gz") || n.endsWith(".tgz")) return "tar.gz";
  if (n.endsWith(".tar")) return "tar";
  if (n.endsWith(".zip")) return "zip";
  if (n.endsWith(".gz")) return "gz";
  return null;
}

/**
 * Extract `path` into the directory `dest` according to `kind` (default: from the file name).
 * A `.gz` that is not a tar becomes `dest/<name without .gz>`. Note the reference layouts: some
 * archives named `.tar` are in fact gzipped (ImageNet-A/R), which the tar path detects.
 */
export function extractArchive(
  path: string,
  dest: string,
  opts: ExtractOptions & { kind?: ArchiveKind } = {},
): Promise<ExtractResult> {
  const kind = opts.kind ?? archiveKind(path);
  switch (kind) {
    case "tar":
    case "tar.gz":
      return extractTarFile(path, dest, opts);
    case "zip":
      return extractZipFile(path, dest, opts);
    case "gz": {
      const base = path.slice(path.lastIndexOf("/") + 1).replace(/\.gz$/i, "");
      return gunzipFile(path, `${dest}/${base}`, opts);
    }
    default:
      return Promise.reject(
        new ArchiveError(
          path,
          0,
          "unknown archive type (expected .tar, .tar.gz, .tgz, .zip or .gz)",
        ),
      );
  }
}
