/**
 * The training engine. A run composes small parts instead of one loop full of flags:
 *
 * - a **parameter selection** (`trainMode`, `freeze`: see `params.ts`),
 * - **loss terms** and **hooks**, each a {@link TrainPart} (`init`, `prepare`, `loss`,
 *   `afterStep`, `end`, plus state for resume),
 * - the **optimizer** ({@link AdamW} by default, any {@link Optimizer} such as `Sgd` through
 *   `options.optimizer`) with a learning-rate schedule.
 *
 * A method (`finetune()`, `lwf()`, `zscl()`, `icarl()`, … in `builtin.ts`) builds parts from its
 * typed options; `trainTask` (`trainer.ts`) composes them with the common ones. Third parties add
 * a method with `registerMethod` (`method.ts`) without touching the loop.
 *
 * ```ts
 * import { ceLoss, train, type TrainTask } from "jsr:@mtil/mtil/methods";
 * import type { ClipModel } from "jsr:@mtil/mtil/clip";
 *
 * declare const model: ClipModel, task: TrainTask;
 * const result = await train(model, task, {
 *   iterations: 100,
 *   lr: 1e-5,
 *   parts: [ceLoss({ labelSmoothing: 0.2 })],
 * });
 * ```
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { installLeanGradients } from "../clip/backends/lean_gradients.ts";
import type { ClipModel } from "../clip/types.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { AdamW, type AdamWState } from "./adamw.ts";
import type { Optimizer } from "./sgd.ts";
import { deviceStorageLimit, readableOnHost, watchDeviceErrors } from "../clip/backends/webgpu.ts";
import { checkDeviceLimits } from "./device_limits.ts";
import { cosineLr, type LrSchedule } from "./schedule.ts";
import { clipLogits, crossEntropy, l2ToStart, normalizeRows } from "./losses.ts";
import { HEAD_PREFIX, selectTrainable, type TrainMode, usesHead } from "./params.ts";
import {
  cloneVars,
  disposeVars,
  mergeWe,
  movingAvg,
  type MovingAvgAnchor,
  type VarMap,
  wiseMerge,
  wiseWe,
} from "./ensemble.ts";

/** One training batch: preprocessed NHWC images and their class labels. */
export interface TrainBatch {
  /** Images `[n, R, R, 3]`, already normalised. Disposed by the loop after the step. */
  images: tf.Tensor4D;
  /** Class indices into the task's classes. */
  labels: number[];
  /**
   * Precomputed image features `[n, E]` (not normalised) of a frozen encoder (the linear probe:
   * `trainTask`'s `featureCache`); when present the images are not encoded. Disposed by the loop.
   */
  features?: tf.Tensor2D;
}

/**
 * What to train on. `batch(step)` must be deterministic in `step` (same step → same batch), so
 * that a resumed run sees the same data as an uninterrupted one.
 */
export interface TrainTask {
  /** Dataset name (checkpoints are saved as `<name>.<ext>`). */
  name: string;
  /** Class names in label order. */
  classnames: string[];
  /** Token ids `[C, contextLength]` of the training prompts (one per class). Owned by the caller. */
  textTokens: tf.Tensor2D;
  /** The batch of a 0-based iteration. */
  batch(step: number): Promise<TrainBatch>;
  /** Batches per epoch (for `epochs`; optional when `iterations` is given). */
  batchesPerEpoch?: number;
}

/** Scalar loss terms by name, each with its weight in the total. */
export type LossTerms = Record<string, { value: tf.Scalar; weight: number }>;

/**
 * Per-step context handed to {@link TrainPart.loss}. Feature getters are lazy and cached for the
 * step, so several parts share one forward pass. Everything here is created inside the gradient
 * tape and freed by the loop.
 */
export interface StepContext {
  /** The run. */
  run: TrainRun;
  /** 0-based iteration. */
  step: number;
  /** Learning rate of this step. */
  lr: number;
  /** The batch. */
  batch: TrainBatch;
  /** `exp`-able logit scale of the training model (`logit_scale`). */
  logitScale: tf.Tensor;
  /** Normalised image features of the batch `[n, E]`. */
  imageFeatures(): tf.Tensor2D;
  /** Normalised class embeddings `[C, E]` (recomputed through the text tower when it trains). */
  classEmbeddings(): tf.Tensor2D;
  /** Classification logits `[n, C]` (`exp(logit_scale)·img·textᵀ`, or the linear head). */
  logits(): tf.Tensor2D;
}

/** Serialisable state of a part (for resume). */
export interface PartState {
  /** Tensors (e.g. the averaged weights). */
  tensors?: StateDict;
  /** JSON-serialisable scalars (e.g. counters). */
  json?: unknown;
}

/**
 * A composable piece of a training run. Every hook is optional.
 *
 * - `init`: once before the first step (or after a resume, before `loadState`).
 * - `prepare`: before each step, outside the gradient tape (async work, e.g. fetching a
 *   reference batch and computing teacher outputs). Tensors it keeps must be freed in
 *   `afterStep`.
 * - `loss`: inside the tape; returns weighted scalar terms.
 * - `afterStep`: after the optimizer update (weight averaging, bookkeeping).
 * - `end`: after the last step (e.g. `wise_merge`).
 * - `weightsToSave`: the weights the reference saves instead of the model's (WE's average).
 */
