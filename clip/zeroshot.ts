/**
 * Zero-shot classification as the reference evaluation does it: one text embedding per class
 * (the normalised mean of the normalised embeddings of every prompt template), then
 * `100 · norm(image) · head` logits and softmax probabilities.
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import type { ClipModel } from "./types.ts";
import { tokenize, type Tokenizer, type Truncate } from "./tokenizers/tokenizer.ts";
import { l2Normalize } from "./model.ts";

/** A prompt template: a string where `{}` stands for the class name, or a function of it. */
export type Template = string | ((classname: string) => string);

/** Fill one template with a class name (every `{}` is replaced, as `str.format` with one arg). */
export function fillTemplate(template: Template, classname: string): string {
  return typeof template === "function"
    ? template(classname)
    : template.replaceAll("{}", classname);
}

/** Options of {@link zeroShotHead}. */
export interface ZeroShotHeadOptions {
  /** Tokenizer to use (default: `model.tokenizer` when set, else the process-wide BPE tokenizer). */
  tokenizer?: Tokenizer;
  /** Too-long prompts: as `tokenize` (default false: an error, as the reference). */
  truncate?: Truncate;
  /** Called after each class with (classes done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The class embedding of one class from its prompts' tokens `[t, contextLength]`:
 * `norm(mean(norm(encodeText(tokens))))` → `[embedDim]`.
 */
export function classEmbedding(model: ClipModel, tokens: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const feats = l2Normalize(model.encodeText(tokens));
    return l2Normalize(tf.mean(feats, 0)) as tf.Tensor1D;
  });
}

/** The zero-shot head `[embedDim, nClasses]` from per-class prompt tokens (see {@link classEmbedding}). */
export function zeroShotHeadFromTokens(
  model: ClipModel,
  tokensPerClass: tf.Tensor2D[],
): tf.Tensor2D {
  const cols = tokensPerClass.map((t) => classEmbedding(model, t));
  const head = tf.stack(cols, 1) as tf.Tensor2D;
  tf.dispose(cols);
  return head;
}

/**
 * The zero-shot classification head `[embedDim, nClasses]` (normalised columns): for each class,
 * every template is filled and tokenized, encoded, normalised, averaged and normalised again.
 */
export async function zeroShotHead(
  model: ClipModel,
  classnames: readonly string[],
  templates: readonly Template[],
  options: ZeroShotHeadOptions = {},
): Promise<tf.Tensor2D> {
  if (templates.length === 0) throw new Error("zeroShotHead needs at least one template");
  if (classnames.length === 0) throw new Error("zeroShotHead needs at least one class name");
  const cols: tf.Tensor1D[] = [];
  try {
    for (const [i, c] of classnames.entries()) {
      const prompts = templates.map((t) => fillTemplate(t, c));
      const tokens = model.tokenizer && !options.tokenizer
        ? model.tokenizer.tokenize(prompts, {
          contextLength: model.config.contextLength,
          truncate: options.truncate,
        })
        : await tokenize(prompts, {
          contextLength: model.config.contextLength,
          truncate: options.truncate,
          tokenizer: options.tokenizer,
        });
      try {
        cols.push(classEmbedding(model, tokens));
      } finally {
        tokens.dispose();
      }
      options.onProgress?.(i + 1, classnames.length);
    }
    return tf.stack(cols, 1) as tf.Tensor2D;
  } finally {
    tf.dispose(cols);
  }
}

/** Options of {@link classify}. */
export interface ClassifyOptions {
  /** How many top classes to return (default 5, at most the number of classes). */
  topk?: number;
}

/** Result of {@link classify}; the caller disposes the tensors. */
export interface ClassifyResult {
  /** `100 · norm(encodeImage(images)) · head`, `[n, nClasses]`. */
  logits: tf.Tensor2D;
  /** Softmax of `logits`. */
  probs: tf.Tensor2D;
  /** Top-k classes by probability: indices (int32) and probabilities, `[n, k]`. */
  topk: { indices: tf.Tensor2D; values: tf.Tensor2D };
}

/** Classify NHWC images with a zero-shot head (logit scale 100, as the reference evaluation). */
export function classify(
  model: ClipModel,
  head: tf.Tensor2D,
  images: tf.Tensor4D,
  options: ClassifyOptions = {},
): ClassifyResult {
  return tf.tidy(() => {
    const k = Math.min(options.topk ?? 5, head.shape[1]);
    const feats = l2Normalize(model.encodeImage(images));
    const logits = tf.mul(tf.matMul(feats as tf.Tensor2D, head), 100) as tf.Tensor2D;
    const probs = tf.softmax(logits, -1) as tf.Tensor2D;
    const { values, indices } = tf.topk(probs, k);
    return {
      logits,
      probs,
      topk: { indices: indices as tf.Tensor2D, values: values as tf.Tensor2D },
    };
  });
}
