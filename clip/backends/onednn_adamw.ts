/**
 * The AdamW update of one parameter on oneDNN (`cpu-dnnl`): four multi-threaded, vectorised
 * passes instead of a scalar JS loop (which runs at ~8 ns per value: 400 ms per step on RN50's
 * 38M parameters, 28 ms of the tiny CLIP step's 52 ms). oneDNN has no optimizer primitive; the
 * update is composed from binary primitives with post-ops, so each pass reads and writes each
 * array once:
 *
 * ```
 * A  v ← b2·v + (g·g)·c2          binary mul(g, g), post-ops: mul [c2], sum(b2)   (in place)
 * B  m ← b1·m + g·c1              binary mul(g, [c1]), post-op: sum(b1)           (in place)
 * C  t ← sqrt(v·(1/bc2²)) + eps   binary mul(v, [1/bc2²]), post-ops: sqrt, add [eps]
 * D  p' ← decay·(p + (m/t)·(−step/decay))
 *                                 binary div(m, t), post-ops: mul [−step/decay], add p, mul [decay]
 * ```
 *
 * Step-dependent numbers (`bc2`, `step`, `decay`) enter as one-element tensors, so the cached
 * primitives serve every step; only β1, β2 (in the `sum` post-ops) are baked in. The result
 * equals the reference formula up to float32 rounding (a few ulp: oneDNN fuses multiply-adds
 * and `sqrt(v/bc2²)` replaces `sqrt(v)/bc2`). Large parameters run in chunks of
 * {@link ADAMW_CHUNK} values, so the primitive cache and the scratch array stay small.
 *
 * @module
 */
import { BINARY, type Dnnl, ELTWISE, flatBinary, type Primitive, TAG } from "./onednn.ts";

/** Values per oneDNN pass (larger parameters are updated chunk by chunk). */
export const ADAMW_CHUNK = 1 << 20;
/**
 * Below this many values the JS loop is faster: each of the four oneDNN passes costs ~50 µs of
 * FFI and OpenMP wake-up whatever the size (measured on the tiny CLIP: 18 parameters of 16K
 * values took 4 ms through oneDNN, 2 ms in the loop).
 */
export const ADAMW_MIN = 1 << 16;

const SUM = (scale: number) => ({ sum: scale });
let scratch = new Float32Array(0);

/** Hyperparameters of one AdamW update (as `methods/adamw.ts` computes them). */
export interface AdamWHyper {
  /** `1 − lr·wd` (1 without weight decay). */
  decay: number;
  /** β1, β2. */
  b1: number;
  b2: number;
  /** eps. */
  eps: number;
  /** `lr / (1 − β1ᵗ)`. */
  stepSize: number;
  /** `sqrt(1 − β2ᵗ)`. */
  bc2Sqrt: number;
}

interface AdamWPrims {
  a: Primitive;
  b: Primitive;
  c: Primitive;
  d: Primitive;
}

function prims(d: Dnnl, n: number, b1: number, b2: number): AdamWPrims {
  return {
    a: d.cached(`adamw_a:${n}:${b2}`, () =>
      flatBinary(d, n, BINARY.mul, n, [
        { binary: BINARY.mul, md: d.md([1], TAG.a) },
        SUM(b2),
      ])),
    b: d.cached(`adamw_b:${n}:${b1}`, () => flatBinary(d, n, BINARY.mul, 1, [SUM(b1)])),
    c: d.cached(`adamw_c:${n}`, () =>
      flatBinary(d, n, BINARY.mul, 1, [
        { eltwise: ELTWISE.sqrt },
        { binary: BINARY.add, md: d.md([1], TAG.a) },
      ])),
    d: d.cached(`adamw_d:${n}`, () =>
      flatBinary(d, n, BINARY.div, n, [
        { binary: BINARY.mul, md: d.md([1], TAG.a) },
        { binary: BINARY.add, md: d.md([n], TAG.a) },
        { binary: BINARY.mul, md: d.md([1], TAG.a) },
      ])),
  };
}

/**
 * One AdamW update on host arrays with oneDNN: `m` and `v` in place, the new parameter into
 * `out` (`p` is only read). `g`, `m`, `v`, `out` have `p.length` values. Returns false (nothing
 * written) when the JS loop should do it instead: small arrays, or `decay` of 0.
 */
export function dnnlAdamWUpdate(
  d: Dnnl,
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  out: Float32Array,
  h: AdamWHyper,
): boolean {
  const n = p.length;
  if (n < ADAMW_MIN || h.decay === 0 || !(h.decay > 0)) return false;
  const c1 = new Float32Array([1 - h.b1]), c2 = new Float32Array([1 - h.b2]);
  const inv = new Float32Array([1 / (h.bc2Sqrt * h.bc2Sqrt)]);
  const eps = new Float32Array([h.eps]);
  const neg = new Float32Array([-h.stepSize / h.decay]), decay = new Float32Array([h.decay]);
  // one chunk of scratch, kept (a fresh 4 MB array per parameter costs page faults every step)
  if (scratch.length < Math.min(n, ADAMW_CHUNK)) scratch = new Float32Array(ADAMW_CHUNK);
  const t = scratch;
  for (let off = 0; off < n; off += ADAMW_CHUNK) {
    const k = Math.min(ADAMW_CHUNK, n - off);
    const sub = (a: Float32Array) => a.subarray(off, off + k);
    const pk = sub(p), gk = sub(g), mk = sub(m), vk = sub(v), ok = sub(out);
    const tk = t.subarray(0, k);
    const pr = prims(d, k, h.b1, h.b2);
    pr.a.run([gk, gk, vk, c2]);
    pr.b.run([gk, c1, mk]);
    pr.c.run([vk, inv, tk, eps]);
    pr.d.run([mk, tk, ok, neg, pk, decay]);
  }
  return true;
}