export interface TrainPart {
  /** Unique name (used in logs and resume state). */
  readonly name: string;
  /** Called once before training. */
  init?(run: TrainRun): void | Promise<void>;
  /** Called before each step (after its batch is loaded), outside the tape. */
  prepare?(run: TrainRun, step: number, batch: TrainBatch): void | Promise<void>;
  /** Loss terms of a step. */
  loss?(ctx: StepContext): LossTerms;
  /** Called after each optimizer update. */
  afterStep?(run: TrainRun, step: number): void | Promise<void>;
  /** Called after the last step. */
  end?(run: TrainRun): void | Promise<void>;
  /** State for resume. */
  getState?(): PartState;
  /** Restore state saved by `getState`. */
  setState?(state: PartState): void;
  /** Weights to save instead of the model's (keyed like `model.params`). */
  weightsToSave?(): ReadonlyMap<string, tf.Tensor> | undefined;
  /**
   * Called with the step's gradients (by parameter name) before the optimizer update; may
   * replace entries (e.g. OGD's projection). A replaced gradient is disposed by the loop, and so
   * is the returned one. Runs after the gradient norms are recorded.
   */
  transformGrads?(
    run: TrainRun,
    step: number,
    grads: Map<string, tf.Tensor>,
  ): void | Promise<void>;
  /** Free what the part holds. */
  dispose?(): void;
  /**
   * The part's loss needs the whole batch in one pass (it normalises across the batch or uses
   * per-example data prepared from the whole batch, as LwF's transposed distillation): gradient
   * accumulation (`accumSteps` > 1) is refused with it.
   */
  readonly wholeBatchOnly?: boolean;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** Number of optimizer steps (exclusive with `epochs`). */
  iterations?: number;
  /** Epochs (needs `task.batchesPerEpoch`). */
  epochs?: number;
  /** Base learning rate (default 1e-3, as the seed). */
  lr?: number;
  /** Weight decay (default 0, as the seed's `--wd`). */
  weightDecay?: number;
  /** Adam β2 (default 0.999). */
  beta2?: number;
  /** Warm-up steps of the cosine schedule (default 100, as the seed). */
  warmupLength?: number;
  /** Custom schedule instead of the warm-up cosine. */
  schedule?: LrSchedule;
  /**
   * Builds the schedule from the base `lr` and the run's total steps, when `schedule` is not
   * given (e.g. `cosineNoWarmupLr` for DIKI). Default: the warm-up cosine.
   */
  scheduleFor?: (baseLr: number, totalSteps: number) => LrSchedule;
  /**
   * The optimizer (default: a new {@link AdamW} from `lr`, `weightDecay`, `beta2`). The run owns
   * it: {@link disposeRun} frees its state. Its `lr` is set by the schedule before every step.
   */
  optimizer?: Optimizer;
  /** Train mode (default `whole`). */
  trainMode?: TrainMode;
  /** Freeze embeddings and projections. */
  freeze?: boolean;
  /** The parts (loss terms and hooks). */
  parts?: TrainPart[];
  /** First step to run (set by resume; default 0). */
  startStep?: number;
  /** Stop after this step count even if the schedule is longer (simulated interruption). */
  stopAfter?: number;
  /** Parameter names whose gradient norm to record each step (`true`: all trainable). */
  gradNorms?: string[] | boolean;
  /** Called after every step with its record (progress bars, logging). */
  onStep?: (record: StepRecord, run: TrainRun) => void | Promise<void>;
  /** Checked before each step; when it returns true the loop stops (signals). */
  shouldStop?: () => boolean;
  /**
   * Variables trained beside the model's own (e.g. LoRA adapters), by a name unique within the
   * run. With `onlyExtra`, they are the only trainable variables.
   */
  extraParams?: ReadonlyMap<string, tf.Variable>;
  /** Train only `extraParams`; the model's parameters (and the train mode's choice) stay frozen. */
  onlyExtra?: boolean;
  /**
   * Take the reference loop's last iteration (default true). The seed loops over
   * `range(total_iterations + 1)`: after the `total` scheduled steps it takes one more, at
   * `lr(total)` (0 for the warm-up cosine once warm-up is over). That step moves no weight, but it
   * updates BatchNorm running statistics and the Adam moments, and weight averaging (`we`,
   * `we_wise`, `moving_avg`) takes its sample of the final weights when `total % avgFreq == 0`.
   * `false` runs exactly `total` steps (the form of the step-parity fixtures).
   */
  finalStep?: boolean;
  /**
   * The linear head of the `*fc*` train modes, as the reference's image classifier builds it:
   * `logits = normalize(image)·Wᵀ + b`. `init: "zeroshot"` (default; the reference's
   * `--fc-init`) sets each row of W to the class's normalised text embedding of the first prompt
   * times `exp(logit_scale)`; `"zeros"` starts W at 0 with `classes` rows (default 10); b starts
   * at 0. `false` (`--fc-setnone`): no head, the CLIP logits even in the fc modes.
   */
  head?: HeadOptions | false;
  /**
   * Stop with a {@link NonFiniteError} when the loss or a gradient is NaN or infinite, before
   * the step is applied (default true).
   */
  checkFinite?: boolean;
  /**
   * Gradient accumulation (`--accum-steps N`, default 1): each step's batch is split into N
   * micro-batches (sizes differing by at most one), each forward/backward runs alone and the
   * gradients are summed weighted by micro-batch size, then one optimizer update is taken. For
   * losses that are means over the batch (cross-entropy) or independent of it (L2, ZSCL's
   * reference-image distillation, recomputed per micro-batch) this is the same update as one pass
   * over the whole batch, so a batch that does not fit the device can be taken in parts.
   * Not identical with BatchNorm in training mode (ModifiedResNet): batch statistics are those
   * of each micro-batch, and the running statistics are updated N times per step (as PyTorch
   * does when one accumulates gradients over N forward passes). Parts with
   * `wholeBatchOnly` (LwF) refuse N > 1.
   */
  accumSteps?: number;
}

