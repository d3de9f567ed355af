/**
 * DIKI ("Mind the Interference: Retaining Pre-trained Knowledge in Parameter Efficient Continual
 * Learning of Vision-Language Models", ECCV 2024) on a frozen CLIP: per-task prefix pools in the
 * first blocks of both towers ({@link PrefixPools}), a per-task Gaussian of frozen image features
 * ({@link TaskGaussian}), and task-id-free inference that weighs the prefixes by how well an image
 * fits the task it votes for — unseen domains get weight ≈ 0, i.e. zero-shot CLIP.
 *
 * A {@link Diki} object lives for a whole task sequence (the pools have one row per task). Per
 * task, {@link Diki.trainSetup} gives the training parts and options for the engine
 * (`methods/train.ts`): plain SGD, cosine schedule without warm-up, cross-entropy without label
 * smoothing, only the pools train. {@link Diki.classify} and {@link Diki.predictor} are the
 * inference paths (task-id free by default, task-id known on request).
 *
 * @example
 * ```ts
 * import { diki, saveDiki, train, type TrainTask } from "jsr:@mtil/mtil/methods";
 * import type { ClipModel } from "jsr:@mtil/mtil/clip";
 * import type { tf } from "jsr:@mtil/mtil/tf";
 * declare const model: ClipModel, tasks: TrainTask[], images: tf.Tensor4D, textTokens: tf.Tensor2D;
 *
 * const d = diki(model, { tasks: tasks.length });          // the paper's recipe by default
 * for (const [t, task] of tasks.entries()) {
 *   const setup = d.trainSetup(t);
 *   await train(model, task, { epochs: 10, parts: setup.parts, ...setup.options });
 *   await saveDiki(`runs/diki/${task.name}.diki.safetensors`, d);
 * }
 * const { logits, selection } = d.classify(images, textTokens); // task-id free
 * ```
 *
 * @module
 */
import { tf } from "../../clip/backends/tf.ts";
import type { ClipModel } from "../../clip/types.ts";
import type { StateDict } from "../../clip/formats/state_dict.ts";
import { clipLogits } from "../losses.ts";
import { cosineNoWarmupLr } from "../schedule.ts";
import { Sgd } from "../sgd.ts";
import { ceLoss, type RunSetup, type TrainPart, type TrainRun } from "../train.ts";
import { GaussianAccumulator, normalizeRowsF64, TaskGaussian } from "./gaussian.ts";
import { type PrefixPoolConfig, PrefixPools, type PrefixSelection } from "./prefix.ts";
import { DEFAULT_WEIGHT_SCALE, selectTask, type TaskSelection } from "./select.ts";

/** Options of {@link Diki}; defaults are the paper's MTIL recipe ({@link DIKI_RECIPE}). */
export interface DikiOptions {
  /** Tasks of the sequence: rows of every pool (required). */
  tasks: number;
  /** Image-tower blocks with prefixes (default 8; more than the layers = all). */
  depthVision?: number;
  /** Text-tower blocks with prefixes (default 8). */
  depthText?: number;
  /** Image prefix length (default 8). */
  prefixLenVision?: number;
  /** Text prefix length (default 8). */
  prefixLenText?: number;
  /** `w = sigmoid(lp/weightScale − 1)` (default 512, the reference's constant). */
  weightScale?: number;
  /** SGD learning rate (default 5). */
  lr?: number;
  /** Floor of the cosine schedule as a fraction of `lr` (default 1e-3). */
  lrFloorRatio?: number;
  /** Covariance jitter (default 1e-7). */
  jitter?: number;
  /** Seed of the key initialisation (default 0). */
  seed?: number;
}

/** The paper's MTIL recipe (ViT-B/16): 10 epochs of batch 128, SGD lr 5, depth and length 8. */
export const DIKI_RECIPE: Readonly<
  Required<Omit<DikiOptions, "tasks">> & {
    epochs: number;
    batchSize: number;
  }
> = {
  depthVision: 8,
  depthText: 8,
  prefixLenVision: 8,
  prefixLenText: 8,
  weightScale: DEFAULT_WEIGHT_SCALE,
  lr: 5,
  lrFloorRatio: 1e-3,
  jitter: 1e-7,
  seed: 0,
  epochs: 10,
  batchSize: 128,
};

/** Options of {@link Diki.classify}. */
export interface DikiClassifyOptions {
  /**
   * Use this task's prefixes with weight 1 (task id known) instead of selecting a task; a
   * negative id means no prefixes (zero-shot CLIP, e.g. for a dataset outside the sequence).
   */
  taskId?: number;
}

