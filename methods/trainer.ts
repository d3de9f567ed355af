/**
 * `trainTask`: one continual-learning task as a typed library call — the method, the common
 * loss terms and weight averaging, LoRA and OGD, in-training evaluation, crash-safe saving and
 * resume, callbacks and a logging level. `deno task train` is a thin wrapper around it.
 *
 * @example Fine-tune the embedded model on one SynthMTIL task, silently
 * ```ts
 * import { loadClip } from "jsr:@mtil/mtil/clip";
 * import { finetune, trainTask } from "jsr:@mtil/mtil/methods";
 *
 * const { model } = await loadClip("synth-tiny");
 * const result = await trainTask(model, "Synth-shape", {
 *   method: finetune(),
 *   iterations: 20,
 *   batchSize: 16,
 *   lr: 5e-4,
 *   log: "silent",
 * });
 * console.log(result.steps, result.trainableParameters, result.losses.at(-1));
 * model.dispose();
 * ```
 *
 * @module
 */
import { exists } from "../datasets/families/common.ts";
import { taskCheckpointPath } from "./sequence.ts";
import { tf } from "../clip/backends/tf.ts";
import { tokenizerMeta } from "../clip/load.ts";
import { saveCheckpoint } from "../clip/formats/checkpoint.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { removeStaleTemps, writeFileAtomic } from "../clip/formats/safetensors.ts";
import { ProgressBar } from "../clip/download/progress.ts";
import type { ClipModel } from "../clip/types.ts";
import { loadDataset } from "../datasets/registry.ts";
import { trainTransform } from "../datasets/transforms.ts";
import type { Dataset } from "../datasets/types.ts";
import {
  adapterStateDict,
  injectLora,
  type LoraOptions,
  loraParameterCounts,
  type LoraState,
  mergedStateDictAsync,
  removeLora,
} from "../lora/lora.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import { DeviceLimitError } from "./device_limits.ts";
import { ogdPart, type OgdPartOptions } from "../ogd/part.ts";
import { classPrompts, finetune } from "./builtin.ts";
import { StepBatches } from "./data.ts";
import { cachedFeatures, featureBatches } from "./features.ts";
import type { MovingAvgAnchor } from "./ensemble.ts";
import {
  appendResultsDb,
  type EvalResult,
  evaluate,
  type LinearHead,
  tokenizeFor,
} from "./evaluate.ts";
import type { LogLevel, Method, MethodContext, MethodSetup } from "./method.ts";
import { HEAD_PREFIX, type TrainMode } from "./params.ts";
import { loadTrainState, saveTrainState } from "./state.ts";
import { baseParts } from "./presets.ts";
import {
  createRun,
  DeviceStepError,
  disposeRun,
  type HeadOptions,
  runSteps,
  type StepRecord,
  type TrainBatch,
  type TrainOptions,
  type TrainPart,
  type TrainRun,
  type TrainTask,
  varsToSd,
  weightsToSave,
} from "./train.ts";

/** Weight averaging over the task (the reference's `--we`, `--we_wise`, `--moving_avg`). */
export interface AveragingOptions {
  /** `we`: running mean; `we_wise`: WiSE-style mixing; `moving_avg`: exponential average. */
  kind: "we" | "we_wise" | "moving_avg";
  /** Sample every this many steps (default 100). */
  avgFreq?: number;
  /** α of `we_wise` (default 0.98). */
  weWiseAlpha?: number;
  /** Decay of `moving_avg` (default 0.999). */
  decay?: number;
  /** Anchor of `moving_avg`: `n` (start of task), `t` (current) or `zeroshot`. */
  anchor?: MovingAvgAnchor;
}

/** In-training evaluation. */
export interface TrainEvalOptions {
  /** Datasets evaluated (registry names or datasets; test split). */
  datasets: (string | Dataset)[];
  /** Evaluate every this many steps (and at the end); default: only at the end. */
  interval?: number;
  /** Evaluate after every epoch instead of every `interval` steps. */
  everyEpoch?: boolean;
  /** Images per dataset (default all). */
  limit?: number;
  /** Batches per dataset (the reference's `--max-evaluation-size`). */
  maxBatches?: number;
  /** With a linear head, evaluate each dataset with its own zero-shot head instead. */
  datasetShift?: boolean;
  /** Append a JSON line per evaluation to this file (the reference's `--results-db`). */
  resultsDb?: string;
  /** The options written into each results-db line (default: a summary of the run's options). */
  resultsDbOptions?: Record<string, unknown>;
}