/** Options of the linear head (see {@link TrainOptions.head}). */
export interface HeadOptions {
  /** `zeroshot` (default) or `zeros`. */
  init?: "zeroshot" | "zeros";
  /** Rows of W with `zeros` (the reference's `--n_class`, default 10). */
  classes?: number;
}

/** What one step did. */
export interface StepRecord {
  /** 0-based iteration. */
  step: number;
  /** Learning rate used. */
  lr: number;
  /** Unweighted value of every loss term, plus `total` (weighted sum). */
  losses: Record<string, number>;
  /** Gradient L2 norms of the requested parameters. */
  gradNorms: Record<string, number>;
  /** Images in the batch. */
  batchSize: number;
}

/** The state of a running training, shared with the parts. */
export interface TrainRun {
  /** The model being trained. */
  model: ClipModel;
  /** The task. */
  task: TrainTask;
  /** Resolved options. */
  options: TrainOptions;
  /** Names of the trained parameters. */
  trainable: string[];
  /** Model parameters plus the linear head (when the mode uses one). */
  params: Map<string, tf.Variable>;
  /** The optimizer. */
  optimizer: Optimizer;
  /** Total number of steps of the schedule. */
  totalSteps: number;
  /**
   * Steps the run takes: `totalSteps`, plus the reference's final iteration at `lr(totalSteps)`
   * unless `options.finalStep` is false.
   */
  lastStep: number;
  /** Next step to run. */
  step: number;
  /** The parts. */
  parts: TrainPart[];
}

/** Result of {@link train}. */
export interface TrainResult {
  /** Records of the steps run. */
  records: StepRecord[];
  /** The run (optimizer, parts: for saving state; call {@link disposeRun} when done). */
  run: TrainRun;
  /** Whether all steps ran, up to `run.lastStep` (false when stopped early). */
  finished: boolean;
}

/**
 * A method's parts plus the training options it fixes (e.g. DIKI: its SGD optimizer and
 * schedule, the pools as `extraParams` with `onlyExtra`); they override the caller's options of
 * the same name (see `MethodSetup.trainOptions` in `method.ts`).
 */
export interface RunSetup {
  /** The method's parts (the caller's `options.parts` are appended). */
  parts: TrainPart[];
  /** Options the method sets for the run. */
  options?: Partial<
    Pick<
      TrainOptions,
      | "optimizer"
      | "schedule"
      | "scheduleFor"
      | "extraParams"
      | "onlyExtra"
      | "finalStep"
      | "lr"
      | "trainMode"
    >
  >;
}

/** Total steps from `iterations` or `epochs × batchesPerEpoch`. */
export function totalSteps(options: TrainOptions, task: TrainTask): number {
  if (options.iterations !== undefined && options.epochs !== undefined) {
    throw new Error("give either iterations or epochs, not both");
  }
  if (options.iterations !== undefined) return options.iterations;
  if (options.epochs !== undefined) {
    if (!task.batchesPerEpoch) throw new Error(`task ${task.name}: epochs need batchesPerEpoch`);
    return options.epochs * task.batchesPerEpoch;
  }
  throw new Error("give iterations or epochs");
}

/**
 * Build the run (parts initialised, optimizer empty) without stepping. {@link train} calls it;
 * resume code calls it, restores state, then {@link runSteps}.
 */
