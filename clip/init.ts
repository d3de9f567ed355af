/**
 * Re-initialisation of a loaded CLIP, as the reference's `--untrained` does it: a model of the
 * same architecture with fresh weights, for training from scratch.
 *
 * Rules (the reference re-initialises by module type):
 * - every linear and convolution weight ~ N(0, 0.02), their biases 0 — the attention output
 *   projection and the ResNet attention pool's q/k/v/c projections included;
 * - embeddings (`token_embedding.weight`) ~ N(0, 0.02); `visual.class_embedding` ~ N(0, 0.02);
 * - LayerNorm weight 1, bias 0;
 * - `logit_scale` 0;
 * - the text and ViT positional embeddings ~ N(0, 0.01);
 * - kept as loaded: the packed attention input projection (`in_proj_weight`, `in_proj_bias`: not
 *   a linear module in PyTorch), `text_projection`, `visual.proj`, the ResNet attention pool's
 *   positional embedding, and BatchNorm (weights, biases, running statistics).
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import type { ClipModel } from "./types.ts";
import { mulberry32 } from "../datasets/rng.ts";

/** What {@link reinitializeClip} does to one parameter. */
export type InitRule =
  | { kind: "normal"; std: number }
  | { kind: "constant"; value: number }
  | { kind: "keep" };

const BATCH_NORM = /(^|\.)(bn\d|downsample\.1)\./;
const LAYER_NORM = /(^|\.)ln(_\w+|_\d)?\.(weight|bias)$/;
const KEPT = new Set(["text_projection", "visual.proj", "visual.attnpool.positional_embedding"]);

/** The re-initialisation rule of a parameter, from its key and shape. */
export function initRule(key: string, shape: readonly number[]): InitRule {
  if (KEPT.has(key) || /\.in_proj_(weight|bias)$/.test(key) || BATCH_NORM.test(key)) {
    return { kind: "keep" };
  }
  if (/(running_mean|running_var|num_batches_tracked)$/.test(key)) return { kind: "keep" };
  if (LAYER_NORM.test(key)) return { kind: "constant", value: key.endsWith("weight") ? 1 : 0 };
  if (key === "logit_scale") return { kind: "constant", value: 0 };
  if (key === "positional_embedding" || key === "visual.positional_embedding") {
    return { kind: "normal", std: 0.01 };
  }
  if (key === "visual.class_embedding" || key === "token_embedding.weight") {
    return { kind: "normal", std: 0.02 };
  }
  if (key.endsWith(".bias")) return { kind: "constant", value: 0 };
  if (key.endsWith(".weight") && (shape.length === 2 || shape.length === 4)) {
    return { kind: "normal", std: 0.02 };
  }
  throw new Error(`reinitializeClip: no rule for parameter ${key} [${shape.join(", ")}]`);
}

/**
 * Give `model` fresh weights by the reference's `--untrained` rules (see the module
 * documentation), seeded: the same seed gives the same weights. Returns how many parameters were
 * re-initialised and how many kept.
 */
export function reinitializeClip(model: ClipModel, seed = 0): { reset: number; kept: number } {
  const next = mulberry32(seed);
  const normal = (n: number, std: number) => {
    // Box–Muller on mulberry32 uniforms (1 − u avoids log 0)
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - next()));
      const t = 2 * Math.PI * next();
      out[i] = std * r * Math.cos(t);
      if (i + 1 < n) out[i + 1] = std * r * Math.sin(t);
    }
    return out;
  };
  let reset = 0, kept = 0;
  for (const key of [...model.params.keys()].sort()) {
    const v = model.params.get(key)!;
    const rule = initRule(key, v.shape);
    if (rule.kind === "keep") {
      kept++;
      continue;
    }
    const data = rule.kind === "normal"
      ? normal(v.size, rule.std)
      : new Float32Array(v.size).fill(rule.value);
    const t = tf.tensor(data, v.shape, v.dtype);
    v.assign(t);
    t.dispose();
    reset++;
  }
  return { reset, kept };
}