/** Where and how a task is saved. */
export interface TrainSaveOptions {
  /** Folder: `<Task>.safetensors`, `<Task>.manifest.json`, the resume state, metrics CSVs. */
  dir: string;
  /** Also save the resume state every this many steps (default 0: only when stopped). */
  interval?: number;
  /** Continue from `<Task>.state.safetensors` when present; skip a finished task. */
  resume?: boolean;
  /** With LoRA, also write the adapters (`<Task>.lora.safetensors`). */
  adapters?: boolean;
  /** The run's configuration, written to the manifest (default: a summary of the options). */
  config?: Record<string, unknown>;
  /** Extra checkpoint metadata (e.g. the model name). */
  meta?: Record<string, unknown>;
}

/** Options of {@link trainTask}. Every field is optional; defaults follow the reference code. */
export interface TrainTaskOptions {
  /** The method (default `finetune()`). */
  method?: Method;
  /** Which parameters learn (default `whole`). */
  trainMode?: TrainMode;
  /** Freeze embeddings and projections. */
  freeze?: boolean;
  /**
   * The linear probe (`--freeze-encoder --cache-dir DIR`): with `trainMode: "fc"`, the frozen
   * encoder's features of the training set are computed once into this folder (reused by later
   * runs on the same weights) and the head trains on them.
   */
  featureCache?: string;
  /** The linear head of the fc train modes (see the engine's `TrainOptions.head`). */
  head?: HeadOptions | false;
  /** Optimizer steps (exclusive with `epochs`; default one epoch). */
  iterations?: number;
  /** Epochs over the training set. */
  epochs?: number;
  /** Training batch size (default 64). */
  batchSize?: number;
  /**
   * Gradient accumulation: each batch in this many micro-batches, one update (default 1; the
   * engine's `accumSteps`): the reference's batch sizes on a smaller device.
   */
  accumSteps?: number;
  /** Evaluation batch size (default 128). */
  batchSizeEval?: number;
  /** Base learning rate (default 1e-3). */
  lr?: number;
  /** AdamW weight decay (default 0). */
  weightDecay?: number;
  /** Adam β2 (default 0.999). */
  beta2?: number;
  /** Warm-up steps of the cosine schedule (default 100). */
  warmupLength?: number;
  /** Label smoothing of the cross-entropy (default 0). */
  labelSmoothing?: number;
  /** L2 to the start-of-task weights, weight (default 0: off). */
  l2?: number;
  /** Weight averaging (off by default). */
  averaging?: AveragingOptions;
  /** WiSE merge with the start-of-task (or zero-shot) model at the end of the task. */
  wiseMerge?: { alpha?: number; model?: "n" | "zeroshot" };
  /** Take the reference's final `lr(total)` iteration (default true). */
  finalStep?: boolean;
  /** First step (the reference's `--start-iteration`; default 0 or the resumed step). */
  startStep?: number;
  /** Prompt template of the training texts (default the dataset's first). */
  template?: string;
  /** Seed of the data order, crops and method randomness (default 42). */
  seed?: number;
  /** Loader worker threads (default 0). */
  workers?: number;
  /** Root folder of the datasets (default `./data`). */
  dataRoot?: string;
  /** Weights of the zero-shot model (default: the model's weights when the call starts). */
  zeroShot?: StateDict;
  /** Train LoRA adapters instead of the model's weights. */
  lora?: LoraOptions;
  /** Orthogonal gradient descent (`saveDir` defaults to `save.dir`). */
  ogd?: OgdPartOptions;
  /** More training parts (loss terms, hooks, gradient transforms). */
  parts?: TrainPart[];
  /** In-training evaluation. */
  eval?: TrainEvalOptions;
  /** Saving and resume. */
  save?: TrainSaveOptions;
  /** Stop (saving the resume state) once this returns true; checked before each step. */
  shouldStop?: () => boolean;
  /** After every step. */
  onStep?: (record: StepRecord) => void | Promise<void>;
  /** After every in-training evaluation. */
  onEval?: (evaluation: TaskEvaluation) => void | Promise<void>;
  /** What to print (default `progress`). */
  log?: LogLevel;
  /** With `verbose`, print the losses every this many steps (default 1000). */
  lossInterval?: number;
}

/** One in-training evaluation. */
export interface TaskEvaluation extends EvalResult {
  /** Training step it was taken at. */
  iteration: number;
}