export async function createRun(
  model: ClipModel,
  task: TrainTask,
  options: TrainOptions,
): Promise<TrainRun> {
  const parts: TrainPart[] = [];
  const mode = options.trainMode ?? "whole";
  const params = new Map(model.params);
  parts.push(...(options.parts ?? []));
  const names = new Set<string>();
  for (const p of parts) {
    if (names.has(p.name)) throw new Error(`two training parts are named "${p.name}"`);
    names.add(p.name);
  }
  if (usesHead(mode) && options.head !== false) {
    const init = options.head?.init ?? "zeroshot";
    const id = Math.random().toString(36).slice(2);
    const w = tf.tidy(() => {
      if (init === "zeros") {
        const rows = options.head && options.head.classes !== undefined ? options.head.classes : 10;
        return tf.variable(tf.zeros([rows, model.config.embedDim]), true, `head.w/${id}`);
      }
      // per class, the first prompt's embedding normalised (an average of one, normalised
      // again), times exp(logit_scale)
      const prev = model.training;
      model.training = false;
      const e = normalizeRows(model.encodeText(task.textTokens));
      model.training = prev;
      const scale = tf.exp(model.params.get("logit_scale")!);
      return tf.variable(tf.mul(e, scale), true, `head.w/${id}`);
    });
    const rows = w.shape[0];
    params.set(`${HEAD_PREFIX}weight`, w);
    params.set(`${HEAD_PREFIX}bias`, tf.variable(tf.zeros([rows]), true, `head.b/${id}`));
    if (rows < task.classnames.length) {
      disposeHead(params, model);
      throw new Error(
        `the linear head has ${rows} rows but ${task.name} has ${task.classnames.length} ` +
          `classes: give classes ≥ ${task.classnames.length} (--n-class) or init "zeroshot"`,
      );
    }
  }
  const selected = options.onlyExtra ? [] : selectTrainable(params.keys(), mode, {
    freeze: options.freeze,
    vit: model.config.vision === "vit",
  });
  for (const [name, v] of options.extraParams ?? []) {
    if (params.has(name)) throw new Error(`extra parameter "${name}" clashes with a model key`);
    params.set(name, v);
  }
  const trainable = [...selected, ...(options.extraParams?.keys() ?? [])];
  if (trainable.length === 0) throw new Error("nothing to train: no parameter is trainable");
  const total = totalSteps(options, task);
  const run: TrainRun = {
    model,
    task,
    options,
    trainable,
    params,
    optimizer: options.optimizer ?? new AdamW({
      lr: options.lr ?? 1e-3,
      weightDecay: options.weightDecay ?? 0,
      beta2: options.beta2 ?? 0.999,
    }),
    totalSteps: total,
    lastStep: total + (options.finalStep === false ? 0 : 1),
    step: options.startStep ?? 0,
    parts,
  };
  // parts' init copies the model synchronously (teachers, start weights): on webgpu fetch first
  await readableOnHost(model.params.values());
  for (const p of parts) await p.init?.(run);
  return run;
}

function makeContext(run: TrainRun, step: number, lr: number, batch: TrainBatch): StepContext {
  const { model } = run;
  const logitScale = model.params.get("logit_scale")!;
  let img: tf.Tensor2D | undefined, txt: tf.Tensor2D | undefined, lg: tf.Tensor2D | undefined;
  const ctx: StepContext = {
    run,
    step,
    lr,
    batch,
    logitScale,
    imageFeatures: () => img ??= normalizeRows(batch.features ?? model.encodeImage(batch.images)),
    classEmbeddings: () => {
      if (txt) return txt;
      const w = run.params.get(`${HEAD_PREFIX}weight`) as tf.Tensor2D | undefined;
      txt = w ? normalizeRows(w) : normalizeRows(model.encodeText(run.task.textTokens));
      return txt;
    },
    logits: () => {
      if (lg) return lg;
      const w = run.params.get(`${HEAD_PREFIX}weight`) as tf.Tensor2D | undefined;
      if (!w) return lg = clipLogits(ctx.imageFeatures(), ctx.classEmbeddings(), logitScale, true);
      // the reference's image classifier: normalize(x)·Wᵀ + b (the scale lives in W)
      const b = run.params.get(`${HEAD_PREFIX}bias`)!;
      return lg = tf.add(tf.matMul(ctx.imageFeatures(), w, false, true), b) as tf.Tensor2D;
    },
  };
  return ctx;
}

/**
 * L2 norm of a tensor accumulated in float64 on the host (tfjs reductions accumulate in float32
 * and are off by percents on millions of elements).
 */
export function l2NormF64(t: tf.Tensor): number {
  return sumSquaresF64(t.dataSync());
}

/** {@link l2NormF64} with an asynchronous read (works on every backend, webgpu included). */
export async function l2NormF64Async(t: tf.Tensor): Promise<number> {
  return sumSquaresF64(await t.data());
}

function sumSquaresF64(d: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < d.length; i++) s += d[i] * d[i];
  return Math.sqrt(s);
}

/**
 * Training stopped because the loss or a gradient became NaN or infinite. Nothing of the failing
 * step was applied: the weights are those after the previous step, and no checkpoint was
 * written for this step.
 */
export class NonFiniteError extends Error {
  /** The step whose loss or gradient was not finite. */
  readonly step: number;
  /** Build the error for `step`, naming what was not finite. */
  constructor(step: number, what: string) {
    super(
      `step ${step}: ${what}; training stopped and nothing of this step was applied (the last ` +
        `saved checkpoint is kept). Lower the learning rate (--lr) or check the data`,
    );
    this.name = "NonFiniteError";
    this.step = step;
  }
}

/**
 * Throw {@link NonFiniteError} when the loss or any gradient has a NaN or infinite element. One
 * sum per gradient, read back together: NaN and ±Infinity propagate through a sum (a finite sum
 * of finite values that overflows float32 is reported too, and is as unusable).
 */
