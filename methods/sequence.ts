/**
 * A continual-learning task sequence, crash-safe: train task after task, evaluate every eval
 * dataset after each one (and the zero-shot model first), and keep the accuracy matrix on disk.
 *
 * Everything is written atomically, after the work it records: a rerun of the same command reads
 * `accuracy_matrix.json`, skips finished tasks, re-evaluates a task whose checkpoint exists but
 * whose row does not, and lets the trainer resume a task that was interrupted (the trainer keeps
 * its own resume state beside the checkpoint).
 *
 * @module
 */
import { writeFileAtomic } from "../clip/formats/safetensors.ts";
import { type AccuracyMatrix, type MtilScores, mtilScores, roundScores } from "./metrics.ts";

/** Top-1 / top-5 accuracy in percent. */
export interface Accuracy {
  /** Top-1 accuracy (percent). */
  top1: number;
  /** Top-5 accuracy (percent). */
  top5: number;
  /** Extra numbers of a method's classifier (e.g. DIKI's `voteAccuracy`). */
  details?: Record<string, number>;
}

/** What a trainer gets for one task of a sequence. */
export interface SequenceTaskContext {
  /** 0-based position of the task in the order. */
  index: number;
  /** The task (dataset name). */
  task: string;
  /** Where the trained weights must be saved (atomically) when the task finishes. */
  checkpointPath: string;
  /** The previous task's checkpoint (undefined for the first task: start from zero-shot). */
  previousCheckpoint?: string;
}

/** Options of {@link sequenceLoop}. */
export interface SequenceOptions {
  /** Training tasks (dataset names) in order. */
  order: string[];
  /** Datasets evaluated after each task (default: `order`). */
  evalDatasets?: string[];
  /** Output folder (created). */
  saveDir: string;
  /** Run configuration written to `manifest.json`; a rerun must present the same `config`. */
  config: Record<string, unknown>;
  /** Extra manifest fields (library version, backend, …) that may differ between reruns. */
  manifestExtra?: Record<string, unknown>;
  /**
   * Train one task, starting from `ctx.previousCheckpoint` (or the zero-shot model), resuming
   * its own interrupted state if any, and save the result to `ctx.checkpointPath`. Returns false
   * when it stopped early (a signal): the sequence then stops, and a rerun continues.
   */
  trainTask(ctx: SequenceTaskContext): Promise<boolean>;
  /** Evaluate the weights of `checkpoint` (undefined: the zero-shot model) on every dataset. */
  evaluate(checkpoint: string | undefined, datasets: string[]): Promise<Accuracy[]>;
  /** Stop after this task has finished (for job chains); default: run every task. */
  stopAfter?: string;
  /** Called after each row is saved (for live plots and progress output). */
  onRow?(matrix: SequenceMatrix, row: number | "zero-shot"): void | Promise<void>;
}

/** The on-disk accuracy matrix of a sequence (`accuracy_matrix.json`), top-1 and top-5. */
export interface SequenceMatrix extends AccuracyMatrix {
  /** Top-5 accuracies, same layout as `values`. */
  top5: number[][];
  /** Zero-shot top-5 per dataset. */
  zeroShotTop5?: number[];
  /** Number of rows (tasks) finished. */
  completed: number;
  /**
   * Per row and dataset, the extra numbers of a method's own classifier (DIKI: `voteAccuracy`,
   * the share of the dataset's images whose batch voted for its task); absent for other methods.
   */
  details?: (Record<string, number> | null)[][];
}

/** What {@link sequenceLoop} returns. */
export interface SequenceResult {
  /** The accuracy matrix (complete when `finished`). */
  matrix: SequenceMatrix;
  /** MTIL scores (unrounded) of the matrix; undefined until every task has finished. */
  scores?: MtilScores;
  /** Whether every task has finished. */
  finished: boolean;
}

