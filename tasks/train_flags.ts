/**
 * The training flags of the reference code, shared by `deno task train`, `sequence`, `eval` and
 * `slurm`, and their translation into the typed options of `trainTask` / `runSequence`. Method
 * flags are not listed here: each registered method owns its own (see `methods/method.ts`), and
 * they are merged in when the command line is parsed. `_` and `-` spellings both work.
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import {
  FlagError,
  type NumberFlagOptions,
  parseNumberFlag,
  validateTrainFlags as validateNumericTrainFlags,
} from "../methods/flags.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import "../methods/builtin.ts";
import "../methods/diki/method.ts";
import {
  type FlagSpec,
  type FlagValues,
  type Method,
  methodFlags,
  methodFromFlags,
  methodNames,
  methodsHelp,
} from "../methods/method.ts";
import { splitHead, TRAIN_MODES, type TrainMode } from "../methods/params.ts";
import type { AveragingOptions, TrainTaskOptions } from "../methods/trainer.ts";
import type { MovingAvgAnchor } from "../methods/ensemble.ts";

/** Flags every training entry point takes (kebab-case), besides the methods' own. */
export const TRAIN_FLAGS: Record<string, FlagSpec & { short?: string }> = {
  "model": { type: "string", default: "ViT-B/16", description: "CLIP name, checkpoint path" },
  "batch-size": { type: "string", default: "64", description: "training batch" },
  "accum-steps": { type: "string", default: "1", description: "micro-batches per step" },
  "batch-size-eval": { type: "string", default: "128", description: "evaluation batch" },
  "lr": { type: "string", default: "0.001", description: "learning rate" },
  "wd": { type: "string", default: "0", description: "weight decay" },
  "ls": { type: "string", default: "0", description: "label smoothing" },
  "warmup-length": { type: "string", default: "100", description: "warm-up steps" },
  "beta2": { type: "string", default: "0.999", description: "Adam β2" },
  "seed": { type: "string", default: "42", description: "seed" },
  "epochs": { type: "string", description: "epochs (or --iterations)" },
  "iterations": { type: "string", description: "optimizer steps" },
  "start-iteration": { type: "string", description: "first step (overrides a --load's)" },
  "eval-interval": { type: "string", description: "evaluate every N steps" },
  "loss-interval": { type: "string", default: "1000", description: "print losses every N" },
  "eval-every-epoch": { type: "boolean", default: false, description: "evaluate each epoch" },
  "eval-only": { type: "boolean", default: false, description: "evaluate, do not train" },
  "method": { type: "string", default: "finetune", description: "a registered method" },
  "train-mode": { type: "string", default: "whole", description: TRAIN_MODES.join("|") },
  "freeze": { type: "boolean", default: false, description: "freeze embeddings, projections" },
  "data-location": { type: "string", default: "./data", description: "datasets root" },
  "train-dataset": { type: "string", description: "the task" },
  "eval-datasets": { type: "string", description: "A,B evaluated during/after training" },
  "eval-limit": { type: "string", description: "test images per dataset" },
  "max-evaluation-size": { type: "string", description: "in-training eval batches per dataset" },
  "template": { type: "string", description: "training prompt template" },
  "save": { type: "string", description: "output folder" },
  "save-interval": { type: "string", default: "0", description: "save resume state every N" },
  "resume": { type: "boolean", default: false, description: "continue a stopped run" },
  "load": { type: "string", description: "start from this checkpoint" },
  "we": { type: "boolean", default: false, description: "weight ensembling" },
  "we-wise": { type: "boolean", default: false, description: "WiSE weight ensembling" },
  "we-wise-alpha": { type: "string", default: "0.98", description: "α of --we-wise" },
  "moving-avg": { type: "boolean", default: false, description: "moving average" },
  "avg-freq": { type: "string", default: "100", description: "averaging frequency" },
  "mv-avg-decay": { type: "string", default: "0.999", description: "moving-average decay" },
  "mv-avg-model": { type: "string", default: "n", description: "n|t|zeroshot anchor" },
  "l2": { type: "string", default: "0", description: "L2 to the start weights" },
  "dataset-order": { type: "string", description: "A,B,… tasks in one process" },
  "wise-merge": { type: "boolean", default: false, description: "WiSE merge at the end" },
  "wise-ft": { type: "boolean", default: false, description: "eval: WiSE-FT of --load" },
  "wise-ft-model": { type: "string", default: "n", description: "n|zeroshot" },
  "wise-ft-alpha": { type: "string", default: "0.8", description: "α of --wise-merge" },
  "alpha": { type: "string", default: "0.5", description: "α of --wise-ft" },
  "exp-name": { type: "string", description: "experiment name (kept in the manifest)" },
  "cache-dir": { type: "string", description: "model cache folder" },
  "backend": { type: "string", description: "tfjs backend" },
  "threads": { type: "string", description: "threads of OpenBLAS/oneDNN (default all cores)" },
  "lora": { type: "boolean", default: false, description: "train LoRA adapters" },
  "lora-r": { type: "string", default: "8", description: "LoRA rank" },
  "lora-alpha": { type: "string", default: "16", description: "LoRA α" },
  "lora-dropout": { type: "string", default: "0.1", description: "LoRA dropout" },
  "lora-target-modules": {
    type: "string",
    default: "attn.out_proj,mlp.c_fc,mlp.c_proj",
    description: "LoRA targets",
  },
  "lora-shared": { type: "boolean", default: false, description: "shared-basis LoRA" },
  "lora-shared-split-qkvo": { type: "boolean", default: false, description: "split q,k,v,o" },
  "lora-save-adapters": { type: "boolean", default: false, description: "save adapters" },
  "orthogonal-gradients": { type: "string", default: "0", description: "OGD snapshots" },
  "orthogonal-gradients-path": { type: "string", description: "OGD bases F[,F]" },
  "ogd-energy": { type: "string", default: "0.97", description: "OGD energy" },
  "ogd-python-projection": { type: "boolean", default: false, description: "sequential OGD" },
  "workers": { type: "string", default: "0", description: "loader threads" },
  "no-final-step": { type: "boolean", default: false, description: "no final lr(total) step" },
  "import": { type: "string", description: "modules registering methods F[,F]" },
  "fc-init": { type: "boolean", default: false, description: "fc head from the zero-shot head" },
  "fc-setnone": { type: "boolean", default: false, description: "fc modes without a head" },
  "n-class": { type: "string", default: "10", description: "rows of a zero-initialised fc head" },
  "dataset-shift": { type: "boolean", default: false, description: "eval: own zero-shot heads" },
  "non-strict": { type: "boolean", default: false, description: "load a partial --load" },
  "freeze-encoder": { type: "boolean", default: false, description: "train only the fc head" },
  "untrained": { type: "boolean", default: false, description: "start from fresh weights" },
  "results-db": { type: "string", description: "append a JSON line per evaluation" },
  "quiet": { type: "boolean", default: false, description: "progress only" },
  "help": { type: "boolean", short: "h", default: false, description: "this help" },
};

