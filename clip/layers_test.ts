import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { maxAbsDiff } from "./_testing.ts";
import { tf } from "./backends/tf.ts";
import {
  attend,
  avgPool,
  batchNorm,
  causalMask,
  conv2d,
  conv2dBatchNorm,
  type LayerContext,
  layerNorm,
  linear,
  quickGelu,
  selfAttention,
} from "./layers.ts";
import { patchEmbed } from "./vit.ts";
import { initBackend } from "./backends/backend.ts";

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) =>
  assert(maxAbsDiff(a, b) <= tol, `max abs diff ${maxAbsDiff(a, b)} > ${tol}`);

Deno.test("layerNorm matches a hand computation (biased variance, eps 1e-5)", () => {
  const x = tf.tensor2d([[1, 2, 3, 6]]);
  const y = layerNorm(x, tf.tensor1d([1, 2, 1, 1]), tf.tensor1d([0, 0, 1, 0]));
  // mean 3, var (4+1+0+9)/4 = 3.5
  const s = 1 / Math.sqrt(3.5 + 1e-5);
  close(y.dataSync(), [-2 * s, -1 * s * 2, 0 + 1, 3 * s]);
});

Deno.test("quickGelu is x·sigmoid(1.702x)", () => {
  const xs = [-3, -0.5, 0, 0.7, 4];
  close(quickGelu(tf.tensor1d(xs)).dataSync(), xs.map((x) => x / (1 + Math.exp(-1.702 * x))));
});

Deno.test("causalMask is −∞ strictly above the diagonal", () => {
  assertEquals(Array.from(causalMask(3).dataSync()), [
    0,
    -Infinity,
    -Infinity,
    0,
    0,
    -Infinity,
    0,
    0,
    0,
  ]);
});

Deno.test("linear computes x·Wᵀ + b + hook(x) on any leading shape", () => {
  const x = tf.tensor3d([[[1, 2], [3, 4]]]); // [1, 2, 2]
  const w = tf.tensor2d([[1, 0], [0, 1], [1, 1]]); // [3, 2]
  const b = tf.tensor1d([0, 10, 100]);
  const seen: number[][] = [];
  const y = linear(x, w, b, (x2) => {
    seen.push(x2.shape);
    return tf.onesLike(tf.matMul(x2 as tf.Tensor2D, tf.transpose(w)));
  });
  assertEquals(seen, [[2, 2]]);
  assertEquals(y.shape, [1, 2, 3]);
  assertEquals(Array.from(y.dataSync()), [2, 13, 104, 4, 15, 108]);
});

/** Naive multi-head attention on plain arrays: q,k,v [lq|lk][width]. */
function naiveAttention(q: number[][], k: number[][], v: number[][], heads: number) {
  const width = q[0].length, hd = width / heads;
  const out = q.map(() => new Array(width).fill(0));
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < q.length; i++) {
      const s = k.map((kr) => {
        let d = 0;
        for (let j = 0; j < hd; j++) d += q[i][h * hd + j] * kr[h * hd + j];
        return d / Math.sqrt(hd);
      });
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let t = 0; t < k.length; t++) {
        for (let j = 0; j < hd; j++) out[i][h * hd + j] += (e[t] / z) * v[t][h * hd + j];
      }
    }
  }
  return out.flat();
}

Deno.test("attend equals naive multi-head attention (2 heads, query of 1 token)", () => {
  const rnd = (r: number, c: number, seed: number) =>
    tf.randomNormal([1, r, c], 0, 1, "float32", seed) as tf.Tensor3D;
  const q = rnd(1, 8, 1), k = rnd(5, 8, 2), v = rnd(5, 8, 3);
  const y = attend(q, k, v, 2);
  assertEquals(y.shape, [1, 1, 8]);
  const arr = (t: tf.Tensor3D) => t.arraySync()[0];
  close(y.dataSync(), naiveAttention(arr(q), arr(k), arr(v), 2));
  // the causal mask makes the first query see only the first key
  const q3 = rnd(3, 8, 4);
  const masked = attend(q3, rnd(3, 8, 5), rnd(3, 8, 6), 2, causalMask(3));
  close(
    masked.slice([0, 0, 0], [1, 1, 8]).dataSync(),
    rnd(3, 8, 6).slice([0, 0, 0], [1, 1, 8]).dataSync(),
  );
});

