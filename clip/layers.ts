/**
 * Building blocks shared by the CLIP towers, written as plain functions over tensors and a
 * {@link LayerContext} that resolves parameters by their reference state-dict key.
 *
 * Conventions:
 * - Activations are batch-first: sequences `[n, length, width]` (the reference uses
 *   `[length, n, width]` inside its transformers; the math is identical), images NHWC.
 * - Linear weights stay `[out, in]` as in PyTorch; `x·Wᵀ` is computed with an explicit
 *   transpose (the matMul transpose flags are ~10× slower on wasm), see {@link linear}.
 * - Convolution weights stay OIHW (the reference layout, so state dicts, LoRA, OGD and weight
 *   averaging all see reference shapes) and are transposed to HWIO inside the forward pass: an
 *   O(weights) op next to an O(weights·pixels) convolution, with the gradient flowing back to the
 *   OIHW variable and nothing cached that could go stale after an `assign`. In eval mode BatchNorm
 *   is folded into the convolution ({@link conv2dBatchNorm}).
 * - Every dense projection goes through {@link linear}, which adds the {@link DenseHook}
 *   registered for its module path. A hook receives the layer input flattened to 2-D
 *   `[rows, in]` and must return `[rows, out]`.
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import type { AttentionHook, DenseHook } from "./types.ts";
import {
  fusedBatchNormTrain,
  fusedConv2dOihw,
  fusedLayerNorm,
  fusedQuickGelu,
} from "./backends/fused.ts";

/** LayerNorm / BatchNorm epsilon of the reference (PyTorch default). */
export const NORM_EPS = 1e-5;
/** BatchNorm running-statistics momentum of the reference (PyTorch default). */
export const BN_MOMENTUM = 0.1;

/** What a layer needs: parameters by reference key, dense hooks by module path, the mode. */
export interface LayerContext {
  /** Parameters and buffers keyed by reference state-dict key. */
  readonly params: ReadonlyMap<string, tf.Variable>;
  /** Dense hooks keyed by module path (see {@link linear}). */
  readonly denseHooks: ReadonlyMap<string, DenseHook>;
  /** Attention hooks keyed by attention module path (see {@link selfAttention}); optional. */
  readonly attentionHooks?: ReadonlyMap<string, AttentionHook>;
  /** Training mode: BatchNorm uses batch statistics and updates its running statistics. */
  readonly training: boolean;
}

/** The parameter `key` of `ctx`, or an error naming the missing key. */
export function param(ctx: LayerContext, key: string): tf.Variable {
  const p = ctx.params.get(key);
  if (!p) throw new Error(`CLIP parameter "${key}" is missing from the model`);
  return p;
}

/**
 * `y = x·Wᵀ + b (+ hook(x))` over the last axis of `x`; `weight` is `[out, in]`. The hook, if
 * given, sees `x` reshaped to `[rows, in]` and returns `[rows, out]`.
 *
 * On `cpu-blas` the transpose is a flag of sgemm. Elsewhere `x·Wᵀ` needs an explicit transpose
 * (the matMul transpose flags are ~10× slower on wasm): of the weight
 * (`in·out` elements) when there are many rows, else of the activations (`(W·xᵀ)ᵀ`,
 * `rows·(in + out)` elements) — whichever moves less data. Same result, same gradients.
 */
export function linear(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor | null,
  hook?: DenseHook,
): tf.Tensor {
  return tf.tidy(() => {
    const inF = x.shape[x.shape.length - 1];
    const outF = weight.shape[0];
    const x2 = (x.rank === 2 ? x : tf.reshape(x, [-1, inF])) as tf.Tensor2D;
    const rows = x2.shape[0];
    const w = weight as tf.Tensor2D;
    let y: tf.Tensor;
    if (tf.getBackend() === "cpu-blas" || tf.getBackend() === "cpu-dnnl") {
      // sgemm takes the transpose for free (forward and gradients)
      y = tf.fused.matMul({ a: x2, b: w, transposeB: true, bias: bias ?? undefined });
    } else if (rows * (inF + outF) < inF * outF) {
      // (the wasm fused matMul takes only a rank-1 bias, so the [out, 1] bias is added after)
      y = tf.transpose(tf.matMul(w, tf.transpose(x2)));
      if (bias) y = tf.add(y, bias);
    } else {
      y = tf.fused.matMul({ a: x2, b: tf.transpose(w), bias: bias ?? undefined });
    }
    if (hook) y = tf.add(y, hook(x2));
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outF]);
  });
}