async function checkFinite(
  loss: tf.Scalar,
  grads: Map<string, tf.Tensor>,
  step: number,
): Promise<void> {
  const names = [...grads.keys()];
  // read asynchronously (a device backend cannot read synchronously), all in one download
  const packed = tf.tidy(() =>
    tf.stack([loss.reshape([]), ...names.map((n) => tf.sum(grads.get(n)!))])
  );
  const sums = await packed.data();
  packed.dispose();
  if (!Number.isFinite(sums[0])) throw new NonFiniteError(step, `the loss is ${sums[0]}`);
  const bad = names.filter((_, i) => !Number.isFinite(sums[i + 1]));
  if (bad.length) {
    throw new NonFiniteError(
      step,
      `the gradient of ${bad.slice(0, 3).join(", ")}${
        bad.length > 3 ? ` and ${bad.length - 3} more` : ""
      } is not finite`,
    );
  }
}

/** Loss and gradients (by parameter name) of one forward/backward over `batch`. */
function microStep(
  run: TrainRun,
  step: number,
  lr: number,
  batch: TrainBatch,
  kept: Record<string, tf.Scalar>,
): { value: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const vars = run.trainable.map((n) => run.params.get(n)!);
  const byVarName = new Map(vars.map((v, i) => [v.name, run.trainable[i]]));
  installLeanGradients(); // idempotent: frees activations during backprop (any backend)
  const { value, grads } = tf.variableGrads(() => {
    const ctx = makeContext(run, step, lr, batch);
    let total: tf.Scalar = tf.scalar(0);
    for (const p of run.parts) {
      const terms = p.loss?.(ctx);
      if (!terms) continue;
      for (const [k, { value, weight }] of Object.entries(terms)) {
        if (kept[k]) throw new Error(`loss term "${k}" given twice (part ${p.name})`);
        kept[k] = tf.keep(value.clone());
        total = total.add(weight === 1 ? value : value.mul(weight));
      }
    }
    return total;
  }, vars);
  const gradMap = new Map<string, tf.Tensor>();
  for (const [vn, g] of Object.entries(grads)) gradMap.set(byVarName.get(vn)!, g);
  return { value, grads: gradMap };
}

/** The validated micro-batch count of a step (`TrainOptions.accumSteps`). */
function accumSteps(run: TrainRun, batch: TrainBatch): number {
  const n = run.options.accumSteps ?? 1;
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`accumSteps must be a positive integer (--accum-steps), got ${n}`);
  }
  if (n > batch.labels.length) {
    throw new Error(
      `accumSteps ${n} exceeds the batch size ${batch.labels.length}: each micro-batch needs an image`,
    );
  }
  if (n > 1) {
    const whole = run.parts.find((p) => p.wholeBatchOnly);
    if (whole) {
      throw new Error(
        `part "${whole.name}" needs the whole batch in one pass (its loss normalises across the ` +
          `batch): accumSteps must be 1 with it`,
      );
    }
  }
  return n;
}

/**
 * A training step failed on the device (out of memory, or a validation error such as a binding
 * over the limit) and was not applied: the weights, the BatchNorm statistics (rolled back) and
 * the optimizer state are those before `step`, so a training state saved now
 * (`saveTrainState`) resumes at `step`. The message says which batch split would fit.
 */
export class DeviceStepError extends Error {
  /** `out-of-memory` or `validation`. */
  readonly kind: "out-of-memory" | "validation";
  /** The step that was not applied. */
  readonly step: number;
  /** A suggested `--accum-steps` (twice the current one, capped at the batch size). */
  readonly suggestedAccumSteps: number;
  /** Build the error (see the class doc). */
  constructor(
    kind: "out-of-memory" | "validation",
    driverMessage: string,
    batch: number,
    accum: number,
    step: number,
  ) {
    const next = Math.min(batch, accum * 2);
    const micro = Math.ceil(batch / next);
    super(
      `device ${kind} error at step ${step} (batch ${batch}, ${accum} micro-batch${
        accum > 1 ? "es" : ""
      } of ≤${Math.ceil(batch / accum)}): ${driverMessage.split("\n")[0]}; the step was not ` +
        `applied. ` +
        (kind === "out-of-memory"
          ? `Try --accum-steps ${next} (micro-batches of ≤${micro}, same update) or --batch-size ${micro}.`
          : `A tensor may exceed the device's binding limit: try --accum-steps ${next}.`),
    );
    this.name = "DeviceStepError";
    this.kind = kind;
    this.step = step;
    this.suggestedAccumSteps = next;
  }
}

const preflightDone = new WeakMap<TrainRun, string>();

/**
 * On a device with a storage-binding limit (webgpu), fail before the step when one of its
 * tensors cannot fit ({@link checkDeviceLimits}); checked once per batch shape.
 */
function preflight(run: TrainRun, n: number, accum: number): void {
  const limit = deviceStorageLimit();
  if (limit === undefined) return;
  const micro = Math.ceil(n / accum);
  const key = `${micro}/${n}/${limit}`;
  if (preflightDone.get(run) === key) return;
  const mode = run.options.trainMode ?? "whole";
  checkDeviceLimits(
    run.model.config,
    {
      batch: micro,
      texts: usesHead(mode) ? 0 : run.task.textTokens.shape[0],
      tokenEmbeddingTrained: run.trainable.includes("token_embedding.weight"),
    },
    limit,
    n,
  );
  preflightDone.set(run, key);
}

