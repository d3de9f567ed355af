import { loadDnnl } from "./onednn.ts";
import { ADAMW_CHUNK, ADAMW_MIN, type AdamWHyper, dnnlAdamWUpdate } from "./onednn_adamw.ts";

const d = loadDnnl();
if (!d) console.warn("%cSKIPPING oneDNN AdamW tests: no oneDNN", "color: red; font-weight: bold");

/** Deterministic values in [-s, s] (some exact zeros). */
function values(n: number, seed: number, s: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    out[i] = i % 97 === 0 ? 0 : s * (2 * (x / 2 ** 32) - 1);
  }
  return out;
}

/**
 * The reference update (PyTorch's AdamW formula) in float64, with the size of each result's
 * terms (float32 rounding is relative to those, not to a result that cancels).
 */
function reference(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  h: AdamWHyper,
) {
  const n = p.length;
  const rp = new Float64Array(n), rm = new Float64Array(n), rv = new Float64Array(n);
  const sp = new Float64Array(n), sm = new Float64Array(n), sv = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    rm[i] = h.b1 * m[i] + (1 - h.b1) * g[i];
    sm[i] = Math.abs(h.b1 * m[i]) + Math.abs((1 - h.b1) * g[i]);
    rv[i] = h.b2 * v[i] + (1 - h.b2) * g[i] * g[i];
    sv[i] = Math.abs(rv[i]);
    const step = h.stepSize * rm[i] / (Math.sqrt(rv[i]) / h.bc2Sqrt + h.eps);
    rp[i] = p[i] * h.decay - step;
    // the step inherits m's relative error (sm/|m|)
    sp[i] = Math.abs(p[i] * h.decay) + Math.abs(step) * (rm[i] === 0 ? 1 : sm[i] / Math.abs(rm[i]));
  }
  return { rp, rm, rv, sp, sm, sv };
}

/** `a` equals `e` within `rel` of each element's term size `scale`. */
function assertNear(
  what: string,
  a: Float32Array,
  e: Float64Array,
  scale: Float64Array,
  rel: number,
) {
  for (let i = 0; i < e.length; i++) {
    const err = Math.abs(a[i] - e[i]);
    if (!(err <= rel * scale[i] + 1e-30)) {
      throw new Error(`${what}[${i}]: ${a[i]} vs ${e[i]} (|d| = ${err}, scale ${scale[i]})`);
    }
  }
}

Deno.test({
  name: "oneDNN AdamW update equals the float64 formula (chunk edges, decay, in place)",
  ignore: !d,
  fn() {
    for (
      const n of [ADAMW_MIN, ADAMW_MIN + 5, ADAMW_CHUNK, ADAMW_CHUNK + 37, 2 * ADAMW_CHUNK + 1]
    ) {
      for (const [t, wd] of [[1, 0.1], [7, 0], [300, 0.2]]) {
        const lr = 1e-3, b1 = 0.9, b2 = 0.98;
        const h: AdamWHyper = {
          decay: 1 - lr * wd,
          b1,
          b2,
          eps: 1e-6,
          stepSize: lr / (1 - b1 ** t),
          bc2Sqrt: Math.sqrt(1 - b2 ** t),
        };
        const p = values(n, 1 + t, 2), g = values(n, 2 + t, 0.5);
        const m = values(n, 3 + t, 0.05), v = values(n, 4 + t, 0.01).map(Math.abs);
        const { rp, rm, rv, sp, sm, sv } = reference(p, g, m, v, h);
        const out = new Float32Array(n);
        const p0 = p.slice();
        if (!dnnlAdamWUpdate(d!, p, g, m, v, out, h)) throw new Error(`n=${n}: not taken`);
        // a few float32 ulp (2⁻²⁴ ≈ 6e-8) of the terms
        assertNear(`n=${n} t=${t} m`, m, rm, sm, 3e-7);
        assertNear(`n=${n} t=${t} v`, v, rv, sv, 3e-7);
        assertNear(`n=${n} t=${t} p`, out, rp, sp, 5e-7);
        if (p.some((x, i) => x !== p0[i])) throw new Error("p was written");
      }
    }
  },
});

Deno.test({
  name: "oneDNN AdamW leaves small arrays and zero decay to the JS loop",
  ignore: !d,
  fn() {
    const h = { decay: 1, b1: 0.9, b2: 0.999, eps: 1e-8, stepSize: 1e-3, bc2Sqrt: 0.1 };
    const a = new Float32Array(ADAMW_MIN - 1);
    if (dnnlAdamWUpdate(d!, a, a, a.slice(), a.slice(), a.slice(), h)) throw new Error("small");
    const b = new Float32Array(ADAMW_MIN);
    if (dnnlAdamWUpdate(d!, b, b, b.slice(), b.slice(), b.slice(), { ...h, decay: 0 })) {
      throw new Error("decay 0");
    }
  },
});