/** Naive NCHW/OIHW convolution with symmetric padding (PyTorch semantics), returns NHWC flat. */
function naiveConv(
  x: number[][][][], // NHWC
  w: number[][][][], // OIHW
  stride: number,
  pad: number,
): number[] {
  const [n, h, wd] = [x.length, x[0].length, x[0][0].length];
  const [o, i, kh, kw] = [w.length, w[0].length, w[0][0].length, w[0][0][0].length];
  const oh = Math.floor((h + 2 * pad - kh) / stride) + 1;
  const ow = Math.floor((wd + 2 * pad - kw) / stride) + 1;
  const out: number[] = [];
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < oh; y++) {
      for (let xx = 0; xx < ow; xx++) {
        for (let oc = 0; oc < o; oc++) {
          let s = 0;
          for (let ic = 0; ic < i; ic++) {
            for (let dy = 0; dy < kh; dy++) {
              for (let dx = 0; dx < kw; dx++) {
                const iy = y * stride - pad + dy, ix = xx * stride - pad + dx;
                if (iy >= 0 && iy < h && ix >= 0 && ix < wd) {
                  s += x[b][iy][ix][ic] * w[oc][ic][dy][dx];
                }
              }
            }
          }
          out.push(s);
        }
      }
    }
  }
  return out;
}

Deno.test("conv2d with OIHW weights equals PyTorch-style padded convolution", () => {
  const x = tf.randomNormal([2, 6, 6, 3], 0, 1, "float32", 7) as tf.Tensor4D;
  for (const [o, k, stride, pad] of [[4, 3, 2, 1], [4, 3, 1, 1], [5, 1, 1, 0], [2, 2, 2, 0]]) {
    const w = tf.randomNormal([o, 3, k, k], 0, 1, "float32", 8) as tf.Tensor4D;
    const y = conv2d(x, w, stride, pad);
    close(y.dataSync(), naiveConv(x.arraySync(), w.arraySync(), stride, pad), 1e-4);
  }
});

Deno.test("patchEmbed equals the stride-p convolution", () => {
  const x = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 9) as tf.Tensor4D;
  const w = tf.randomNormal([5, 3, 4, 4], 0, 1, "float32", 10) as tf.Tensor4D;
  const y = patchEmbed(x, w, 4);
  assertEquals(y.shape, [2, 4, 5]);
  close(y.dataSync(), conv2d(x, w, 4, 0).dataSync(), 1e-4);
});

Deno.test("avgPool is AvgPool2d(k) and identity for k = 1", () => {
  const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], [1, 4, 4, 1]);
  assertEquals(Array.from(avgPool(x, 2).dataSync()), [3.5, 5.5, 11.5, 13.5]);
  assertEquals(Array.from(avgPool(x, 1).dataSync()), Array.from(x.dataSync()));
});

Deno.test("batchNorm: eval uses running stats; training uses batch stats and updates them as PyTorch", () => {
  const v = (a: number[], dtype: "float32" | "int32" = "float32") =>
    tf.variable(tf.tensor1d(a, dtype), false);
  const params = new Map<string, tf.Variable>([
    ["bn.weight", v([2])],
    ["bn.bias", v([1])],
    ["bn.running_mean", v([1])],
    ["bn.running_var", v([4])],
    ["bn.num_batches_tracked", tf.variable(tf.scalar(0, "int32"), false)],
  ]);
  const ctx = { params, denseHooks: new Map(), training: false } as LayerContext;
  const x = tf.tensor4d([1, 3, 5, 7], [1, 2, 2, 1]);
  const s = 1 / Math.sqrt(4 + 1e-5);
  close(batchNorm(ctx, "bn", x).dataSync(), [0, 2, 4, 6].map((d) => d * s * 2 + 1));
  const train = { ...ctx, training: true };
  // batch mean 4, biased var 5, unbiased 20/3
  const sb = 1 / Math.sqrt(5 + 1e-5);
  close(batchNorm(train, "bn", x).dataSync(), [-3, -1, 1, 3].map((d) => d * sb * 2 + 1));
  close(params.get("bn.running_mean")!.dataSync(), [0.9 * 1 + 0.1 * 4]);
  close(params.get("bn.running_var")!.dataSync(), [0.9 * 4 + 0.1 * 20 / 3]);
  assertEquals(Array.from(params.get("bn.num_batches_tracked")!.dataSync()), [1]);
});