/** Run one optimizer step; returns its record. */
export async function trainStep(run: TrainRun, step: number): Promise<StepRecord> {
  const o = run.options;
  const schedule = o.schedule ?? o.scheduleFor?.(o.lr ?? 1e-3, run.totalSteps) ??
    cosineLr(o.lr ?? 1e-3, o.warmupLength ?? 100, run.totalSteps);
  const lr = schedule(step);
  run.optimizer.lr = lr;
  const batch = await run.task.batch(step);
  let deviceErrors: ReturnType<typeof watchDeviceErrors>;
  let savedBuffers: (readonly [tf.Variable, tf.Tensor])[] = [];
  try {
    for (const p of run.parts) await p.prepare?.(run, step, batch);
    run.model.training = true;
    const accum = accumSteps(run, batch);
    preflight(run, batch.labels.length, accum);
    deviceErrors = watchDeviceErrors();
    // BatchNorm buffers change in the forward pass: keep a copy to roll back an unapplied step
    const buffers = deviceErrors
      ? [...run.model.params].filter(([k]) => /running_(mean|var)$|num_batches_tracked$/.test(k))
      : [];
    savedBuffers = buffers.map(([, v]) => [v, tf.keep(v.clone())] as const);
    const kept: Record<string, tf.Scalar> = {};
    let value: tf.Scalar;
    let gradMap: Map<string, tf.Tensor>;
    if (accum === 1) {
      ({ value, grads: gradMap } = microStep(run, step, lr, batch, kept));
    } else {
      // N micro-batches, each gradient weighted by its share of the batch: the same update as
      // the whole batch (see TrainOptions.accumSteps), with 1/N of its activations alive
      const n = batch.labels.length;
      value = tf.scalar(0);
      gradMap = new Map();
      for (let i = 0, start = 0; i < accum; i++) {
        const size = Math.floor(n / accum) + (i < n % accum ? 1 : 0);
        const micro: TrainBatch = {
          images: tf.slice(batch.images, [start, 0, 0, 0], [size, -1, -1, -1]),
          labels: batch.labels.slice(start, start + size),
          features: batch.features
            ? tf.slice(batch.features, [start, 0], [size, -1]) as tf.Tensor2D
            : undefined,
        };
        start += size;
        const w = size / n;
        const mk: Record<string, tf.Scalar> = {};
        try {
          const r = microStep(run, step, lr, micro, mk);
          const scaled = new Map<string, tf.Tensor>();
          for (const [k, g] of r.grads) {
            const prev = gradMap.get(k);
            scaled.set(k, tf.tidy(() => prev ? tf.add(prev, tf.mul(g, w)) : tf.mul(g, w)));
          }
          tf.dispose([...gradMap.values(), ...r.grads.values()]);
          gradMap = scaled;
          const v = tf.tidy(() => tf.add(value, tf.mul(r.value, w)) as tf.Scalar);
          tf.dispose([value, r.value]);
          value = v;
          for (const [k, t] of Object.entries(mk)) {
            const acc = tf.tidy(() => kept[k] ? tf.add(kept[k], tf.mul(t, w)) : tf.mul(t, w));
            tf.dispose([t, kept[k]]);
            kept[k] = acc as tf.Scalar;
          }
        } finally {
          micro.images.dispose();
          micro.features?.dispose();
        }
      }
    }
    if (deviceErrors) {
      // before the update: a step whose buffers could not be allocated computed garbage
      const err = await deviceErrors();
      if (err) {
        for (const [v, copy] of savedBuffers) v.assign(copy);
        tf.dispose([value, ...gradMap.values(), ...Object.values(kept)]);
        throw new DeviceStepError(err.kind, err.message, batch.labels.length, accum, step);
      }
    }
    const want = run.options.gradNorms === true
      ? run.trainable
      : (run.options.gradNorms || []) as string[];
    const gradNorms: Record<string, number> = {};
    for (const n of want) {
      const g = gradMap.get(n);
      if (g) gradNorms[n] = await l2NormF64Async(g);
    }
    if (run.options.checkFinite !== false) {
      try {
        await checkFinite(value, gradMap, step);
      } catch (e) {
        for (const t of Object.values(kept)) t.dispose();
        value.dispose();
        for (const g of gradMap.values()) g.dispose();
        throw e;
      }
    }
    for (const p of run.parts) {
      if (!p.transformGrads) continue;
      const before = new Map(gradMap);
      await p.transformGrads(run, step, gradMap);
      for (const [n, g] of before) if (gradMap.get(n) !== g) g.dispose();
    }
    run.optimizer.step(run.params, gradMap);
    const losses: Record<string, number> = {};
    // one asynchronous read of every loss value: the step's only download (synchronous reads
    // are impossible on webgpu, and each read stalls a device)
    const names = Object.keys(kept);
    const packed = tf.tidy(() => tf.stack([...names.map((k) => kept[k]), value]));
    const vals = await packed.data();
    names.forEach((k, i) => losses[k] = vals[i]);
    losses.total = vals[names.length];
    tf.dispose([packed, value, ...Object.values(kept)]);
    for (const g of gradMap.values()) g.dispose();
    run.model.training = false;
    for (const p of run.parts) await p.afterStep?.(run, step);
    return { step, lr, losses, gradNorms, batchSize: batch.labels.length };
  } finally {
    run.model.training = false;
    batch.images.dispose();
    batch.features?.dispose();
    await deviceErrors?.(); // close the error scopes if the step threw before checking them
    tf.dispose(savedBuffers.map(([, copy]) => copy));
  }
}