/** What {@link Diki.classify} computed for a batch. */
export interface DikiInference {
  /** `exp(logit_scale)·cos(image, text)` `[n, C]`. */
  logits: tf.Tensor2D;
  /** Image features with the prefixes, before normalisation `[n, E]`. */
  imageFeatures: tf.Tensor2D;
  /** Text features with the prefixes, before normalisation `[C, E]`. */
  textFeatures: tf.Tensor2D;
  /** The task whose prefixes were used (−1: none, i.e. zero-shot CLIP). */
  task: number;
  /** Task-id free: log-probabilities `[n][learnt tasks]` (float64). */
  logProbs?: Float64Array[];
  /** Task-id free: votes, per-image weights, text weight. */
  selection?: TaskSelection;
}

/** Evaluation adaptor from {@link Diki.predictor}. */
export interface DikiPredictor {
  /** Logits `[n, C]` of a batch of NHWC images (the caller disposes them). */
  predict(images: tf.Tensor4D): tf.Tensor2D;
  /** Images classified, and per task the images of batches that used it. */
  readonly stats: { images: number; imagesPerTask: number[] };
}

/** Options of {@link Diki.trainSetup}. */
export interface DikiTrainSetupOptions {
  /**
   * Batches whose images fit the task's Gaussian (default: `task.batchesPerEpoch`, else the
   * run's total steps): one epoch of training images, as the reference.
   */
  gaussianBatches?: number;
}

/**
 * DIKI state for one frozen CLIP and a sequence of `tasks` tasks: pools and Gaussians. See the
 * module documentation.
 */
export class Diki {
  /** The frozen CLIP the pools are installed on. */
  readonly model: ClipModel;
  /** Resolved options. */
  readonly options: Required<DikiOptions>;
  /** The prefix pools (trainable variables). */
  readonly pools: PrefixPools;
  /** Gaussian of each task, once fitted (index = task). */
  readonly gaussians: (TaskGaussian | undefined)[] = [];

  /** Allocate the pools for `model` (keys uniform(−1, 1), values 0). */
  constructor(model: ClipModel, options: DikiOptions) {
    const { epochs: _e, batchSize: _b, ...defaults } = DIKI_RECIPE;
    const o: Required<DikiOptions> = {
      ...defaults,
      ...stripUndefined(options),
      tasks: options.tasks,
    };
    if (!(o.weightScale > 0)) {
      throw new Error(`DIKI: weightScale must be > 0, got ${o.weightScale}`);
    }
    if (!(o.lr > 0)) throw new Error(`DIKI: lr must be > 0, got ${o.lr}`);
    if (!model.attentionHooks) {
      throw new Error("DIKI needs a model with attention hooks (clip/model.ts Clip)");
    }
    this.model = model;
    this.options = o;
    this.pools = new PrefixPools(model.config, this.poolConfig(), o.seed);
  }

  /** The pools' sizes. */
  poolConfig(): PrefixPoolConfig {
    const o = this.options;
    return {
      tasks: o.tasks,
      depthVision: o.depthVision,
      depthText: o.depthText,
      prefixLenVision: o.prefixLenVision,
      prefixLenText: o.prefixLenText,
    };
  }

  /** Tasks with a Gaussian, counted from task 0 (the reference's `task_learnt`). */
  get learnt(): number {
    let n = 0;
    while (this.gaussians[n]) n++;
    return n;
  }

  /** Frozen-CLIP image features of `images`, L2-normalised in float64, row-major `[n, E]`. */
  frozenFeatures(images: tf.Tensor4D): Float64Array {
    const prev = this.model.training;
    this.model.training = false;
    try {
      const f = this.pools.withSelection(this.model, null, () => this.model.encodeImage(images));
      const data = f.dataSync();
      f.dispose();
      return normalizeRowsF64(data, this.model.config.embedDim);
    } finally {
      this.model.training = prev;
    }
  }

  /**
   * Fit task `task`'s Gaussian on the frozen features of `batches` (each disposed after use;
   * the reference uses one pass over the task's training images).
   */
  async fitGaussian(
    task: number,
    batches: AsyncIterable<tf.Tensor4D> | Iterable<tf.Tensor4D>,
  ): Promise<TaskGaussian> {
    if (!Number.isInteger(task) || task < 0 || task >= this.options.tasks) {
      throw new Error(`DIKI: task ${task} is outside 0…${this.options.tasks - 1}`);
    }
    const acc = new GaussianAccumulator(this.model.config.embedDim, {
      jitter: this.options.jitter,
      normalize: false,
    });
    for await (const images of batches) {
      try {
        acc.add(this.frozenFeatures(images));
      } finally {
        images.dispose();
      }
    }
    const g = acc.fit(`DIKI Gaussian of task ${task}`);
    this.gaussians[task] = g;
    return g;
  }