/** The dense layer at module `path` (`<path>.weight`, `<path>.bias`) with its hook. */
export function dense(ctx: LayerContext, path: string, x: tf.Tensor): tf.Tensor {
  return linear(
    x,
    param(ctx, `${path}.weight`),
    ctx.params.get(`${path}.bias`) ?? null,
    ctx.denseHooks.get(path),
  );
}

/** LayerNorm over the last axis with affine `weight`/`bias` (eps 1e-5, biased variance). */
export function layerNorm(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  eps = NORM_EPS,
): tf.Tensor {
  return tf.tidy(() => {
    const fused = fusedLayerNorm(x, weight, bias, eps); // one kernel each way on cpu-dnnl
    if (fused) return fused;
    const axis = x.rank - 1;
    const xc = tf.sub(x, tf.mean(x, axis, true));
    const variance = tf.mean(tf.square(xc), axis, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), weight), bias);
  });
}

/** The LayerNorm module at `path` (`<path>.weight`, `<path>.bias`). */
export function layerNormAt(ctx: LayerContext, path: string, x: tf.Tensor): tf.Tensor {
  return layerNorm(x, param(ctx, `${path}.weight`), param(ctx, `${path}.bias`));
}

/** CLIP's QuickGELU: `x · sigmoid(1.702 x)`. */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => fusedQuickGelu(x) ?? tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/**
 * The additive causal mask of the reference text transformer: `[length, length]`, 0 on and
 * below the diagonal, −∞ above it.
 */
export function causalMask(length: number): tf.Tensor2D {
  const m = new Float32Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let j = i + 1; j < length; j++) m[i * length + j] = -Infinity;
  }
  return tf.tensor2d(m, [length, length]);
}

/**
 * Scaled dot-product attention on heads already split: `q` `[b, lq, hd]`, `k`, `v`
 * `[b, lk, hd]` (b = n·heads) → `[b, lq, hd]`. `q` is scaled by `hd^-0.5` as PyTorch's
 * `multi_head_attention_forward`; `mask` (`[lq, lk]`, additive) is optional.
 */
export function scaledDotProductAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  mask?: tf.Tensor,
): tf.Tensor3D {
  return tf.tidy(() => {
    const qs = tf.mul(q, (q.shape[2] as number) ** -0.5) as tf.Tensor3D;
    let scores: tf.Tensor = tf.matMul(qs, tf.transpose(k, [0, 2, 1]));
    if (mask) scores = tf.add(scores, mask);
    return tf.matMul(tf.softmax(scores, -1) as tf.Tensor3D, v);
  });
}

/** `[n, l, heads·hd]` → `[n·heads, l, hd]`. */
function splitHeads(x: tf.Tensor, heads: number): tf.Tensor3D {
  const [n, l, width] = x.shape as [number, number, number];
  const hd = width / heads;
  if (heads === 1) return x as tf.Tensor3D;
  return tf.reshape(tf.transpose(tf.reshape(x, [n, l, heads, hd]), [0, 2, 1, 3]), [
    n * heads,
    l,
    hd,
  ]);
}

/** `[n·heads, l, hd]` → `[n, l, heads·hd]` (concatenate the heads). */
function mergeHeads(x: tf.Tensor3D, n: number, heads: number): tf.Tensor3D {
  const [, l, hd] = x.shape;
  if (heads === 1) return x;
  return tf.reshape(
    tf.transpose(tf.reshape(x, [n, heads, l, hd]), [0, 2, 1, 3]),
    [n, l, heads * hd],
  );
}

