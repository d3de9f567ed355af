/**
 * `deno task train`: one training task (or `--dataset-order A,B,…` in one process) with the
 * reference code's flags; a thin wrapper around `trainTask`.
 *
 * ```
 * deno task train --model synth-tiny --train-dataset FashionMNIST --method ZSCL \
 *   --ref-dataset FashionMNIST --iterations 200 --lr 1e-5 --save ckpt/
 * ```
 *
 * `--save DIR` writes `DIR/<train-dataset>.safetensors` (the weight-ensembled model with
 * `--we`), `DIR/<train-dataset>.manifest.json`, and while running the resume state
 * `DIR/<train-dataset>.state.safetensors` (on SIGINT/SIGTERM/SIGUSR1 and every
 * `--save-interval` steps). `--resume` continues from that state. `--method` takes every
 * registered method; `--import FILE` loads modules that register more.
 *
 * @module
 */
import { EXIT_USAGE, isUserError } from "../methods/flags.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { checkWeights, loadClip } from "../clip/load.ts";
import { reinitializeClip } from "../clip/init.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import type { FlagValues } from "../methods/method.ts";
import { stopOnSignals, trainTask, type TrainTaskResult } from "../methods/trainer.ts";
import {
  flagsHelp,
  listFlag,
  numberFlag,
  parseFlags,
  runWithPreloads,
  splitImports,
  trainOptionsFromFlags,
} from "./train_flags.ts";

/** Parse and check the flags of `deno task train` (everything is checked before any work). */
export function parseTrainArgs(argv: string[]): FlagValues {
  return parseFlags(argv);
}

const USAGE = "deno task train --train-dataset NAME [--method NAME] [flags]";

/** Run `deno task train` with parsed flags; returns each task's result. */
export async function runTrainFlags(f: FlagValues): Promise<TrainTaskResult[]> {
  // checks every flag first, then reads --load / --ref-model
  const { method, options, load } = await trainOptionsFromFlags(f);
  const order = listFlag(f, "dataset-order");
  const first = typeof f["train-dataset"] === "string" ? [f["train-dataset"]] : undefined;
  const tasks = order ?? first;
  if (!tasks) throw new Error("--train-dataset is required (e.g. --train-dataset FashionMNIST)");
  const backend = await initBackend({
    prefer: f.backend as string | undefined,
    quiet: !!f.quiet,
    threads: numberFlag(f, "threads"),
  });
  if (!f.quiet) console.log("run configuration:", JSON.stringify({ ...f, backend }, null, 2));
  const { model } = await loadClip(String(f.model), { cacheDir: f["cache-dir"] as string });
  if (f.untrained) {
    const r = reinitializeClip(model, numberFlag(f, "seed") ?? 42);
    console.log(`--untrained: ${r.reset} parameters re-initialised, ${r.kept} kept`);
  }
  const stop = stopOnSignals();
  const results: TrainTaskResult[] = [];
  try {
    await readableOnHost(model.params.values()); // webgpu reads asynchronously only
    const zeroShot = model.stateDict();
    if (load) {
      // strict unless --non-strict, which prints the report of what does not match
      model.loadStateDict(
        checkWeights(model, load, String(f.load), { strict: !f["non-strict"] }),
        { strict: false },
      );
      console.log(`loaded ${f.load}`);
    }
    const dir = typeof f.save === "string" ? f.save : undefined;
    for (const task of tasks) {
      const r = await trainTask(model, task, {
        ...options,
        method,
        zeroShot,
        shouldStop: stop.shouldStop,
        save: dir
          ? {
            dir,
            resume: !!f.resume || tasks.length > 1,
            interval: Number(f["save-interval"] ?? 0),
            adapters: !!f["lora-save-adapters"],
            config: { ...f, backend, "train-dataset": task },
            meta: { model: f.model },
          }
          : undefined,
      });
      results.push(r);
      if (!r.finished) break;
    }
  } finally {
    stop.dispose();
    model.dispose();
  }
  return results;
}

if (import.meta.main) {
  let f: FlagValues;
  try {
    const code = await runWithPreloads(Deno.args);
    if (code !== undefined) Deno.exit(code);
    f = parseFlags(splitImports(Deno.args).rest);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${flagsHelp(USAGE)}`);
    Deno.exit(2);
  }
  if (f.help) {
    console.log(flagsHelp(USAGE));
    Deno.exit(0);
  }
  if (f["eval-only"]) {
    const { runEval } = await import("./eval.ts");
    try {
      await runEval(Deno.args);
    } catch (e) {
      console.error(`error: ${(e as Error).message}`);
      Deno.exit(isUserError(e) ? EXIT_USAGE : 1);
    }
    Deno.exit(0);
  }
  try {
    const r = await runTrainFlags(f);
    Deno.exit(r.every((x) => x.finished) ? 0 : 3);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(isUserError(e) ? EXIT_USAGE : 1);
  }
}
