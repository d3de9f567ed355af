/**
 * The contract of a CLIP model in this library. `clip/model.ts` implements it; training, LoRA,
 * OGD, averaging and checkpoint IO depend only on this file.
 *
 * @module
 */
import type { tf } from "./backends/tf.ts";
import type { StateDict } from "./formats/state_dict.ts";

/** Hyperparameters inferred from a state dict exactly as the reference `build_model` does. */
export interface ClipConfig {
  /** `"vit"` iff the state dict has `visual.proj`, else `"resnet"` (ModifiedResNet). */
  vision: "vit" | "resnet";
  /** Joint embedding width (`text_projection.shape[1]`). */
  embedDim: number;
  /** Input image side in pixels. */
  imageResolution: number;
  /** ViT: number of residual blocks; ResNet: blocks per stage (4 numbers). */
  visionLayers: number | number[];
  /** ViT: `conv1.weight.shape[0]`; ResNet: `layer1.0.conv1.weight.shape[0]`... (reference rule). */
  visionWidth: number;
  /** ViT only: patch size. */
  visionPatchSize?: number;
  /** Text context length (`positional_embedding.shape[0]`), 77 for OpenAI models. */
  contextLength: number;
  /** Token vocabulary size. */
  vocabSize: number;
  /** Text transformer width. */
  transformerWidth: number;
  /** Text transformer heads (`width / 64`). */
  transformerHeads: number;
  /** Text transformer depth. */
  transformerLayers: number;
}

/**
 * An extra term added to the output of one dense (linear) projection: the layer computes
 * `y = x·Wᵀ + b + hook(x)`. LoRA installs these. For the packed q/k/v projection of an attention
 * block (`<block>.attn.in_proj_weight`), the hook's output has the full `3·width` last dimension.
 */
export type DenseHook = (x: tf.Tensor) => tf.Tensor;

/**
 * An extra term added to the output of one attention block before its output projection: the
 * block computes `out_proj(attention(q, k, v) + hook(q))`. `q` holds the block's projected
 * queries split into heads, `[n·heads, length, headDim]` (row `i·heads + h` is head `h` of
 * sequence `i`), not yet scaled; the hook returns a tensor of the same shape. DIKI's prefix
 * attention installs these (`methods/diki/`). Without a hook the block is unchanged.
 */
export type AttentionHook = (q: tf.Tensor3D, n: number, heads: number) => tf.Tensor3D;

/**
 * Turns texts into token-id rows for a model's text tower. The default is the CLIP BPE tokenizer
 * (`clip/tokenizers/tokenizer.ts`); small models trained here (SynthMTIL) carry a word-level one.
 */
export interface TextTokenizer {
  /** Token ids `[n, contextLength]` int32; the end-of-text token has the largest id of a row. */
  tokenize(
    texts: string[],
    options?: { contextLength?: number; truncate?: boolean | "cut" },
  ): tf.Tensor2D;
}

/** Outputs of {@link ClipModel.forward}. */
export interface ClipLogits {
  /** `[nImages, nTexts]`: `exp(logit_scale) · norm(img) · norm(text)ᵀ`. */
  logitsPerImage: tf.Tensor2D;
  /** The transpose of `logitsPerImage`. */
  logitsPerText: tf.Tensor2D;
}

/** Options of {@link ClipModel.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Reject missing or unexpected keys (default true). Shapes must always match. */
  strict?: boolean;
}

/** A CLIP model whose parameters are tf.Variables keyed by reference state-dict names. */
export interface ClipModel {
  /** Inferred hyperparameters. */
  readonly config: ClipConfig;
  /**
   * Every parameter and buffer, keyed exactly by the reference state-dict key
   * (e.g. `visual.transformer.resblocks.0.mlp.c_fc.weight`, `logit_scale`). Buffers such as
   * BatchNorm running statistics are non-trainable variables.
   */
  readonly params: Map<string, tf.Variable>;
  /**
   * Dense hooks by module path: `"<block>.attn"` (packed q/k/v in-projection),
   * `"<block>.attn.out_proj"`, `"<block>.mlp.c_fc"`, `"<block>.mlp.c_proj"`,
   * `"visual.attnpool.q_proj"` etc. Empty by default.
   */
  readonly denseHooks: Map<string, DenseHook>;
  /**
   * Attention hooks by attention module path (`"<block>.attn"`, e.g.
   * `"visual.transformer.resblocks.0.attn"`, `"transformer.resblocks.3.attn"`); see
   * {@link AttentionHook}. Optional for other implementations of this interface; `Clip` has it.
   */
  readonly attentionHooks?: Map<string, AttentionHook>;
  /**
   * The tokenizer this model's text tower expects, when it is not the CLIP BPE tokenizer.
   * Everything that tokenizes prompts for a model (zero-shot heads, training) must use
   * `model.tokenizer` when it is set, and the BPE `tokenize` otherwise.
   */
  tokenizer?: TextTokenizer;
  /** Whether stochastic/batch-statistics behaviour is on (BatchNorm uses batch stats). */
  training: boolean;
  /** Images NHWC float32 (already preprocessed) → un-normalised features `[n, embedDim]`. */
  encodeImage(images: tf.Tensor4D): tf.Tensor2D;
  /** Token ids `[n, contextLength]` int32 → un-normalised features `[n, embedDim]`. */
  encodeText(tokens: tf.Tensor2D): tf.Tensor2D;
  /** Both towers and the scaled cosine logits. */
  forward(images: tf.Tensor4D, tokens: tf.Tensor2D): ClipLogits;
  /** A copy of every parameter and buffer as float32 raw tensors, reference key order. */
  stateDict(): StateDict;
  /** Assign values from a state dict (shapes must match). */
  loadStateDict(dict: StateDict, options?: LoadStateDictOptions): void;
  /** Module paths of the dense layers (what `list-layers --linear-only` prints). */
  linearPaths(): string[];
  /** Free every variable. */
  dispose(): void;
}
