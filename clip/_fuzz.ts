/**
 * Helpers of the fuzz suites (`clip/formats/fuzz_test.ts`, `datasets/fuzz_test.ts`,
 * `tasks/fuzz_test.ts`): a seeded generator, byte mutators, builders of hostile files (pickles,
 * PNGs, MAT files), a "clear error" check, and a runner that executes the worst cases in a child
 * `deno run` under a time limit and a resident-memory watchdog, so that a blow-up fails the test
 * instead of killing the test runner. Not part of the public API.
 *
 * @module
 */
import { zlibSync } from "fflate";
import { crc32 } from "./formats/zip.ts";

/** A small seeded generator (mulberry32): the same seed gives the same inputs on every run. */
export class Rng {
  #a: number;
  /** Seed the generator. */
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

/** 32-bit values that make parsers misbehave: zero, signs, powers of two, all ones. */
export const INTERESTING_U32: readonly number[] = [
  0,
  1,
  2,
  7,
  8,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x7fff,
  0x8000,
  0xffff,
  0x10000,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];

/**
 * One random mutation of `src` (a copy): bit flips, interesting bytes or 32-bit words (both byte
 * orders), truncation, deletion, duplication or insertion of a slice.
 */
export function mutate(src: Uint8Array, rng: Rng): Uint8Array {
  const n = src.length;
  const at = n ? rng.int(n) : 0;
  switch (rng.int(8)) {
    case 0: {
      const b = src.slice();
      if (n) b[at] ^= 1 << rng.int(8);
      return b;
    }
    case 1: {
      const b = src.slice();
      if (n) b[at] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0x20, 0x2e, 0x28]);
      return b;
    }
    case 2: {
      const b = src.slice();
      if (n >= 4) {
        const v = rng.pick(INTERESTING_U32);
        new DataView(b.buffer).setUint32(Math.min(at, n - 4), v, rng.int(2) === 0);
      }
      return b;
    }
    case 3:
      return src.slice(0, at);
    case 4: {
      const len = 1 + rng.int(Math.max(1, Math.min(64, n - at)));
      return concat(src.subarray(0, at), src.subarray(at + len));
    }
    case 5: {
      const len = 1 + rng.int(Math.max(1, Math.min(256, n - at)));
      const piece = src.subarray(at, at + len);
      return concat(src.subarray(0, at), piece, piece, src.subarray(at));
    }
    case 6:
      return concat(src.subarray(0, at), rng.bytes(1 + rng.int(16)), src.subarray(at));
    default: {
      // several flips at once
      const b = src.slice();
      for (let k = 0; k < 1 + rng.int(8) && n; k++) b[rng.int(n)] = rng.int(256);
      return b;
    }
  }
}

/** Concatenate byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Inputs tried by this process's fuzz tests (each suite prints its own total). */
export const fuzzStats = { tried: 0 };

/**
 * Phrases of JavaScript engine errors: an error carrying one of them is a crash that escaped the
 * parser's own checks, not a clear error.
 */
const ENGINE_ERRORS =
  /Cannot read propert|is not a function|is not iterable|is not a constructor|undefined is not|Invalid typed array length|Invalid array length|Maximum call stack|Array buffer allocation failed|out of memory|Offset is outside the bounds|Cannot convert|Invalid string length/i;

/**
 * Assert that `e` is a clear error: an `Error` (not a `TypeError`), with a message that names
 * `name` (the file or flag, when given), is not an engine error, and is short enough to read.
 */
export function assertClearError(e: unknown, name?: string, what = "input"): void {
  if (!(e instanceof Error)) throw new Error(`${what}: threw a non-Error ${String(e)}`);
  const m = e.message;
  // node:util parseArgs reports user errors as TypeErrors with an ERR_PARSE_ARGS code
  const parseArgsError = String((e as { code?: unknown }).code ?? "").startsWith("ERR_PARSE_ARGS");
  if ((e instanceof TypeError && !parseArgsError) || ENGINE_ERRORS.test(m)) {
    throw new Error(`${what}: engine error instead of a clear one: ${e.name}: ${m}\n${e.stack}`);
  }
  if (name !== undefined && !m.includes(name)) {
    throw new Error(`${what}: the error does not name ${name}: ${m}`);
  }
  if (m.length > 2000) throw new Error(`${what}: error message of ${m.length} characters`);
}

