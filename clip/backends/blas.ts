/**
 * OpenBLAS (or any CBLAS) through Deno FFI: `cblas_sgemm` called zero-copy on Float32Arrays.
 *
 * The library is searched under the usual sonames (`libopenblas.so.0`, `libopenblas.so`,
 * `libopenblas64_.so.0`, `libcblas.so.3`, `libblas.so.3`, plus macOS names), or exactly at
 * `MTIL_BLAS_LIB` when that is set. Without a library, or without `--allow-ffi`, {@link loadBlas}
 * returns `null` and {@link blasLoadError} says why; nothing throws.
 *
 * @module
 */

/** Row-major storage order (CblasRowMajor). */
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "buffer", // A
      "i32", // lda
      "buffer", // B
      "i32", // ldb
      "f32", // beta
      "buffer", // C
      "i32", // ldc
    ],
    result: "void",
  },
} as const;

const OPTIONAL_SYMBOLS = {
  cblas_scopy: {
    parameters: ["i32", "buffer", "i32", "buffer", "i32"],
    result: "void",
    optional: true,
  },
  cblas_sscal: { parameters: ["i32", "f32", "buffer", "i32"], result: "void", optional: true },
  cblas_saxpy: {
    parameters: ["i32", "f32", "buffer", "i32", "buffer", "i32"],
    result: "void",
    optional: true,
  },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
} as const;

type SgemmFn = (
  order: number,
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/** A loaded CBLAS library. */
export interface Blas {
  /** The file name or path it was opened from. */
  readonly path: string;
  /** Threads the library uses, when it can tell (OpenBLAS), else `undefined`. */
  readonly threads: number | undefined;
  /**
   * Row-major single-precision GEMM: `C = alpha·op(A)·op(B) + beta·C` with `op(A)` `[m, k]`,
   * `op(B)` `[k, n]`, `C` `[m, n]`. Arrays are used in place (no copies); pass `subarray`s for
   * offsets. `lda`/`ldb`/`ldc` default to the dense row lengths.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    b: Float32Array,
    beta: number,
    c: Float32Array,
    lda?: number,
    ldb?: number,
    ldc?: number,
  ): void;
  /**
   * Level-1 helpers on whole arrays (SIMD and threaded in OpenBLAS; ~1.7× a JS loop on large
   * arrays), or null when the library lacks them: `copy(x, y)`: `y ← x`; `scal(a, x)`: `x ← a·x`;
   * `axpy(a, x, y)`: `y ← a·x + y`.
   */
  readonly level1: {
    copy(x: Float32Array, y: Float32Array): void;
    scal(a: number, x: Float32Array): void;
    axpy(a: number, x: Float32Array, y: Float32Array): void;
  } | null;
  /** Set the thread count (OpenBLAS only; a no-op elsewhere). */
  setThreads(n: number): void;
}

/** Library names tried in order when `MTIL_BLAS_LIB` is unset. */
export const BLAS_CANDIDATES: readonly string[] = [
  "libopenblas.so.0",
  "libopenblas.so",
  "libopenblas64_.so.0",
  "libcblas.so.3",
  "libblas.so.3",
  "libopenblas.dylib",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
];

let cached: Blas | null | undefined;
let loadError = "";

/** Why the last {@link loadBlas} returned `null` (empty when it succeeded or was not called). */
export function blasLoadError(): string {
  return loadError;
}

/** An environment variable, or undefined when unset or not permitted (`--allow-env`). */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * Open the system BLAS once (cached). Returns `null`, never throws, when `--allow-ffi` is missing
 * or no candidate library opens; {@link blasLoadError} then holds a one-line reason.
 */
export function loadBlas(): Blas | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function") {
    loadError = "Deno.dlopen is unavailable";
    return null;
  }
  const perm = Deno.permissions.querySync({ name: "ffi" });
  if (perm.state !== "granted") {
    loadError = "no --allow-ffi permission";
    return null;
  }
  try {
    // OpenBLAS's idle workers spin on sched_yield for 2^28 cycles (~0.1 s) after every call
    // before sleeping; between the sporadic matrix products of a ResNet step that spinning took
    // ~10% of the CPU from oneDNN's threads on the same cores (perf, RN50 step, 2 threads). 2^4
    // cycles: sleep at once (a wake-up costs microseconds against milliseconds per product).
    // Read once when OpenBLAS loads, so it is set before dlopen; a user's value wins.
    if (envVar("OPENBLAS_THREAD_TIMEOUT") === undefined) {
      Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
    }
  } catch {
    // no --allow-env: OpenBLAS keeps its default
  }
  const override = envVar("MTIL_BLAS_LIB");
  const candidates = override ? [override] : BLAS_CANDIDATES;
  const errors: string[] = [];
  for (const path of candidates) {
    try {
      const lib = Deno.dlopen(path, { ...SYMBOLS, ...OPTIONAL_SYMBOLS });
      const sgemm = lib.symbols.cblas_sgemm as unknown as SgemmFn;
      const getThreads = lib.symbols.openblas_get_num_threads as
        | (() => number)
        | null;
      const setThreads = lib.symbols.openblas_set_num_threads as
        | ((n: number) => void)
        | null;
      const copy = lib.symbols.cblas_scopy as
        | ((n: number, x: Float32Array, ix: number, y: Float32Array, iy: number) => void)
        | null;
      const scal = lib.symbols.cblas_sscal as
        | ((n: number, a: number, x: Float32Array, ix: number) => void)
        | null;
      const axpy = lib.symbols.cblas_saxpy as
        | ((n: number, a: number, x: Float32Array, ix: number, y: Float32Array, iy: number) => void)
        | null;
      cached = {
        path,
        level1: copy && scal && axpy
          ? {
            copy: (x, y) => copy(x.length, x, 1, y, 1),
            scal: (a, x) => scal(x.length, a, x, 1),
            axpy: (a, x, y) => axpy(x.length, a, x, 1, y, 1),
          }
          : null,
        threads: getThreads ? getThreads() : undefined,
        sgemm(transA, transB, m, n, k, alpha, a, b, beta, c, lda, ldb, ldc) {
          if (m === 0 || n === 0) return;
          sgemm(
            ROW_MAJOR,
            transA ? TRANS : NO_TRANS,
            transB ? TRANS : NO_TRANS,
            m,
            n,
            k,
            alpha,
            a,
            lda ?? (transA ? m : k),
            b,
            ldb ?? (transB ? k : n),
            beta,
            c,
            ldc ?? n,
          );
        },
        setThreads(n: number) {
          // openblas_set_num_threads is not safe while another thread runs a BLAS call (it
          // resizes OpenBLAS's thread buffers); workers sharing this process (parallel test
          // modules, Web Workers) each configure the backend, so only change what differs
          if (setThreads && (!getThreads || getThreads() !== n)) setThreads(n);
        },
      };
      loadError = "";
      return cached;
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  loadError = override
    ? `MTIL_BLAS_LIB=${override} did not open (${errors[0]})`
    : `no CBLAS library found (tried ${candidates.length} names; ` +
      `install libopenblas0-pthread or set MTIL_BLAS_LIB)`;
  return null;
}
