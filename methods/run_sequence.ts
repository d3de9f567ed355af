/**
 * `runSequence`: a whole continual-learning task sequence as one typed library call — train task
 * after task (each from the previous task's saved weights), evaluate every dataset after each
 * task and the zero-shot model first, keep the accuracy matrix, the MTIL scores and plots on
 * disk, and continue where a killed run stopped. `deno task sequence` and the demo wrap it.
 *
 * @example Two SynthMTIL tasks with ZSCL, a live callback per row
 * ```ts
 * import { loadClip } from "jsr:@mtil/mtil/clip";
 * import { runSequence, zscl } from "jsr:@mtil/mtil/methods";
 *
 * const { model } = await loadClip("synth-tiny");
 * const result = await runSequence(model, ["Synth-shape", "Synth-colour"], {
 *   dir: "runs/zscl-demo",
 *   method: zscl({ refDataset: "Synth-captions", refSentences: { dataset: "Synth-captions" } }),
 *   iterations: 20,
 *   batchSize: 16,
 *   lr: 5e-4,
 *   evalLimit: 64,
 *   log: "silent",
 *   onRow: (matrix, row) => console.log(row, matrix.values),
 * });
 * console.log(result.scores);
 * model.dispose();
 * ```
 *
 * @module
 */
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { checkWeights } from "../clip/load.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import type { ClipModel } from "../clip/types.ts";
import type { Dataset } from "../datasets/types.ts";
import type { MtilScores } from "./metrics.ts";
import { writePlots } from "./plots.ts";
import { splitHead } from "./params.ts";
import { evaluate } from "./evaluate.ts";
import {
  type Accuracy,
  sequenceLoop,
  type SequenceMatrix,
  taskCheckpointPath,
} from "./sequence.ts";
import {
  libraryVersion,
  logger,
  trainTask,
  type TrainTaskOptions,
  type TrainTaskResult,
} from "./trainer.ts";

/** Options of {@link runSequence}: the recipe of every task plus the sequence's own. */
export interface RunSequenceOptions extends Omit<TrainTaskOptions, "eval" | "save" | "lr"> {
  /** Output folder (required: the sequence is resumable from it). */
  dir: string;
  /** Learning rate: one for every task, or one per task (default 1e-3). */
  lr?: number | readonly number[];
  /** Datasets evaluated after each task (default: the tasks; must include every task). */
  evalDatasets?: string[];
  /** Test images per dataset in the matrix (default all). */
  evalLimit?: number;
  /** Batches per dataset in the matrix (default all). */
  evalMaxBatches?: number;
  /** Save the resume state every this many steps too (default 0: only when stopped). */
  saveInterval?: number;
  /** With LoRA, also save each task's adapters. */
  saveAdapters?: boolean;
  /**
   * What defines the run (written to `manifest.json`; a rerun must match). Default: a summary of
   * the options.
   */
  config?: Record<string, unknown>;
  /** Extra manifest fields that may differ between reruns (backend, …). */
  manifestExtra?: Record<string, unknown>;
  /** Stop once this task has finished (job chains). */
  stopAfter?: string;
  /** Title of the plots. */
  title?: string;
  /** Write the accuracy-matrix plots after every row (default true). */
  plots?: boolean;
  /** After each saved row of the matrix (`"zero-shot"` for the first). */
  onRow?: (matrix: SequenceMatrix, row: number | "zero-shot") => void | Promise<void>;
  /** After each trained task. */
  onTask?: (result: TrainTaskResult) => void | Promise<void>;
}

/** A task given as datasets instead of a registry name (its `name` is the matrix's label). */
export interface SequenceTask {
  /** Name of the task (checkpoint `<name>.safetensors`, matrix label). */
  name: string;
  /** Training images. */
  train: Dataset;
  /** Test images (evaluated after every task). */
  test: Dataset;
}

/** What {@link runSequence} returns. */
export interface RunSequenceResult {
  /** The accuracy matrix (top-1 and top-5, percent). */
  matrix: SequenceMatrix;
  /** MTIL scores; present once every task has finished. */
  scores?: MtilScores;
  /** Whether every task has finished. */
  finished: boolean;
  /** Checkpoint of each finished task, in order. */
  checkpoints: string[];
}