Deno.test("conv2dBatchNorm: the folded eval path equals conv → BatchNorm → ReLU; bias/relu options", () => {
  const x = tf.randomNormal([2, 5, 5, 3], 0, 1, "float32", 11) as tf.Tensor4D;
  for (const [k, stride, pad] of [[3, 2, 1], [1, 1, 0]]) {
    const rnd = (shape: number[], seed: number, mean = 0) =>
      tf.variable(tf.randomNormal(shape, mean, 0.5, "float32", seed), false);
    const params = new Map<string, tf.Variable>([
      ["c.weight", rnd([4, 3, k, k], 12)],
      ["bn.weight", rnd([4], 13, 1)],
      ["bn.bias", rnd([4], 14)],
      ["bn.running_mean", rnd([4], 15)],
      ["bn.running_var", tf.variable(tf.tensor1d([0.5, 1, 2, 3]), false)],
    ]);
    const ctx = { params, denseHooks: new Map(), training: false } as LayerContext;
    const ref = tf.relu(batchNorm(ctx, "bn", conv2d(x, params.get("c.weight")!, stride, pad)));
    const got = conv2dBatchNorm(ctx, x, "c.weight", "bn", stride, pad, true);
    close(got.dataSync(), ref.dataSync(), 1e-5);
    assert(ref.dataSync().some((v) => v === 0) && ref.dataSync().some((v) => v > 0));
    const b = tf.tensor1d([1, -1, 2, -2]);
    const fused = conv2d(x, params.get("c.weight")!, stride, pad, { bias: b, relu: true });
    const plain = tf.relu(tf.add(conv2d(x, params.get("c.weight")!, stride, pad), b));
    close(fused.dataSync(), plain.dataSync(), 1e-5);
  }
});

Deno.test("selfAttention (packed in_proj, 4 heads, causal) equals attend on sliced q/k/v", () => {
  const w = 16, n = 2, l = 5, heads = 4;
  const v = (shape: number[], seed: number) =>
    tf.variable(tf.randomNormal(shape, 0, 0.3, "float32", seed), false);
  const params = new Map<string, tf.Variable>([
    ["a.in_proj_weight", v([3 * w, w], 20)],
    ["a.in_proj_bias", v([3 * w], 21)],
    ["a.out_proj.weight", v([w, w], 22)],
    ["a.out_proj.bias", v([w], 23)],
  ]);
  const ctx = { params, denseHooks: new Map(), training: false } as LayerContext;
  const x = tf.randomNormal([n, l, w], 0, 1, "float32", 24);
  const mask = causalMask(l);
  const got = selfAttention(ctx, "a", x, heads, mask);
  const W = params.get("a.in_proj_weight")!, B = params.get("a.in_proj_bias")!;
  const proj = (i: number) => linear(x, tf.slice(W, [i * w, 0], [w, w]), tf.slice(B, [i * w], [w]));
  const o = attend(proj(0), proj(1), proj(2), heads, mask);
  const ref = linear(o, params.get("a.out_proj.weight")!, params.get("a.out_proj.bias")!);
  close(got.dataSync(), ref.dataSync(), 1e-5);
});

Deno.test("batchNorm: training statistics stay accurate over long float32 sums (wasm)", async () => {
  // wasm sums sequentially in float32 (the JS cpu backend accumulates in float64)
  const prev = tf.getBackend();
  await initBackend({ prefer: "wasm", quiet: true });
  try {
    batchNormAccuracy();
  } finally {
    await tf.setBackend(prev);
  }
});

function batchNormAccuracy() {
  // 16384 values per channel around 1 with spread 0.01: a sequential float32 sum loses the
  // mean by ~1e-5 (x̂ off by ~1e-3); the blocked sums keep x̂ within 1e-4 of float64
  const [n, h, w, c] = [16, 32, 32, 2];
  const data = new Float32Array(n * h * w * c);
  for (let i = 0; i < data.length; i++) data[i] = 1 + 0.01 * Math.sin(i * 0.37) + 1e-3 * (i % c);
  const params = new Map<string, tf.Variable>([
    ["bn.weight", tf.variable(tf.ones([c]), false)],
    ["bn.bias", tf.variable(tf.zeros([c]), false)],
    ["bn.running_mean", tf.variable(tf.zeros([c]), false)],
    ["bn.running_var", tf.variable(tf.ones([c]), false)],
  ]);
  const ctx = { params, denseHooks: new Map(), training: true } as LayerContext;
  const y = batchNorm(ctx, "bn", tf.tensor4d(data, [n, h, w, c])).dataSync();
  const rows = n * h * w;
  const want = new Float64Array(data.length);
  for (let ch = 0; ch < c; ch++) {
    let m = 0, v = 0;
    for (let r = 0; r < rows; r++) m += data[r * c + ch];
    m /= rows;
    for (let r = 0; r < rows; r++) v += (data[r * c + ch] - m) ** 2;
    v /= rows;
    for (let r = 0; r < rows; r++) want[r * c + ch] = (data[r * c + ch] - m) / Math.sqrt(v + 1e-5);
  }
  close(y, want, 1e-4);
}
