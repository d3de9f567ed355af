/**
 * Small assertion helpers for the dataset tests (JSR's `@std/assert` is not reachable offline).
 * Not part of the public API.
 *
 * @module
 */
import { deepStrictEqual } from "node:assert/strict";

/** Throw when `cond` is falsy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Deep strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): void {
  if (msg === undefined) deepStrictEqual(actual, expected);
  else deepStrictEqual(actual, expected, msg);
}

// deno-lint-ignore no-explicit-any
type ErrorClass = new (...args: any[]) => Error;

function check(e: unknown, cls?: ErrorClass, includes?: string): Error {
  if (!(e instanceof Error)) throw new Error(`expected an Error, got ${String(e)}`);
  if (cls && !(e instanceof cls)) {
    const err = e as Error;
    throw new Error(`expected ${cls.name}, got ${err.name}: ${err.message}`);
  }
  if (includes && !e.message.includes(includes)) {
    throw new Error(`expected message to include ${JSON.stringify(includes)}, got: ${e.message}`);
  }
  return e;
}

/** Assert that `fn` throws (optionally an instance of `cls` whose message includes `includes`). */
export function assertThrows(fn: () => unknown, cls?: ErrorClass, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new Error("expected function to throw");
}

/** Async version of {@linkcode assertThrows}. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  cls?: ErrorClass,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new Error("expected promise to reject");
}

/** Make a fresh temporary directory and return its path. */
export function tempDir(prefix = "mtil-ds-"): Promise<string> {
  return Deno.makeTempDir({ prefix });
}

/** One entry for {@linkcode makeTar}. */
export interface TarEntrySpec {
  /** Path inside the archive. */
  name: string;
  /** File contents (regular files). */
  data?: Uint8Array | string;
  /** Type flag: "0" file (default), "5" directory, "2" symlink, "L" GNU long name, "x" pax. */
  type?: string;
  /** Link target for links. */
  linkname?: string;
}

/** Build a ustar archive in memory (for tests; names up to 100 bytes, else use an "L" entry). */
export function makeTar(entries: TarEntrySpec[]): Uint8Array {
  const enc = new TextEncoder();
  const blocks: Uint8Array[] = [];
  for (const e of entries) {
    const data = typeof e.data === "string" ? enc.encode(e.data) : (e.data ?? new Uint8Array(0));
    const h = new Uint8Array(512);
    const put = (s: string, at: number, len: number) => h.set(enc.encode(s).subarray(0, len), at);
    put(e.name, 0, 100);
    put("0000644\0", 100, 8);
    put("0000000\0", 108, 8);
    put("0000000\0", 116, 8);
    put(data.length.toString(8).padStart(11, "0") + "\0", 124, 12);
    put("00000000000\0", 136, 12);
    put(e.type ?? "0", 156, 1);
    if (e.linkname) put(e.linkname, 157, 100);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
    blocks.push(h);
    const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
    padded.set(data);
    blocks.push(padded);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((s, b) => s + b.length, 0));
  let o = 0;
  for (const b of blocks) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** List files under `dir` recursively as sorted relative paths. */
export async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(`${dir}/${e.name}`, rel));
    else out.push(rel);
  }
  return out.sort();
}
