/**
 * The reference `ModifiedResNet` image tower (`visual.*` keys) on NHWC images: a 3-convolution
 * stem with an average pool, Bottleneck blocks whose stride is an anti-aliasing average pool, and
 * an attention-pooling head (`AttentionPool2d`).
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import { fusedAddRelu } from "./backends/fused.ts";
import { attend, avgPool, conv2dBatchNorm, dense, type LayerContext, param } from "./layers.ts";

/** Hyperparameters of the modified ResNet. */
export interface ResNetConfig {
  /** Input side in pixels (32 × the attention-pool grid). */
  imageResolution: number;
  /** Bottleneck blocks per stage (4 numbers). */
  layers: number[];
  /** Base width (`layer1.0.conv1` output channels); the stem ends with this many channels. */
  width: number;
  /** Attention-pool heads (`width · 32 / 64` in the reference). */
  heads: number;
}

/**
 * The reference `Bottleneck` at `path`: 1×1 → 3×3 → (avgpool if stride > 1) → 1×1, with a
 * `downsample` branch (avgpool, 1×1 conv, BN) when present in the parameters.
 */
export function bottleneck(
  ctx: LayerContext,
  path: string,
  x: tf.Tensor4D,
  stride: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const w = (name: string) => `${path}.${name}.weight`;
    let out = conv2dBatchNorm(ctx, x, w("conv1"), `${path}.bn1`, 1, 0, true);
    out = conv2dBatchNorm(ctx, out, w("conv2"), `${path}.bn2`, 1, 1, true);
    out = avgPool(out, stride);
    out = conv2dBatchNorm(ctx, out, w("conv3"), `${path}.bn3`);
    let identity: tf.Tensor4D = x;
    if (ctx.params.has(`${path}.downsample.0.weight`)) {
      identity = conv2dBatchNorm(
        ctx,
        avgPool(x, stride),
        `${path}.downsample.0.weight`,
        `${path}.downsample.1`,
      );
    }
    return (fusedAddRelu(out, identity) ?? tf.relu(tf.add(out, identity))) as tf.Tensor4D;
  });
}

/**
 * The reference `AttentionPool2d` at `path` on NHWC features `[n, h, w, c]`: the mean token is
 * prepended, the positional embedding added, and one multi-head attention with the query from the
 * mean token only (what `F.multi_head_attention_forward(query=x, …)[0]` keeps) and separate
 * `q_proj`/`k_proj`/`v_proj`, then `c_proj`. Returns `[n, outputDim]`.
 */
export function attentionPool(
  ctx: LayerContext,
  path: string,
  x: tf.Tensor4D,
  heads: number,
): tf.Tensor2D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const flat = tf.reshape(x, [n, h * w, c]);
    const tokens = tf.add(
      tf.concat([tf.mean(flat, 1, true), flat], 1),
      param(ctx, `${path}.positional_embedding`),
    );
    const first = tf.slice(tokens, [0, 0, 0], [n, 1, c]);
    const q = dense(ctx, `${path}.q_proj`, first);
    const k = dense(ctx, `${path}.k_proj`, tokens);
    const v = dense(ctx, `${path}.v_proj`, tokens);
    const out = dense(ctx, `${path}.c_proj`, attend(q, k, v, heads));
    return tf.reshape(out, [n, out.shape[2] as number]) as tf.Tensor2D;
  });
}

/** `ModifiedResNet.forward`: NHWC images `[n, R, R, 3]` → `[n, embedDim]`. */
export function modifiedResNet(
  ctx: LayerContext,
  cfg: ResNetConfig,
  images: tf.Tensor4D,
  prefix = "visual",
): tf.Tensor2D {
  const [, h, w, c] = images.shape;
  if (h !== cfg.imageResolution || w !== cfg.imageResolution || c !== 3) {
    throw new Error(
      `the ResNet expects NHWC images [n, ${cfg.imageResolution}, ${cfg.imageResolution}, 3], ` +
        `got [${images.shape}] (preprocess at the model's resolution; NCHW input must be transposed)`,
    );
  }
  let x = tf.tidy(() => {
    let s = images;
    for (const [i, stride] of [[1, 2], [2, 1], [3, 1]]) {
      s = conv2dBatchNorm(ctx, s, `${prefix}.conv${i}.weight`, `${prefix}.bn${i}`, stride, 1, true);
    }
    return avgPool(s, 2);
  });
  for (let stage = 1; stage <= 4; stage++) {
    const blocks = cfg.layers[stage - 1];
    for (let b = 0; b < blocks; b++) {
      const stride = stage > 1 && b === 0 ? 2 : 1;
      const next = bottleneck(ctx, `${prefix}.layer${stage}.${b}`, x, stride);
      x.dispose();
      x = next;
    }
  }
  const out = attentionPool(ctx, `${prefix}.attnpool`, x, cfg.heads);
  x.dispose();
  return out;
}
