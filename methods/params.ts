/**
 * Parameter selection (train modes) and the BatchNorm buffer rule.
 *
 * Modes (the seed's `--train-mode`): `whole` (every parameter but `logit_scale`), `image` (the
 * image tower), `text` (the text tower, i.e. everything outside `visual.` but `logit_scale`),
 * `image-fc` (image tower + the linear head), `image-fc-fixed` (image tower, head frozen), `fc`
 * (the linear head only: a linear probe). `freeze` additionally freezes the embeddings and the
 * projections.
 *
 * @module
 */

/** The train modes of the seed. */
export const TRAIN_MODES = [
  "whole",
  "image",
  "text",
  "image-fc",
  "image-fc-fixed",
  "fc",
] as const;

/** One of {@link TRAIN_MODES}. */
export type TrainMode = typeof TRAIN_MODES[number];

/** Name prefix of the linear head's parameters (`head.weight`), owned by the training run. */
export const HEAD_PREFIX = "head.";

/** Whether a key is a buffer, not a parameter (BatchNorm running statistics). */
export function isBufferKey(name: string): boolean {
  return /(^|\.)(running_mean|running_var|num_batches_tracked)$/.test(name);
}

/** Whether a key belongs to the embeddings or the projections (frozen by `--freeze`). */
export function isEmbeddingOrProjection(name: string): boolean {
  return name === "token_embedding.weight" || name === "positional_embedding" ||
    name === "text_projection" || name === "visual.proj" ||
    name === "visual.class_embedding" || name === "visual.positional_embedding" ||
    name === "visual.attnpool.positional_embedding" || name.startsWith("visual.attnpool.c_proj.") ||
    // ViT patch embedding (the ResNet stem conv1 is a feature layer, not an embedding)
    name === "visual.conv1.weight";
}

/** Options of {@link selectTrainable}. */
export interface SelectOptions {
  /** Freeze embeddings and projections (`--freeze`). */
  freeze?: boolean;
  /** Whether the model is a ViT (the patch embedding counts as an embedding only there). */
  vit?: boolean;
}

/**
 * The names (in the given order) of the parameters a train mode updates. `names` lists the
 * model's keys plus, for the `*fc*` modes, the head's keys (prefixed {@link HEAD_PREFIX}).
 * Buffers never train. Throws on an unknown mode, naming the valid ones.
 */
export function selectTrainable(
  names: Iterable<string>,
  mode: TrainMode | string,
  options: SelectOptions = {},
): string[] {
  if (!(TRAIN_MODES as readonly string[]).includes(mode)) {
    throw new Error(`unknown train mode "${mode}"; use one of ${TRAIN_MODES.join(", ")}`);
  }
  const vit = options.vit ?? true;
  const out: string[] = [];
  for (const n of names) {
    if (isBufferKey(n) || n === "logit_scale") continue;
    const head = n.startsWith(HEAD_PREFIX);
    const visual = n.startsWith("visual.");
    let take: boolean;
    switch (mode) {
      case "whole":
        take = !head;
        break;
      case "image":
      case "image-fc-fixed":
        take = visual;
        break;
      case "text":
        take = !visual && !head;
        break;
      case "image-fc":
        take = visual || head;
        break;
      default: // fc
        take = head;
    }
    if (take && options.freeze && !head && isEmbeddingOrProjection(n)) {
      if (n !== "visual.conv1.weight" || vit) take = false;
    }
    if (take) out.push(n);
  }
  return out;
}

/** Whether a train mode uses the linear head for its logits. */
export function usesHead(mode: TrainMode | string): boolean {
  return mode === "image-fc" || mode === "image-fc-fixed" || mode === "fc";
}

/**
 * Split a checkpoint's weights into the CLIP model's and the linear head's (`head.weight`,
 * `head.bias`, saved by the fc train modes), so that the model loads strictly.
 */
export function splitHead<T>(sd: ReadonlyMap<string, T>): {
  model: Map<string, T>;
  head?: Map<string, T>;
} {
  const model = new Map<string, T>();
  const head = new Map<string, T>();
  for (const [k, v] of sd) (k.startsWith(HEAD_PREFIX) ? head : model).set(k, v);
  return head.size ? { model, head } : { model };
}
