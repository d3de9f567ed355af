import { tf } from "../clip/backends/tf.ts";
import { assertAllClose, assertAlmostEquals } from "./_testing.ts";
import {
  clipLogits,
  crossEntropy,
  distillation,
  distillationTransposed,
  featureMse,
  l2ToStart,
  selfSimilarityLogits,
} from "./losses.ts";

const val = (t: tf.Tensor) => {
  const v = t.dataSync()[0];
  t.dispose();
  return v;
};

Deno.test("crossEntropy with label smoothing (hand-computed)", () => {
  const lse = Math.log(Math.E + Math.E ** 2 + Math.E ** 3);
  const logp = [1 - lse, 2 - lse, 3 - lse];
  const smooth = -(logp[0] + logp[1] + logp[2]) / 3;
  // row 0: label 0; row 1 = [0,0,0]: label 2 → nll = smooth = ln 3
  const expected = ((0.8 * -logp[0] + 0.2 * smooth) + Math.log(3)) / 2;
  const logits = tf.tensor2d([[1, 2, 3], [0, 0, 0]]);
  assertAlmostEquals(val(crossEntropy(logits, [0, 2], 0.2)), expected, 1e-6);
  assertAlmostEquals(val(crossEntropy(logits, [0, 2])), (-logp[0] + Math.log(3)) / 2, 1e-6);
  logits.dispose();
});

Deno.test("distillation: soft cross-entropy × T², and the transposed direction", () => {
  const ln3 = Math.log(3);
  // teacher uniform, student row [0, 2ln3] at T=2 → q = [1/4, 3/4]: 4·(−½ln¼ − ½ln¾) = 2·ln(16/3)
  const t1 = tf.zeros([1, 2]) as tf.Tensor2D;
  const s1 = tf.tensor2d([[0, 2 * ln3]]);
  assertAlmostEquals(val(distillation(t1, s1, 2)), 2 * Math.log(16 / 3), 1e-5);
  // non-square 2×3: rows → 2 ln5 + (4/3) ln3; columns → (8 ln2 + 2 ln(16/3)) / 3
  const t2 = tf.zeros([2, 3]) as tf.Tensor2D;
  const s2 = tf.tensor2d([[0, 2 * ln3, 0], [0, 0, 0]]);
  assertAlmostEquals(val(distillation(t2, s2, 2)), 2 * Math.log(5) + (4 / 3) * ln3, 1e-5);
  assertAlmostEquals(
    val(distillationTransposed(t2, s2, 2)),
    (8 * Math.log(2) + 2 * Math.log(16 / 3)) / 3,
    1e-5,
  );
  // gradient: d/ds = T·(q − p)/rows for the student, zero for the teacher
  const g = tf.grads((t: tf.Tensor, s: tf.Tensor) =>
    distillation(t as tf.Tensor2D, s as tf.Tensor2D, 2)
  )([t1, s1]);
  assertAllClose(g[1].dataSync(), [2 * (0.25 - 0.5), 2 * (0.75 - 0.5)], 1e-6);
  assertAllClose(g[0].dataSync(), [0, 0], 0);
  [t1, s1, t2, s2, ...g].forEach((t) => t.dispose());
});

Deno.test("clipLogits, l2ToStart, featureMse, selfSimilarityLogits (hand values)", () => {
  const a = tf.tensor2d([[3, 4]]);
  const b = tf.tensor2d([[1, 0], [0, 2]]);
  const ls = tf.scalar(Math.log(10));
  const l = clipLogits(a, b, ls);
  assertAllClose(l.dataSync(), [6, 8], 1e-5);
  const p = new Map<string, tf.Tensor>([["x", tf.tensor1d([1, 2])], ["y", tf.tensor2d([[1]])]]);
  const s = new Map<string, tf.Tensor>([["x", tf.tensor1d([0, 0])], ["y", tf.tensor2d([[3]])]]);
  assertAlmostEquals(val(l2ToStart(p, s)), 9, 1e-6);
  assertAlmostEquals(val(featureMse(tf.tensor1d([1, 2]), tf.tensor1d([0, 0]))), 2.5, 1e-6);
  const x = tf.tensor2d([[1, 0], [0.6, 0.8]]);
  const ss = selfSimilarityLogits(x, tf.scalar(0));
  assertAllClose(ss.dataSync(), [-1e4, 0.6, 0.6, -1e4], 1e-3);
  [a, b, ls, l, x, ss, ...p.values(), ...s.values()].forEach((t) => t.dispose());
});
