/**
 * Loss terms of the training engine, as the reference MTIL code computes them: CLIP logits,
 * cross-entropy with label smoothing, L2 to the start-of-task weights, the ZSCL/LwF soft-target
 * distillation at temperature T (×T²), its transposed (text) direction, and feature MSE.
 *
 * Every function is pure tensor code meant to run inside a gradient tape / `tf.tidy`.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { blockedColumnSum } from "../clip/layers.ts";

/**
 * Identity whose gradient is zero (PyTorch `.detach()`): nothing flows back into `x`.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return detach(x) as T;
}
const detach = tf.customGrad(
  ((x: tf.Tensor) => ({
    value: x.clone(),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
    // deno-lint-ignore no-explicit-any
  })) as any,
) as (x: tf.Tensor) => tf.Tensor;

/** Rows scaled to unit L2 norm (`x / x.norm(dim=-1, keepdim=True)`). */
export function normalizeRows(x: tf.Tensor2D): tf.Tensor2D {
  return x.div(x.norm("euclidean", -1, true));
}

/**
 * CLIP logits `exp(logitScale) · norm(a) · norm(b)ᵀ` of shape `[a.rows, b.rows]`.
 * With `normalized` true, `a` and `b` are taken as already normalised.
 */
export function clipLogits(
  a: tf.Tensor2D,
  b: tf.Tensor2D,
  logitScale: tf.Tensor,
  normalized = false,
): tf.Tensor2D {
  const an = normalized ? a : normalizeRows(a);
  const bn = normalized ? b : normalizeRows(b);
  return tf.matMul(an, tf.transpose(bn)).mul(tf.exp(logitScale)) as tf.Tensor2D;
}

/**
 * Mean cross-entropy with label smoothing ε, PyTorch's `F.cross_entropy(..., label_smoothing=ε)`:
 * per row `(1−ε)·(−log p_y) + ε·mean_j(−log p_j)`.
 */
export function crossEntropy(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D | readonly number[],
  smoothing = 0,
): tf.Scalar {
  return tf.tidy(() => {
    const c = logits.shape[1];
    const lab = Array.isArray(labels)
      ? tf.tensor1d(labels as number[], "int32")
      : (labels as tf.Tensor1D).toInt();
    const logp = tf.logSoftmax(logits, -1);
    const nll = tf.neg(tf.sum(tf.mul(tf.oneHot(lab, c).toFloat(), logp), -1));
    if (smoothing === 0) return tf.mean(nll) as tf.Scalar;
    const smooth = tf.neg(tf.mean(logp, -1));
    return tf.mean(nll.mul(1 - smoothing).add(smooth.mul(smoothing))) as tf.Scalar;
  });
}

/**
 * Soft-target distillation of the reference (`helpers.distillation(t, s, T)`):
 * `mean_rows( −Σ_j softmax(t/T)_j · log_softmax(s/T)_j ) · T²` — a cross-entropy against the
 * teacher's soft labels (not a KL divergence: its value includes the teacher's entropy).
 * The teacher side gets no gradient.
 */
export function distillation(
  teacherLogits: tf.Tensor2D,
  studentLogits: tf.Tensor2D,
  T = 2,
): tf.Scalar {
  return tf.tidy(() => {
    const p = stopGradient(tf.softmax(teacherLogits.div(T), -1));
    const logq = tf.logSoftmax(studentLogits.div(T), -1);
    return tf.neg(tf.mean(tf.sum(p.mul(logq), -1))).mul(T * T) as tf.Scalar;
  });
}

/**
 * The text-direction distillation: {@link distillation} of the transposed logits (rows = texts,
 * softmax over images), as the reference `loss_ZSCL_2`.
 */
export function distillationTransposed(
  teacherLogits: tf.Tensor2D,
  studentLogits: tf.Tensor2D,
  T = 2,
): tf.Scalar {
  return tf.tidy(() =>
    distillation(
      tf.transpose(teacherLogits) as tf.Tensor2D,
      tf.transpose(studentLogits) as tf.Tensor2D,
      T,
    )
  );
}

/**
 * Image–image similarity logits of `--ablation-loss-2`: `scale · x·xᵀ` with the diagonal pushed
 * to `−1e4` (the reference subtracts `diag + 1e4`).
 */
export function selfSimilarityLogits(x: tf.Tensor2D, logitScale: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const l = tf.matMul(x, tf.transpose(x)).mul(tf.exp(logitScale));
    const eye = tf.eye(n);
    return l.mul(tf.sub(1, eye)).sub(eye.mul(1e4)) as tf.Tensor2D;
  });
}

/**
 * Sum of all elements with a blocked reduction ({@link blockedColumnSum}): tfjs backends
 * accumulate a long `sum` sequentially in float32, which loses percents on millions of small
 * terms (e.g. the L2 over a 49408×512 token embedding); PyTorch's reduction is pairwise.
 * Differentiable.
 */
export function accurateSum(x: tf.Tensor): tf.Scalar {
  return tf.tidy(() =>
    tf.reshape(blockedColumnSum(tf.reshape(x, [x.size, 1]), 1024), []) as tf.Scalar
  );
}

/**
 * L2 to the start-of-task weights: `Σ_name Σ (p − p₀)²` over the given pairs (by name). The start
 * copy gets no gradient. (The Python version computes 0 here; this is what its README describes.)
 */
export function l2ToStart(
  params: ReadonlyMap<string, tf.Tensor>,
  start: ReadonlyMap<string, tf.Tensor>,
): tf.Scalar {
  return tf.tidy(() => {
    let total: tf.Tensor = tf.scalar(0);
    for (const [name, p] of params) {
      const s = start.get(name);
      if (!s) throw new Error(`l2ToStart: no start-of-task copy of "${name}"`);
      total = total.add(accurateSum(tf.squaredDifference(p, stopGradient(s))));
    }
    return total as tf.Scalar;
  });
}

/** Mean squared error `mean((a − b)²)` (PyTorch `MSELoss()`), `a` treated as the target. */
export function featureMse(target: tf.Tensor, pred: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(stopGradient(target), pred)) as tf.Scalar);
}
