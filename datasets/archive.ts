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

/** Parse pax records (`"<len> <key>=<value>\n"`, `len` counting bytes); throws on malformed ones. */
function parsePax(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const dec = new TextDecoder("utf-8", { fatal: true });
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break; // NUL padding after the last record
    const sp = data.indexOf(0x20, i);
    const digits = sp < 0 ? "" : dec.decode(data.subarray(i, sp));
    if (!/^\d{1,9}$/.test(digits)) throw new Error(`malformed pax record at byte ${i}`);
    const len = Number(digits);
    if (len <= sp - i + 1 || i + len > data.length || data[i + len - 1] !== 0x0a) {
      throw new Error(`pax record length ${len} does not fit at byte ${i}`);
    }
    let rec: string;
    try {
      rec = dec.decode(data.subarray(sp + 1, i + len - 1));
    } catch {
      throw new Error(`pax record at byte ${i} is not UTF-8`);
    }
    const eq = rec.indexOf("=");
    if (eq <= 0) throw new Error(`pax record at byte ${i} has no key=value`);
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/**
 * What one extraction created, so that a failed extraction removes it again (no partial output):
 * directories it made (shallowest first) and files it finished. Files are written under a
 * temporary name and renamed when complete, so a failure never leaves a half-written file.
 */
class Created {
  /** Directories made by this extraction, shallowest first. */
  readonly dirs: string[] = [];
  /** Files written by this extraction (renamed into place). */
  readonly files: string[] = [];
  /** Directories known to exist. */
  readonly made = new Set<string>();

  /** Remove what was created (files, then directories deepest first); errors are ignored. */
  async rollback(): Promise<void> {
    for (const f of this.files.reverse()) await Deno.remove(f).catch(() => {});
    for (const d of this.dirs.reverse()) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.lstat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function ensureDir(path: string, c: Created): Promise<void> {
  if (c.made.has(path)) return;
  const missing: string[] = [];
  for (let p = path; p && p !== "/" && p !== "." && !(await isDir(p)); p = parentOf(p)) {
    missing.push(p);
  }
  await Deno.mkdir(path, { recursive: true });
  c.dirs.push(...missing.reverse());
  c.made.add(path);
}

/** Write `chunks` to `target` through a temporary file renamed into place when complete. */
async function writeEntry(
  target: string,
  chunks: AsyncIterable<Uint8Array>,
  c: Created,
): Promise<number> {
  const tmp = `${target}.partial-${crypto.randomUUID().slice(0, 8)}`;
  const f = await Deno.open(tmp, { write: true, createNew: true });
  let n = 0;
  try {
    for await (const chunk of chunks) {
      let w = 0;
      while (w < chunk.length) w += await f.write(chunk.subarray(w));
      n += chunk.length;
    }
  } catch (e) {
    f.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  f.close();
  try {
    await Deno.rename(tmp, target);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  c.files.push(target);
  return n;
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
  const made = new Created();
  let ok = false;
  let longName: string | null = null;
  let pax = new Map<string, string>();
  let entries = 0;
  const fail: (off: number, msg: string) => never = (off, msg) => {
    throw new ArchiveError(archiveName, off, msg);
  };
  try {
    await ensureDir(dest, made);
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
      if (pax.has("size")) {
        const v = pax.get("size")!;
        if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) {
          fail(
            at,
            `bad pax size ${JSON.stringify(v.slice(0, 40))} (expected a decimal byte count)`,
          );
        }
        size = Number(v);
      }
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
        else if (type === "x") {
          try {
            pax = parsePax(data.subarray(0, size));
          } catch (e) {
            fail(dataAt, (e as Error).message);
          }
        }
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
        let got = 0;
        const entryAt = r.offset;
        const data = async function* (): AsyncGenerator<Uint8Array> {
          // r.pipe hands chunks to a callback; buffer one chunk at a time for the generator.
          let left = size;
          while (left > 0) {
            const c = await r.read(Math.min(left, 1 << 20));
            if (c.length === 0) break;
            got += c.length;
            left -= c.length;
            yield c;
          }
          if (got < size) fail(r.offset, `truncated tar entry ${name}: ${got} of ${size} bytes`);
        };
        try {
          await ensureDir(parentOf(target), made);
          await writeEntry(target, data(), made);
        } catch (e) {
          if (e instanceof ArchiveError) throw e;
          fail(entryAt, `cannot write entry ${name}: ${(e as Error).message}`);
        }
        res.files++;
        res.bytes += size;
        const pad = padded - size;
        if (pad) {
          const p = await r.read(pad);
          if (p.length < pad) fail(r.offset, "truncated tar padding");
        }
      } else if (type === "5") {
        try {
          await ensureDir(target, made);
        } catch (e) {
          fail(at, `cannot create directory ${name}: ${(e as Error).message}`);
        }
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
    ok = true;
  } finally {
    await r.cancel();
    if (!ok) await made.rollback();
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

/**
 * Extract a zip file into `dest`, one entry at a time, streaming (no entry is held whole in
 * memory), each entry's size and CRC-32 checked. Symbolic links are skipped and reported. On
 * any error, what this call created is removed again.
 */
export async function extractZipFile(
  path: string,
  dest: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const lim = { ...DEFAULTS, ...opts };
  let src;
  try {
    src = fileSource(path);
  } catch (e) {
    throw new ArchiveError(path, 0, `cannot open archive: ${(e as Error).message}`);
  }
  const res: ExtractResult = { files: 0, dirs: 0, bytes: 0, skipped: [] };
  const made = new Created();
  let ok = false;
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
      if (e.symlink) {
        res.skipped.push(`${rel ?? e.name} (symbolic link)`);
        continue;
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
      const entry = zip.entry(p.name)!;
      try {
        if (p.dir) {
          await ensureDir(target, made);
          res.dirs++;
          continue;
        }
        await ensureDir(parentOf(target), made);
        res.bytes += await writeEntry(target, zip.chunks(p.name), made);
        res.files++;
      } catch (err) {
        const msg = (err as Error).message;
        // ZipReader errors already name the archive; file-system errors name the entry.
        throw new ArchiveError(
          path,
          entry.localHeaderOffset,
          msg.startsWith(`${path}: `)
            ? msg.slice(path.length + 2)
            : `cannot write entry ${p.name}: ${msg}`,
        );
      }
      opts.onProgress?.(entry.localHeaderOffset + entry.compressedSize);
    }
    ok = true;
  } finally {
    src.close();
    if (!ok) await made.rollback();
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
  const made = new Created();
  let n = 0;
  try {
    await ensureDir(parentOf(destFile), made);
    const counted = async function* (): AsyncGenerator<Uint8Array> {
      for await (const chunk of stream) {
        n += chunk.length;
        if (n > lim.maxTotalBytes) {
          throw new ArchiveError(path, 0, `decompressed size exceeds ${lim.maxTotalBytes} bytes`);
        }
        yield chunk;
      }
    };
    await writeEntry(destFile, counted(), made);
  } catch (e) {
    await made.rollback();
    if (e instanceof ArchiveError) throw e;
    throw new ArchiveError(path, 0, `corrupt gzip stream: ${(e as Error).message}`);
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
