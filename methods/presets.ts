/**
 * The training parts of the reference's methods: the common ones ({@link baseParts}), ZSCL's
 * distillation, LwF (and LwF-VR) and iCaRL's exemplar replay. The method factories of
 * `builtin.ts` compose them; tests and custom loops use them directly.
 *
 * The common parts ({@link baseParts}) are cross-entropy with label smoothing, L2 to the start
 * weights (`l2 > 0`), weight averaging (`we`, `weWise`, `movingAvg`) and `wiseMerge`.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { ClipModel } from "../clip/types.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { buildClip } from "../clip/model.ts";
import {
  clipLogits,
  distillation,
  distillationTransposed,
  featureMse,
  normalizeRows,
  selfSimilarityLogits,
} from "./losses.ts";
import {
  ceLoss,
  l2Loss,
  type LossTerms,
  type TrainBatch,
  type TrainPart,
  type TrainRun,
  weightAveraging,
  wiseMergePart,
} from "./train.ts";
import type { MovingAvgAnchor } from "./ensemble.ts";

/** Options of the common parts (the seed's flags, camel-cased). */
export interface BaseMethodOptions {
  /** Label smoothing (`--ls`). */
  labelSmoothing?: number;
  /** L2 weight (`--l2`). */
  l2?: number;
  /** Weight ensembling (`--we`). */
  we?: boolean;
  /** WiSE weight ensembling (`--we_wise`) and its α (`--we_wise_alpha`). */
  weWise?: boolean;
  /** α of `we_wise`. */
  weWiseAlpha?: number;
  /** Moving average (`--moving_avg`), decay and anchor. */
  movingAvg?: boolean;
  /** `--mv_avg_decay`. */
  mvAvgDecay?: number;
  /** `--mv_avg_model`. */
  mvAvgModel?: MovingAvgAnchor;
  /** `--avg_freq`. */
  avgFreq?: number;
  /** Zero-shot weights (for `mvAvgModel: "zeroshot"` and `wiseFtModel: "zeroshot"`). */
  zeroshot?: StateDict;
  /** `--wise_merge` and its α (`--wise_ft_alpha`). */
  wiseMerge?: boolean;
  /** α of `wise_merge`. */
  wiseFtAlpha?: number;
  /** `n` (start model) or `zeroshot`. */
  wiseFtModel?: "n" | "zeroshot";
}

function sdTensors(sd: StateDict): Map<string, tf.Tensor> {
  return new Map([...sd].map(([k, r]) => [k, tf.tensor(r.data, r.shape)]));
}

/** The common parts from {@link BaseMethodOptions}. */
export function baseParts(o: BaseMethodOptions & { crossEntropy?: boolean }): TrainPart[] {
  const parts: TrainPart[] = o.crossEntropy === false
    ? []
    : [ceLoss({ labelSmoothing: o.labelSmoothing ?? 0 })];
  if ((o.l2 ?? 0) > 0) parts.push(l2Loss(o.l2!));
  const avg = {
    avgFreq: o.avgFreq,
    weWiseAlpha: o.weWiseAlpha,
    decay: o.mvAvgDecay,
    anchor: o.mvAvgModel,
    zeroshot: o.zeroshot,
  };
  if (o.movingAvg) parts.push(weightAveraging({ kind: "moving_avg", ...avg }));
  else if (o.we) parts.push(weightAveraging({ kind: "we", ...avg }));
  else if (o.weWise) parts.push(weightAveraging({ kind: "we_wise", ...avg }));
  if (o.wiseMerge) {
    const other = o.wiseFtModel === "zeroshot" && o.zeroshot ? sdTensors(o.zeroshot) : undefined;
    parts.push(wiseMergePart(o.wiseFtAlpha ?? 0.8, other));
  }
  return parts;
}

/** Options of the ZSCL distillation part. */
export interface ZsclOptions {
  /** Reference model (frozen, eval mode). Default: a frozen copy of the start-of-task model. */
  refModel?: ClipModel;
  /** Reference weights to build the reference model from (instead of `refModel`). */
  refStateDict?: StateDict;
  /** `--ref-wise`: mix the reference weights with the start model, `ref·(1−α) + θ·α`. */
  refWiseAlpha?: number;
  /** Reference images of a step (eval transform, endless stream), NHWC. Disposed by the part. */
  refImages: (step: number) => Promise<tf.Tensor4D>;
  /** Token ids of the reference sentences `[nTexts, contextLength]` (owned by the caller). */
  refTexts: tf.Tensor2D;
  /** Temperature `--T` (default 2). */
  T?: number;
  /** Image-direction distillation (`--image_loss`, default true). */
  imageLoss?: boolean;
  /** Text-direction distillation (`--text_loss`, default true). */
  textLoss?: boolean;
  /** Halve the distillation weights (`--weight-adjust`). */
  weightAdjust?: boolean;
  /** Feature-space MSE between reference and current image features (`--feature-mse`). */
  featureMse?: boolean;
  /** Image–image similarity distillation (`--ablation-loss-2`). */
  ablationLoss2?: boolean;
}