  /** Log-probabilities `[n][learnt]` of the frozen features of `images` under each Gaussian. */
  logProbs(images: tf.Tensor4D): Float64Array[] {
    const learnt = this.learnt;
    const feats = this.frozenFeatures(images);
    const d = this.model.config.embedDim;
    const n = feats.length / d;
    const per = this.gaussians.slice(0, learnt).map((g) => g!.logProbs(feats));
    return Array.from({ length: n }, (_, i) => Float64Array.from(per, (lp) => lp[i]));
  }

  /**
   * Classify a batch. Task-id free (default): each image's best Gaussian gives its weight, the
   * batch uses the task most images voted for, the text side that task with the batch's mean
   * weight; before any Gaussian exists this is zero-shot CLIP. With `taskId`: that task's
   * prefixes at weight 1 (the training path).
   */
  classify(
    images: tf.Tensor4D,
    textTokens: tf.Tensor2D,
    options: DikiClassifyOptions = {},
  ): DikiInference {
    const model = this.model;
    let selection: TaskSelection | undefined;
    let logProbs: Float64Array[] | undefined;
    let sel: PrefixSelection | null = null;
    let weights: tf.Tensor1D | undefined;
    if (options.taskId !== undefined) sel = options.taskId < 0 ? null : { task: options.taskId };
    else if (this.learnt > 0) {
      logProbs = this.logProbs(images);
      selection = selectTask(logProbs, this.options.weightScale);
      weights = tf.tensor1d(Float32Array.from(selection.weights));
      sel = { task: selection.task, visionWeight: weights, textWeight: selection.textWeight };
    }
    const prev = model.training;
    model.training = false;
    try {
      const out = this.pools.withSelection(model, sel, () =>
        tf.tidy(() => {
          const imageFeatures = model.encodeImage(images);
          const textFeatures = model.encodeText(textTokens);
          const logits = clipLogits(imageFeatures, textFeatures, model.params.get("logit_scale")!);
          return { imageFeatures, textFeatures, logits };
        }));
      return { ...out, task: sel ? sel.task : -1, logProbs, selection };
    } finally {
      model.training = prev;
      weights?.dispose();
    }
  }

  /**
   * An evaluation adaptor for a dataset whose class prompts are `textTokens` (owned by the
   * caller): `predict(images)` gives the logits of {@link Diki.classify}; `stats` counts which
   * task each batch used (the task-vote accuracy of a dataset is the share of its images in
   * batches that used its own task).
   */
  predictor(textTokens: tf.Tensor2D, options: DikiClassifyOptions = {}): DikiPredictor {
    const stats = { images: 0, imagesPerTask: new Array(this.options.tasks).fill(0) };
    return {
      stats,
      predict: (images) => {
        const r = this.classify(images, textTokens, options);
        r.imageFeatures.dispose();
        r.textFeatures.dispose();
        const n = images.shape[0];
        stats.images += n;
        if (r.task >= 0) stats.imagesPerTask[r.task] += n;
        return r.logits;
      },
    };
  }

  /**
   * The engine's parts and options to train task `task`: before the first step, the task's
   * Gaussian is fitted on frozen features and the task's prefixes are installed (weight 1);
   * cross-entropy on `exp(logit_scale)·cos` without label smoothing; SGD (no momentum, no weight
   * decay) with `lr(i) = f + ½(lr − f)(1 + cos(πi/total))`, `f = lr·1e-3`; only the pools train;
   * exactly `total` steps. Spread into the engine's options:
   * `train(model, task, { epochs, ...setup.options, parts: setup.parts })`.
   */
  trainSetup(task: number, options: DikiTrainSetupOptions = {}): RunSetup {
    if (!Number.isInteger(task) || task < 0 || task >= this.options.tasks) {
      throw new Error(`DIKI: task ${task} is outside 0…${this.options.tasks - 1}`);
    }
    const o = this.options;
    return {
      parts: [ceLoss({ labelSmoothing: 0 }), dikiPart(this, task, options)],
      options: {
        optimizer: new Sgd({ lr: o.lr }),
        lr: o.lr,
        scheduleFor: (lr, total) => cosineNoWarmupLr(lr, total, o.lrFloorRatio),
        extraParams: this.pools.pools,
        onlyExtra: true,
        finalStep: false,
      },
    };
  }

  /** Pools (reference names) and Gaussians (`gaussian.<t>.mean`, `.cov`, `.count`). */
  stateDict(): StateDict {
    const sd = this.pools.stateDict();
    for (const [k, v] of gaussiansToSd(this.gaussians)) sd.set(k, v);
    return sd;
  }

  /** Restore {@link Diki.stateDict} (pools checked before anything is assigned). */
  loadStateDict(sd: StateDict, source = "state dict"): void {
    const gs = gaussiansFromSd(sd, this.model.config.embedDim, this.options.tasks, source);
    this.pools.loadStateDict(sd, source);
    this.gaussians.length = 0;
    gs.forEach((g, t) => (this.gaussians[t] = g));
  }

