/**
 * Which parameters OGD tracks, when it records gradient snapshots, and a recorder that keeps the
 * snapshots of one task and turns them into per-parameter bases at the task's end.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { type Basis, snapshotBasis } from "./basis.ts";

/**
 * The reference's rule: a parameter is tracked unless its name ends with `.bias`, when it contains
 * `attn` and `weight`, `mlp` and `weight`, or `ln` and `weight` (e.g.
 * `visual.transformer.resblocks.0.attn.in_proj_weight`, `ln_final.weight`).
 */
export function shouldTrackParam(name: string): boolean {
  if (name.endsWith(".bias")) return false;
  if (!name.includes("weight")) return false;
  return name.includes("attn") || name.includes("mlp") || name.includes("ln");
}

/**
 * The N+1 iterations (0-based, of `total` training iterations) at which OGD records a gradient
 * snapshot: evenly spaced from the first to the last iteration, rounded, without duplicates (fewer
 * than N+1 only when `total` ≤ N).
 */
export function snapshotIterations(total: number, n: number): number[] {
  if (!Number.isInteger(total) || total < 1) throw new Error(`snapshotIterations: total ${total}`);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`--orthogonal-gradients must be a positive integer, got ${n}`);
  }
  const out = new Set<number>();
  for (let i = 0; i <= n; i++) out.add(Math.round((i * (total - 1)) / n));
  return [...out].sort((a, b) => a - b);
}

/** Gradient snapshots of one parameter: row-major [k × d] float32. */
export interface Snapshots {
  /** Number of snapshots. */
  k: number;
  /** Elements per snapshot (numel of the parameter). */
  dim: number;
  /** Shape of the parameter. */
  shape: number[];
  /** `k * dim` values. */
  data: Float32Array;
}

/**
 * Records gradient snapshots of the tracked parameters at the scheduled iterations of a task.
 * Memory: (N+1) × numel float32 per tracked parameter.
 */
export class GradientSnapshots {
  /** Iterations at which {@linkcode GradientSnapshots.due} is true. */
  readonly iterations: ReadonlySet<number>;
  #rows = new Map<string, { shape: number[]; rows: Float32Array[] }>();

  /** Schedule N+1 snapshots over `totalIterations` (see {@linkcode snapshotIterations}). */
  constructor(totalIterations: number, n: number) {
    this.iterations = new Set(snapshotIterations(totalIterations, n));
  }

  /** Whether iteration `it` (0-based) takes a snapshot. */
  due(it: number): boolean {
    return this.iterations.has(it);
  }

  /** Copy the current gradient of `name` (synchronously downloads it; the tensor is not disposed). */
  record(name: string, grad: tf.Tensor): void {
    const data = Float32Array.from(grad.dataSync() as ArrayLike<number>);
    this.add(name, data, grad.shape);
  }

  /** Add one snapshot from host memory. */
  add(name: string, data: Float32Array, shape: number[]): void {
    const e = this.#rows.get(name);
    if (!e) {
      this.#rows.set(name, { shape: [...shape], rows: [data] });
      return;
    }
    if (e.rows[0].length !== data.length) {
      throw new Error(
        `OGD snapshot of "${name}": ${data.length} elements, earlier ${e.rows[0].length}`,
      );
    }
    e.rows.push(data);
  }

  /** Restore previously saved snapshots (to resume an interrupted task). */
  load(snaps: Map<string, Snapshots>): void {
    for (const [name, s] of snaps) {
      for (let i = 0; i < s.k; i++) {
        this.add(name, s.data.slice(i * s.dim, (i + 1) * s.dim), s.shape);
      }
    }
  }

  /** Number of snapshots recorded for `name`. */
  count(name: string): number {
    return this.#rows.get(name)?.rows.length ?? 0;
  }

  /** The snapshot matrices of every recorded parameter. */
  snapshots(): Map<string, Snapshots> {
    const out = new Map<string, Snapshots>();
    for (const [name, { shape, rows }] of this.#rows) {
      const dim = rows[0].length;
      const data = new Float32Array(rows.length * dim);
      rows.forEach((r, i) => data.set(r, i * dim));
      out.set(name, { k: rows.length, dim, shape, data });
    }
    return out;
  }

  /** Per-parameter bases at `energy` (see {@linkcode snapshotsToBases}). */
  bases(energy = 0.97): Map<string, Basis> {
    return snapshotsToBases(this.snapshots(), energy);
  }
}

/**
 * Convert snapshot matrices to bases (exact, float64; see `snapshotBasis`). Like the reference,
 * parameters with fewer than 2 snapshots get no basis.
 */
export function snapshotsToBases(snaps: Map<string, Snapshots>, energy = 0.97): Map<string, Basis> {
  const out = new Map<string, Basis>();
  for (const [name, s] of snaps) {
    if (s.k < 2) continue;
    out.set(name, snapshotBasis(s.data, s.k, s.dim, { energy }).basis);
  }
  return out;
}
