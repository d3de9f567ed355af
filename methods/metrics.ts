/**
 * Continual-learning scores of an accuracy matrix: the MTIL Transfer / Avg / Last exactly as the
 * ZSCL reference summary (`mtil/results.ipynb`, `statistics()`) computes them, plus backward
 * transfer and average forgetting.
 *
 * Conventions (identical to the reference):
 * - `values[t][j]` is the top-1 accuracy (percent) on dataset `datasets[j]` after training the
 *   t-th task of `tasks` (training order). Only the columns of the trained tasks enter the scores,
 *   ordered like `tasks` (the reference drops its extra CIFAR10 column).
 * - **Transfer** = mean over tasks j = 2..T of (mean over t < j of A[t][j]): the accuracy on a
 *   task before it is trained, averaged over the models trained on the earlier tasks.
 *   **The zero-shot row is not used**: the reference matrix has no zero-shot row, so the first task
 *   contributes no Transfer and the zero-shot model never enters it. (The published "Zero-shot"
 *   row of the tables is the zero-shot accuracy itself scored as if it were every row; see
 *   {@linkcode zeroShotScores}.)
 * - **Avg** = mean of the column means over all T rows and T task columns (= mean of all entries).
 * - **Last** = mean of the last row.
 * - Rounding: `np.around(x, 1)` (scale by 10, round half to even, scale back); sums in the
 *   order numpy uses (pairwise for 1-D means, row by row for column means), so the rounded values
 *   equal the reference's to the last printed digit.
 *
 * @module
 */

/** An accuracy matrix of a task sequence (percent). */
export interface AccuracyMatrix {
  /** Training tasks in training order; row t = the model after training `tasks[t]`. */
  tasks: string[];
  /** Evaluated datasets (columns). Must contain every task; extra datasets are kept but not scored. */
  datasets: string[];
  /** `values[t][j]`: top-1 accuracy (percent) on `datasets[j]` after task t. `NaN` = not evaluated. */
  values: number[][];
  /** Optional zero-shot accuracies (percent) per dataset, before any training (row "zero-shot"). */
  zeroShot?: number[];
}

/** MTIL scores of one accuracy matrix (percent, unrounded; see {@linkcode roundScores}). */
export interface MtilScores {
  /** Mean over tasks 2..T of the accuracy before training that task (reference Transfer). */
  transfer: number;
  /** Mean of all T×T task entries (reference Avg). */
  avg: number;
  /** Mean of the last row (reference Last). */
  last: number;
  /** Backward transfer: mean over j < T of A[T-1][j] − A[j][j] (GEM; negative = forgetting). */
  bwt: number;
  /**
   * Average forgetting: mean over j < T of max_{j ≤ t < T-1} A[t][j] − A[T-1][j] (Chaudhry et al.;
   * only rows after task j was trained count, so zero-shot decay before training is not forgetting).
   */
  forgetting: number;
  /** Per-task Transfer terms for tasks 2..T (length T-1), in training order. */
  transferPerTask: number[];
  /** Per-task column means (length T), in training order. */
  avgPerTask: number[];
  /** Last row restricted to the tasks (length T), in training order. */
  lastPerTask: number[];
}

/** Transfer / Avg / Last rounded to the printed precision (0.1). */
export interface RoundedScores {
  /** Transfer rounded like `np.around(x, 1)`. */
  transfer: number;
  /** Avg rounded like `np.around(x, 1)`. */
  avg: number;
  /** Last rounded like `np.around(x, 1)`. */
  last: number;
}

/** Round half to even (IEEE `rint`, what numpy's `rint` / `np.around` use). */
export function rint(x: number): number {
  if (!Number.isFinite(x)) return x;
  if (x < 0 || Object.is(x, -0)) return -rint(-x);
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** `np.around(x, decimals)`: `rint(x * 10^d) / 10^d` (for d ≥ 0), exactly as numpy computes it. */
export function npAround(x: number, decimals = 1): number {
  if (decimals < 0 || !Number.isInteger(decimals)) {
    throw new Error(`npAround: decimals must be a non-negative integer, got ${decimals}`);
  }
  const s = 10 ** decimals;
  return rint(x * s) / s;
}

/** numpy's pairwise summation of a contiguous float64 array (`np.sum` / `np.mean` on 1-D). */
export function pairwiseSum(a: ArrayLike<number>, start?: number, count?: number): number {
  const s0 = start ?? 0;
  return pairwiseRange(a, s0, count ?? a.length - s0);
}

function pairwiseRange(a: ArrayLike<number>, start: number, n: number): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let k = 0; k < 8; k++) r[k] = a[start + k];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let k = 0; k < 8; k++) r[k] += a[start + i + k];
    }
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseRange(a, start, n2) + pairwiseRange(a, start + n2, n - n2);
}

