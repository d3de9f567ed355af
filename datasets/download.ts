/**
 * Dataset downloads: fetch every file of a dataset (HTTP Range resume, retries and sha256 through
 * `clip/download/download.ts`; torchvision's md5 checked here with node:crypto), extract the archives into
 * a temporary folder beside the target, write the `.complete` marker last, then rename the folder
 * into place. An interrupted run therefore never leaves a folder that looks complete: either the
 * dataset folder exists with its marker, or it does not exist. Partial downloads are kept under
 * `<root>/.downloads/<Name>/` and resumed by the next run.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { downloadFile } from "../clip/download/download.ts";
import { ProgressBar } from "../clip/download/progress.ts";
import { type ArchiveKind, extractArchive } from "./archive.ts";
import { type DatasetSource, manualSteps, type SourceFile, SOURCES } from "./sources.ts";

/** Name of the completion marker written last into a downloaded dataset folder. */
export const COMPLETE_MARKER = ".complete";

/** Options of {@linkcode downloadDataset}. */
export interface DownloadDatasetOptions {
  /** Data root (default `"./data"`). */
  root?: string;
  /** Show progress bars on stderr (default true). */
  progress?: boolean;
  /** Replace an existing dataset folder (complete or not). */
  force?: boolean;
  /** Keep the downloaded archives after extraction (default false). */
  keepArchives?: boolean;
  /** Retries of an interrupted transfer (default 3). */
  retries?: number;
  /** Milliseconds before the first retry (default 1000). */
  retryDelayMs?: number;
  /** The fetch to use (tests, proxies). */
  fetch?: typeof fetch;
  /** Override the source table (tests). */
  sources?: Record<string, DatasetSource>;
  /** Where messages go (default: stderr). */
  log?: (line: string) => void;
}

/** Outcome of {@linkcode downloadDataset}. */
export interface DownloadResult {
  /** Dataset name. */
  name: string;
  /** `"downloaded"`, `"present"` (marker found) or `"manual"` (steps returned, nothing done). */
  status: "downloaded" | "present" | "manual";
  /** The dataset folder. */
  home: string;
  /** Manual steps, for `"manual"`. */
  manual?: string;
}

/** md5 (hex) of a file, streamed. */
export async function md5File(path: string): Promise<string> {
  const h = createHash("md5");
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(1 << 20);
    while (true) {
      const n = await f.read(buf);
      if (n === null) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    f.close();
  }
  return h.digest("hex");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Whether `home` holds a completion marker. */
export function isComplete(home: string): Promise<boolean> {
  return exists(`${home}/${COMPLETE_MARKER}`);
}

function defaultLog(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
}

/** Move every entry of `from` into `to` (created), refusing to overwrite. */
async function moveChildren(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const dest = `${to}/${e.name}`;
    if (await exists(dest)) {
      throw new Error(`cannot place ${from}/${e.name}: ${dest} already exists`);
    }
    await Deno.rename(`${from}/${e.name}`, dest);
  }
}

/** Download one file into `dir` (resuming), then check its md5; returns the local path. */
async function fetchVerified(
  f: SourceFile,
  dir: string,
  opts: DownloadDatasetOptions,
): Promise<string> {
  const dest = `${dir}/${f.fileName}`;
  const log = opts.log ?? defaultLog;
  if (await exists(dest)) {
    if (!f.md5 || (await md5File(dest)) === f.md5) {
      log(`${f.fileName}: already downloaded`);
      return dest;
    }
    log(`${f.fileName}: checksum mismatch on the kept copy, downloading again`);
    await Deno.remove(dest);
  }
  await downloadFile(f.url, dest, {
    sha256: f.sha256,
    progress: opts.progress !== false,
    retries: opts.retries,
    retryDelayMs: opts.retryDelayMs,
    fetch: opts.fetch,
  });
  if (f.md5) {
    const got = await md5File(dest);
    if (got !== f.md5.toLowerCase()) {
      await Deno.remove(dest).catch(() => {});
      throw new Error(
        `md5 mismatch for ${f.url}: expected ${f.md5}, got ${got}; the download was deleted (run again to retry)`,
      );
    }
  }
  return dest;
}

async function extractWithBar(
  path: string,
  dest: string,
  kind: ArchiveKind,
  progress: boolean,
): Promise<void> {
  const size = (await Deno.stat(path)).size;
  const bar = progress
    ? new ProgressBar({ total: size, label: `extract ${path.split("/").pop()}`, unit: "B" })
    : null;
  try {
    await extractArchive(path, dest, { kind, onProgress: (n) => bar?.update(n) });
  } finally {
    bar?.done();
  }
}

