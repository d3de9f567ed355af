/**
 * MTIL protocol facts carried as the project's own data (`data/protocol/*.json`): task orders I and
 * II, per-task learning rates, the ZSCL recipe, the published ViT-B/16 Transfer / Avg / Last tables
 * and the published accuracy matrices of seven methods.
 *
 * @module
 */
import mtil from "../data/protocol/mtil.json" with { type: "json" };
import published from "../data/protocol/published.json" with { type: "json" };
import { type AccuracyMatrix, fromAlphabetical, type RoundedScores } from "./metrics.ts";

/** The two MTIL task orders of the reference (11 datasets each). */
export const MTIL_ORDERS: Readonly<Record<"I" | "II", readonly string[]>> = {
  I: Object.freeze([...mtil.orders.I]),
  II: Object.freeze([...mtil.orders.II]),
};

/** The ZSCL recipe of the reference (command-line flags as published). */
export const ZSCL_RECIPE: string = mtil.recipe_zscl;

/** Published zero-shot top-1 (percent) of CLIP ViT-B/16 per MTIL dataset. */
export const PUBLISHED_ZERO_SHOT: Readonly<Record<string, number>> = Object.freeze({
  ...mtil.published_zero_shot_top1_vitb16,
});

/** Name of a published order. */
export type OrderName = "I" | "II";

/**
 * Resolve `--order`: `"I"`, `"II"` (case-insensitive) or a comma-separated list of dataset names.
 * Duplicates and empty names are errors.
 */
export function resolveOrder(spec: string): string[] {
  const s = spec.trim();
  if (/^(i|ii)$/i.test(s)) return [...MTIL_ORDERS[s.toUpperCase() as OrderName]];
  const names = s.split(",").map((x) => x.trim());
  if (names.length === 0 || names.some((x) => x === "")) {
    throw new Error(`--order: expected I, II or a comma-separated list of datasets, got "${spec}"`);
  }
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new Error(`--order: dataset "${n}" appears twice in "${spec}"`);
    seen.add(n);
  }
  return names;
}

/** The reference's learning rate for a task (5e-5 for Aircraft and MNIST, 1e-5 otherwise). */
export function protocolLearningRate(dataset: string): number {
  const table = mtil.per_task_lr as Record<string, number>;
  return table[dataset] ?? table.default;
}

/**
 * Per-task learning rates for a sequence: `spec` (`--lr-per-task`) is either one number for all
 * tasks, a comma list with one number per task, or `Name=lr` pairs (others keep the protocol's
 * default); without `spec` the protocol's rates.
 */
export function learningRates(tasks: string[], spec?: string): number[] {
  if (spec === undefined || spec.trim() === "") return tasks.map(protocolLearningRate);
  const parts = spec.split(",").map((x) => x.trim());
  const parse = (x: string) => {
    const v = Number(x);
    if (!Number.isFinite(v) || v <= 0) {
      throw new Error(`--lr-per-task: "${x}" is not a positive number`);
    }
    return v;
  };
  if (parts.every((p) => p.includes("="))) {
    const map = new Map(parts.map((p) => {
      const [k, v] = p.split("=");
      if (!tasks.includes(k.trim())) {
        throw new Error(`--lr-per-task: "${k}" is not a task of the order (${tasks.join(", ")})`);
      }
      return [k.trim(), parse(v)] as const;
    }));
    return tasks.map((t) => map.get(t) ?? protocolLearningRate(t));
  }
  if (parts.length === 1) return tasks.map(() => parse(parts[0]));
  if (parts.length !== tasks.length) {
    throw new Error(`--lr-per-task: ${parts.length} rates for ${tasks.length} tasks`);
  }
  return parts.map(parse);
}

/** Published method names, in table order. */
export const PUBLISHED_METHODS: readonly string[] = Object.freeze(
  Object.keys(mtil.published_order_I_vitb16).filter((k) => !k.startsWith("_")),
);

/**
 * Published Transfer / Avg / Last (ViT-B/16) of `method` in `order` (including the "Zero-shot" row),
 * as printed in the paper.
 */
export function publishedScores(order: OrderName, method: string): RoundedScores {
  const table =
    (order === "I"
      ? mtil.published_order_I_vitb16
      : mtil.published_order_II_vitb16) as unknown as Record<string, number[]>;
  const row = table[method];
  if (!row || method.startsWith("_")) {
    throw new Error(`no published scores for "${method}" (known: ${PUBLISHED_METHODS.join(", ")})`);
  }
  return { transfer: row[0], avg: row[1], last: row[2] };
}

/** A published accuracy matrix with the values the reference summary prints from it. */
export interface PublishedMatrix {
  /** Method name as in the paper. */
  method: string;
  /** The order it was trained in. */
  order: OrderName;
  /** The matrix in training order (12 columns including CIFAR10, which is not scored). */
  matrix: AccuracyMatrix;
  /** The raw stored matrix (11×12, alphabetical rows and columns). */
  raw: number[][];
  /** Transfer / Avg / Last the reference summary computes from it. */
  expected: RoundedScores;
}

/** Columns of the published matrices (alphabetical, with CIFAR10). */
export const PUBLISHED_COLUMNS: readonly string[] = Object.freeze([...published.columns]);

/** The 14 published accuracy matrices (7 methods × orders I and II). */
export function publishedMatrices(): PublishedMatrix[] {
  const out: PublishedMatrix[] = [];
  for (const order of ["I", "II"] as const) {
    const byMethod = (order === "I" ? published.order_I : published.order_II) as Record<
      string,
      { matrix: number[][]; transfer_avg_last: number[] }
    >;
    for (const [method, v] of Object.entries(byMethod)) {
      const [transfer, avg, last] = v.transfer_avg_last;
      out.push({
        method,
        order,
        raw: v.matrix.map((r) => r.slice()),
        matrix: fromAlphabetical(v.matrix, [...published.columns], [...MTIL_ORDERS[order]]),
        expected: { transfer, avg, last },
      });
    }
  }
  return out;
}

/** The reference summary's permutation for order II (rows and columns, after dropping CIFAR10). */
export const ORDER_II_PERMUTATION: readonly number[] = Object.freeze([
  9,
  6,
  7,
  8,
  5,
  10,
  0,
  1,
  3,
  4,
  2,
]);

/** Which published order a task list is, if any. */
export function orderName(tasks: readonly string[]): OrderName | undefined {
  for (const o of ["I", "II"] as const) {
    const ref = MTIL_ORDERS[o];
    if (ref.length === tasks.length && ref.every((t, i) => t === tasks[i])) return o;
  }
  return undefined;
}