/** `np.mean` of a 1-D array (pairwise sum / n). */
export function npMean(a: ArrayLike<number>): number {
  if (a.length === 0) return NaN;
  return pairwiseSum(a) / a.length;
}

/** `arr.mean(axis=0)` of a C-contiguous 2-D array: rows added one after another, then / rows. */
export function npColumnMeans(rows: number[][]): number[] {
  if (rows.length === 0) return [];
  const out = rows[0].slice();
  for (let t = 1; t < rows.length; t++) {
    for (let j = 0; j < out.length; j++) out[j] += rows[t][j];
  }
  return out.map((v) => v / rows.length);
}

/**
 * The T×T matrix of the task columns in training order (row t, column j = task j), with a check
 * that every task was evaluated in every row.
 */
export function taskSquare(m: AccuracyMatrix): number[][] {
  validateMatrix(m);
  const cols = m.tasks.map((task) => {
    const j = m.datasets.indexOf(task);
    if (j < 0) {
      throw new Error(
        `accuracy matrix: task "${task}" has no column (datasets: ${m.datasets.join(", ")}); ` +
          `evaluate every trained task`,
      );
    }
    return j;
  });
  return m.values.map((row, t) =>
    cols.map((j, c) => {
      const v = row[j];
      if (!Number.isFinite(v)) {
        throw new Error(`accuracy matrix: A[${t}][${m.tasks[c]}] is missing (${v})`);
      }
      return v;
    })
  );
}

/** Throw a descriptive error unless the matrix is well formed (T rows of `datasets.length` numbers). */
export function validateMatrix(m: AccuracyMatrix): void {
  if (!Array.isArray(m.tasks) || !Array.isArray(m.datasets) || !Array.isArray(m.values)) {
    throw new Error(
      "accuracy matrix: expected {tasks: string[], datasets: string[], values: number[][]}",
    );
  }
  if (m.values.length !== m.tasks.length) {
    throw new Error(
      `accuracy matrix: ${m.values.length} rows for ${m.tasks.length} tasks (one row per trained task)`,
    );
  }
  m.values.forEach((row, t) => {
    if (!Array.isArray(row) || row.length !== m.datasets.length) {
      throw new Error(
        `accuracy matrix: row ${t} has ${row?.length} values for ${m.datasets.length} datasets`,
      );
    }
  });
  if (m.zeroShot && m.zeroShot.length !== m.datasets.length) {
    throw new Error(
      `accuracy matrix: zero-shot row has ${m.zeroShot.length} values for ${m.datasets.length} datasets`,
    );
  }
}

/** Scores of a square T×T task matrix `a` (row t = after task t, column j = task j). */
export function scoresOfSquare(a: number[][]): MtilScores {
  const T = a.length;
  if (T === 0) throw new Error("accuracy matrix: no tasks");
  for (const row of a) {
    if (row.length !== T) {
      throw new Error(`accuracy matrix: expected ${T}×${T}, got a row of ${row.length}`);
    }
  }
  const transferPerTask: number[] = [];
  for (let j = 1; j < T; j++) {
    const above: number[] = [];
    for (let t = 0; t < j; t++) above.push(a[t][j]);
    transferPerTask.push(npMean(above));
  }
  const avgPerTask = npColumnMeans(a);
  const lastPerTask = a[T - 1].slice();
  const bwtTerms: number[] = [];
  const forgetTerms: number[] = [];
  for (let j = 0; j < T - 1; j++) {
    bwtTerms.push(a[T - 1][j] - a[j][j]);
    let best = -Infinity;
    for (let t = j; t < T - 1; t++) best = Math.max(best, a[t][j]);
    forgetTerms.push(best - a[T - 1][j]);
  }
  return {
    transfer: T > 1 ? npMean(transferPerTask) : NaN,
    avg: npMean(avgPerTask),
    last: npMean(lastPerTask),
    bwt: T > 1 ? npMean(bwtTerms) : NaN,
    forgetting: T > 1 ? npMean(forgetTerms) : NaN,
    transferPerTask,
    avgPerTask,
    lastPerTask,
  };
}

/**
 * MTIL scores of an accuracy matrix (see the module doc for the exact definitions and the
 * zero-shot convention: the zero-shot row is **not** part of Transfer, as in the reference).
 */
export function mtilScores(m: AccuracyMatrix): MtilScores {
  return scoresOfSquare(taskSquare(m));
}

/** Round Transfer / Avg / Last to the printed precision (0.1), like the reference summary. */
export function roundScores(s: { transfer: number; avg: number; last: number }): RoundedScores {
  return { transfer: npAround(s.transfer, 1), avg: npAround(s.avg, 1), last: npAround(s.last, 1) };
}

