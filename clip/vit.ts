/**
 * The reference `VisionTransformer` image tower (`visual.*` keys) on NHWC images.
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import { type LayerContext, layerNormAt, param, transformer } from "./layers.ts";

/** Hyperparameters of the vision transformer. */
export interface VitConfig {
  /** Input side in pixels (a multiple of `patchSize`). */
  imageResolution: number;
  /** Patch side in pixels. */
  patchSize: number;
  /** Token width. */
  width: number;
  /** Number of residual blocks. */
  layers: number;
  /** Attention heads (`width / 64` in the reference). */
  heads: number;
}

/**
 * The patch embedding `conv1` (kernel = stride = patch, no bias) as a reshape/transpose and one
 * matrix product — equal to the strided convolution, faster to train. NHWC `[n, R, R, 3]` →
 * `[n, grid², width]`, tokens in row-major grid order as the reference's `flatten`.
 */
export function patchEmbed(x: tf.Tensor4D, weight: tf.Tensor, patch: number): tf.Tensor3D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const gh = h / patch, gw = w / patch;
    const width = weight.shape[0];
    // [n, gh, p, gw, p, c] → [n, gh, gw, c, p, p]: the (c, kh, kw) order of an OIHW kernel.
    const patches = tf.reshape(
      tf.transpose(tf.reshape(x, [n * gh, patch, gw, patch, c]), [0, 2, 4, 1, 3]),
      [n * gh * gw, c * patch * patch],
    );
    const y = tf.matMul(patches, tf.transpose(tf.reshape(weight, [width, c * patch * patch])));
    return tf.reshape(y, [n, gh * gw, width]);
  });
}

/**
 * `VisionTransformer.forward`: patch embedding, class token, positional embedding, `ln_pre`,
 * the residual blocks, `ln_post` on the class token, `proj`. Returns `[n, embedDim]`.
 */
export function visionTransformer(
  ctx: LayerContext,
  cfg: VitConfig,
  images: tf.Tensor4D,
  prefix = "visual",
): tf.Tensor2D {
  const [n, h, w, c] = images.shape;
  if (h !== cfg.imageResolution || w !== cfg.imageResolution || c !== 3) {
    throw new Error(
      `the ViT expects NHWC images [n, ${cfg.imageResolution}, ${cfg.imageResolution}, 3], ` +
        `got [${images.shape}] (preprocess at the model's resolution; NCHW input must be transposed)`,
    );
  }
  const tokens = tf.tidy(() => {
    const x = patchEmbed(images, param(ctx, `${prefix}.conv1.weight`), cfg.patchSize);
    const cls = tf.tile(
      tf.reshape(param(ctx, `${prefix}.class_embedding`), [1, 1, cfg.width]),
      [n, 1, 1],
    );
    const withPos = tf.add(tf.concat([cls, x], 1), param(ctx, `${prefix}.positional_embedding`));
    return layerNormAt(ctx, `${prefix}.ln_pre`, withPos);
  });
  const out = transformer(ctx, `${prefix}.transformer.resblocks`, cfg.layers, tokens, cfg.heads);
  tokens.dispose();
  return tf.tidy(() => {
    const clsOut = tf.reshape(tf.slice(out, [0, 0, 0], [n, 1, cfg.width]), [n, cfg.width]);
    out.dispose();
    const normed = layerNormAt(ctx, `${prefix}.ln_post`, clsOut);
    return tf.matMul(normed as tf.Tensor2D, param(ctx, `${prefix}.proj`) as tf.Tensor2D);
  });
}