function summary(tasks: string[], o: RunSequenceOptions): Record<string, unknown> {
  const m = o.method;
  return {
    tasks,
    method: m ? { name: m.name, options: m.options } : "finetune",
    trainMode: o.trainMode,
    iterations: o.iterations,
    epochs: o.epochs,
    batchSize: o.batchSize,
    lr: o.lr,
    weightDecay: o.weightDecay,
    labelSmoothing: o.labelSmoothing,
    l2: o.l2,
    averaging: o.averaging,
    seed: o.seed,
    lora: o.lora,
    evalLimit: o.evalLimit,
  };
}

/**
 * Run (or continue) a task sequence. `model` must hold the zero-shot weights when the call
 * starts; on return it holds the last finished task's weights.
 */
export async function runSequence(
  model: ClipModel,
  sequence: readonly (string | SequenceTask)[],
  options: RunSequenceOptions,
): Promise<RunSequenceResult> {
  const o = options;
  const tasks = sequence.map((t) => typeof t === "string" ? t : t.name);
  const given = new Map(
    sequence.filter((t): t is SequenceTask => typeof t !== "string").map((t) => [t.name, t]),
  );
  for (const t of given.values()) {
    if (t.train.name !== t.name || t.test.name !== t.name) {
      throw new Error(`task "${t.name}": its train and test datasets must carry its name`);
    }
  }
  const level = o.log ?? "progress";
  const log = logger(level);
  if (!o.zeroShot) await readableOnHost(model.params.values()); // webgpu: one async read
  const zeroShot: StateDict = o.zeroShot ?? model.stateDict();
  const lrs = Array.isArray(o.lr)
    ? o.lr as readonly number[]
    : tasks.map(() => (o.lr as number | undefined) ?? 1e-3);
  if (lrs.length !== tasks.length) {
    throw new Error(`lr: ${lrs.length} learning rates for ${tasks.length} tasks`);
  }
  const evalDatasets = o.evalDatasets ?? tasks;
  const title = o.title ?? `${o.method?.name ?? "finetune"} on ${tasks.length} tasks`;
  const config = o.config ?? summary(tasks, o);
  const load = async (ckpt: string | undefined) => {
    if (!ckpt) return model.loadStateDict(zeroShot);
    // a checkpoint of an fc train mode also holds its linear head: the model takes the rest
    const sd = splitHead((await readCheckpoint(ckpt)).stateDict).model;
    model.loadStateDict(checkWeights(model, sd, ckpt), { strict: false });
  };
  const result = await sequenceLoop({
    order: tasks,
    evalDatasets,
    saveDir: o.dir,
    config,
    manifestExtra: { version: await libraryVersion(), ...o.manifestExtra },
    stopAfter: o.stopAfter,
    trainTask: async (ctx) => {
      log.info(`\n== task ${ctx.index + 1}/${tasks.length}: ${ctx.task} (lr ${lrs[ctx.index]})`);
      await load(ctx.previousCheckpoint);
      const r = await trainTask(model, given.get(ctx.task)?.train ?? ctx.task, {
        ...o,
        lr: lrs[ctx.index],
        zeroShot,
        eval: undefined,
        save: {
          dir: o.dir,
          resume: true,
          interval: o.saveInterval,
          adapters: o.saveAdapters,
          config: { ...config, task: ctx.task, lr: lrs[ctx.index] },
        },
      });
      await o.onTask?.(r);
      return r.finished;
    },
    evaluate: async (ckpt, datasets): Promise<Accuracy[]> => {
      await load(ckpt);
      return await evaluate(model, datasets.map((d) => given.get(d)?.test ?? d), {
        dataRoot: o.dataRoot,
        batchSize: o.batchSizeEval,
        limit: o.evalLimit,
        maxBatches: o.evalMaxBatches,
        workers: o.workers,
        log: level,
        iteration: -1,
        method: o.method,
      });
    },
    onRow: async (m, row) => {
      if (o.plots ?? true) {
        await writePlots(o.dir, { ...m, values: m.values.slice(0, m.completed), tasks: m.tasks }, {
          title,
        }).catch((e) => log.info(`plots not written: ${(e as Error).message}`));
      }
      await o.onRow?.(m, row);
    },
  });
  const checkpoints = tasks.slice(0, result.matrix.completed).map((t) =>
    taskCheckpointPath(o.dir, t)
  );
  return { ...result, checkpoints };
}