/**
 * ZSCL distillation: on a batch of reference images, the current model's logits against the
 * reference text embeddings are distilled towards the reference model's, in the image direction
 * (term `image_distill`) and the transposed text direction (`text_distill`), at temperature T,
 * both scaled by the training model's `exp(logit_scale)`. The reference text embeddings are
 * computed once per task.
 */
export function zsclPart(o: ZsclOptions): TrainPart {
  let ref: ClipModel | undefined;
  let ownRef = false;
  let refEmb: tf.Tensor2D | undefined;
  let refImgs: tf.Tensor4D | undefined;
  let teacher: tf.Tensor2D | undefined;
  const T = o.T ?? 2;
  const w = o.weightAdjust ? 0.5 : 1;
  const clear = () => {
    refImgs?.dispose();
    teacher?.dispose();
    refImgs = teacher = undefined;
  };
  return {
    name: "zscl",
    init(run: TrainRun) {
      if (o.refModel) ref = o.refModel;
      else {
        const sd = o.refStateDict ?? run.model.stateDict();
        if (o.refWiseAlpha !== undefined && o.refStateDict) {
          const cur = run.model.stateDict();
          for (const [k, r] of sd) {
            const c = cur.get(k);
            if (!c || !(r.data instanceof Float32Array)) continue;
            const a = o.refWiseAlpha;
            const d = new Float32Array(r.data.length);
            for (let i = 0; i < d.length; i++) d[i] = r.data[i] * (1 - a) + c.data[i] * a;
            sd.set(k, { ...r, data: d });
          }
        }
        ref = buildClip(sd);
        ownRef = true;
      }
      ref.training = false;
      refEmb?.dispose();
      refEmb = tf.tidy(() => normalizeRows(ref!.encodeText(o.refTexts)));
    },
    async prepare(_run, step) {
      clear();
      refImgs = await o.refImages(step);
      teacher = tf.tidy(() => normalizeRows(ref!.encodeImage(refImgs!)));
    },
    loss(ctx): LossTerms {
      const cur = normalizeRows(ctx.run.model.encodeImage(refImgs!));
      const logitsCur = clipLogits(cur, refEmb!, ctx.logitScale, true);
      const logitsRef = clipLogits(teacher!, refEmb!, ctx.logitScale, true);
      const terms: LossTerms = {};
      if (o.featureMse) terms.feature_mse = { value: featureMse(teacher!, cur), weight: 1 };
      if (o.imageLoss ?? true) {
        terms.image_distill = { value: distillation(logitsRef, logitsCur, T), weight: w };
      }
      if (o.textLoss ?? true) {
        terms.text_distill = { value: distillationTransposed(logitsRef, logitsCur, T), weight: w };
      }
      if (o.ablationLoss2) {
        terms.image_image_distill = {
          value: distillation(
            selfSimilarityLogits(teacher!, ctx.logitScale),
            selfSimilarityLogits(cur, ctx.logitScale),
            T,
          ),
          weight: w,
        };
      }
      return terms;
    },
    afterStep: clear,
    dispose() {
      clear();
      refEmb?.dispose();
      refEmb = undefined;
      if (ownRef) ref?.dispose();
      ref = undefined;
    },
  };
}

/** Options of the LwF part. */
export interface LwfOptions {
  /** Temperature (default 2). */
  T?: number;
  /**
   * Token ids of the texts to distil over (LwF-VR: random vocabulary sentences, see
   * {@link virtualVocab}). Default: the task's class prompts.
   */
  texts?: tf.Tensor2D;
  /** Image / text directions (default both). */
  imageLoss?: boolean;
  /** Text direction. */
  textLoss?: boolean;
}

/**
 * LwF as the seed's README describes it: distil the current model towards the frozen
 * start-of-task model on the current task's images, with the current prompts (or random
 * vocabulary sentences, LwF-VR), image and text directions (`lwf_image`, `lwf_text`).
 */