/** `--image_loss` → `--image-loss` (flag names only; values and `--T` untouched). */
export function normalizeFlags(argv: string[]): string[] {
  return argv.map((a) => {
    if (!a.startsWith("--")) return a;
    const eq = a.indexOf("=");
    const name = eq < 0 ? a : a.slice(0, eq);
    return name.replaceAll("_", "-") + (eq < 0 ? "" : a.slice(eq));
  });
}

/** The files named by `--import F[,F]` (any spelling), and the arguments without that flag. */
export function splitImports(argv: string[]): { files: string[]; rest: string[] } {
  const args = normalizeFlags(argv);
  const files: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    let v: string | undefined;
    if (args[i] === "--import") v = args[++i];
    else if (args[i].startsWith("--import=")) v = args[i].slice("--import=".length);
    else {
      rest.push(argv[i]);
      continue;
    }
    if (!v) throw new Error("--import needs a module path (a file that calls registerMethod)");
    files.push(...v.split(",").map((x) => x.trim()).filter((x) => x));
  }
  return { files, rest };
}

const PRELOADED = "MTIL_PRELOADED";

/**
 * `--import F[,F]`: run this entry point again with the modules preloaded (`deno run
 * --preload`), so that the methods they register are known when the flags are parsed. The
 * modules are loaded by Deno itself, not by a dynamic `import()` of a computed path. Returns the
 * child's exit code, or undefined when there is nothing to preload (or it already is). Signals
 * (SIGINT, SIGTERM, SIGUSR1) are passed on to the child.
 */