/**
 * Multi-head attention over already projected `q` `[n, lq, width]`, `k`, `v` `[n, lk, width]`
 * with `heads` heads (see {@link scaledDotProductAttention}). Returns `[n, lq, width]` (heads
 * concatenated, before the output projection).
 */
export function attend(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  heads: number,
  mask?: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    const [n, , width] = q.shape as [number, number, number];
    const hd = width / heads;
    if (!Number.isInteger(hd)) throw new Error(`width ${width} is not divisible by ${heads} heads`);
    const out = scaledDotProductAttention(
      splitHeads(q, heads),
      splitHeads(k, heads),
      splitHeads(v, heads),
      mask,
    );
    return mergeHeads(out, n, heads);
  });
}

/**
 * `nn.MultiheadAttention` self-attention at module `path` (packed `in_proj_weight` /
 * `in_proj_bias`, `out_proj`). The packed q/k/v in-projection is one dense layer whose hook is
 * registered under `path` itself (output `3·width`); the output projection's hook under
 * `<path>.out_proj`. q, k, v and the heads are separated by one transpose of the packed
 * projection to `[3, n·l·width]`, contiguous slices and per-head transposes (a last-axis split is
 * very slow on the cpu backends; rank-5 transposes are slow on wasm). An {@link AttentionHook}
 * registered under `path` in `ctx.attentionHooks` adds its term to the heads' output before they
 * are merged and projected (`out_proj(A + hook(q))`); without one nothing changes.
 */
export function selfAttention(
  ctx: LayerContext,
  path: string,
  x: tf.Tensor,
  heads: number,
  mask?: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    const [n, l, width] = x.shape as [number, number, number];
    const hd = width / heads;
    if (!Number.isInteger(hd)) throw new Error(`width ${width} is not divisible by ${heads} heads`);
    const qkv = linear(
      x,
      param(ctx, `${path}.in_proj_weight`),
      param(ctx, `${path}.in_proj_bias`),
      ctx.denseHooks.get(path),
    );
    // [n·l, 3, width] → [3, n·l·width]: q, k, v become contiguous rows
    const packed = tf.reshape(
      tf.transpose(tf.reshape(qkv, [n * l, 3, width]), [1, 0, 2]),
      [3, n * l * width],
    );
    const part = (i: number) =>
      splitHeads(tf.reshape(tf.slice(packed, [i, 0], [1, -1]), [n, l, width]), heads);
    const q = part(0);
    let out = scaledDotProductAttention(q, part(1), part(2), mask);
    const hook = ctx.attentionHooks?.get(path);
    if (hook) out = tf.add(out, hook(q, n, heads)) as tf.Tensor3D;
    return dense(ctx, `${path}.out_proj`, mergeHeads(out, n, heads));
  });
}

/**
 * The reference `ResidualAttentionBlock` at `path` (pre-LN): `x + attn(ln_1(x))`, then
 * `x + mlp(ln_2(x))` with `mlp = c_proj(QuickGELU(c_fc(·)))`.
 */
export function residualBlock(
  ctx: LayerContext,
  path: string,
  x: tf.Tensor,
  heads: number,
  mask?: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    const a = tf.add(
      x,
      selfAttention(ctx, `${path}.attn`, layerNormAt(ctx, `${path}.ln_1`, x), heads, mask),
    );
    const h = quickGelu(dense(ctx, `${path}.mlp.c_fc`, layerNormAt(ctx, `${path}.ln_2`, a)));
    return tf.add(a, dense(ctx, `${path}.mlp.c_proj`, h));
  });
}

/**
 * A stack of residual blocks `<prefix>.0 … <prefix>.<layers-1>`, each in its own `tidy` so that
 * only one block's intermediates are alive at a time. The input is not disposed.
 */