export function lwfPart(o: LwfOptions = {}): TrainPart {
  let teacherModel: ClipModel | undefined;
  let teacherText: tf.Tensor2D | undefined;
  let teacherLogits: tf.Tensor2D | undefined;
  const T = o.T ?? 2;
  return {
    name: "lwf",
    // the transposed distillation normalises across the batch: no gradient accumulation
    wholeBatchOnly: true,
    init(run) {
      teacherModel?.dispose();
      teacherModel = buildClip(run.model.stateDict());
      teacherModel.training = false;
      teacherText?.dispose();
      teacherText = tf.tidy(() =>
        normalizeRows(teacherModel!.encodeText(o.texts ?? run.task.textTokens))
      );
    },
    prepare(run, _step, batch: TrainBatch) {
      teacherLogits?.dispose();
      teacherLogits = tf.tidy(() =>
        clipLogits(
          normalizeRows(teacherModel!.encodeImage(batch.images)),
          teacherText!,
          run.model.params.get("logit_scale")!,
          true,
        )
      );
    },
    loss(ctx) {
      const text = o.texts
        ? normalizeRows(ctx.run.model.encodeText(o.texts))
        : ctx.classEmbeddings();
      const cur = clipLogits(ctx.imageFeatures(), text, ctx.logitScale, true);
      const terms: LossTerms = {};
      if (o.imageLoss ?? true) {
        terms.lwf_image = { value: distillation(teacherLogits!, cur, T), weight: 1 };
      }
      if (o.textLoss ?? true) {
        terms.lwf_text = { value: distillationTransposed(teacherLogits!, cur, T), weight: 1 };
      }
      return terms;
    },
    afterStep() {
      teacherLogits?.dispose();
      teacherLogits = undefined;
    },
    dispose() {
      teacherLogits?.dispose();
      teacherText?.dispose();
      teacherModel?.dispose();
      teacherLogits = teacherText = teacherModel = undefined;
    },
  };
}

/**
 * Random vocabulary sentences of the reference (`virtual_vocab`): `n` rows of
 * `[SOT, length random ids in [0, vocab), EOT, 0 …]` padded to `contextLength`. SOT and EOT are
 * the vocabulary's last two ids, as in both tokenizers (CLIP's BPE: 49406 and 49407 of 49408).
 */
export function virtualVocab(
  rand: () => number,
  n = 1000,
  length = 10,
  vocab = 49408,
  contextLength = 77,
): tf.Tensor2D {
  if (length + 2 > contextLength) {
    throw new Error(
      `virtualVocab: ${length} words + SOT + EOT exceed the context of ${contextLength}`,
    );
  }
  const ids = new Int32Array(n * contextLength);
  for (let i = 0; i < n; i++) {
    ids[i * contextLength] = vocab - 2;
    for (let j = 0; j < length; j++) ids[i * contextLength + 1 + j] = Math.floor(rand() * vocab);
    ids[i * contextLength + 1 + length] = vocab - 1;
  }
  return tf.tensor2d(ids, [n, contextLength], "int32");
}

/** Options of the iCaRL exemplar part. */
export interface IcarlOptions {
  /**
   * The exemplar batch of a step (images of earlier tasks from the memory; labels index
   * `memoryTexts`). Return undefined when the memory is empty.
   */
  exemplars: (step: number) => Promise<TrainBatch | undefined>;
  /** Token ids of every seen class's prompt (labels of exemplar batches index these rows). */
  memoryTexts: tf.Tensor2D;
  /** Temperature of the distillation (default 2). */
  T?: number;
}

/**
 * iCaRL on exemplars: cross-entropy of the exemplars against all seen classes (`icarl_ce`) and
 * distillation towards the frozen start-of-task model on them (`icarl_distill`).
 */
export function icarlPart(o: IcarlOptions): TrainPart {
  let teacherModel: ClipModel | undefined;
  let memText: tf.Tensor2D | undefined;
  let ex: TrainBatch | undefined;
  let teacherLogits: tf.Tensor2D | undefined;
  const clear = () => {
    ex?.images.dispose();
    teacherLogits?.dispose();
    ex = teacherLogits = undefined;
  };
  return {
    name: "icarl",
    init(run) {
      teacherModel?.dispose();
      teacherModel = buildClip(run.model.stateDict());
      teacherModel.training = false;
      memText?.dispose();
      memText = tf.tidy(() => normalizeRows(teacherModel!.encodeText(o.memoryTexts)));
    },
    async prepare(run, step) {
      clear();
      ex = await o.exemplars(step);
      if (!ex) return;
      teacherLogits = tf.tidy(() =>
        clipLogits(
          normalizeRows(teacherModel!.encodeImage(ex!.images)),
          memText!,
          run.model.params.get("logit_scale")!,
          true,
        )
      );
    },
    loss(ctx): LossTerms {
      if (!ex) return {};
      const img = normalizeRows(ctx.run.model.encodeImage(ex.images));
      const txt = normalizeRows(ctx.run.model.encodeText(o.memoryTexts));
      const logits = clipLogits(img, txt, ctx.logitScale, true);
      const lab = tf.oneHot(tf.tensor1d(ex.labels, "int32"), logits.shape[1]).toFloat();
      const ce = tf.neg(tf.mean(tf.sum(lab.mul(tf.logSoftmax(logits, -1)), -1))) as tf.Scalar;
      return {
        icarl_ce: { value: ce, weight: 1 },
        icarl_distill: { value: distillation(teacherLogits!, logits, o.T ?? 2), weight: 1 },
      };
    },
    afterStep: clear,
    dispose() {
      clear();
      memText?.dispose();
      teacherModel?.dispose();
      memText = teacherModel = undefined;
    },
  };
}
