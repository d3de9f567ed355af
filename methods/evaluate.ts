/**
 * Zero-shot evaluation as the reference: a head over all of a dataset's templates, logits ×100,
 * top-1 / top-5 accuracy (in percent), plus the metrics CSV files (`metrics_<Dataset>.csv` with
 * `iteration,top1,top5`, de-duplicated by iteration; `evaluate_all_results.csv`, appended).
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { ClipModel } from "../clip/types.ts";
import { zeroShotHead } from "../clip/zeroshot.ts";
import { tokenize, type Tokenizer } from "../clip/tokenizers/tokenizer.ts";
import type { Dataset } from "../datasets/types.ts";
import { batches } from "../datasets/loader.ts";
import { evalTransform } from "../datasets/transforms.ts";
import { parseCsv, stringifyCsv } from "../datasets/csv.ts";
import { writeFileAtomic } from "../clip/formats/safetensors.ts";
import { normalizeRows } from "./losses.ts";
import { loadDataset } from "../datasets/registry.ts";
import { ProgressBar } from "../clip/download/progress.ts";
import { assignVars, cloneVars, disposeVars } from "./ensemble.ts";
import type { LogLevel, Method } from "./method.ts";

/**
 * Token ids `[n, contextLength]` for a model: its own tokenizer when it carries one (the word
 * tokenizer of SynthMTIL models), else CLIP's BPE.
 */
export async function tokenizeFor(
  model: ClipModel,
  texts: string[],
  truncate: boolean | "cut" = false,
): Promise<tf.Tensor2D> {
  const contextLength = model.config.contextLength;
  if (model.tokenizer) return model.tokenizer.tokenize(texts, { contextLength, truncate });
  return await tokenize(texts, { contextLength, truncate });
}

/** Accuracy of one evaluation. */
export interface EvalResult {
  /** Dataset name. */
  dataset: string;
  /** Top-1 accuracy in percent. */
  top1: number;
  /** Top-5 accuracy in percent (top-k with k = min(5, classes)). */
  top5: number;
  /** Number of images evaluated. */
  n: number;
  /** Extra numbers from a method's classifier (e.g. DIKI's `voteAccuracy`, percent). */
  details?: Record<string, number>;
}

/** Options of {@link evaluateDataset}. */
export interface EvaluateOptions {
  /** Images per batch (default 64). */
  batchSize?: number;
  /** Evaluate only the first `limit` images (default all). */
  limit?: number;
  /** Stop after this many batches (the reference's `--max-evaluation-size`; default all). */
  maxBatches?: number;
  /** Templates (default: the dataset's). */
  templates?: string[];
  /** A precomputed head `[E, C]` (default: built from the templates). */
  head?: tf.Tensor2D;
  /**
   * A trained linear head (the fc train modes): logits `normalize(x)·Wᵀ + b` instead of the
   * zero-shot head. W has at least as many rows as the dataset has classes.
   */
  linearHead?: LinearHead;
  /** Tokenizer for the head (default: the model's, else CLIP's BPE). */
  tokenizer?: Tokenizer;
  /** Loader worker threads (default 0: main thread). */
  workers?: number;
  /** Called after each batch with (images done, total). */
  onProgress?: (done: number, total: number) => void;
  /**
   * A method's own classifier (e.g. DIKI's task-id-free path, `Diki.predictor`): logits `[n, C]`
   * of a batch of preprocessed NHWC images (not disposed by it), in the dataset's class order.
   * When given, no zero-shot head is built and `head`, `templates`, `tokenizer` are unused.
   */
  predict?: (images: tf.Tensor4D) => tf.Tensor2D | Promise<tf.Tensor2D>;
}

/** A trained linear classification head. */
export interface LinearHead {
  /** `[rows, E]`. */
  weight: tf.Tensor2D;
  /** `[rows]`. */
  bias: tf.Tensor1D;
}

/** Count top-1 / top-k hits of logits `[n, C]` against labels. */
export function topkHits(logits: tf.Tensor2D, labels: ArrayLike<number>, k = 5): [number, number] {
  const kk = Math.min(k, logits.shape[1]);
  const idx = tf.tidy(() => tf.topk(logits, kk).indices);
  const rows = idx.arraySync() as number[][];
  idx.dispose();
  return countHits(rows, labels);
}

/** {@link topkHits} with an asynchronous read (every backend, webgpu included). */
export async function topkHitsAsync(
  logits: tf.Tensor2D,
  labels: ArrayLike<number>,
  k = 5,
): Promise<[number, number]> {
  const kk = Math.min(k, logits.shape[1]);
  const idx = tf.tidy(() => tf.topk(logits, kk).indices);
  const rows = await idx.array() as number[][];
  idx.dispose();
  return countHits(rows, labels);
}

