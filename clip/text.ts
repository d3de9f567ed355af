/**
 * The reference text tower (`CLIP.encode_text`): token + positional embedding, a causal
 * transformer (`transformer.resblocks.*`), `ln_final`, the features at the end-of-text position
 * (the argmax of the token ids) and `text_projection`.
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import { causalMask, type LayerContext, layerNormAt, param, transformer } from "./layers.ts";

/** Hyperparameters of the text transformer. */
export interface TextConfig {
  /** Tokens per text (77 for OpenAI models). */
  contextLength: number;
  /** Transformer width. */
  width: number;
  /** Transformer depth. */
  layers: number;
  /** Attention heads (`width / 64` in the reference). */
  heads: number;
}

/** `CLIP.encode_text`: int32 token ids `[n, contextLength]` → `[n, embedDim]`. */
export function textTransformer(
  ctx: LayerContext,
  cfg: TextConfig,
  tokens: tf.Tensor2D,
): tf.Tensor2D {
  const [n, l] = tokens.shape;
  if (l !== cfg.contextLength) {
    throw new Error(
      `the text tower expects tokens [n, ${cfg.contextLength}], got [${tokens.shape}] ` +
        `(tokenize with contextLength ${cfg.contextLength})`,
    );
  }
  const ids = tokens.dtype === "int32" ? tokens : tf.cast(tokens, "int32");
  const x = tf.tidy(() =>
    tf.add(tf.gather(param(ctx, "token_embedding.weight"), ids), param(ctx, "positional_embedding"))
  );
  const mask = causalMask(l);
  const h = transformer(ctx, "transformer.resblocks", cfg.layers, x, cfg.heads, mask);
  x.dispose();
  mask.dispose();
  const out = tf.tidy(() => {
    const normed = layerNormAt(ctx, "ln_final", h);
    h.dispose();
    const eot = tf.add(
      tf.argMax(ids, 1),
      tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(l, "int32")),
    );
    const feats = tf.gather(tf.reshape(normed, [n * l, cfg.width]), eot);
    return tf.matMul(
      feats as tf.Tensor2D,
      param(ctx, "text_projection") as tf.Tensor2D,
    ) as tf.Tensor2D;
  });
  if (ids !== tokens) ids.dispose();
  return out;
}
