/**
 * AdamW with PyTorch semantics (`torch.optim.AdamW`, torch 1.13 single-tensor path), tidied per
 * variable so that large models do not pile up temporaries (see the tfjs notes: `tf.train.adam`
 * runs every update inside one `tidy` and runs out of memory on ViT-B/32).
 *
 * Update for a parameter `p` with gradient `g` at its step `t` (1-based):
 * ```
 * p ← p·(1 − lr·wd)                         (decoupled decay, before the Adam update)
 * m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 * p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps)
 * ```
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { loadDnnl } from "../clip/backends/onednn.ts";
import { dnnlAdamWUpdate } from "../clip/backends/onednn_adamw.ts";
import { allocOutput } from "../clip/backends/host_pool.ts";

/** Hyperparameters of {@link AdamW}. */
export interface AdamWOptions {
  /** Learning rate (changed by the schedule before each step). Default 1e-3. */
  lr?: number;
  /** Decoupled weight decay. Default 0.01 (PyTorch's default). */
  weightDecay?: number;
  /** β1, default 0.9. */
  beta1?: number;
  /** β2, default 0.999. */
  beta2?: number;
  /** Added to `√v̂`, default 1e-8. */
  eps?: number;
}

/** Serialisable optimizer state: moments by parameter name and per-parameter step counts. */
export interface AdamWState {
  /** First moments (`exp_avg`) by parameter name. */
  expAvg: StateDict;
  /** Second moments (`exp_avg_sq`) by parameter name. */
  expAvgSq: StateDict;
  /** Number of updates each parameter has received. */
  steps: Record<string, number>;
}

/**
 * Backends whose tensors live in host memory: there one fused loop replaces 13 tensor ops.
 * Never `webgpu` (or `wasm`, `tensorflow`): on a device the loop would download and upload every
 * parameter each step; the tensor path keeps the update on the device.
 */
const HOST_BACKENDS = new Set(["cpu", "cpu-blas", "cpu-dnnl"]);

/**
 * The AdamW update of one parameter as a single pass over host arrays (same formula and
 * operation order as the tensor path, in float32 per element): one new array per state instead
 * of a dozen intermediate tensors.
 */
function fusedHostUpdate(
  p: tf.Variable,
  g: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  h: {
    lr: number;
    wd: number;
    b1: number;
    b2: number;
    eps: number;
    stepSize: number;
    bc2Sqrt: number;
  },
): void {
  // the parameter's and gradient's arrays are read where they are, not through dataSync: arrays
  // handed out by dataSync are never recycled by the backend's pool (host_pool.ts)
  const pd = hostValues(p), gd = hostValues(g);
  const md = m.dataSync() as Float32Array;
  const vd = v.dataSync() as Float32Array;
  const n = pd.length;
  // The moments are private to the optimizer: when nothing else shares their buffers they are
  // updated in place (two fewer arrays of the parameter's size per step: 680 MB on a ViT-B/32
  // tower). The parameter always gets a new array (callers may hold its old values).
  const mInPlace = solelyOwned(m), vInPlace = solelyOwned(v);
  const np = allocOutput(tf.backend(), n);
  const dnnl = tf.getBackend() === "cpu-dnnl" ? loadDnnl() : null;
  if (dnnl) {
    // oneDNN updates the moments in place: shared ones are copied first
    const nm = mInPlace ? md : md.slice(), nv = vInPlace ? vd : vd.slice();
    const hyper = {
      decay: h.wd !== 0 ? 1 - h.lr * h.wd : 1,
      b1: h.b1,
      b2: h.b2,
      eps: h.eps,
      stepSize: h.stepSize,
      bc2Sqrt: h.bc2Sqrt,
    };
    if (dnnlAdamWUpdate(dnnl, pd, gd, nm, nv, np, hyper)) {
      assignUpdated(p, m, v, np, mInPlace ? null : nm, vInPlace ? null : nv);
      return;
    }
  }
  const nm = mInPlace ? md : new Float32Array(n), nv = vInPlace ? vd : new Float32Array(n);
  const f = Math.fround;
  const decay = f(1 - h.lr * h.wd), b1 = f(h.b1), c1 = f(1 - h.b1), b2 = f(h.b2);
  const c2 = f(1 - h.b2), bc2 = f(h.bc2Sqrt), eps = f(h.eps), step = f(h.stepSize);
  const decayOn = h.wd !== 0;
  for (let i = 0; i < n; i++) {
    const gi = gd[i];
    const mi = f(f(md[i] * b1) + f(gi * c1));
    const vi = f(f(vd[i] * b2) + f(f(gi * c2) * gi));
    const denom = f(f(Math.sqrt(vi) / bc2) + eps);
    const pi = decayOn ? f(pd[i] * decay) : pd[i];
    nm[i] = mi;
    nv[i] = vi;
    np[i] = f(pi - f(f(mi / denom) * step));
  }
  assignUpdated(p, m, v, np, mInPlace ? null : nm, vInPlace ? null : nv);
}

/** Point the variables at their updated arrays (`null`: updated in place). */
function assignUpdated(
  p: tf.Variable,
  m: tf.Variable,
  v: tf.Variable,
  np: Float32Array,
  nm: Float32Array | null,
  nv: Float32Array | null,
): void {
  const shape = p.shape;
  tf.tidy(() => {
    if (nm) m.assign(tf.tensor(nm, shape, "float32"));
    if (nv) v.assign(tf.tensor(nv, shape, "float32"));
    p.assign(tf.tensor(np, shape, "float32"));
  });
}

