/**
 * A whole DIKI task sequence through the library: {@link runSequence} (crash-safe accuracy
 * matrix, MTIL scores) with DIKI's training per task and DIKI's inference path in every
 * evaluation. The per-task checkpoint is a DIKI checkpoint (pools and Gaussians; the CLIP stays
 * frozen); an interrupted task resumes from its training-state file. Besides the accuracy matrix
 * the folder gets `diki_votes.json`: for each row, the share of each task's test images whose
 * batch voted for that task.
 *
 * @example
 * ```ts
 * const r = await runDikiSequence({
 *   model, order: ["A", "B"], saveDir: "runs/diki", config: { seed: 1 },
 *   trainTask: (i, name) => makeTrainTask(name), trainOptions: { epochs: 10 },
 *   testDataset: (name) => loadDataset(name, { split: "test" }),
 * });
 * ```
 *
 * @module
 */
import type { ClipModel } from "../../clip/types.ts";
import type { Dataset } from "../../datasets/types.ts";
import {
  type Accuracy,
  runSequence,
  type SequenceMatrix,
  type SequenceResult,
  taskCheckpointPath,
  writeTextAtomic,
} from "../sequence.ts";
import { createRun, disposeRun, runSteps, type TrainOptions, type TrainTask } from "../train.ts";
import { loadTrainState, saveTrainState } from "../state.ts";
import { Diki, type DikiOptions } from "./diki.ts";
import { loadDiki, saveDiki } from "./io.ts";
import { evaluateDiki, type EvaluateDikiOptions } from "./evaluate.ts";

/** Options of {@link runDikiSequence}. */
export interface DikiSequenceOptions {
  /** The frozen CLIP (its weights are never changed; DIKI installs and removes hooks). */
  model: ClipModel;
  /** Training tasks in order. */
  order: string[];
  /** Datasets evaluated after each task (default `order`). */
  evalDatasets?: string[];
  /** Output folder. */
  saveDir: string;
  /** Run configuration for the manifest (a rerun must present the same). */
  config: Record<string, unknown>;
  /** DIKI's options (tasks = the order's length). */
  diki?: Omit<DikiOptions, "tasks">;
  /** The training task of position `index` (its `batch(step)` deterministic). */
  trainTask(index: number, name: string): Promise<TrainTask>;
  /** Steps per task: `iterations` or `epochs` (the rest of DIKI's options are fixed). */
  trainOptions: Pick<TrainOptions, "iterations" | "epochs" | "onStep" | "shouldStop">;
  /** Save the training state every this many steps (default: only when stopped early). */
  checkpointEvery?: number;
  /** The test split of an evaluation dataset. */
  testDataset(name: string): Promise<Dataset>;
  /** Evaluation settings; `taskIdKnown` evaluates each learnt task's dataset with its own prefixes. */
  evaluate?: Pick<EvaluateDikiOptions, "batchSize" | "limit" | "workers"> & {
    taskIdKnown?: boolean;
  };
  /** Stop after this task (job chains). */
  stopAfter?: string;
  /** Called after each saved row. */
  onRow?(matrix: SequenceMatrix, row: number | "zero-shot"): void | Promise<void>;
}

/** Task-vote accuracies: `rows[r][t]` = % of task t's test images voted to t after task r. */
export interface DikiVotes {
  /** Training tasks. */
  tasks: string[];
  /** One row per finished task (NaN for tasks not learnt yet). */
  rows: number[][];
}

/** Run (or continue) a DIKI sequence; see the module documentation. */
export async function runDikiSequence(o: DikiSequenceOptions): Promise<SequenceResult> {
  const evalDatasets = o.evalDatasets ?? o.order;
  const dikiOptions: DikiOptions = { ...o.diki, tasks: o.order.length };
  const votesPath = `${o.saveDir}/diki_votes.json`;
  const votes: DikiVotes = await Deno.readTextFile(votesPath).then(
    (t) => JSON.parse(t) as DikiVotes,
    () => ({ tasks: o.order, rows: [] }),
  );
  const evalWith = async (d: Diki, datasets: string[], row: number | undefined) => {
    const out: Accuracy[] = [];
    const voteRow = o.order.map(() => NaN);
    for (const name of datasets) {
      const ds = await o.testDataset(name);
      const t = o.order.indexOf(name);
      const learnt = t >= 0 && t < d.learnt;
      const r = await evaluateDiki(d, ds, {
        batchSize: o.evaluate?.batchSize,
        limit: o.evaluate?.limit,
        workers: o.evaluate?.workers,
        taskId: o.evaluate?.taskIdKnown ? (learnt ? t : -1) : undefined,
        expectedTask: learnt ? t : undefined,
      });
      if (learnt && r.voteAccuracy !== undefined && !o.evaluate?.taskIdKnown) {
        voteRow[t] = r.voteAccuracy;
      }
      out.push({ top1: r.top1, top5: r.top5 });
    }
    if (row !== undefined) {
      votes.rows[row] = voteRow;
      await writeTextAtomic(
        votesPath,
        JSON.stringify(
          {
            ...votes,
            rows: votes.rows.map((r) => r.map((v) => Number.isNaN(v) ? null : v)),
          },
          null,
          1,
        ),
      );
    }
    return out;
  };
  return await runSequence({
    order: o.order,
    evalDatasets,
    saveDir: o.saveDir,
    config: { method: "DIKI", diki: dikiOptions, ...o.config },
    stopAfter: o.stopAfter,
    onRow: o.onRow,
    trainTask: async (ctx) => {
      const d = ctx.previousCheckpoint
        ? await loadDiki(ctx.previousCheckpoint, o.model)
        : new Diki(o.model, dikiOptions);
      const task = await o.trainTask(ctx.index, ctx.task);
      const statePath = `${ctx.checkpointPath}.state`;
      const setup = d.trainSetup(ctx.index);
      const every = o.checkpointEvery;
      const run = await createRun(o.model, task, {
        ...o.trainOptions,
        ...setup.options,
        parts: setup.parts,
        onStep: async (rec, r) => {
          await o.trainOptions.onStep?.(rec, r);
          if (every && r.step % every === 0 && r.step < r.lastStep) {
            await saveTrainState(statePath, r);
          }
        },
      });
      try {
        const resumed = await Deno.stat(statePath).then(() => true, () => false);
        if (resumed) await loadTrainState(statePath, run);
        const res = await runSteps(run);
        if (!res.finished) {
          await saveTrainState(statePath, run);
          return false;
        }
        await saveDiki(ctx.checkpointPath, d, { task: ctx.task, index: ctx.index });
        await Deno.remove(statePath).catch(() => {});
        return true;
      } finally {
        disposeRun(run);
        d.dispose();
      }
    },
    evaluate: async (ckpt, datasets) => {
      const d = ckpt ? await loadDiki(ckpt, o.model) : new Diki(o.model, dikiOptions);
      try {
        const row = ckpt ? o.order.findIndex((t) => taskCheckpointPath(o.saveDir, t) === ckpt) : -1;
        return await evalWith(d, datasets, row >= 0 ? row : undefined);
      } finally {
        d.dispose();
      }
    },
  });
}