/**
 * Run `fn` on an input: it must return or throw a clear error (see {@link assertClearError})
 * within `limitMs`. Counts the input in {@link fuzzStats}. Returns the error, if any.
 */
export async function expectClear(
  fn: () => unknown,
  name: string | undefined,
  what: string,
  limitMs = 5000,
): Promise<Error | undefined> {
  fuzzStats.tried++;
  const t0 = performance.now();
  let err: Error | undefined;
  try {
    await fn();
  } catch (e) {
    assertClearError(e, name, what);
    err = e as Error;
  }
  const ms = performance.now() - t0;
  if (ms > limitMs) throw new Error(`${what}: took ${ms.toFixed(0)} ms (limit ${limitMs})`);
  return err;
}

// ---------------------------------------------------------------------------------------------
// Isolated worst cases

/** What one isolated case reported. */
export interface CaseResult {
  /** Case name. */
  name: string;
  /** `"ok"` (returned), `"error"` (threw a clear error) or `"bad"` (threw an unclear one). */
  outcome: "ok" | "error" | "bad";
  /** The error message or the returned summary. */
  message: string;
  /** Wall time of the case, ms. */
  ms: number;
}

/** Environment variable naming the cases a child run executes. */
const CASES_ENV = "MTIL_FUZZ_CASES";

/** Whether this process is a child started by {@link runIsolated}. */
export function isIsolatedChild(): boolean {
  return Deno.env.get(CASES_ENV) !== undefined;
}

/** A worst case: returns a short summary or throws; `name` is what its error must name. */
export interface WorstCase {
  /** What the error must contain (file name or flag), if it throws. */
  names?: string;
  /** Run the case. */
  run: () => unknown;
}

/**
 * In a child started by {@link runIsolated}: run the requested cases of `cases` one by one,
 * printing one JSON line per case, then exit.
 */
export async function isolatedMain(cases: Record<string, WorstCase>): Promise<void> {
  const names = (Deno.env.get(CASES_ENV) ?? "").split(",").filter(Boolean);
  for (const name of names) {
    const c = cases[name];
    const t0 = performance.now();
    let r: CaseResult;
    try {
      const out = await c.run();
      r = { name, outcome: "ok", message: String(out ?? ""), ms: 0 };
    } catch (e) {
      let outcome: CaseResult["outcome"] = "error";
      try {
        assertClearError(e, c.names, name);
      } catch {
        outcome = "bad";
      }
      r = {
        name,
        outcome,
        message: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
        ms: 0,
      };
    }
    r.ms = performance.now() - t0;
    console.log(`FUZZ ${JSON.stringify(r)}`);
  }
  Deno.exit(0);
}