function countHits(rows: number[][], labels: ArrayLike<number>): [number, number] {
  let h1 = 0, hk = 0;
  rows.forEach((r, i) => {
    if (r[0] === labels[i]) h1++;
    if (r.includes(labels[i])) hk++;
  });
  return [h1, hk];
}

/** Zero-shot top-1 / top-5 of `model` on `dataset` (eval transform, logits ×100). */
export async function evaluateDataset(
  model: ClipModel,
  dataset: Dataset,
  options: EvaluateOptions = {},
): Promise<EvalResult> {
  const lin = options.linearHead;
  if (lin && lin.weight.shape[0] < dataset.classnames.length) {
    throw new Error(
      `${dataset.name}: ${dataset.classnames.length} classes but the linear head has ` +
        `${lin.weight.shape[0]} rows; evaluate it with its own zero-shot head (--dataset-shift)`,
    );
  }
  const prev = model.training;
  model.training = false;
  const predict = options.predict;
  const head = predict || lin ? undefined : options.head ??
    await zeroShotHead(model, dataset.classnames, options.templates ?? dataset.templates, {
      tokenizer: options.tokenizer,
    });
  const total = Math.min(
    dataset.length,
    options.limit ?? Infinity,
    (options.maxBatches ?? Infinity) * (options.batchSize ?? 64),
  );
  let n = 0, h1 = 0, h5 = 0;
  try {
    for await (
      const b of batches(dataset, {
        batchSize: options.batchSize ?? 64,
        transform: evalTransform(model.config.imageResolution),
        workers: options.workers ?? 0,
      })
    ) {
      const labels = b.labels.dataSync();
      const take = Math.min(labels.length, total - n);
      let logits: tf.Tensor2D;
      if (predict) {
        const imgs = take < labels.length ? b.images.slice(0, take) : b.images;
        logits = await predict(imgs as tf.Tensor4D);
        if (imgs !== b.images) imgs.dispose();
      } else {
        logits = tf.tidy(() => {
          const imgs = take < labels.length ? b.images.slice(0, take) : b.images;
          const f = normalizeRows(model.encodeImage(imgs as tf.Tensor4D));
          if (lin) return tf.add(tf.matMul(f, lin.weight, false, true), lin.bias) as tf.Tensor2D;
          return tf.matMul(f, head!).mul(100) as tf.Tensor2D;
        });
      }
      b.images.dispose();
      b.labels.dispose();
      const [a, c] = await topkHitsAsync(logits, labels.slice(0, take));
      logits.dispose();
      h1 += a;
      h5 += c;
      n += take;
      options.onProgress?.(n, total);
      if (n >= total) break;
    }
  } finally {
    if (!options.head) head?.dispose();
    model.training = prev;
  }
  if (n === 0) throw new Error(`${dataset.name}: no images to evaluate`);
  return { dataset: dataset.name, top1: (100 * h1) / n, top5: (100 * h5) / n, n };
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Add `iteration,top1,top5` to a metrics CSV, replacing a row of the same iteration (so a resumed
 * run never duplicates), rows sorted by iteration. Written atomically.
 */
export async function recordMetrics(
  path: string,
  iteration: number,
  top1: number,
  top5: number,
): Promise<void> {
  const text = await readText(path);
  const rows = new Map<number, [number, number]>();
  if (text) {
    const parsed = parseCsv(text);
    for (const r of parsed.slice(1)) {
      if (r.length >= 3 && r[0] !== "") rows.set(Number(r[0]), [Number(r[1]), Number(r[2])]);
    }
  }
  rows.set(iteration, [top1, top5]);
  const out: (string | number)[][] = [["iteration", "top1", "top5"]];
  for (const it of [...rows.keys()].sort((a, b) => a - b)) out.push([it, ...rows.get(it)!]);
  await writeFileAtomic(path, new TextEncoder().encode(stringifyCsv(out)));
}

/** Columns of `evaluate_all_results.csv`. */
export const ALL_RESULTS_HEADER = ["time", "model", "dataset", "top1", "top5", "n", "note"];

/** Append rows to `evaluate_all_results.csv` (header written when the file is new). */
export async function appendAllResults(
  path: string,
  model: string,
  results: readonly EvalResult[],
  note = "",
): Promise<void> {
  const text = (await readText(path)) ?? "";
  const rows: (string | number)[][] = text ? [] : [ALL_RESULTS_HEADER];
  const time = new Date().toISOString();
  for (const r of results) rows.push([time, model, r.dataset, r.top1, r.top5, r.n, note]);
  await writeFileAtomic(path, new TextEncoder().encode(text + stringifyCsv(rows)));
}

/**
 * Append one JSON line to a results database (the reference's `--results-db`): the run's
 * options plus `"<Dataset>:top1"` (a fraction, as the reference writes it) and
 * `"<Dataset>:top5"` for every result. Appends are single writes of whole lines.
 */
export async function appendResultsDb(
  path: string,
  options: Record<string, unknown>,
  results: readonly EvalResult[],
  extra: Record<string, unknown> = {},
): Promise<void> {
  const row: Record<string, unknown> = { ...options, ...extra };
  for (const r of results) {
    row[`${r.dataset}:top1`] = r.top1 / 100;
    row[`${r.dataset}:top5`] = r.top5 / 100;
  }
  const line = JSON.stringify(row, (_k, v) => typeof v === "bigint" ? String(v) : v) + "\n";
  await Deno.writeTextFile(path, line, { append: true, create: true });
}

/** Options of {@link evaluate}. */
export interface EvaluateAllOptions {
  /** Root folder of the datasets (default `./data`). */
  dataRoot?: string;
  /** Images per batch (default 128). */
  batchSize?: number;
  /** Images per dataset (default all). */
  limit?: number;
  /** Batches per dataset (default all). */
  maxBatches?: number;
  /** Loader worker threads (default 0). */
  workers?: number;
  /** Evaluate these weights (keyed like `model.params`) instead of the model's own. */
  weights?: ReadonlyMap<string, tf.Tensor>;
  /** What to print (default `progress`: a bar and one result line per dataset). */
  log?: LogLevel;
  /** Record `metrics_<Dataset>.csv` rows in this folder (at `iteration`). */
  metricsDir?: string;
  /** Iteration the metrics rows are recorded under (default 0). */
  iteration?: number;
  /**
   * A trained linear head used for every dataset, unless `datasetShift` (then each dataset gets
   * its own zero-shot head, the reference's `--dataset-shift`).
   */
  linearHead?: LinearHead;
  /** Evaluate each dataset with its own zero-shot head even when `linearHead` is given. */
  datasetShift?: boolean;
  /** A method whose own classifier (DIKI's inference path) replaces the zero-shot head. */
  method?: Method;
}

/**
 * Zero-shot top-1 / top-5 of `model` on each dataset's test split, as the reference evaluates.
 *
 * @example
 * ```ts
 * import { loadClip } from "jsr:@mtil/mtil/clip";
 * import { evaluate } from "jsr:@mtil/mtil/methods";
 *
 * const { model } = await loadClip("synth-tiny");
 * const [shape] = await evaluate(model, ["Synth-shape"], { limit: 64, log: "silent" });
 * console.log(`${shape.dataset}: top-1 ${shape.top1.toFixed(1)}%`);
 * model.dispose();
 * ```
 */
export async function evaluate(
  model: ClipModel,
  datasets: readonly (string | Dataset)[],
  options: EvaluateAllOptions = {},
): Promise<EvalResult[]> {
  const level = options.log ?? "progress";
  const saved = options.weights && options.weights !== model.params
    ? cloneVars(model.params)
    : undefined;
  if (saved) assignVars(model.params, options.weights!);
  const out: EvalResult[] = [];
  try {
    for (const d of datasets) {
      const ds = typeof d === "string"
        ? await loadDataset(d, { root: options.dataRoot ?? "./data", split: "test" })
        : d;
      const bs = options.batchSize ?? 128;
      const total = Math.min(
        ds.length,
        options.limit ?? Infinity,
        (options.maxBatches ?? Infinity) * bs,
      );
      const bar = level === "silent"
        ? undefined
        : new ProgressBar({ total, label: `eval ${ds.name}`, unit: "img" });
      let last = 0;
      const classifier = await options.method?.classifier?.(model, ds);
      const r = await evaluateDataset(model, ds, {
        predict: classifier ? (images) => classifier.predict(images) : undefined,
        batchSize: bs,
        limit: options.limit,
        maxBatches: options.maxBatches,
        workers: options.workers,
        linearHead: options.datasetShift ? undefined : options.linearHead,
        onProgress: (done) => {
          bar?.tick(done - last);
          last = done;
        },
      });
      bar?.done();
      if (classifier) {
        const details = classifier.details?.();
        if (details) r.details = details;
        classifier.dispose();
      }
      const it = options.iteration ?? 0;
      if (level !== "silent") {
        console.log(
          `${ds.name} @${it}: top-1 ${r.top1.toFixed(2)}%  top-5 ${r.top5.toFixed(2)}%  (${r.n})`,
        );
      }
      if (options.metricsDir) {
        await Deno.mkdir(options.metricsDir, { recursive: true });
        await recordMetrics(`${options.metricsDir}/metrics_${ds.name}.csv`, it, r.top1, r.top5);
      }
      out.push(r);
    }
  } finally {
    if (saved) {
      assignVars(model.params, saved);
      disposeVars(saved);
    }
  }
  return out;
}