/** Write `text` to `path` atomically (see `writeFileAtomic`: temp file, fsync, rename). */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(text));
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${path}: unreadable (${(e as Error).message}); delete it to start over`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Path of the checkpoint saved after task `task` in `dir`. */
export function taskCheckpointPath(dir: string, task: string): string {
  return `${dir}/${task.replaceAll("/", "_")}.safetensors`;
}

/** Accuracy matrix as CSV text: header `model,<datasets…>`, a `zero-shot` row, then one row per task. */
export function matrixCsv(m: SequenceMatrix): string {
  const fmt = (v: number) => Number.isFinite(v) ? v.toFixed(2) : "";
  const lines = [["model", ...m.datasets].join(",")];
  if (m.zeroShot) lines.push(["zero-shot", ...m.zeroShot.map(fmt)].join(","));
  m.tasks.forEach((t, i) => {
    if (i < m.completed) lines.push([t, ...m.values[i].map(fmt)].join(","));
  });
  return lines.join("\n") + "\n";
}

/** Run (or continue) a task sequence; see the module documentation. */
export async function sequenceLoop(options: SequenceOptions): Promise<SequenceResult> {
  const dir = options.saveDir;
  const evalDatasets = options.evalDatasets ?? options.order;
  for (const t of options.order) {
    if (!evalDatasets.includes(t)) {
      throw new Error(`eval datasets must include every task; "${t}" is missing`);
    }
  }
  if (options.stopAfter !== undefined && !options.order.includes(options.stopAfter)) {
    throw new Error(`--stop-after ${options.stopAfter} is not a task of the order`);
  }
  await Deno.mkdir(dir, { recursive: true });
  const manifestPath = `${dir}/manifest.json`;
  const prev = await readJson<{ config: unknown }>(manifestPath);
  const config = { order: options.order, evalDatasets, ...options.config };
  if (prev && JSON.stringify(prev.config) !== JSON.stringify(config)) {
    throw new Error(
      `${dir} holds a run with another configuration (see ${manifestPath}); ` +
        `use another --save folder or delete it`,
    );
  }
  if (!prev) {
    await writeTextAtomic(
      manifestPath,
      JSON.stringify(
        { config, ...options.manifestExtra, created: new Date().toISOString() },
        null,
        2,
      ),
    );
  }

  const matrixPath = `${dir}/accuracy_matrix.json`;
  const nT = options.order.length;
  const nD = evalDatasets.length;
  const m: SequenceMatrix = await readJson<SequenceMatrix>(matrixPath) ?? {
    tasks: options.order,
    datasets: evalDatasets,
    values: Array.from({ length: nT }, () => new Array(nD).fill(NaN)),
    top5: Array.from({ length: nT }, () => new Array(nD).fill(NaN)),
    completed: 0,
  };
  // JSON has no NaN: null marks a missing value.
  m.values = m.values.map((r) => r.map((v) => v ?? NaN));
  m.top5 = m.top5.map((r) => r.map((v) => v ?? NaN));
  const save = async () => {
    await writeTextAtomic(matrixPath, JSON.stringify(m, null, 1));
    await writeTextAtomic(`${dir}/accuracy_matrix.csv`, matrixCsv(m));
  };
  const evalRow = async (ckpt: string | undefined) => {
    const acc = await options.evaluate(ckpt, evalDatasets);
    const details = acc.some((a) => a.details) ? acc.map((a) => a.details ?? null) : undefined;
    return { top1: acc.map((a) => a.top1), top5: acc.map((a) => a.top5), details };
  };

  if (!m.zeroShot) {
    const r = await evalRow(undefined);
    m.zeroShot = r.top1;
    m.zeroShotTop5 = r.top5;
    await save();
    await options.onRow?.(m, "zero-shot");
  }

  for (let t = m.completed; t < nT; t++) {
    const task = options.order[t];
    const ckpt = taskCheckpointPath(dir, task);
    if (!(await exists(ckpt))) {
      const done = await options.trainTask({
        index: t,
        task,
        checkpointPath: ckpt,
        previousCheckpoint: t > 0 ? taskCheckpointPath(dir, options.order[t - 1]) : undefined,
      });
      if (!done) return { matrix: m, finished: false };
      if (!(await exists(ckpt))) {
        throw new Error(`training ${task} finished without saving ${ckpt}`);
      }
    }
    const r = await evalRow(ckpt);
    m.values[t] = r.top1;
    m.top5[t] = r.top5;
    if (r.details) {
      m.details ??= [];
      m.details[t] = r.details;
    }
    m.completed = t + 1;
    await save();
    await options.onRow?.(m, t);
    if (task === options.stopAfter && t < nT - 1) return { matrix: m, finished: false };
  }
  const scores = mtilScores(m);
  await writeTextAtomic(
    `${dir}/summary.json`,
    JSON.stringify(
      { scores, rounded: roundScores(scores), zeroShotConvention: ZERO_SHOT_NOTE },
      null,
      2,
    ) + "\n",
  );
  return { matrix: m, scores, finished: true };
}

/** How the zero-shot row enters the scores (stated in every summary). */
export const ZERO_SHOT_NOTE: string =
  "Transfer averages, for tasks 2..T, the accuracy on task t of the models trained on tasks " +
  "1..t-1 (the rows above the diagonal), as the reference summary does; the zero-shot row is " +
  "reported beside the matrix but does not enter Transfer, Avg or Last.";
