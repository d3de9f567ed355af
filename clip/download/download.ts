/**
 * Resumable, verified downloads into the cache.
 *
 * `downloadFile` streams into `dest + ".part"`, hashing as it goes (node:crypto sha256), resumes a
 * partial file with an HTTP `Range` request (restarting from zero when the server ignores it),
 * retries interrupted transfers, verifies the sha256 and renames atomically. `cachedDownload`
 * returns the cached copy when its hash matches; offline, its error says which file to put where.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { cacheDir as resolveCacheDir } from "./cache.ts";
import { ProgressBar } from "./progress.ts";

/** Options of {@link downloadFile}. */
export interface DownloadOptions {
  /** Expected sha256 (hex). A mismatch deletes the download and throws. */
  sha256?: string;
  /** Show a progress bar on stderr (default true). */
  progress?: boolean;
  /** Abort the transfer. */
  signal?: AbortSignal;
  /** Attempts after an interrupted transfer (default 3). */
  retries?: number;
  /** Milliseconds before a retry (default 1000, doubled each time). */
  retryDelayMs?: number;
  /** The fetch to use (default global `fetch`), for tests and proxies. */
  fetch?: typeof fetch;
}

async function hashFile(path: string, h: Hash): Promise<number> {
  const f = await Deno.open(path, { read: true });
  let total = 0;
  try {
    const buf = new Uint8Array(1 << 20);
    while (true) {
      const n = await f.read(buf);
      if (n === null) break;
      h.update(buf.subarray(0, n));
      total += n;
    }
  } finally {
    f.close();
  }
  return total;
}

/** sha256 (hex) of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  await hashFile(path, h);
  return h.digest("hex");
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return -1;
  }
}

/** One transfer attempt: returns true when the body was received completely. */
async function attempt(
  url: string,
  part: string,
  opts: DownloadOptions,
  state: { hash: Hash; have: number; bar?: ProgressBar },
): Promise<boolean> {
  const headers: Record<string, string> = {};
  if (state.have > 0) headers.Range = `bytes=${state.have}-`;
  const res = await (opts.fetch ?? fetch)(url, { headers, signal: opts.signal });
  if (res.status === 416 && state.have > 0) {
    // Nothing left to send: the part file is already complete (or the server lost it).
    await res.body?.cancel();
    return true;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status} ${res.statusText} for ${url}`);
  }
  let append = false;
  if (res.status === 206 && state.have > 0) {
    const cr = res.headers.get("content-range") ?? "";
    const m = /bytes (\d+)-/.exec(cr);
    append = m !== null && Number(m[1]) === state.have;
  }
  if (!append) {
    // Server ignored the Range (200) or answered another range: start over.
    state.hash = createHash("sha256");
    state.have = 0;
  }
  const len = Number(res.headers.get("content-length") ?? NaN);
  const total = Number.isFinite(len) ? state.have + len : 0;
  if (opts.progress !== false && !state.bar) {
    state.bar = new ProgressBar({ total, label: url.split("/").pop() ?? url, unit: "B" });
  }
  state.bar?.update(state.have);
  const file = await Deno.open(part, { write: true, create: true, append, truncate: !append });
  let received = 0;
  try {
    if (!res.body) throw new Error("empty response body");
    for await (const chunk of res.body) {
      let w = 0;
      while (w < chunk.length) w += await file.write(chunk.subarray(w));
      state.hash.update(chunk);
      state.have += chunk.length;
      received += chunk.length;
      state.bar?.update(state.have);
    }
    await file.syncData();
  } catch (e) {
    if (opts.signal?.aborted) throw e;
    return false; // interrupted mid-body: keep the part, resume
  } finally {
    file.close();
  }
  return !(Number.isFinite(len) && received < len);
}

/**
 * Download `url` to `dest`: resume `dest.part` with HTTP Range, retry interrupted transfers,
 * check `sha256`, then rename atomically. On a hash mismatch nothing is left behind.
 */
export async function downloadFile(
  url: string,
  dest: string,
  opts: DownloadOptions = {},
): Promise<void> {
  const part = `${dest}.part`;
  const state: { hash: Hash; have: number; bar?: ProgressBar } = {
    hash: createHash("sha256"),
    have: 0,
  };
  if ((await sizeOf(part)) > 0) state.have = await hashFile(part, state.hash);
  const retries = opts.retries ?? 3;
  let delay = opts.retryDelayMs ?? 1000;
  let complete = false;
  let lastError: unknown = null;
  for (let i = 0; i <= retries && !complete; i++) {
    try {
      complete = await attempt(url, part, opts, state);
      lastError = complete ? null : new Error("transfer interrupted");
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      lastError = e;
      if (
        /^HTTP [45]\d\d/.test((e as Error).message) && !/^HTTP (408|429)/.test((e as Error).message)
      ) break;
    }
    if (!complete && i < retries) {
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  }
  state.bar?.done();
  if (!complete) {
    throw new Error(
      `download of ${url} failed after ${retries + 1} attempts: ${(lastError as Error)?.message}` +
        ` (the partial file ${part} is kept and will be resumed)`,
    );
  }
  const got = state.hash.digest("hex");
  if (opts.sha256 && got !== opts.sha256.toLowerCase()) {
    await Deno.remove(part).catch(() => {});
    throw new Error(
      `sha256 mismatch for ${url}: expected ${opts.sha256}, got ${got}; the download was deleted`,
    );
  }
  await Deno.rename(part, dest);
}

/** Options of {@link cachedDownload}. */
export interface CachedDownloadOptions {
  /** Where to fetch from. */
  url: string;
  /** File name inside the cache directory. */
  fileName: string;
  /** Expected sha256 (hex). */
  sha256?: string;
  /** Cache directory (default {@link resolveCacheDir}: `MTIL_CACHE` or `~/.cache/mtil`). */
  cacheDir?: string;
  /** Show a progress bar (default true). */
  progress?: boolean;
  /** Extra options for {@link downloadFile}. */
  download?: Omit<DownloadOptions, "sha256" | "progress">;
}

/**
 * Return the local path of `fileName` in the cache, downloading it once if absent (or if its
 * sha256 does not match). When the download fails, the error says which file to put where.
 */
export async function cachedDownload(opts: CachedDownloadOptions): Promise<string> {
  const dir = resolveCacheDir(opts.cacheDir);
  const path = `${dir}/${opts.fileName}`;
  const size = await sizeOf(path);
  if (size >= 0) {
    if (!opts.sha256) return path;
    const got = await sha256File(path);
    if (got === opts.sha256.toLowerCase()) return path;
    console.warn(`${path} exists but its sha256 is ${got}, not ${opts.sha256}; downloading again`);
  }
  try {
    await Deno.mkdir(dir, { recursive: true });
    await downloadFile(opts.url, path, {
      ...opts.download,
      sha256: opts.sha256,
      progress: opts.progress,
    });
  } catch (e) {
    throw new Error(
      `cannot get ${opts.fileName}: ${(e as Error).message}\n` +
        `If this machine is offline, download ${opts.url} elsewhere and put it at ${path}` +
        (opts.sha256 ? ` (sha256 ${opts.sha256})` : "") +
        `, or point MTIL_CACHE at a folder that holds ${opts.fileName}.`,
    );
  }
  return path;
}