export async function runWithPreloads(argv: string[]): Promise<number | undefined> {
  const { files, rest } = splitImports(argv);
  if (!files.length || Deno.env.get(PRELOADED)) return undefined;
  for (const f of files) {
    try {
      if (!Deno.statSync(f).isFile) throw new Error("not a file");
    } catch (e) {
      throw new Error(`--import ${f}: ${(e as Error).message}`);
    }
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...files.map((f) => `--preload=${f}`), Deno.mainModule, ...rest],
    env: { [PRELOADED]: files.join(",") },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGUSR1"];
  const forward = signals.map((sig) => {
    const h = () => {
      try {
        child.kill(sig);
      } catch { /* already gone */ }
    };
    try {
      Deno.addSignalListener(sig, h);
    } catch { /* unsupported here */ }
    return [sig, h] as const;
  });
  try {
    return (await child.status).code;
  } finally {
    for (const [sig, h] of forward) {
      try {
        Deno.removeSignalListener(sig, h);
      } catch { /* not registered */ }
    }
  }
}

/**
 * Parse a command line against the training flags, every method's flags and `extra`, and check
 * every value ({@link validateTrainFlags}) before anything else runs (`--help` skips the check).
 */
export function parseFlags(
  argv: string[],
  extra: Record<string, FlagSpec & { short?: string }> = {},
): FlagValues {
  const spec: Record<
    string,
    { type: "string" | "boolean"; default?: string | boolean; short?: string }
  > = {};
  for (const [k, v] of Object.entries({ ...TRAIN_FLAGS, ...methodFlags(), ...extra })) {
    spec[k] = { type: v.type, ...(v.default !== undefined ? { default: v.default } : {}) };
    if ("short" in v && v.short) spec[k].short = v.short;
  }
  const { values } = parseArgs({
    args: normalizeFlags(argv),
    options: spec,
    strict: true,
    allowPositionals: false,
  });
  if (!values.help) validateTrainFlags(values as FlagValues);
  return values as FlagValues;
}

/** The help text: the common flags, then every registered method with its flags. */
export function flagsHelp(
  usage: string,
  extra: Record<string, FlagSpec & { short?: string }> = {},
): string {
  const lines = [usage, "", "flags (_ and - spellings both work):"];
  for (const [k, v] of Object.entries({ ...extra, ...TRAIN_FLAGS })) {
    const arg = v.type === "boolean" ? "" : " X";
    const def = v.default !== undefined && v.type !== "boolean" ? ` (default ${v.default})` : "";
    lines.push(`  --${(k + arg).padEnd(28)} ${v.description}${def}`);
  }
  return [...lines, "", methodsHelp()].join("\n");
}

/** A number flag; `undefined` when absent. Rejects non-numbers and values outside the bounds. */
export function numberFlag(
  f: FlagValues,
  name: string,
  bounds: NumberFlagOptions = {},
): number | undefined {
  return parseNumberFlag(name, f[name], bounds);
}

/** A comma-separated list flag. */
export function listFlag(f: FlagValues, name: string): string[] | undefined {
  const v = f[name];
  return typeof v === "string" && v.trim().length
    ? v.split(",").map((s) => s.trim()).filter((s) => s)
    : undefined;
}

/** Check every training flag at once, before any work starts (numbers, modes, the method). */
export function validateTrainFlags(f: FlagValues): void {
  validateNumericTrainFlags(f);
  const mode = String(f["train-mode"] ?? "whole");
  if (!(TRAIN_MODES as readonly string[]).includes(mode)) {
    throw new FlagError("train-mode", `--train-mode ${mode}: use one of ${TRAIN_MODES.join(", ")}`);
  }
  const m = String(f.method ?? "finetune");
  if (!methodNames().includes(m)) {
    throw new FlagError(
      "method",
      `--method ${m}: use one of ${methodNames().join(", ")} (or --import a module)`,
    );
  }
  if (!["n", "t", "zeroshot"].includes(String(f["mv-avg-model"] ?? "n"))) {
    throw new FlagError(
      "mv-avg-model",
      `--mv-avg-model ${f["mv-avg-model"]}: use n, t or zeroshot`,
    );
  }
  if (!["n", "zeroshot"].includes(String(f["wise-ft-model"] ?? "n"))) {
    throw new FlagError(
      "wise-ft-model",
      `--wise-ft-model ${f["wise-ft-model"]}: use n or zeroshot`,
    );
  }
}

/** The typed options of `trainTask` / `runSequence` that the flags describe. */
export interface FlagOptions {
  /** The method, made by its registered factory from its flags. */
  method: Method;
  /** The recipe. */
  options: TrainTaskOptions;
  /** `--load`'s weights, if any. */
  load?: StateDict;
}