/**
 * Learning gain per task, in training order: the accuracy on task t right after training it
 * minus its zero-shot accuracy (`A[t][t] − zeroShot[t]`, percent points). A continual learner
 * should gain on every task; a task solved zero-shot has nothing to gain.
 *
 * @example
 * ```ts
 * const m = { tasks: ["a", "b"], datasets: ["a", "b"], values: [[80, 40], [70, 90]], zeroShot: [50, 45] };
 * learningGains(m); // [30, 45]
 * ```
 */
export function learningGains(m: AccuracyMatrix): number[] {
  const a = taskSquare(m);
  if (!m.zeroShot || m.zeroShot.length !== m.datasets.length) {
    throw new Error("learning gains: the accuracy matrix has no zero-shot row");
  }
  const zs = m.zeroShot;
  return m.tasks.map((t, i) => a[i][i] - zs[m.datasets.indexOf(t)]);
}

/**
 * The published "Zero-shot" row of the MTIL tables: the zero-shot accuracies scored as if every
 * row of the matrix were the zero-shot model (Transfer = mean over tasks 2..T, Avg = Last = mean
 * over all tasks). `zeroShot` is indexed like `datasets`.
 */
export function zeroShotScores(
  tasks: string[],
  datasets: string[],
  zeroShot: number[],
): RoundedScores & { raw: { transfer: number; avg: number; last: number } } {
  const row = tasks.map((t) => {
    const j = datasets.indexOf(t);
    if (j < 0) throw new Error(`zero-shot scores: task "${t}" has no column`);
    return zeroShot[j];
  });
  const raw = { transfer: npMean(row.slice(1)), avg: npMean(row), last: npMean(row) };
  return { ...roundScores(raw), raw };
}

/**
 * Reproduce the reference `statistics(arr, correct, order)` on a raw stored matrix: delete column
 * `dropColumn` (CIFAR10 = 2 in the reference), then permute rows and columns by `permutation`
 * (order II: `[9, 6, 7, 8, 5, 10, 0, 1, 3, 4, 2]`), then score.
 */
export function referenceStatistics(
  raw: number[][],
  opts: { dropColumn?: number; permutation?: number[] } = {},
): MtilScores {
  let arr = raw.map((r) => r.slice());
  if (opts.dropColumn !== undefined) {
    arr = arr.map((r) => r.filter((_, j) => j !== opts.dropColumn));
  }
  const p = opts.permutation;
  if (p) {
    if (p.length !== arr.length) {
      throw new Error(`permutation of length ${p.length} for ${arr.length} rows`);
    }
    arr = p.map((i) => p.map((j) => arr[i][j]));
  }
  return scoresOfSquare(arr);
}

/**
 * Re-index a matrix stored with alphabetical rows and columns (the published form) into training
 * order: row t and the scored columns follow `order`. `columns` names the stored columns; rows are
 * stored in the order of `columns` restricted to the tasks of `order`.
 */
export function fromAlphabetical(
  stored: number[][],
  columns: string[],
  order: string[],
): AccuracyMatrix {
  const rowNames = columns.filter((c) => order.includes(c));
  if (rowNames.length !== stored.length) {
    throw new Error(
      `stored matrix has ${stored.length} rows; the order's tasks found in columns: ${rowNames.length}`,
    );
  }
  const values = order.map((task) => {
    const r = rowNames.indexOf(task);
    if (r < 0) throw new Error(`task "${task}" is not a stored column`);
    return stored[r].slice();
  });
  return { tasks: order.slice(), datasets: columns.slice(), values };
}

/** Parse an accuracy-matrix JSON object, accepting `values` or `matrix` and `zeroShot` or `zero_shot`. */
export function parseAccuracyMatrix(json: unknown, source = "accuracy matrix"): AccuracyMatrix {
  if (typeof json !== "object" || json === null) throw new Error(`${source}: not a JSON object`);
  const o = json as Record<string, unknown>;
  const values = (o.values ?? o.matrix) as number[][] | undefined;
  const tasks = o.tasks as string[] | undefined;
  const datasets = (o.datasets ?? o.columns ?? tasks) as string[] | undefined;
  const zeroShot = (o.zeroShot ?? o.zero_shot) as number[] | undefined;
  if (!Array.isArray(values) || !Array.isArray(tasks) || !Array.isArray(datasets)) {
    throw new Error(`${source}: expected fields tasks, datasets and values`);
  }
  // JSON has no NaN: null marks a missing evaluation.
  const num = (v: unknown) => (typeof v === "number" ? v : NaN);
  const m: AccuracyMatrix = {
    tasks: tasks.map(String),
    datasets: datasets.map(String),
    values: values.map((r) => (Array.isArray(r) ? r.map(num) : [])),
  };
  if (Array.isArray(zeroShot)) m.zeroShot = zeroShot.map(num);
  try {
    validateMatrix(m);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
  }
  return m;
}
