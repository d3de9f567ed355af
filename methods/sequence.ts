/**
 * A continual-learning task sequence, crash-safe: train task after task, evaluate every eval
 * dataset after each one (and the zero-shot model first), and keep the accuracy matrix on disk.
 *
 * Everything is written atomically, after the work it records: a rerun of the same command reads
 * `accuracy_matrix.json`, skips finished tasks (loading their checkpoint), re-evaluates a task
 * whose checkpoint exists but whose row does not, and lets the trainer resume a task that was
 * interrupted (the trainer keeps its own resume state in `ctx.resumeDir`).
 *
 * @module
 */
import type { ClipModel } from "../clip/types.ts";
import { readCheckpoint, saveCheckpoint } from "../clip/checkpoint.ts";
import { type AccuracyMatrix, type MtilScores, mtilScores, roundScores } from "./metrics.ts";

/** Top-1 / top-5 accuracy in percent. */
export interface Accuracy {
  /** Top-1 accuracy (percent). */
  top1: number;
  /** Top-5 accuracy (percent). */
  top5: number;
}

/** What a trainer gets for one task of a sequence. */
export interface SequenceTaskContext {
  /** 0-based position of the task in the order. */
  index: number;
  /** The task (dataset name). */
  task: string;
  /** Folder the trainer may use for its resume state of this task (exists). */
  resumeDir: string;
}

/** Options of {@link runSequence}. */
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
  /** Train `model` in place on one task (resuming from `ctx.resumeDir` if it holds state). */
  trainTask(model: ClipModel, ctx: SequenceTaskContext): Promise<void>;
  /** Evaluate `model` on one dataset. */
  evaluate(model: ClipModel, dataset: string): Promise<Accuracy>;
  /** Called after each row is saved (for live plots and progress output). */
  onRow?(matrix: SequenceMatrix, row: number | "zero-shot"): void | Promise<void>;
  /** Checkpoint metadata beyond the defaults. */
  checkpointMeta?: Record<string, unknown>;
}

/** The on-disk accuracy matrix of a sequence (`accuracy_matrix.json`), top-1 and top-5. */
export interface SequenceMatrix extends AccuracyMatrix {
  /** Top-5 accuracies, same layout as `values`. */
  top5: number[][];
  /** Zero-shot top-5 per dataset. */
  zeroShotTop5?: number[];
  /** Number of rows (tasks) finished. */
  completed: number;
}

/** What {@link runSequence} returns. */
export interface SequenceResult {
  /** The full accuracy matrix. */
  matrix: SequenceMatrix;
  /** MTIL scores (unrounded) of the matrix. */
  scores: MtilScores;
}

/** Write `text` to `path` atomically (temp file in the same folder, then rename). */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await f.write(new TextEncoder().encode(text));
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
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
export async function runSequence(
  model: ClipModel,
  options: SequenceOptions,
): Promise<SequenceResult> {
  const dir = options.saveDir;
  const evalDatasets = options.evalDatasets ?? options.order;
  for (const t of options.order) {
    if (!evalDatasets.includes(t)) {
      throw new Error(`eval datasets must include every task; "${t}" is missing`);
    }
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
  const evalRow = async () => {
    const top1: number[] = [];
    const top5: number[] = [];
    for (const d of evalDatasets) {
      const acc = await options.evaluate(model, d);
      top1.push(acc.top1);
      top5.push(acc.top5);
    }
    return { top1, top5 };
  };

  if (!m.zeroShot) {
    const r = await evalRow();
    m.zeroShot = r.top1;
    m.zeroShotTop5 = r.top5;
    await save();
    await options.onRow?.(m, "zero-shot");
  }

  // Finished tasks are skipped; the next one starts from the last finished task's weights.
  if (m.completed > 0) {
    const last = taskCheckpointPath(dir, options.order[m.completed - 1]);
    model.loadStateDict((await readCheckpoint(last)).stateDict);
  }
  for (let t = m.completed; t < nT; t++) {
    const task = options.order[t];
    const ckpt = taskCheckpointPath(dir, task);
    if (await exists(ckpt)) {
      model.loadStateDict((await readCheckpoint(ckpt)).stateDict);
    } else {
      const resumeDir = `${dir}/resume/${task.replaceAll("/", "_")}`;
      await Deno.mkdir(resumeDir, { recursive: true });
      await options.trainTask(model, { index: t, task, resumeDir });
      await saveCheckpoint(ckpt, model.stateDict(), {
        task,
        taskIndex: t,
        order: options.order,
        ...options.checkpointMeta,
      });
      await Deno.remove(resumeDir, { recursive: true }).catch(() => {});
    }
    const r = await evalRow();
    m.values[t] = r.top1;
    m.top5[t] = r.top5;
    m.completed = t + 1;
    await save();
    await options.onRow?.(m, t);
  }
  const scores = mtilScores(m);
  await writeTextAtomic(
    `${dir}/summary.json`,
    JSON.stringify(
      { scores, rounded: roundScores(scores), zeroShotConvention: ZERO_SHOT_NOTE },
      null,
      2,
    ),
  );
  return { matrix: m, scores };
}

/** How the zero-shot row enters the scores (stated in every summary). */
export const ZERO_SHOT_NOTE =
  "Transfer averages, for tasks 2..T, the accuracy on task t of the models trained on tasks " +
  "1..t-1 (the rows above the diagonal), as the reference summary does; the zero-shot row is " +
  "reported beside the matrix but does not enter Transfer, Avg or Last.";