/** Turn validated flags into the method and `trainTask` options (reads `--load`, `--ref-model`). */
export async function trainOptionsFromFlags(f: FlagValues): Promise<FlagOptions> {
  validateTrainFlags(f);
  const method = await methodFromFlags(String(f.method ?? "finetune"), f);
  const avgCommon = {
    avgFreq: numberFlag(f, "avg-freq"),
    weWiseAlpha: numberFlag(f, "we-wise-alpha"),
    decay: numberFlag(f, "mv-avg-decay"),
    anchor: String(f["mv-avg-model"] ?? "n") as MovingAvgAnchor,
  };
  let averaging: AveragingOptions | undefined;
  if (f["moving-avg"]) averaging = { kind: "moving_avg", ...avgCommon };
  else if (f.we) averaging = { kind: "we", ...avgCommon };
  else if (f["we-wise"]) averaging = { kind: "we_wise", ...avgCommon };
  const ogdN = numberFlag(f, "orthogonal-gradients") ?? 0;
  const ogdPaths = listFlag(f, "orthogonal-gradients-path");
  const evalDatasets = listFlag(f, "eval-datasets");
  const options: TrainTaskOptions = {
    method,
    trainMode: (f["freeze-encoder"] ? "fc" : String(f["train-mode"] ?? "whole")) as TrainMode,
    featureCache: f["freeze-encoder"] && typeof f["cache-dir"] === "string"
      ? f["cache-dir"]
      : undefined,
    freeze: !!f.freeze,
    head: f["fc-setnone"]
      ? false
      : f["fc-init"]
      ? { init: "zeroshot" }
      : { init: "zeros", classes: numberFlag(f, "n-class", { integer: true, positive: true }) },
    iterations: numberFlag(f, "iterations"),
    epochs: numberFlag(f, "epochs"),
    batchSize: numberFlag(f, "batch-size"),
    accumSteps: numberFlag(f, "accum-steps"),
    batchSizeEval: numberFlag(f, "batch-size-eval"),
    lr: numberFlag(f, "lr"),
    weightDecay: numberFlag(f, "wd"),
    beta2: numberFlag(f, "beta2"),
    warmupLength: numberFlag(f, "warmup-length"),
    labelSmoothing: numberFlag(f, "ls"),
    l2: numberFlag(f, "l2"),
    averaging,
    wiseMerge: f["wise-merge"]
      ? {
        alpha: numberFlag(f, "wise-ft-alpha"),
        model: String(f["wise-ft-model"] ?? "n") as "n" | "zeroshot",
      }
      : undefined,
    finalStep: !f["no-final-step"],
    startStep: numberFlag(f, "start-iteration"),
    template: typeof f.template === "string" ? f.template : undefined,
    seed: numberFlag(f, "seed"),
    workers: numberFlag(f, "workers"),
    dataRoot: String(f["data-location"] ?? "./data"),
    lora: f.lora
      ? {
        r: numberFlag(f, "lora-r"),
        alpha: numberFlag(f, "lora-alpha"),
        dropout: numberFlag(f, "lora-dropout"),
        targets: listFlag(f, "lora-target-modules"),
        shared: !!f["lora-shared"],
        splitQkvo: !!f["lora-shared-split-qkvo"],
      }
      : undefined,
    ogd: ogdN > 0 || ogdPaths
      ? {
        snapshots: ogdN,
        energy: numberFlag(f, "ogd-energy"),
        basisPaths: ogdPaths,
        mode: f["ogd-python-projection"] ? "sequential" : "orthonormal",
      }
      : undefined,
    eval: evalDatasets
      ? {
        datasets: evalDatasets,
        interval: numberFlag(f, "eval-interval"),
        everyEpoch: !!f["eval-every-epoch"],
        limit: numberFlag(f, "eval-limit"),
        maxBatches: numberFlag(f, "max-evaluation-size"),
        datasetShift: !!f["dataset-shift"],
        resultsDb: typeof f["results-db"] === "string" ? f["results-db"] : undefined,
        resultsDbOptions: f,
      }
      : undefined,
    log: f.quiet ? "progress" : "verbose",
    lossInterval: numberFlag(f, "loss-interval"),
  };
  const load = typeof f.load === "string"
    ? splitHead((await readCheckpoint(f.load)).stateDict).model
    : undefined;
  return { method, options, load };
}
