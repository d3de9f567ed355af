/**
 * `deno task sequence --order I|II|A,B,… --method … --save DIR [training flags]`: a whole
 * continual-learning sequence. Trains each task from the previous task's checkpoint (as the
 * Python workflow does, one `train` per task), evaluates every eval dataset after each task and
 * the zero-shot model first, and writes into DIR:
 *
 * - `accuracy_matrix.json` / `.csv` (top-1; top-5 in the JSON), `summary.json` (Transfer, Avg,
 *   Last, backward transfer, forgetting), `manifest.json` (config, version, backend, seed);
 * - `<Task>.safetensors` per task, with `<Task>.manifest.json` and `metrics_*.csv`;
 * - `accuracy_matrix.{svg,png}` and `accuracy_curves.{svg,png}`, redrawn after every row.
 *
 * Crash-safe: kill it at any point and rerun the same command; finished tasks are skipped and an
 * interrupted task resumes from its last saved state (SIGINT/SIGTERM/SIGUSR1 save it first;
 * `--save-interval N` also saves every N steps).
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { validateTrainFlags } from "./flags.ts";
import {
  evaluateAll,
  libraryVersion,
  normalizeFlags,
  runTrain,
  TRAIN_FLAGS,
  type TrainArgs,
} from "./train.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { loadClip } from "../clip/load.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { learningRates, resolveOrder } from "../methods/protocol.ts";
import { type Accuracy, runSequence, type SequenceMatrix } from "../methods/sequence.ts";
import { type MtilScores, roundScores } from "../methods/metrics.ts";
import { writePlots } from "../methods/plots.ts";

/** Flags of `deno task sequence`: every training flag plus the sequence's own. */
export const SEQUENCE_FLAGS = {
  ...TRAIN_FLAGS,
  "order": { type: "string" },
  "lr-per-task": { type: "string" },
  "stop-after": { type: "string" },
  "title": { type: "string" },
} as const;

/** Parse `deno task sequence` arguments (`_` spellings normalised). */
export function parseSequenceArgs(argv: string[]): TrainArgs {
  const { values } = parseArgs({
    args: normalizeFlags(argv),
    options: SEQUENCE_FLAGS as unknown as NonNullable<Parameters<typeof parseArgs>[0]>["options"],
    strict: true,
    allowPositionals: false,
  });
  validateTrainFlags(values);
  return values as TrainArgs;
}

/** The accuracy matrix as an aligned text table (rows: zero-shot and each task; percent). */
export function formatMatrix(m: SequenceMatrix): string {
  const short = (s: string) => s.replace(/^Synth-/, "");
  const cols = m.datasets.map(short);
  const w0 = Math.max(10, ...m.tasks.map((t) => short(t).length + 3));
  const cw = Math.max(7, ...cols.map((c) => c.length + 1));
  const f = (v: number | undefined) =>
    (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(1)).padStart(cw);
  const lines = ["".padEnd(w0) + cols.map((c) => c.padStart(cw)).join("")];
  if (m.zeroShot) lines.push("zero-shot".padEnd(w0) + m.zeroShot.map(f).join(""));
  m.tasks.forEach((t, i) => {
    const row = i < m.completed ? m.values[i] : m.values[i].map(() => NaN);
    lines.push(`${i + 1}. ${short(t)}`.padEnd(w0) + row.map(f).join(""));
  });
  return lines.join("\n");
}

/** One line of scores. */
export function formatScores(s: MtilScores): string {
  const r = roundScores(s);
  return `Transfer ${r.transfer.toFixed(1)}  Avg ${r.avg.toFixed(1)}  Last ${r.last.toFixed(1)}  ` +
    `BWT ${s.bwt.toFixed(1)}  Forgetting ${s.forgetting.toFixed(1)}`;
}

/** Run (or continue) the sequence described by parsed arguments (`onRow`: after each saved row). */
export async function runSequenceArgs(
  a: TrainArgs,
  hooks: { onRow?: (m: SequenceMatrix, row: number | "zero-shot") => void | Promise<void> } = {},
): Promise<{ matrix: SequenceMatrix; scores?: MtilScores; finished: boolean }> {
  if (!a.order) throw new Error("--order is required: I, II, or a comma list of datasets");
  if (!a.save) throw new Error("--save DIR is required (the sequence's checkpoints and results)");
  const order = resolveOrder(String(a.order));
  const lrs = a["lr-per-task"] !== undefined || /^(i|ii)$/i.test(String(a.order))
    ? learningRates(order, a["lr-per-task"] as string | undefined)
    : order.map(() => Number(a.lr));
  const evalDatasets = a["eval-datasets"] ? String(a["eval-datasets"]).split(",") : order;
  const dir = String(a.save);
  const backend = await initBackend({ prefer: a.backend as string | undefined, quiet: !!a.quiet });
  const title = (a.title as string | undefined) ?? `${a.method} on ${order.length} tasks`;
  // What defines the run (a rerun must match); paths and display flags are left out.
  const skip = new Set([
    "save",
    "resume",
    "load",
    "quiet",
    "backend",
    "workers",
    "stop-after",
    "help",
    "title",
  ]);
  const config = Object.fromEntries(Object.entries(a).filter(([k]) => !skip.has(k)));
  const quietArgs = { ...a, save: undefined, quiet: true };

  const result = await runSequence({
    order,
    evalDatasets,
    saveDir: dir,
    config: { ...config, lrPerTask: lrs },
    manifestExtra: { version: await libraryVersion(), backend, seed: a.seed },
    stopAfter: a["stop-after"] as string | undefined,
    trainTask: async (ctx) => {
      console.log(`\n== task ${ctx.index + 1}/${order.length}: ${ctx.task} (lr ${lrs[ctx.index]})`);
      const r = await runTrain({
        ...a,
        "train-dataset": ctx.task,
        lr: String(lrs[ctx.index]),
        load: ctx.previousCheckpoint,
        save: dir,
        resume: true,
        "eval-datasets": undefined,
        "eval-interval": undefined,
        backend,
      });
      return r.finished;
    },
    evaluate: async (ckpt, datasets): Promise<Accuracy[]> => {
      const { model } = await loadClip(String(a.model), { cacheDir: a["cache-dir"] as string });
      try {
        if (ckpt) model.loadStateDict((await readCheckpoint(ckpt)).stateDict);
        return await evaluateAll(model, datasets, quietArgs, -1);
      } finally {
        model.dispose();
      }
    },
    onRow: async (m, row) => {
      console.log(
        `\n${row === "zero-shot" ? "zero-shot" : `after ${order[row]}`}:\n${formatMatrix(m)}`,
      );
      await writePlots(dir, { ...m, values: m.values.slice(0, m.completed), tasks: m.tasks }, {
        title,
      }).catch((e) => console.error(`plots not written: ${(e as Error).message}`));
      await hooks.onRow?.(m, row);
    },
  });
  if (result.scores) console.log(`\n${title}: ${formatScores(result.scores)}`);
  return result;
}

const HELP =
  `deno task sequence --order I|II|A,B,… --save DIR [--method M] [--lr-per-task X|a,b|Name=x]
  [--eval-datasets A,B] [--stop-after TASK] [--title T] and every flag of \`deno task train\`.
  Rerun the same command to continue after an interruption.`;

if (import.meta.main) {
  let a: TrainArgs;
  try {
    a = parseSequenceArgs(Deno.args);
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
  if (a.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  try {
    const r = await runSequenceArgs(a);
    Deno.exit(r.finished || a["stop-after"] ? 0 : 3);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