export function transformer(
  ctx: LayerContext,
  prefix: string,
  layers: number,
  x: tf.Tensor,
  heads: number,
  mask?: tf.Tensor,
): tf.Tensor {
  let h = x;
  for (let i = 0; i < layers; i++) {
    const next = residualBlock(ctx, `${prefix}.${i}`, h, heads, mask);
    if (h !== x) h.dispose();
    h = next;
  }
  return h === x ? tf.clone(x) : h;
}

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  /** Per-output-channel bias `[o]` added after the convolution. */
  bias?: tf.Tensor;
  /** Apply ReLU after the bias. */
  relu?: boolean;
}

/**
 * 2-D convolution of NHWC `x` with a PyTorch OIHW `weight`, symmetric zero padding `pad` as
 * PyTorch's `padding=pad`, optional bias and ReLU (fused kernels). On `cpu-dnnl` one oneDNN
 * kernel reads the OIHW weight as stored ({@link fusedConv2dOihw}); elsewhere the weight is
 * transposed to HWIO and 1×1 stride-1 convolutions run as a matrix product.
 */
export function conv2d(
  x: tf.Tensor4D,
  weight: tf.Tensor,
  stride = 1,
  pad = 0,
  options: Conv2dOptions = {},
): tf.Tensor4D {
  return tf.tidy(() => {
    const [o, i, kh, kw] = weight.shape;
    const fused = fusedConv2dOihw(x, weight, stride, pad, options.bias, options.relu);
    if (fused) return fused;
    const activation = options.relu ? "relu" : "linear";
    // (on cpu-dnnl oneDNN's 1×1 convolution beats the matrix product, its gradients most)
    if (kh === 1 && kw === 1 && stride === 1 && pad === 0 && tf.getBackend() !== "cpu-dnnl") {
      const [n, h, w] = x.shape;
      const y = tf.fused.matMul({
        a: tf.reshape(x, [n * h * w, i]),
        b: tf.transpose(tf.reshape(weight, [o, i])),
        bias: options.bias,
        activation,
      });
      return tf.reshape(y, [n, h, w, o]);
    }
    return tf.fused.conv2d({
      x,
      filter: tf.transpose(weight, [2, 3, 1, 0]) as tf.Tensor4D,
      strides: stride,
      pad: pad === 0 ? "valid" : pad,
      bias: options.bias,
      activation,
    });
  });
}

/**
 * A bias-free convolution followed by the `nn.BatchNorm2d` at `bnPath` (and optional ReLU). In
 * eval mode the normalisation is folded into the convolution (weight · scale, bias = shift), so
 * the whole thing is one fused kernel; in training mode it is {@link batchNorm} on the output.
 */
export function conv2dBatchNorm(
  ctx: LayerContext,
  x: tf.Tensor4D,
  weightKey: string,
  bnPath: string,
  stride = 1,
  pad = 0,
  relu = false,
): tf.Tensor4D {
  return tf.tidy(() => {
    const weight = param(ctx, weightKey);
    if (ctx.training) {
      return batchNorm(ctx, bnPath, conv2d(x, weight, stride, pad), relu);
    }
    const scale = tf.mul(
      param(ctx, `${bnPath}.weight`),
      tf.rsqrt(tf.add(param(ctx, `${bnPath}.running_var`), NORM_EPS)),
    );
    const shift = tf.sub(
      param(ctx, `${bnPath}.bias`),
      tf.mul(param(ctx, `${bnPath}.running_mean`), scale),
    );
    const folded = tf.mul(weight, tf.reshape(scale, [-1, 1, 1, 1]));
    return conv2d(x, folded, stride, pad, { bias: shift, relu });
  });
}

/** `nn.AvgPool2d(k)` (kernel = stride = k, no padding) on NHWC; identity for k = 1. */
export function avgPool(x: tf.Tensor4D, k: number): tf.Tensor4D {
  return k === 1 ? tf.clone(x) : tf.avgPool(x, k, k, "valid");
}

