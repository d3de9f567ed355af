/**
 * iCaRL exemplar memory: herding selection (Rebuffi et al. 2017) over L2-normalised features,
 * tracking each exemplar's original dataset index. With memory size K and t tasks seen, each task
 * keeps `floor(K/t)` exemplars, split evenly over its classes (the first `m mod C` classes get
 * one more); shrinking a task truncates each class's herding order, as iCaRL prescribes.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import type { ClipModel } from "../clip/types.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import type { Dataset } from "../datasets/types.ts";
import { batches } from "../datasets/loader.ts";
import { evalTransform } from "../datasets/transforms.ts";
import { Rng } from "../datasets/rng.ts";
import { normalizeRows } from "./losses.ts";

/**
 * Herding: pick `m` rows of `features` (`n × dim`, row-major) greedily so that the running mean
 * of the chosen (L2-normalised) rows stays closest to the mean of all rows. Returns row numbers in
 * selection order; ties go to the lowest row. Rows are normalised internally.
 */
export function herdingSelect(
  features: Float32Array,
  n: number,
  dim: number,
  m: number,
): number[] {
  if (features.length !== n * dim) {
    throw new Error(`herdingSelect: ${features.length} values for ${n}×${dim}`);
  }
  const x = new Float64Array(n * dim);
  const mu = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += features[i * dim + d] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let d = 0; d < dim; d++) {
      x[i * dim + d] = features[i * dim + d] * inv;
      mu[d] += x[i * dim + d] / n;
    }
  }
  const chosen: number[] = [];
  const taken = new Uint8Array(n);
  const sum = new Float64Array(dim);
  for (let k = 1; k <= Math.min(m, n); k++) {
    let best = -1, bestD = Infinity;
    for (let i = 0; i < n; i++) {
      if (taken[i]) continue;
      let dist = 0;
      for (let d = 0; d < dim; d++) dist += (mu[d] - (sum[d] + x[i * dim + d]) / k) ** 2;
      if (dist < bestD) {
        bestD = dist;
        best = i;
      }
    }
    taken[best] = 1;
    chosen.push(best);
    for (let d = 0; d < dim; d++) sum[d] += x[best * dim + d];
  }
  return chosen;
}

/** One stored exemplar. */
export interface Exemplar {
  /** Task (dataset) name. */
  task: string;
  /** Index of the item in its dataset's training split. */
  index: number;
  /** Class label within its task. */
  label: number;
}

interface TaskMemory {
  task: string;
  /** Per class: original indices in herding order. */
  byClass: Map<number, number[]>;
}

/** Split `m` over `c` classes: `floor(m/c)` each, the first `m mod c` classes one more. */
export function perClassBudget(m: number, classes: number): number[] {
  return Array.from(
    { length: classes },
    (_, i) => Math.floor(m / classes) + (i < m % classes ? 1 : 0),
  );
}

/** Exemplar memory of total size K over the tasks seen so far. */
export class ExemplarMemory {
  /** Total number of exemplars K. */
  readonly capacity: number;
  #tasks: TaskMemory[] = [];

  /** Create an empty memory of capacity K. */
  constructor(capacity: number) {
    if (!(capacity >= 0)) throw new Error(`memory size must be >= 0, got ${capacity}`);
    this.capacity = capacity;
  }

  /** Number of tasks stored. */
  get tasks(): number {
    return this.#tasks.length;
  }

  /**
   * Add a task: `indices[i]`, `labels[i]` and row i of `features` (`n × dim`) describe item i of
   * the candidate pool. Herding runs per class; then every task is cut to `floor(K/t)`.
   */
  addTask(
    task: string,
    indices: readonly number[],
    labels: readonly number[],
    features: Float32Array,
    dim: number,
  ): void {
    const t = this.#tasks.length + 1;
    const m = Math.floor(this.capacity / t);
    const classes = [...new Set(labels)].sort((a, b) => a - b);
    const budget = perClassBudget(m, classes.length);
    const byClass = new Map<number, number[]>();
    classes.forEach((c, ci) => {
      const rows = labels.flatMap((l, i) => (l === c ? [i] : []));
      const f = new Float32Array(rows.length * dim);
      rows.forEach((r, j) => f.set(features.subarray(r * dim, (r + 1) * dim), j * dim));
      const order = herdingSelect(f, rows.length, dim, budget[ci]);
      byClass.set(c, order.map((j) => indices[rows[j]]));
    });
    this.#tasks.push({ task, byClass });
    this.#reduce();
  }