/** Run steps from `run.step` to the end (or `stopAfter` / `shouldStop`); then the parts' `end`. */
export async function runSteps(run: TrainRun): Promise<TrainResult> {
  const records: StepRecord[] = [];
  const stopAt = Math.min(run.lastStep, run.options.stopAfter ?? Infinity);
  while (run.step < stopAt) {
    if (run.options.shouldStop) {
      // a macrotask turn, so that signal listeners (SIGINT, SIGUSR1, …) get to run between steps
      await new Promise((r) => setTimeout(r, 0));
      if (run.options.shouldStop()) break;
    }
    const rec = await trainStep(run, run.step);
    run.step++;
    records.push(rec);
    await run.options.onStep?.(rec, run);
  }
  const finished = run.step >= run.lastStep;
  if (finished) { for (const p of run.parts) await p.end?.(run); }
  return { records, run, finished };
}

/**
 * Train `model` on `task`: build the run from the options (method preset + parts), then step
 * through the schedule. The model's variables are updated in place. Call {@link disposeRun} on
 * `result.run` when its state is no longer needed.
 */
export async function train(
  model: ClipModel,
  task: TrainTask,
  options: TrainOptions,
): Promise<TrainResult> {
  const run = await createRun(model, task, options);
  return await runSteps(run);
}

/** The weights to save after training: a part's replacement (WE) or the model's parameters. */
export function weightsToSave(run: TrainRun): ReadonlyMap<string, tf.Tensor> {
  for (const p of run.parts) {
    const w = p.weightsToSave?.();
    if (w) return w;
  }
  return run.model.params;
}

/** Free the optimizer state, the parts and the linear head of a run (not the model). */
export function disposeRun(run: TrainRun): void {
  run.optimizer.dispose();
  for (const p of run.parts) p.dispose?.();
  disposeHead(run.params, run.model);
}

function disposeHead(params: ReadonlyMap<string, tf.Variable>, model: ClipModel): void {
  for (const [k, v] of params) if (k.startsWith(HEAD_PREFIX) && !model.params.has(k)) v.dispose();
}

/** Optimizer state of a run (for resume). */
export function optimizerState(run: TrainRun): AdamWState {
  return run.optimizer.getState();
}

// ---------------------------------------------------------------------------------------------
// Generic parts: cross-entropy, L2, weight averaging, wise-merge.

/** Options of {@link ceLoss}. */
export interface CeLossOptions {
  /** Label smoothing ε (`--ls`). */
  labelSmoothing?: number;
  /** Term weight (default 1). */
  weight?: number;
}

/** Cross-entropy with label smoothing on the classification logits (term `ce`). */
export function ceLoss(options: CeLossOptions = {}): TrainPart {
  return {
    name: "ce",
    loss: (ctx) => ({
      ce: {
        value: crossEntropy(ctx.logits(), ctx.batch.labels, options.labelSmoothing ?? 0),
        weight: options.weight ?? 1,
      },
    }),
  };
}

/**
 * L2 to the start-of-task weights over the trained parameters, paired by name (term `l2`,
 * weight `--l2`).
 */
export function l2Loss(weight: number): TrainPart {
  let start: VarMap | undefined;
  return {
    name: "l2",
    init(run) {
      start?.forEach((t) => t.dispose());
      start = cloneVars(new Map(run.trainable.map((n) => [n, run.params.get(n)!])));
    },
    loss(ctx) {
      const cur = new Map(ctx.run.trainable.map((n) => [n, ctx.run.params.get(n)! as tf.Tensor]));
      return { l2: { value: l2ToStart(cur, start!), weight } };
    },
    getState: () => ({ tensors: varsToSd(start!) }),
    setState(s) {
      if (s.tensors) assignFromSd(start!, s.tensors);
    },
    dispose() {
      if (start) disposeVars(start);
      start = undefined;
    },
  };
}

/** Options of {@link weightAveraging}. */
export interface WeightAveragingOptions {
  /** `we` (running mean), `we_wise` (WiSE weight ensembling) or `moving_avg`. */
  kind: "we" | "we_wise" | "moving_avg";
  /** Average every `avgFreq` steps, when `step % avgFreq == 0` (`--avg_freq`, default 100). */
  avgFreq?: number;
  /** `we_wise` α (`--we_wise_alpha`, default 0.98). */
  weWiseAlpha?: number;
  /** `moving_avg` decay (`--mv_avg_decay`, default 0.999). */
  decay?: number;
  /** `moving_avg` anchor (`--mv_avg_model`, default `n`). */
  anchor?: MovingAvgAnchor;
  /** Zero-shot weights (anchor `zeroshot`). */
  zeroshot?: ReadonlyMap<string, tf.Tensor> | StateDict;
}