/** Resident memory of a process in MiB (Linux `/proc`), or undefined when unknown. */
function rssMiB(pid: number): number | undefined {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Options of {@link runIsolated}. */
export interface IsolatedOptions {
  /** Kill the child after this long (default 60 s). */
  timeoutMs?: number;
  /** Kill the child when its resident memory passes this (default 1536 MiB). */
  maxRssMiB?: number;
}

/** What a child run did: the case results, its peak resident memory and how it ended. */
export interface IsolatedRun {
  /** Results of the cases that finished. */
  results: CaseResult[];
  /** Highest resident memory seen, MiB. */
  peakRssMiB: number;
  /** Why the child was killed, if it was. */
  killed?: string;
  /** Exit code. */
  code: number;
  /** The child's stderr (for failures). */
  stderr: string;
}

/**
 * Run `cases` of the module `file` (which calls {@link isolatedMain} when
 * {@link isIsolatedChild}) in a child `deno run` with V8's heap capped at 1536 MB, a time limit,
 * and a watchdog that samples the child's resident memory (typed arrays live outside the V8
 * heap) every 20 ms and kills it past `maxRssMiB`.
 */
export async function runIsolated(
  file: string,
  cases: string[],
  opts: IsolatedOptions = {},
): Promise<IsolatedRun> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const maxRss = opts.maxRssMiB ?? 1536;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--max-old-space-size=1536", file],
    env: { [CASES_ENV]: cases.join(",") },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  let killed: string | undefined;
  const t0 = performance.now();
  const timer = setInterval(() => {
    const r = rssMiB(child.pid);
    if (r !== undefined) peak = Math.max(peak, r);
    if (killed) return;
    if (r !== undefined && r > maxRss) killed = `resident memory ${r.toFixed(0)} MiB > ${maxRss}`;
    else if (performance.now() - t0 > timeoutMs) killed = `still running after ${timeoutMs} ms`;
    if (killed) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
  }, 20);
  const out = await child.output();
  clearInterval(timer);
  const stdout = new TextDecoder().decode(out.stdout);
  const results = stdout.split("\n").filter((l) => l.startsWith("FUZZ ")).map((l) =>
    JSON.parse(l.slice(5)) as CaseResult
  );
  return {
    results,
    peakRssMiB: peak,
    killed,
    code: out.code,
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/**
 * {@link runIsolated}, then assert that every case finished with a clear error or a result,
 * each under `caseLimitMs`, and that the child stayed under its memory limit. Counts the cases
 * in {@link fuzzStats}. Returns the results by case name.
 */
export async function assertIsolated(
  file: string,
  cases: string[],
  opts: IsolatedOptions & { caseLimitMs?: number } = {},
): Promise<Map<string, CaseResult>> {
  const run = await runIsolated(file, cases, opts);
  fuzzStats.tried += run.results.length;
  console.log(
    `fuzz child: ${run.results.length} cases, peak resident memory ${
      run.peakRssMiB.toFixed(0)
    } MiB` + run.results.map((r) => `
  ${r.name}: ${r.ms.toFixed(0)} ms, ${r.outcome}: ${r.message.slice(0, 160)}`).join(""),
  );
  const done = new Map(run.results.map((r) => [r.name, r]));
  const missing = cases.filter((c) => !done.has(c));
  if (run.killed || missing.length || run.code !== 0) {
    throw new Error(
      `isolated fuzz cases failed: ${run.killed ?? `exit ${run.code}`}; unfinished: ` +
        `${missing.join(", ")} (peak ${run.peakRssMiB.toFixed(0)} MiB)\n${run.stderr.slice(-3000)}`,
    );
  }
  const limit = opts.caseLimitMs ?? 10_000;
  for (const r of run.results) {
    if (r.outcome === "bad") throw new Error(`${r.name}: unclear error: ${r.message}`);
    if (r.ms > limit) throw new Error(`${r.name}: took ${r.ms.toFixed(0)} ms (limit ${limit})`);
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// Builders of hostile files

/** Writes pickle opcodes (protocol 2). */
export class PickleWriter {
  #parts: number[] = [];
  /** Raw bytes. */
  raw(...b: number[]): this {
    this.#parts.push(...b);
    return this;
  }
  /** `PROTO 2`. */
  proto(): this {
    return this.raw(0x80, 2);
  }
  /** `GLOBAL module\nname\n`. */
  global(module: string, name: string): this {
    this.raw(0x63);
    for (const c of new TextEncoder().encode(`${module}\n${name}\n`)) this.raw(c);
    return this;
  }
  /** `BINUNICODE s`. */
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.raw(0x58, b.length & 255, (b.length >> 8) & 255, (b.length >> 16) & 255, b.length >>> 24);
    for (const c of b) this.raw(c);
    return this;
  }
  /** `BININT v`. */
  int(v: number): this {
    return this.raw(0x4a, v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255);
  }
  /** `MARK`. */
  mark(): this {
    return this.raw(0x28);
  }
  /** `TUPLE` (items since the last MARK). */
  tuple(): this {
    return this.raw(0x74);
  }
  /** `EMPTY_DICT`. */
  dict(): this {
    return this.raw(0x7d);
  }
  /** `SETITEMS` (pairs since the last MARK). */
  setitems(): this {
    return this.raw(0x75);
  }
  /** `REDUCE`. */
  reduce(): this {
    return this.raw(0x52);
  }
  /** `BUILD`. */
  build(): this {
    return this.raw(0x62);
  }
  /** `BINPERSID`. */
  persid(): this {
    return this.raw(0x51);
  }
  /** `LONG_BINPUT i`. */
  put(i: number): this {
    return this.raw(0x72, i & 255, (i >> 8) & 255, (i >> 16) & 255, i >>> 24);
  }
  /** `LONG_BINGET i`. */
  get(i: number): this {
    return this.raw(0x6a, i & 255, (i >> 8) & 255, (i >> 16) & 255, i >>> 24);
  }
  /** `NEWFALSE`. */
  false(): this {
    return this.raw(0x89);
  }
  /** `STOP`. */
  stop(): this {
    return this.raw(0x2e);
  }
  /** The bytes written. */
  bytes(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
}

/**
 * A `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` call
 * onto `w`, its storage a persistent id `("storage", <storageClass>, key, "cpu", numel)`.
 */
export function pickleTensor(
  w: PickleWriter,
  key: string,
  numel: number,
  size: number[],
  stride: number[],
  storageClass = "FloatStorage",
): PickleWriter {
  w.global("torch._utils", "_rebuild_tensor_v2");
  w.mark();
  w.mark().str("storage").global("torch", storageClass).str(key).str("cpu").int(numel).tuple()
    .persid();
  w.int(0);
  w.mark();
  for (const d of size) w.int(d);
  w.tuple();
  w.mark();
  for (const s of stride) w.int(s);
  w.tuple();
  w.false();
  w.global("collections", "OrderedDict").mark().tuple().reduce();
  w.tuple().reduce();
  return w;
}

/** A PNG (8-bit grayscale, all zero) of any size: a few hundred bytes for huge sizes. */
export function pngBytes(width: number, height: number): Uint8Array {
  const raw = new Uint8Array(height * (width + 1)); // filter byte 0 + zero pixels per row
  const chunk = (type: string, data: Uint8Array): Uint8Array => {
    const t = new TextEncoder().encode(type);
    const out = new Uint8Array(12 + data.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, data.length);
    out.set(t, 4);
    out.set(data, 8);
    v.setUint32(8 + data.length, crc32(concat(t, data)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  const hv = new DataView(ihdr.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8); // depth 8, grayscale, deflate, no filter, no interlace
  return concat(
    Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlibSync(raw, { level: 9 })),
    chunk("IEND", new Uint8Array(0)),
  );
}

/** One level-5 MAT data element: tag (type, byte count) and payload padded to 8 bytes. */
export function matElement(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + Math.ceil(payload.length / 8) * 8);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, payload.length, true);
  out.set(payload, 8);
  return out;
}

/** A little-endian level-5 MAT file holding the given top-level elements. */
export function matFile(...elements: Uint8Array[]): Uint8Array {
  const head = new Uint8Array(128).fill(0x20);
  head.set(new TextEncoder().encode("MATLAB 5.0 MAT-file, fuzz"), 0);
  head.fill(0, 116, 124);
  head.set([0x00, 0x01, 0x49, 0x4d], 124); // version 0x0100, "IM"
  return concat(head, ...elements);
}

/**
 * A miMATRIX element of array class `mxClass` with dimensions `dims`, name `name`, followed by
 * the sub-elements `rest` (data, field names, …).
 */
export function matMatrix(
  mxClass: number,
  dims: number[],
  name: string,
  ...rest: Uint8Array[]
): Uint8Array {
  const flags = new Uint8Array(8);
  flags[0] = mxClass;
  const d = new Uint8Array(4 * dims.length);
  dims.forEach((x, i) => new DataView(d.buffer).setInt32(4 * i, x, true));
  return matElement(
    14,
    concat(
      matElement(6, flags),
      matElement(5, d),
      matElement(1, new TextEncoder().encode(name)),
      ...rest,
    ),
  );
}

/**
 * Raw deflate data of `size` zero bytes, written by hand as one fixed-Huffman block: a literal 0,
 * then copies of 258 bytes at distance 1 (13 bits each), so a gigabyte takes 6 MB and a few
 * milliseconds to build (a general compressor would take minutes).
 */
export function deflateZeros(size: number): Uint8Array {
  const runs = size > 0 ? Math.floor((size - 1) / 258) : 0;
  const tail = size > 0 ? size - 1 - runs * 258 : 0;
  const out = new Uint8Array(Math.ceil((3 + 8 + runs * 13 + tail * 8 + 7) / 8) + 1);
  let bit = 0;
  const put = (v: number, n: number): void => { // LSB first
    for (let k = 0; k < n; k++, bit++) if ((v >> k) & 1) out[bit >> 3] |= 1 << (bit & 7);
  };
  const code = (v: number, n: number): void => { // Huffman codes: MSB first
    for (let k = n - 1; k >= 0; k--, bit++) if ((v >> k) & 1) out[bit >> 3] |= 1 << (bit & 7);
  };
  put(1, 1); // BFINAL
  put(1, 2); // BTYPE = fixed Huffman
  if (size > 0) code(0x30, 8); // literal 0
  for (let i = 0; i < runs; i++) {
    code(0xc5, 8); // length code 285 (258 bytes)
    code(0, 5); // distance code 0 (distance 1)
  }
  for (let i = 0; i < tail; i++) code(0x30, 8);
  code(0, 7); // end of block (256)
  return out.subarray(0, (bit + 7) >> 3);
}

/**
 * A one-entry deflated zip whose entry is `size` zero bytes (see {@link deflateZeros}).
 * `claimSize` overrides the size the headers declare (a lying header); the CRC is computed only
 * for entries up to 1 GiB (larger ones are for limit checks).
 */
export function zeroBombZip(name: string, size: number, claimSize?: number): Uint8Array {
  const data = deflateZeros(size);
  let crc = 0;
  if (size <= 1 << 30) {
    const zero = new Uint8Array(1 << 20);
    for (let o = 0; o < size; o += zero.length) {
      crc = crc32(zero.subarray(0, Math.min(zero.length, size - o)), crc);
    }
  }
  const declared = claimSize ?? size;
  return zipOf(name, data, crc, declared);
}

function zipOf(name: string, data: Uint8Array, crc: number, size: number): Uint8Array {
  const nm = new TextEncoder().encode(name);
  const lh = new DataView(new ArrayBuffer(30));
  lh.setUint32(0, 0x04034b50, true);
  lh.setUint16(8, 8, true);
  lh.setUint32(14, crc, true);
  lh.setUint32(18, data.length, true);
  lh.setUint32(22, size, true);
  lh.setUint16(26, nm.length, true);
  const cd = new DataView(new ArrayBuffer(46));
  cd.setUint32(0, 0x02014b50, true);
  cd.setUint16(10, 8, true);
  cd.setUint32(16, crc, true);
  cd.setUint32(20, data.length, true);
  cd.setUint32(24, size, true);
  cd.setUint16(28, nm.length, true);
  const cdOff = 30 + nm.length + data.length;
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, 1, true);
  eocd.setUint16(10, 1, true);
  eocd.setUint32(12, 46 + nm.length, true);
  eocd.setUint32(16, cdOff, true);
  return concat(
    new Uint8Array(lh.buffer),
    nm,
    data,
    new Uint8Array(cd.buffer),
    nm,
    new Uint8Array(eocd.buffer),
  );
}