  #reduce(): void {
    const m = Math.floor(this.capacity / this.#tasks.length);
    for (const tm of this.#tasks) {
      const classes = [...tm.byClass.keys()];
      const budget = perClassBudget(m, classes.length);
      classes.forEach((c, i) => tm.byClass.set(c, tm.byClass.get(c)!.slice(0, budget[i])));
    }
  }

  /** Every exemplar, task by task, class by class, in herding order. */
  exemplars(): Exemplar[] {
    const out: Exemplar[] = [];
    for (const tm of this.#tasks) {
      for (const [label, idx] of tm.byClass) {
        for (const index of idx) out.push({ task: tm.task, index, label });
      }
    }
    return out;
  }

  /** JSON-serialisable form (for resume). */
  toJSON(): { capacity: number; tasks: { task: string; byClass: [number, number[]][] }[] } {
    return {
      capacity: this.capacity,
      tasks: this.#tasks.map((t) => ({ task: t.task, byClass: [...t.byClass] })),
    };
  }

  /** Rebuild from {@link ExemplarMemory.toJSON}. */
  static fromJSON(
    j: { capacity: number; tasks: { task: string; byClass: [number, number[]][] }[] },
  ): ExemplarMemory {
    const m = new ExemplarMemory(j.capacity);
    for (const t of j.tasks) m.#tasks.push({ task: t.task, byClass: new Map(t.byClass) });
    return m;
  }
}

/** What {@link herdingFeatures} computes over a task's candidate images. */
export interface HerdingFeatures {
  /** Dataset indices of the candidates. */
  indices: number[];
  /** Their labels. */
  labels: number[];
  /** Normalised image features `[n, dim]`, row-major. */
  features: Float32Array;
  /** Feature width. */
  dim: number;
}

/**
 * Normalised image features of `candidates` seeded-random training images of `dataset`, computed
 * with `weights` swapped into `model` (the weights the task saved), for herding.
 */
export async function herdingFeatures(
  model: ClipModel,
  weights: StateDict,
  dataset: Dataset,
  options: { candidates: number; seed: number; batchSize: number; workers?: number },
): Promise<HerdingFeatures> {
  await readableOnHost(model.params.values()); // webgpu: one asynchronous read first
  const saved = model.stateDict();
  model.loadStateDict(weights, { strict: false });
  try {
    const n = Math.min(dataset.length, options.candidates);
    const indices = new Rng(options.seed).permutation(dataset.length).slice(0, n);
    const sub: Dataset = { ...dataset, length: n, get: (i) => dataset.get(indices[i]) };
    const dim = model.config.embedDim;
    const features = new Float32Array(n * dim);
    const labels: number[] = [];
    let off = 0;
    const training = model.training;
    model.training = false;
    try {
      for await (
        const b of batches(sub, {
          batchSize: options.batchSize,
          transform: evalTransform(model.config.imageResolution),
          workers: options.workers ?? 0,
        })
      ) {
        const f = tf.tidy(() => normalizeRows(model.encodeImage(b.images)));
        const data = (await f.data()) as Float32Array;
        features.set(data, off);
        off += data.length;
        labels.push(...b.labels.dataSync());
        tf.dispose([f, b.images, b.labels]);
      }
    } finally {
      model.training = training;
    }
    return { indices: Array.from(indices), labels, features, dim };
  } finally {
    model.loadStateDict(saved, { strict: false });
  }
}