/** Copy named tensors into a {@link StateDict} (float32 / int32). */
export function varsToSd(m: ReadonlyMap<string, tf.Tensor>): StateDict {
  const sd: StateDict = new Map();
  for (const [k, t] of m) {
    const data = t.dtype === "int32" ? t.dataSync() as Int32Array : t.dataSync() as Float32Array;
    sd.set(k, { shape: t.shape.slice(), dtype: t.dtype === "int32" ? "int32" : "float32", data });
  }
  return sd;
}

/** Non-trainable variables from a {@link StateDict}. */
export function sdToVars(sd: StateDict): VarMap {
  const m: VarMap = new Map();
  for (const [k, r] of sd) {
    m.set(
      k,
      tf.tidy(() =>
        tf.variable(
          tf.tensor(r.data, r.shape, r.data instanceof Int32Array ? "int32" : "float32"),
          false,
        )
      ),
    );
  }
  return m;
}

/** Assign every variable of `target` from `sd` (all keys must be present). */
export function assignFromSd(target: VarMap, sd: StateDict): void {
  for (const [k, v] of target) {
    const r = sd.get(k);
    if (!r) throw new Error(`resume state lacks "${k}"`);
    tf.tidy(() => v.assign(tf.tensor(r.data, r.shape, v.dtype)));
  }
}

/**
 * Weight averaging between steps, as the reference: after the update of a step with
 * `step % avgFreq == 0`, `n += 1` then
 * - `we`: `we ← (we·n + θ)/(n+1)` (the start copy is the first sample); saved instead of θ;
 * - `we_wise`: the same mixed with the start model, `·α + θ₀·(1−α)`; saved instead of θ;
 * - `moving_avg`: the training model is pulled to the anchor, `θ ← θ·decay + anchor·(1−decay)`;
 *   anchor `n` = the start copy, `t` = the model before the previous averaging, `zeroshot`.
 */
export function weightAveraging(options: WeightAveragingOptions): TrainPart {
  const freq = options.avgFreq ?? 100;
  let avg: VarMap | undefined; // we model / anchor
  let fixed: VarMap | undefined; // start model for we_wise
  let n = 0;
  const kind = options.kind;
  const anchor = options.anchor ?? "n";
  return {
    name: "weight-averaging",
    init(run) {
      if (kind === "moving_avg" && anchor === "zeroshot") {
        if (!options.zeroshot) {
          throw new Error("moving_avg with anchor zeroshot needs zeroshot weights");
        }
        const z = options.zeroshot;
        avg = z instanceof Map && [...z.values()][0] instanceof tf.Tensor
          ? cloneVars(z as unknown as ReadonlyMap<string, tf.Tensor>)
          : sdToVars(z as StateDict);
      } else {
        avg = cloneVars(run.model.params);
      }
      if (kind === "we_wise") fixed = cloneVars(run.model.params);
    },
    afterStep(run, step) {
      if (step % freq !== 0) return;
      n += 1;
      const model = run.model.params;
      if (kind === "moving_avg") {
        if (anchor === "t") {
          const next = cloneVars(model);
          movingAvg(model, avg!, options.decay ?? 0.999);
          disposeVars(avg!);
          avg = next;
        } else movingAvg(model, avg!, options.decay ?? 0.999);
      } else if (kind === "we") mergeWe(model, avg!, n);
      else wiseWe(model, avg!, n, fixed!, options.weWiseAlpha ?? 0.98);
    },
    weightsToSave: () => (kind === "moving_avg" ? undefined : avg),
    getState: () => {
      const tensors = varsToSd(avg!);
      if (fixed) { for (const [k, r] of varsToSd(fixed)) tensors.set(`fixed.${k}`, r); }
      return { tensors, json: { n } };
    },
    setState(s) {
      n = (s.json as { n: number }).n;
      if (!s.tensors) return;
      const a = new Map([...s.tensors].filter(([k]) => !k.startsWith("fixed.")));
      assignFromSd(avg!, a);
      if (fixed) {
        assignFromSd(
          fixed,
          new Map(
            [...s.tensors].filter(([k]) => k.startsWith("fixed.")).map(([k, r]) => [k.slice(6), r]),
          ),
        );
      }
    },
    dispose() {
      if (avg) disposeVars(avg);
      if (fixed) disposeVars(fixed);
      avg = fixed = undefined;
    },
  };
}

/**
 * `wise_merge` after training: `θ ← θ·α + θ_other·(1−α)`, `θ_other` the start model (`n`) or
 * given zero-shot weights.
 */
export function wiseMergePart(
  alpha: number,
  other?: ReadonlyMap<string, tf.Tensor>,
): TrainPart {
  let start: VarMap | undefined;
  return {
    name: "wise-merge",
    init(run) {
      if (!other) start = cloneVars(run.model.params);
    },
    end(run) {
      wiseMerge(run.model.params, other ?? start!, alpha);
    },
    getState: () => ({ tensors: start ? varsToSd(start) : undefined }),
    setState(s) {
      if (start && s.tensors) assignFromSd(start, s.tensors);
    },
    dispose() {
      if (start) disposeVars(start);
      start = undefined;
    },
  };
}