  /** Remove the hooks and free the pools. */
  dispose(): void {
    this.pools.remove(this.model);
    this.pools.dispose();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Gaussians as state-dict entries `gaussian.<t>.mean` `[E]`, `.cov` `[E, E]`, `.count` `[]`. */
export function gaussiansToSd(gaussians: readonly (TaskGaussian | undefined)[]): StateDict {
  const sd: StateDict = new Map();
  gaussians.forEach((g, t) => {
    if (!g) return;
    sd.set(`gaussian.${t}.mean`, { shape: [g.dim], dtype: "float32", data: g.mean.slice() });
    sd.set(`gaussian.${t}.cov`, { shape: [g.dim, g.dim], dtype: "float32", data: g.cov.slice() });
    sd.set(`gaussian.${t}.count`, { shape: [], dtype: "int32", data: Int32Array.of(g.count) });
  });
  return sd;
}

/** Gaussians back from {@link gaussiansToSd} entries (shapes checked; tasks < `tasks`). */
export function gaussiansFromSd(
  sd: StateDict,
  dim: number,
  tasks: number,
  source = "state dict",
): (TaskGaussian | undefined)[] {
  const out: (TaskGaussian | undefined)[] = [];
  for (const key of sd.keys()) {
    const m = /^gaussian\.(\d+)\.mean$/.exec(key);
    if (!m) continue;
    const t = Number(m[1]);
    if (t >= tasks) throw new Error(`${source}: Gaussian of task ${t}, but only ${tasks} tasks`);
    const mean = sd.get(key)!;
    const cov = sd.get(`gaussian.${t}.cov`);
    const count = sd.get(`gaussian.${t}.count`);
    if (!cov || !count) throw new Error(`${source}: Gaussian ${t} lacks its cov or count`);
    if (mean.shape.join() !== `${dim}` || cov.shape.join() !== `${dim},${dim}`) {
      throw new Error(
        `${source}: Gaussian ${t} has shapes [${mean.shape}], [${cov.shape}]; the model's ` +
          `embedding width is ${dim}`,
      );
    }
    out[t] = new TaskGaussian(
      Float32Array.from(mean.data),
      Float32Array.from(cov.data),
      count.data[0],
      `${source}: Gaussian ${t}`,
    );
  }
  return out;
}

/** Name of DIKI's training part (see {@link dikiOf}). */
export const DIKI_PART = "diki";

/** The part DIKI adds to a run; it carries its {@link Diki}. */
export interface DikiPart extends TrainPart {
  /** The DIKI state the run trains. */
  readonly diki: Diki;
  /** The task being trained. */
  readonly task: number;
}

/**
 * DIKI's training part for task `task`: fits the Gaussian and installs the task's prefixes
 * (weight 1) in `init`, removes them at the `end`; its resume state is every Gaussian (the pools
 * are the run's extra parameters, saved with the model weights).
 */
export function dikiPart(d: Diki, task: number, options: DikiTrainSetupOptions = {}): DikiPart {
  return {
    name: DIKI_PART,
    diki: d,
    task,
    async init(run: TrainRun) {
      if (run.model !== d.model) throw new Error("DIKI: the run trains another model than DIKI's");
      const n = options.gaussianBatches ?? run.task.batchesPerEpoch ?? run.totalSteps;
      async function* batches() {
        for (let s = 0; s < n; s++) yield (await run.task.batch(s)).images;
      }
      await d.fitGaussian(task, batches());
      d.pools.install(d.model, { task });
    },
    end() {
      d.pools.remove(d.model);
    },
    getState: () => ({ tensors: gaussiansToSd(d.gaussians), json: { task } }),
    setState(s) {
      if (!s.tensors) return;
      const gs = gaussiansFromSd(s.tensors, d.model.config.embedDim, d.options.tasks, "resume");
      d.gaussians.length = 0;
      gs.forEach((g, t) => (d.gaussians[t] = g));
    },
    dispose() {
      d.pools.remove(d.model);
    },
  };
}

/** The {@link Diki} of a run trained with DIKI's part (undefined for other methods). */
export function dikiOf(run: TrainRun): Diki | undefined {
  return (run.parts.find((p) => p.name === DIKI_PART) as DikiPart | undefined)?.diki;
}

/**
 * The typed factory: a {@link Diki} for `model` with the paper's recipe for anything not given.
 *
 * @example
 * ```ts
 * import { diki } from "jsr:@mtil/mtil/methods";
 * import type { ClipModel } from "jsr:@mtil/mtil/clip";
 * declare const model: ClipModel;
 * const d = diki(model, { tasks: 11, depthText: 4, weightScale: 512 });
 * ```
 */
export function diki(model: ClipModel, options: DikiOptions): Diki {
  return new Diki(model, options);
}
