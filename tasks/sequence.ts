/**
 * `deno task sequence --order I|II|A,B,… --method … --save DIR [training flags]`: a whole
 * continual-learning sequence; a thin wrapper around `runSequence`. Writes into DIR:
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
import { EXIT_USAGE, isUserError } from "../methods/flags.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { loadClip } from "../clip/load.ts";
import { reinitializeClip } from "../clip/init.ts";
import type { FlagSpec, FlagValues } from "../methods/method.ts";
import { learningRates, resolveOrder } from "../methods/protocol.ts";
import { formatMatrix, formatScores } from "../methods/report.ts";
import { runSequence, type RunSequenceResult } from "../methods/run_sequence.ts";
import type { SequenceMatrix } from "../methods/sequence.ts";
import { stopOnSignals } from "../methods/trainer.ts";
import {
  flagsHelp,
  listFlag,
  numberFlag,
  parseFlags,
  runWithPreloads,
  splitImports,
  trainOptionsFromFlags,
} from "./train_flags.ts";

/** Flags of `deno task sequence` besides the training ones. */
export const SEQUENCE_FLAGS: Record<string, FlagSpec> = {
  "order": { type: "string", description: "I, II, or tasks A,B,…" },
  "lr-per-task": { type: "string", description: "X | a,b,… | Name=x,… (orders I/II: protocol)" },
  "stop-after": { type: "string", description: "stop once this task is done (job chains)" },
  "title": { type: "string", description: "plot title" },
};

/** Parse `deno task sequence` arguments (`_` spellings normalised). */
export function parseSequenceArgs(argv: string[]): FlagValues {
  return parseFlags(argv, SEQUENCE_FLAGS);
}

// Flags that do not define the run: a rerun may change them.
const NOT_CONFIG = new Set([
  "save",
  "resume",
  "load",
  "quiet",
  "backend",
  "workers",
  "stop-after",
  "help",
  "title",
  "import",
]);

/** Run (or continue) the sequence described by parsed flags. */
export async function runSequenceFlags(
  f: FlagValues,
  hooks: { onRow?: (m: SequenceMatrix, row: number | "zero-shot") => void | Promise<void> } = {},
): Promise<RunSequenceResult> {
  if (!f.order) throw new Error("--order is required: I, II, or a comma list of datasets");
  if (!f.save) throw new Error("--save DIR is required (the sequence's checkpoints and results)");
  const order = resolveOrder(String(f.order));
  const { method, options } = await trainOptionsFromFlags(f);
  const lrs = f["lr-per-task"] !== undefined || /^(i|ii)$/i.test(String(f.order))
    ? learningRates(order, f["lr-per-task"] as string | undefined)
    : order.map(() => numberFlag(f, "lr")!);
  const dir = String(f.save);
  const backend = await initBackend({
    prefer: f.backend as string | undefined,
    quiet: !!f.quiet,
    threads: numberFlag(f, "threads"),
  });
  const title = (f.title as string | undefined) ?? `${method.name} on ${order.length} tasks`;
  const config = Object.fromEntries(Object.entries(f).filter(([k]) => !NOT_CONFIG.has(k)));
  const { model } = await loadClip(String(f.model), { cacheDir: f["cache-dir"] as string });
  if (f.untrained) {
    const r = reinitializeClip(model, numberFlag(f, "seed") ?? 42);
    console.log(`--untrained: ${r.reset} parameters re-initialised, ${r.kept} kept`);
  }
  const stop = stopOnSignals();
  try {
    const { eval: _inTraining, ...recipe } = options;
    const result = await runSequence(model, order, {
      ...recipe,
      method,
      dir,
      lr: lrs,
      evalDatasets: listFlag(f, "eval-datasets") ?? order,
      evalLimit: numberFlag(f, "eval-limit"),
      log: f.quiet ? "progress" : "verbose",
      saveInterval: numberFlag(f, "save-interval"),
      saveAdapters: !!f["lora-save-adapters"],
      config: { ...config, lrPerTask: lrs },
      manifestExtra: { backend, seed: f.seed },
      stopAfter: f["stop-after"] as string | undefined,
      title,
      shouldStop: stop.shouldStop,
      onRow: async (m, row) => {
        console.log(
          `\n${row === "zero-shot" ? "zero-shot" : `after ${order[row]}`}:\n${formatMatrix(m)}`,
        );
        await hooks.onRow?.(m, row);
      },
    });
    if (result.scores) console.log(`\n${title}: ${formatScores(result.scores)}`);
    return result;
  } finally {
    stop.dispose();
    model.dispose();
  }
}

const USAGE = `deno task sequence --order I|II|A,B,… --save DIR [--method M] [flags]
  Rerun the same command to continue after an interruption.`;

if (import.meta.main) {
  let f: FlagValues;
  try {
    const code = await runWithPreloads(Deno.args);
    if (code !== undefined) Deno.exit(code);
    f = parseSequenceArgs(splitImports(Deno.args).rest);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${flagsHelp(USAGE, SEQUENCE_FLAGS)}`);
    Deno.exit(2);
  }
  if (f.help) {
    console.log(flagsHelp(USAGE, SEQUENCE_FLAGS));
    Deno.exit(0);
  }
  try {
    const r = await runSequenceFlags(f);
    Deno.exit(r.finished || f["stop-after"] ? 0 : 3);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(isUserError(e) ? EXIT_USAGE : 1);
  }
}