/**
 * Column sums of a `[rows, C]` matrix in blocks of ≈√rows, the block sums summed the same way
 * until at most `minRows` remain. tfjs's cpu and wasm kernels sum a long axis sequentially in
 * float32, which loses percents on millions of small terms; PyTorch's reductions are blocked. On
 * a tiny ResNet the sequential sum made batch statistics, and so every activation after a
 * BatchNorm, 3.5× less accurate than PyTorch's float32 (measured against a float64 PyTorch run),
 * enough to flip ReLUs that sit within 1e-6 of zero. Differentiable.
 */
export function blockedColumnSum(x: tf.Tensor, minRows = 64): tf.Tensor {
  return tf.tidy(() => {
    const [rows, c] = x.shape;
    if (rows <= minRows) return tf.sum(x, 0);
    const b = Math.ceil(Math.sqrt(rows));
    const r = Math.ceil(rows / b);
    const padded = r * b > rows ? tf.pad(x, [[0, r * b - rows], [0, 0]]) : x;
    return blockedColumnSum(tf.sum(tf.reshape(padded, [r, b, c]), 1), minRows);
  });
}

/**
 * Backends whose reductions accumulate in float32 in long runs (wasm) or workgroup strides
 * (webgpu): their BatchNorm statistics use {@link blockedColumnSum}.
 */
const BLOCKED_SUM_BACKENDS = new Set(["wasm", "webgpu"]);

/**
 * `nn.BatchNorm2d` at `path` on NHWC `x`. Eval: running statistics. Training: batch statistics
 * (biased variance) normalise, and the running statistics are updated in place as PyTorch does
 * (momentum 0.1, unbiased variance; `num_batches_tracked` + 1). `relu` applies a ReLU after (one
 * fused kernel on `cpu-dnnl`, which then never keeps the pre-ReLU tensor).
 */
export function batchNorm(
  ctx: LayerContext,
  path: string,
  x: tf.Tensor4D,
  relu = false,
): tf.Tensor4D {
  const weight = param(ctx, `${path}.weight`);
  const bias = param(ctx, `${path}.bias`);
  const runningMean = param(ctx, `${path}.running_mean`);
  const runningVar = param(ctx, `${path}.running_var`);
  if (!ctx.training) {
    return tf.tidy(() => {
      const scale = tf.mul(weight, tf.rsqrt(tf.add(runningVar, NORM_EPS)));
      const y = tf.add(tf.mul(x, scale), tf.sub(bias, tf.mul(runningMean, scale))) as tf.Tensor4D;
      return relu ? tf.relu(y) : y;
    });
  }
  return tf.tidy(() => {
    const [n, h, w, ch] = x.shape;
    const count = n * h * w;
    let mean: tf.Tensor, variance: tf.Tensor;
    // one kernel each way on cpu-dnnl (ReLU included: the pre-ReLU tensor is never kept)
    const fused = fusedBatchNormTrain(x, weight, bias, NORM_EPS, relu);
    if (fused) ({ mean, variance } = fused);
    else if (BLOCKED_SUM_BACKENDS.has(tf.getBackend())) {
      const flat = tf.reshape(x, [count, ch]);
      mean = tf.div(blockedColumnSum(flat), count);
      variance = tf.div(blockedColumnSum(tf.square(tf.sub(flat, mean))), count);
    } else {
      // the JS cpu kernels accumulate in float64 and TensorFlow's in trees: already accurate
      ({ mean, variance } = tf.moments(x, [0, 1, 2]));
    }
    tf.tidy(() => {
      const m = BN_MOMENTUM;
      runningMean.assign(tf.add(tf.mul(runningMean, 1 - m), tf.mul(mean, m)));
      const unbiased = tf.mul(variance, count > 1 ? count / (count - 1) : 1);
      runningVar.assign(tf.add(tf.mul(runningVar, 1 - m), tf.mul(unbiased, m)));
      const tracked = ctx.params.get(`${path}.num_batches_tracked`);
      if (tracked) tracked.assign(tf.add(tracked, tf.scalar(1, tracked.dtype)));
    });
    if (fused) return fused.y;
    const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, NORM_EPS)));
    const y = tf.add(tf.mul(xhat, weight), bias) as tf.Tensor4D;
    return relu ? tf.relu(y) : y;
  });
}
