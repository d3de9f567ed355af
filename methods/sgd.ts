/**
 * Plain SGD with PyTorch semantics (`torch.optim.SGD`, torch 1.13 single-tensor path): optional
 * L2 weight decay added to the gradient and optional momentum (dampening 0, no Nesterov). With
 * both at 0 (DIKI's recipe) the update is `p ← p − lr·g`.
 *
 * It has the state interface of {@link AdamW} (`getState`/`setState`, {@link OptimizerState}), so
 * training-state files and resume work unchanged: momentum buffers are stored as `exp_avg`, there
 * are no second moments.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import type { AdamWState } from "./adamw.ts";

/** Serialisable optimizer state (the {@link AdamWState} layout, shared by every optimizer). */
export type OptimizerState = AdamWState;

/**
 * What the training engine needs of an optimizer: a mutable learning rate set by the schedule
 * before each step, an update over named variables, and state for resume.
 */
export interface Optimizer {
  /** Learning rate of the next {@link Optimizer.step}. */
  lr: number;
  /** Update every parameter that has a gradient (`grads` keyed like `params`, not disposed). */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void;
  /** Copy of the state. */
  getState(): OptimizerState;
  /** Replace the state (resume). */
  setState(state: OptimizerState): void;
  /** Free the state. */
  dispose(): void;
  /** The state's tensors (to fetch them from a device before a synchronous save). */
  stateTensors(): tf.Tensor[];
}

/** Hyperparameters of {@link Sgd}. */
export interface SgdOptions {
  /** Learning rate (changed by the schedule before each step). Default 1e-3. */
  lr?: number;
  /** Momentum (default 0: none). */
  momentum?: number;
  /** L2 weight decay added to the gradient, `g + wd·p` (default 0). */
  weightDecay?: number;
}

/** SGD over named tf.Variables; see the module documentation. */
export class Sgd implements Optimizer {
  /** Current learning rate. */
  lr: number;
  /** Momentum. */
  momentum: number;
  /** Weight decay. */
  weightDecay: number;
  #buf = new Map<string, tf.Variable>();
  #steps = new Map<string, number>();

  /** Create an optimizer; see {@link SgdOptions} for defaults. */
  constructor(options: SgdOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.momentum = options.momentum ?? 0;
    this.weightDecay = options.weightDecay ?? 0;
    if (!(this.momentum >= 0) || !(this.weightDecay >= 0) || !(this.lr >= 0)) {
      throw new Error(
        `SGD: lr, momentum and weight decay must be >= 0 (got ${this.lr}, ${this.momentum}, ` +
          `${this.weightDecay})`,
      );
    }
  }

  /** `p ← p − lr·d` with `d = g (+ wd·p)`, through the momentum buffer when momentum > 0. */
  /** The momentum buffers (empty without momentum). */
  stateTensors(): tf.Variable[] {
    return [...this.#buf.values()];
  }

  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void {
    const { lr, momentum: mu, weightDecay: wd } = this;
    for (const [name, g] of grads) {
      const p = params.get(name);
      if (!p) throw new Error(`SGD: gradient for unknown parameter "${name}"`);
      const t = (this.#steps.get(name) ?? 0) + 1;
      this.#steps.set(name, t);
      tf.tidy(() => {
        let d: tf.Tensor = wd !== 0 ? tf.add(g, tf.mul(p, wd)) : g;
        if (mu !== 0) {
          const buf = this.#buf.get(name);
          if (!buf) this.#buf.set(name, tf.variable(tf.clone(d), false));
          else {
            buf.assign(tf.add(tf.mul(buf, mu), d));
            d = buf;
          }
        }
        p.assign(tf.sub(p, tf.mul(d, lr)));
      });
    }
  }

  /** Copy of the state: momentum buffers as `expAvg`, step counts. */
  getState(): OptimizerState {
    const expAvg: StateDict = new Map();
    for (const [k, t] of this.#buf) {
      expAvg.set(k, {
        shape: t.shape.slice(),
        dtype: "float32",
        data: t.dataSync() as Float32Array,
      });
    }
    return { expAvg, expAvgSq: new Map(), steps: Object.fromEntries(this.#steps) };
  }

  /** Replace the state (previous buffers are disposed). */
  setState(state: OptimizerState): void {
    this.dispose();
    for (const [k, raw] of state.expAvg) {
      this.#buf.set(
        k,
        tf.tidy(() => tf.variable(tf.tensor(raw.data, raw.shape, "float32"), false)),
      );
    }
    for (const [k, n] of Object.entries(state.steps)) this.#steps.set(k, n);
  }

  /** Number of parameters with a momentum buffer. */
  get size(): number {
    return this.#buf.size;
  }

  /** Free the momentum buffers and step counts. */
  dispose(): void {
    for (const t of this.#buf.values()) t.dispose();
    this.#buf.clear();
    this.#steps.clear();
  }
}