/** The host backend's storage entry of `t` (cpu backends), or undefined elsewhere. */
function hostEntry(t: tf.Tensor): { refCount?: number; values?: unknown } | undefined {
  return (tf.backend() as unknown as {
    data?: { get(id: object): { refCount?: number; values?: unknown } | undefined };
  }).data?.get(t.dataId);
}

/** `t`'s float32 values on a host backend, read in place (a copy for other dtypes). */
function hostValues(t: tf.Tensor): Float32Array {
  const values = hostEntry(t)?.values;
  return values instanceof Float32Array ? values : t.dataSync() as Float32Array;
}

/** Whether `t`'s host buffer (cpu backends) belongs to `t` alone (no clone, reshape or view). */
function solelyOwned(t: tf.Variable): boolean {
  const data = hostEntry(t);
  return data?.refCount === 1 && data.values instanceof Float32Array;
}

/** AdamW over named tf.Variables; state is created lazily on a parameter's first update. */
export class AdamW {
  /** Current learning rate. */
  lr: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** β1. */
  beta1: number;
  /** β2. */
  beta2: number;
  /** eps. */
  eps: number;
  #m = new Map<string, tf.Variable>();
  #v = new Map<string, tf.Variable>();
  #steps = new Map<string, number>();

  /** Create an optimizer; see {@link AdamWOptions} for defaults. */
  constructor(options: AdamWOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
  }

  /**
   * Apply one update to every parameter that has a gradient. `grads` is keyed like `params`;
   * gradients are not disposed (the caller owns them). Parameters without a gradient are left
   * untouched, as PyTorch skips parameters whose `.grad` is `None`.
   */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void {
    const { lr, weightDecay: wd, beta1: b1, beta2: b2, eps } = this;
    for (const [name, g] of grads) {
      const p = params.get(name);
      if (!p) throw new Error(`AdamW: gradient for unknown parameter "${name}"`);
      if (!this.#m.has(name)) {
        tf.tidy(() => {
          this.#m.set(name, tf.variable(tf.zerosLike(p), false));
          this.#v.set(name, tf.variable(tf.zerosLike(p), false));
        });
      }
      const m = this.#m.get(name)!;
      const v = this.#v.get(name)!;
      const t = (this.#steps.get(name) ?? 0) + 1;
      this.#steps.set(name, t);
      const stepSize = lr / (1 - b1 ** t);
      const bc2Sqrt = Math.sqrt(1 - b2 ** t);
      if (HOST_BACKENDS.has(tf.getBackend())) {
        fusedHostUpdate(p, g, m, v, { lr, wd, b1, b2, eps, stepSize, bc2Sqrt });
        continue;
      }
      tf.tidy(() => {
        const decayed = wd !== 0 ? p.mul(1 - lr * wd) : p;
        m.assign(m.mul(b1).add(g.mul(1 - b1)));
        v.assign(v.mul(b2).add(g.mul(1 - b2).mul(g)));
        const denom = v.sqrt().div(bc2Sqrt).add(eps);
        p.assign(decayed.sub(m.div(denom).mul(stepSize)));
      });
    }
  }

  /** Copy of the state (moments as float32 raw tensors). */
  getState(): AdamWState {
    const toSd = (src: Map<string, tf.Variable>): StateDict => {
      const sd: StateDict = new Map();
      for (const [k, t] of src) {
        // a copy: the host update writes the moments in place
        const data = (t.dataSync() as Float32Array).slice();
        sd.set(k, { shape: t.shape.slice(), dtype: "float32", data });
      }
      return sd;
    };
    return {
      expAvg: toSd(this.#m),
      expAvgSq: toSd(this.#v),
      steps: Object.fromEntries(this.#steps),
    };
  }

  /** Replace the state (e.g. on resume); previous state variables are disposed. */
  setState(state: AdamWState): void {
    this.disposeState();
    for (const [k, raw] of state.expAvg) {
      const sq = state.expAvgSq.get(k);
      if (!sq) throw new Error(`AdamW state: "${k}" has exp_avg but no exp_avg_sq`);
      tf.tidy(() => {
        this.#m.set(k, tf.variable(tf.tensor(raw.data, raw.shape, "float32"), false));
        this.#v.set(k, tf.variable(tf.tensor(sq.data, sq.shape, "float32"), false));
      });
      this.#steps.set(k, state.steps[k] ?? 0);
    }
  }

  /** The moment variables (for {@link readableOnHost} before {@link AdamW.getState}). */
  stateTensors(): tf.Variable[] {
    return [...this.#m.values(), ...this.#v.values()];
  }

  /** Number of parameters that have optimizer state. */
  get size(): number {
    return this.#m.size;
  }

  /** Free the moment variables (the optimizer can still be used; state restarts from zero). */
  disposeState(): void {
    for (const t of this.#m.values()) t.dispose();
    for (const t of this.#v.values()) t.dispose();
    this.#m.clear();
    this.#v.clear();
    this.#steps.clear();
  }

  /** Alias of {@link AdamW.disposeState}. */
  dispose(): void {
    this.disposeState();
  }
}
