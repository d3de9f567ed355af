/**
 * The embedded default run, as a library: the SynthMTIL task sequence on the bundled tiny CLIP
 * (`synth-tiny`, no download), once per method, with the recipe `deno task demo` uses.
 * `demoRecipe` gives one method's `runSequence` options (a notebook can change any of them);
 * `runDemo` runs the methods and returns their matrices and scores.
 *
 * @example
 * ```ts
 * import { formatScores, runDemo } from "jsr:@mtil/mtil/methods";
 *
 * const runs = await runDemo({ methods: ["finetune"], iterations: 10, evalLimit: 64, out: "runs/d", log: "silent" });
 * for (const r of runs) console.log(r.name, r.scores && formatScores(r.scores));
 * ```
 *
 * @module
 */
import { loadClip } from "../clip/load.ts";
import { SYNTH_DEMO_ORDER } from "../datasets/synth_domains.ts";
import { finetune, lwf, zscl } from "./builtin.ts";
import { dikiMethod } from "./diki/method.ts";
import type { Method } from "./method.ts";
import type { MtilScores } from "./metrics.ts";
import type { LogLevel } from "./method.ts";
import { runSequence, type RunSequenceOptions } from "./run_sequence.ts";
import type { SequenceMatrix } from "./sequence.ts";

/** The demo's task sequence (registry names). */
export const DEMO_TASKS: readonly string[] = SYNTH_DEMO_ORDER;

/** Methods the demo runs by default. */
export const DEMO_METHODS: readonly string[] = ["finetune", "ZSCL"];

/** Every method the demo knows by name (`--methods`). */
export const DEMO_METHOD_CHOICES: readonly string[] = ["finetune", "ZSCL", "lwf", "DIKI"];

/** Settings of a demo run. */
export interface DemoOptions {
  /** Methods to run, by name (default `DEMO_METHODS`). */
  methods?: readonly string[];
  /** Steps per task (default 100). */
  iterations?: number;
  /** Test images per task in the accuracy matrix (default 400). */
  evalLimit?: number;
  /** Output folder; each method writes into `<out>/<method>` (default `runs/demo`). */
  out?: string;
  /** What to print (default `progress`). */
  log?: LogLevel;
  /** Called after each row of each method's matrix. */
  onRow?: (
    method: string,
    matrix: SequenceMatrix,
    row: number | "zero-shot",
  ) => void | Promise<void>;
}

/** One method's result. */
export interface DemoRun {
  /** Method name. */
  name: string;
  /** Its accuracy matrix. */
  matrix: SequenceMatrix;
  /** Its MTIL scores (when finished). */
  scores?: MtilScores;
  /** Whether every task finished. */
  finished: boolean;
}

/** The demo's method value for a name (`iterations`: steps per task, for DIKI's Gaussians). */
export function demoMethod(name: string, iterations = 100): Method {
  if (name === "finetune") return finetune();
  if (name === "lwf") return lwf();
  if (name === "DIKI") {
    // the paper's prefixes on the tiny model's 2+2 blocks; each task's Gaussian from the images
    // the task trains on (one pass, as the reference). SGD lr 50, not the paper's 5: in 100
    // steps the tiny model's prefixes learn nothing measurable at 5 (+4, +0, +1 points), and
    // gain +10, +12, +9 at 50 (+18, +2, +1 at 200).
    return dikiMethod({ tasks: DEMO_TASKS.length, gaussianBatches: iterations, lr: 50 });
  }
  if (name === "ZSCL") {
    return zscl({
      refDataset: "Synth-captions",
      refSentences: { dataset: "Synth-captions" },
      refSentencesLimit: 256,
      T: 2,
    });
  }
  throw new Error(`demo: unknown method "${name}"; use ${DEMO_METHOD_CHOICES.join(", ")}`);
}

/** The `runSequence` options of one demo method (shared recipe plus the method). */
export function demoRecipe(
  method: string,
  options: { iterations?: number; evalLimit?: number; out?: string; log?: LogLevel } = {},
): RunSequenceOptions {
  return {
    dir: `${options.out ?? "runs/demo"}/${method}`,
    method: demoMethod(method, options.iterations ?? 100),
    iterations: options.iterations ?? 100,
    batchSize: 32,
    lr: 4e-4,
    warmupLength: 10,
    labelSmoothing: 0.2,
    seed: 1,
    evalLimit: options.evalLimit ?? 400,
    title: method,
    log: options.log ?? "progress",
  };
}

/** Run the demo's methods on the SynthMTIL sequence (reusing finished work in `out`). */
export async function runDemo(options: DemoOptions = {}): Promise<DemoRun[]> {
  const runs: DemoRun[] = [];
  for (const name of options.methods ?? DEMO_METHODS) {
    const { model } = await loadClip("synth-tiny");
    try {
      const recipe = demoRecipe(name, options);
      const r = await runSequence(model, [...DEMO_TASKS], {
        ...recipe,
        onRow: (m, row) => options.onRow?.(name, m, row),
      });
      runs.push({ name, matrix: r.matrix, scores: r.scores, finished: r.finished });
      if (!r.finished) break;
    } finally {
      model.dispose();
    }
  }
  return runs;
}
