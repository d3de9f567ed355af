/**
 * OGD gradient projection in TensorFlow.js: remove from the current gradient of each tracked
 * parameter its component in the span of the previous tasks' gradient basis, g ← g − Bᵀ(B g),
 * before the optimizer step.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { type Basis, orthonormalizeRows, stackBases } from "./basis.ts";

/**
 * g − Bᵀ(B g) for a basis tensor B [r × d] (orthonormal rows) and a gradient of any shape with d
 * elements; returns a new tensor of the gradient's shape (the input is not disposed). Written as
 * two plain matMuls (no transpose flags: B g, then (B g)ᵀ B as a [1 × r]·[r × d] product).
 */
export function projectOrthogonal(grad: tf.Tensor, basis: tf.Tensor2D): tf.Tensor {
  const [r, d] = basis.shape;
  if (grad.size !== d) {
    throw new Error(`projectOrthogonal: gradient has ${grad.size} elements, basis vectors ${d}`);
  }
  if (r === 0) return grad.clone();
  return tf.tidy(() => {
    const g = tf.reshape(grad.toFloat(), [d, 1]);
    const coeff = tf.matMul(basis, g); // [r, 1]
    const along = tf.matMul(tf.reshape(coeff, [1, r]), basis); // [1, d]
    return tf.reshape(tf.sub(tf.reshape(g, [1, d]), along), grad.shape);
  });
}

/** How several tasks' bases are combined. */
export type ProjectionMode =
  /** Stack all tasks' bases and re-orthonormalise (float64 MGS): exact orthogonal projection. */
  | "orthonormal"
  /**
   * The reference (Python) behaviour: project block by block through each task's basis, without
   * re-orthonormalising across tasks (exact only when the tasks' bases are mutually orthogonal).
   */
  | "sequential";

/** Options of {@linkcode OgdProjector}. */
export interface OgdProjectorOptions {
  /** Default `"orthonormal"`. */
  mode?: ProjectionMode;
}

/**
 * Holds the bases of the tracked parameters as float32 tensors and projects their gradients.
 * Call {@linkcode OgdProjector.dispose} when done.
 */
export class OgdProjector {
  /** The combination mode. */
  readonly mode: ProjectionMode;
  #blocks = new Map<string, tf.Tensor2D[]>();

  /**
   * `bases` maps a parameter name to its basis, or to the list of per-task bases (oldest first).
   * Parameters with an empty basis are kept out.
   */
  constructor(bases: Map<string, Basis | Basis[]>, opts: OgdProjectorOptions = {}) {
    this.mode = opts.mode ?? "orthonormal";
    for (const [name, value] of bases) {
      const list = (Array.isArray(value) ? value : [value]).filter((b) => b.rows > 0);
      if (list.length === 0) continue;
      const use = this.mode === "orthonormal" ? [orthonormalizeRows(stackBases(list))] : list;
      this.#blocks.set(
        name,
        use.map((b) =>
          tf.tensor2d(Float32Array.from(b.data.subarray(0, b.rows * b.dim)), [b.rows, b.dim])
        ),
      );
    }
  }

  /** Names of the parameters that have a basis. */
  names(): string[] {
    return [...this.#blocks.keys()];
  }

  /** Whether `name` has a basis. */
  has(name: string): boolean {
    return this.#blocks.has(name);
  }

  /** Total number of basis vectors of `name` (0 without a basis). */
  rank(name: string): number {
    return (this.#blocks.get(name) ?? []).reduce((s, b) => s + b.shape[0], 0);
  }

  /**
   * The projected gradient of `name` as a new tensor (a clone when `name` has no basis); the input
   * is not disposed.
   */
  project(name: string, grad: tf.Tensor): tf.Tensor {
    const blocks = this.#blocks.get(name);
    if (!blocks) return grad.clone();
    if (blocks[0].shape[1] !== grad.size) {
      throw new Error(
        `OGD: basis of "${name}" has vectors of ${blocks[0].shape[1]} elements, the gradient ` +
          `${grad.size} (shape ${
            JSON.stringify(grad.shape)
          }); was the basis made for another model?`,
      );
    }
    return tf.tidy(() => {
      let g = grad;
      for (const b of blocks) g = projectOrthogonal(g, b);
      return g === grad ? grad.clone() : g;
    });
  }

  /**
   * Project every gradient of a name → tensor map: returns a new map of new tensors (gradients
   * without a basis are cloned). The inputs are not disposed.
   */
  projectAll(grads: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [name, g] of Object.entries(grads)) out[name] = this.project(name, g);
    return out;
  }

  /** Free the basis tensors. */
  dispose(): void {
    for (const list of this.#blocks.values()) for (const b of list) b.dispose();
    this.#blocks.clear();
  }
}