/** What {@link trainTask} returns. */
export interface TrainTaskResult {
  /** Task (dataset) name. */
  task: string;
  /** Whether every step ran (false: stopped; resume with `save.resume`). */
  finished: boolean;
  /** True when `save.resume` found the task already finished and nothing ran. */
  skipped: boolean;
  /** Steps taken so far (including resumed ones). */
  steps: number;
  /** Scheduled steps. */
  totalSteps: number;
  /** Loss terms per step run in this call. */
  losses: { step: number; lr: number; losses: Record<string, number> }[];
  /** Parameters that learn. */
  trainableParameters: number;
  /** Parameters of the model (plus adapters and head, when trained). */
  totalParameters: number;
  /** In-training and final evaluations. */
  evaluations: TaskEvaluation[];
  /** Files written. */
  saved: { checkpoint?: string; manifest?: string; adapters?: string; state?: string };
}

/** A line printer that honours a {@link LogLevel}. */
export function logger(level: LogLevel): { info(line: string): void; verbose(line: string): void } {
  return {
    info: (l) => level !== "silent" && console.log(l),
    verbose: (l) => level === "verbose" && console.log(l),
  };
}

/**
 * Stop a long run on SIGINT, SIGTERM and SIGUSR1 (SLURM's warning signal): the first signal
 * asks the loop to stop after the current step (it then saves its resume state), a second one
 * exits at once. Call `dispose` when the run is over.
 */
export function stopOnSignals(): { shouldStop: () => boolean; dispose: () => void } {
  let stop: string | undefined;
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGUSR1"];
  const handlers = signals.map((sig) => {
    const h = () => {
      if (stop) Deno.exit(130);
      stop = sig;
      console.error(`\n${sig}: finishing the current step, then saving the training state…`);
    };
    try {
      Deno.addSignalListener(sig, h);
    } catch { /* signal not supported on this platform */ }
    return [sig, h] as const;
  });
  return {
    shouldStop: () => stop !== undefined,
    dispose: () => {
      for (const [sig, h] of handlers) {
        try {
          Deno.removeSignalListener(sig, h);
        } catch { /* not registered */ }
      }
    },
  };
}

/** Paths of a task's files in a save folder. */
export function taskPaths(dir: string, task: string): {
  checkpoint: string;
  manifest: string;
  state: string;
  adapters: string;
} {
  const checkpoint = taskCheckpointPath(dir, task);
  const base = checkpoint.slice(0, -".safetensors".length);
  return {
    checkpoint,
    manifest: `${base}.manifest.json`,
    state: `${base}.state.safetensors`,
    adapters: `${base}.lora.safetensors`,
  };
}

/** The library version (from deno.json). */
export async function libraryVersion(): Promise<string> {
  try {
    const url = new URL("../deno.json", import.meta.url);
    const j = url.protocol === "file:"
      ? JSON.parse(await Deno.readTextFile(url))
      : await (await fetch(url)).json();
    return String(j.version);
  } catch {
    return "unknown";
  }
}

function commonParts(o: TrainTaskOptions, zeroShot: StateDict, setup: MethodSetup): TrainPart[] {
  const avg = o.averaging;
  return baseParts({
    crossEntropy: !setup.replacesCrossEntropy,
    labelSmoothing: o.labelSmoothing,
    l2: o.l2,
    we: avg?.kind === "we",
    weWise: avg?.kind === "we_wise",
    movingAvg: avg?.kind === "moving_avg",
    avgFreq: avg?.avgFreq,
    weWiseAlpha: avg?.weWiseAlpha,
    mvAvgDecay: avg?.decay,
    mvAvgModel: avg?.anchor,
    zeroshot: zeroShot,
    wiseMerge: !!o.wiseMerge,
    wiseFtAlpha: o.wiseMerge?.alpha,
    wiseFtModel: o.wiseMerge?.model,
  });
}

function optionSummary(o: TrainTaskOptions): Record<string, unknown> {
  const skip = new Set([
    "method",
    "zeroShot",
    "parts",
    "save",
    "shouldStop",
    "onStep",
    "onEval",
    "eval",
  ]);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!skip.has(k)) out[k] = v;
  const m = o.method ?? finetune();
  out.method = { name: m.name, options: m.options };
  return out;
}

/**
 * Train `model` on one task. On return the model holds the task's result — the weights that
 * were (or would be) saved: the weight-ensembled ones with `averaging`, LoRA merged in with
 * `lora`.
 *
 * @param model The model, holding the start-of-task weights.
 * @param dataset The training dataset, or its registry name (loaded from `dataRoot`).
 * @param options The method and the recipe.
 * @returns What ran, the loss history, parameter counts, evaluations and saved paths.
 */