/** Place one downloaded file into the temporary dataset folder `tmp` as its spec says. */
async function place(file: string, f: SourceFile, tmp: string, progress: boolean): Promise<void> {
  const into = f.extract.into ? `${tmp}/${f.extract.into}` : tmp;
  if (f.extract.kind === "none") {
    await Deno.mkdir(into, { recursive: true });
    await Deno.copyFile(file, `${into}/${f.fileName}`);
    return;
  }
  const scratch = `${tmp}/.extract-${crypto.randomUUID()}`;
  await extractWithBar(file, scratch, f.extract.kind, progress);
  let tree = scratch;
  let strip = f.extract.strip;
  if (f.extract.inner) {
    const inner = `${scratch}/${f.extract.inner.path}`;
    if (!(await exists(inner))) {
      throw new Error(`${file}: expected ${f.extract.inner.path} inside the archive`);
    }
    tree = `${tmp}/.extract-${crypto.randomUUID()}`;
    await extractWithBar(inner, tree, f.extract.inner.kind, progress);
    await Deno.remove(scratch, { recursive: true });
    strip = f.extract.inner.strip;
  }
  const top = strip ? `${tree}/${strip}` : tree;
  if (!(await exists(top))) {
    throw new Error(`${file}: expected a top folder "${strip}" in the archive`);
  }
  await moveChildren(top, into);
  await Deno.remove(tree, { recursive: true });
}

/**
 * Download and unpack dataset `name` into `<root>/<home>` (see {@linkcode SOURCES}), or return
 * its manual steps when it has no public download. Idempotent: a folder with its completion
 * marker is left alone (unless `force`).
 */
export async function downloadDataset(
  name: string,
  opts: DownloadDatasetOptions = {},
): Promise<DownloadResult> {
  const root = (opts.root ?? "./data").replace(/\/+$/, "") || "/";
  const sources = opts.sources ?? SOURCES;
  const src = sources[name];
  const log = opts.log ?? defaultLog;
  if (!src) {
    throw new Error(
      `unknown dataset ${JSON.stringify(name)}; known: ${Object.keys(sources).join(", ")}`,
    );
  }
  const home = src.home === "." ? root : `${root}/${src.home}`;
  if (!src.files?.length) {
    const steps =
      (opts.sources ? src.manual?.replaceAll("{root}", root) : manualSteps(name, root)) ??
        `no download source known for ${name}`;
    return { name, status: "manual", home, manual: steps };
  }
  if (await isComplete(home)) {
    if (!opts.force) {
      log(`${name}: already complete at ${home} (use --force to download again)`);
      return { name, status: "present", home };
    }
  }
  if ((await exists(home)) && !opts.force) {
    throw new Error(
      `${name}: ${home} exists but has no ${COMPLETE_MARKER} marker (a manual copy or an older ` +
        `tool?). Remove it, or pass --force to replace it.`,
    );
  }
  await Deno.mkdir(root, { recursive: true });
  // Clear temporary folders of earlier interrupted runs.
  const tmpPrefix = `.tmp-${src.home.replaceAll("/", "_")}-`;
  for await (const e of Deno.readDir(root)) {
    if (e.isDirectory && e.name.startsWith(tmpPrefix)) {
      await Deno.remove(`${root}/${e.name}`, { recursive: true });
    }
  }
  const dlDir = `${root}/.downloads/${name}`;
  await Deno.mkdir(dlDir, { recursive: true });
  const local: string[] = [];
  for (const f of src.files) {
    log(`${name}: ${f.url}`);
    local.push(await fetchVerified(f, dlDir, opts));
  }
  const tmp = `${root}/${tmpPrefix}${crypto.randomUUID()}`;
  await Deno.mkdir(tmp);
  try {
    for (const [i, f] of src.files.entries()) {
      await place(local[i], f, tmp, opts.progress !== false);
    }
    const marker = {
      dataset: name,
      completed: new Date().toISOString(),
      files: src.files.map((f) => ({ url: f.url, md5: f.md5 ?? null, sha256: f.sha256 ?? null })),
    };
    await Deno.writeTextFile(`${tmp}/${COMPLETE_MARKER}`, JSON.stringify(marker, null, 1) + "\n");
    if (await exists(home)) await Deno.remove(home, { recursive: true }); // only with force
    await Deno.rename(tmp, home);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  if (!opts.keepArchives) await Deno.remove(dlDir, { recursive: true });
  log(`${name}: ready at ${home}`);
  return { name, status: "downloaded", home };
}
