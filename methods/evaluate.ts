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
}

/** Options of {@link evaluateDataset}. */
export interface EvaluateOptions {
  /** Images per batch (default 64). */
  batchSize?: number;
  /** Evaluate only the first `limit` images (default all). */
  limit?: number;
  /** Templates (default: the dataset's). */
  templates?: string[];
  /** A precomputed head `[E, C]` (default: built from the templates). */
  head?: tf.Tensor2D;
  /** Tokenizer for the head (default: the model's, else CLIP's BPE). */
  tokenizer?: Tokenizer;
  /** Loader worker threads (default 0: main thread). */
  workers?: number;
  /** Called after each batch with (images done, total). */
  onProgress?: (done: number, total: number) => void;
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
  const prev = model.training;
  model.training = false;
  const head = options.head ??
    await zeroShotHead(model, dataset.classnames, options.templates ?? dataset.templates, {
      tokenizer: options.tokenizer,
    });
  const total = Math.min(dataset.length, options.limit ?? Infinity);
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
      const logits = tf.tidy(() => {
        const imgs = take < labels.length ? b.images.slice(0, take) : b.images;
        const f = normalizeRows(model.encodeImage(imgs as tf.Tensor4D));
        return tf.matMul(f, head).mul(100) as tf.Tensor2D;
      });
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
    if (!options.head) head.dispose();
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