export async function trainTask(
  model: ClipModel,
  dataset: string | Dataset,
  options: TrainTaskOptions = {},
): Promise<TrainTaskResult> {
  const o = options;
  const level = o.log ?? "progress";
  const log = logger(level);
  const dataRoot = o.dataRoot ?? "./data";
  const ds = typeof dataset === "string"
    ? await loadDataset(dataset, { root: dataRoot, split: "train" })
    : dataset;
  const name = ds.name;
  const method = o.method ?? finetune();
  const seed = o.seed ?? 42;
  const batchSize = o.batchSize ?? 64;
  const batchSizeEval = o.batchSizeEval ?? 128;
  const workers = o.workers ?? 0;
  const dir = o.save?.dir;
  const paths = dir ? taskPaths(dir, name) : undefined;
  const result: TrainTaskResult = {
    task: name,
    finished: false,
    skipped: false,
    steps: 0,
    totalSteps: 0,
    losses: [],
    trainableParameters: 0,
    totalParameters: 0,
    evaluations: [],
    saved: {},
  };
  if (!o.zeroShot) await readableOnHost(model.params.values());
  const zeroShot = o.zeroShot ?? model.stateDict();
  const ctxBase = {
    model,
    dataset: ds,
    zeroShot,
    seed,
    batchSize,
    workers,
    dataRoot,
    loadDataset: (n: string, lo: { split?: "train" | "test"; num?: number } = {}) =>
      loadDataset(n, { root: dataRoot, split: lo.split ?? "train", num: lo.num }),
    log: (l: string) => log.info(l),
  };
  if (dir && method.loadState) await method.loadState(dir, model);

  // A finished task (checkpoint present, no pending state) is skipped on resume.
  if (o.save?.resume && paths && await exists(paths.checkpoint) && !await exists(paths.state)) {
    if (method.taskDone?.(name) === false && method.afterTask) {
      const { readCheckpoint } = await import("../clip/formats/checkpoint.ts");
      const weights = (await readCheckpoint(paths.checkpoint)).stateDict;
      await method.afterTask({ ...ctxBase, weights, batchSizeEval });
      if (method.saveState) await method.saveState(dir!);
    }
    log.info(`${paths.checkpoint} exists and no state is pending: ${name} already finished`);
    result.finished = true;
    result.skipped = true;
    result.saved.checkpoint = paths.checkpoint;
    return result;
  }

  const res = model.config.imageResolution;
  const cleanup: (() => void | Promise<void>)[] = [];
  let batchOf: (step: number) => Promise<TrainBatch>;
  let perEpoch: number;
  if (o.featureCache) {
    if ((o.trainMode ?? "whole") !== "fc") {
      throw new Error(
        `featureCache (--cache-dir with --freeze-encoder) trains only the linear head: ` +
          `it needs trainMode "fc", not "${o.trainMode ?? "whole"}"`,
      );
    }
    const cache = await cachedFeatures(model, ds, o.featureCache, {
      batchSize: batchSizeEval,
      workers,
      log: level,
    });
    const fb = featureBatches(cache, batchSize, seed);
    batchOf = fb.batch;
    perEpoch = fb.perEpoch;
  } else {
    const stream = new StepBatches(ds, {
      batchSize,
      seed,
      transform: trainTransform(res),
      workers,
    });
    cleanup.push(() => stream.close());
    batchOf = (s) => stream.batch(s);
    perEpoch = stream.perEpoch;
  }
  let textTokens: tf.Tensor2D | undefined;
  let run: TrainRun | undefined;
  let lora: LoraState | undefined;
  try {
    textTokens = await tokenizeFor(model, classPrompts(ds, o.template));
    const task: TrainTask = {
      name,
      classnames: ds.classnames,
      textTokens,
      batch: batchOf,
      batchesPerEpoch: perEpoch,
    };
    const ctx: MethodContext = { ...ctxBase, task };
    const setup = await method.setup(ctx);
    if (setup.dispose) cleanup.push(() => setup.dispose!());
    const parts = [...commonParts(o, zeroShot, setup), ...setup.parts, ...(o.parts ?? [])];
    const trainOptions: TrainOptions = {
      iterations: o.iterations,
      epochs: o.iterations === undefined ? (o.epochs ?? 1) : o.epochs,
      lr: o.lr,
      weightDecay: o.weightDecay,
      beta2: o.beta2,
      warmupLength: o.warmupLength,
      trainMode: o.trainMode,
      freeze: o.freeze,
      head: o.head,
      accumSteps: o.accumSteps,
      parts,
      finalStep: o.finalStep,
      shouldStop: o.shouldStop,
      // what the method fixes (DIKI: optimizer, schedule, lr, the pools as extra parameters)
      ...setup.trainOptions,
    };
    if (o.lora) {
      lora = injectLora(model, { seed, ...o.lora });
      trainOptions.extraParams = new Map([...lora.variables].map(([k, v]) => [`lora.${k}`, v]));
      trainOptions.onlyExtra = true;
    }
    if (o.ogd) {
      parts.push(ogdPart({
        saveDir: dir,
        track: lora ? (n) => n.startsWith("lora.") : undefined,
        ...o.ogd,
      }));
    }
    run = await createRun(model, task, trainOptions);
    if (o.startStep !== undefined) run.step = o.startStep;
    if (o.save?.resume && paths) {
      if (await exists(paths.state)) {
        const meta = await loadTrainState(paths.state, run);
        log.info(`resumed ${paths.state} at step ${meta.step}/${run.totalSteps}`);
      } else {
        log.verbose(`no resume state at ${paths.state}: starting at step ${run.step}`);
      }
    }
    result.totalSteps = run.totalSteps;
    for (const n of run.trainable) result.trainableParameters += run.params.get(n)!.size;
    if (lora) {
      const c = loraParameterCounts(model, lora);
      result.trainableParameters = c.trainable;
      result.totalParameters = c.total;
      log.info(
        `LoRA r=${lora.r} alpha=${lora.alpha}${lora.shared ? " (shared)" : ""}: ` +
          `${c.trainable.toLocaleString("en-US")} trainable of ` +
          `${c.total.toLocaleString("en-US")} parameters ` +
          `(${(100 * c.trainable / c.total).toFixed(3)}%)`,
      );
    } else {
      for (const v of run.params.values()) result.totalParameters += v.size;
    }
    const extra = run.lastStep > run.totalSteps ? " + the final lr(total) step" : "";
    log.info(
      `train ${name}: ${run.totalSteps} steps (${perEpoch}/epoch)${extra}, ` +
        `method ${method.name}, mode ${o.trainMode ?? "whole"}, ` +
        `${result.trainableParameters} trainable parameters`,
    );
    const version = await libraryVersion();
    const config = o.save?.config ?? optionSummary(o);
    const saveState = async () => {
      if (!paths || !run) return;
      await Deno.mkdir(dir!, { recursive: true });
      await saveTrainState(paths.state, run, { config, version });
      result.saved.state = paths.state;
    };
    const averaged = !!o.averaging;
    const evalNames = o.eval?.datasets ?? [];
    const evalInterval = o.eval?.everyEpoch ? perEpoch : o.eval?.interval;
    const evaluateAt = async (iteration: number) => {
      const r = await evaluate(model, evalNames, {
        dataRoot,
        batchSize: batchSizeEval,
        limit: o.eval?.limit,
        maxBatches: o.eval?.maxBatches,
        workers,
        weights: averaged && run ? weightsToSave(run) : undefined,
        linearHead: run ? linearHeadOf(run) : undefined,
        datasetShift: o.eval?.datasetShift,
        log: level,
        metricsDir: dir,
        iteration,
      });
      if (o.eval?.resultsDb) {
        await appendResultsDb(o.eval.resultsDb, o.eval.resultsDbOptions ?? optionSummary(o), r, {
          iteration,
        });
      }
      for (const e of r) {
        const te = { ...e, iteration };
        result.evaluations.push(te);
        await o.onEval?.(te);
      }
    };
    if (evalNames.length && evalInterval && run.step === 0) await evaluateAt(0);

    const bar = level === "silent"
      ? undefined
      : new ProgressBar({ total: run.lastStep, label: `train ${name}`, unit: "it" });
    bar?.tick(run.step);
    const t0 = performance.now();
    let images = 0;
    const lossEvery = o.lossInterval ?? 1000;
    const saveEvery = o.save?.interval ?? 0;
    run.options.onStep = async (rec, r) => {
      images += rec.batchSize;
      result.losses.push({ step: rec.step, lr: rec.lr, losses: rec.losses });
      const secs = (performance.now() - t0) / 1000;
      const fields: Record<string, string | number> = { lr: rec.lr.toExponential(2) };
      for (const [k, v] of Object.entries(rec.losses)) fields[k] = v.toFixed(4);
      fields["img/s"] = (images / secs).toFixed(1);
      bar?.tick(1, fields);
      if (level === "verbose" && lossEvery > 0 && rec.step % lossEvery === 0) {
        console.error(`\nstep ${rec.step}: ${JSON.stringify(rec.losses)}`);
      }
      await o.onStep?.(rec);
      const it = rec.step + 1;
      // the reference's final iteration (lr(total)) evaluates before it steps: nothing to do
      if (rec.step >= r.totalSteps) return;
      if (evalNames.length && evalInterval && it % evalInterval === 0) await evaluateAt(it);
      if (saveEvery > 0 && it % saveEvery === 0 && it < r.totalSteps) await saveState();
    };
    let steps;
    try {
      steps = await runSteps(run);
    } catch (e) {
      bar?.done();
      // a step the device could not run was not applied: keep the state to resume from it
      if (e instanceof DeviceStepError || e instanceof DeviceLimitError) {
        await saveState();
        if (paths) log.info(`saved the training state at step ${run.step} in ${paths.state}`);
      }
      throw e;
    }
    bar?.done();
    result.steps = run.step;
    if (!steps.finished) {
      await saveState();
      if (paths) {
        console.error(`stopped at step ${run.step}/${run.totalSteps}; resume with save.resume`);
      }
      return result;
    }
    // The task's result: the weight-ensembled weights with averaging, LoRA merged with LoRA.
    // fetch device tensors once (webgpu cannot read synchronously), then copy on the host
    await readableOnHost([...weightsToSave(run).values(), ...run.params.values()]);
    const weights: StateDict = lora
      ? await mergedStateDictAsync(model, lora)
      : varsToSd(weightsToSave(run));
    // the fc modes' linear head is saved with the model (`head.*` keys; see `splitHead`)
    for (const [k, v] of run.params) {
      if (k.startsWith(HEAD_PREFIX) && !weights.has(k)) {
        weights.set(k, varsToSd(new Map([[k, v]])).get(k)!);
      }
    }
    if (paths) {
      await Deno.mkdir(dir!, { recursive: true });
      const meta = {
        ...tokenizerMeta(model),
        ...o.save?.meta,
        iteration: run.totalSteps,
        method: method.name,
        trainDataset: name,
        seed,
        version,
      };
      if (lora && o.save?.adapters) {
        await saveCheckpoint(paths.adapters, adapterStateDict(lora), {
          lora: { r: lora.r, alpha: lora.alpha, shared: lora.shared, splitQkvo: lora.splitQkvo },
        });
        result.saved.adapters = paths.adapters;
        log.info(`saved adapters ${paths.adapters}`);
      }
      const manifest = {
        checkpoint: paths.checkpoint,
        config,
        version,
        seed,
        finished: new Date().toISOString(),
      };
      await writeFileAtomic(
        paths.manifest,
        new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"),
      );
      result.saved.manifest = paths.manifest;
      // the checkpoint last: its presence marks the task done (a sequence rerun skips it)
      await saveCheckpoint(paths.checkpoint, weights, meta);
      result.saved.checkpoint = paths.checkpoint;
      await Deno.remove(paths.state).catch(() => {});
      await removeStaleTemps(paths.state);
      delete result.saved.state;
      log.info(`saved ${paths.checkpoint}`);
    }
    if (lora) {
      removeLora(model, lora);
      lora = undefined;
    }
    model.loadStateDict(weights, { strict: false });
    if (method.afterTask) {
      await method.afterTask({ ...ctx, weights, batchSizeEval });
      if (dir && method.saveState) await method.saveState(dir);
    }
    if (evalNames.length && !(evalInterval && run.totalSteps % evalInterval === 0)) {
      await evaluateAt(run.totalSteps);
    }
    result.finished = true;
    return result;
  } finally {
    if (run) disposeRun(run);
    if (lora) removeLora(model, lora);
    for (const c of cleanup) await c();
    textTokens?.dispose();
  }
}

function linearHeadOf(run: TrainRun): LinearHead | undefined {
  const weight = run.params.get(`${HEAD_PREFIX}weight`);
  const bias = run.params.get(`${HEAD_PREFIX}bias`);
  return weight && bias
    ? { weight: weight as tf.Tensor as tf.Tensor2D, bias: bias as tf.Tensor as tf.Tensor1D }
    : undefined;
}
