/**
 * CLIP models in TensorFlow.js: the ViT and ModifiedResNet image towers and the text transformer
 * (parameters named by the reference state-dict keys), every checkpoint form (TorchScript,
 * `torch.save`, safetensors incl. Hugging Face names, ours), weights by name with a verified
 * download cache, the exact BPE tokenizer and image preprocessing, zero-shot heads, and the
 * compute-backend choice.
 *
 * @example
 * ```ts
 * import { classify, initBackend, loadClip, zeroShotHead } from "@mtil/mtil/clip";
 * await initBackend();
 * const { model, preprocess } = await loadClip("synth-tiny");
 * const head = await zeroShotHead(model, ["red", "blue"], ["a photo of a {} object."]);
 * ```
 *
 * @module
 */

export * from "./formats/state_dict.ts";
export type * from "./types.ts";
export * from "./backends/backend.ts";
export * from "./backends/webgpu.ts";
export * from "./model.ts";
export * from "./zeroshot.ts";
export * from "./load.ts";
export * from "./formats/checkpoint.ts";
export * from "./formats/pickle.ts";
export * from "./formats/zip.ts";
export * from "./formats/hf_names.ts";
export * from "./download/download.ts";
export * from "./download/cache.ts";
export * from "./download/progress.ts";
export * from "./registry.ts";
export * from "./tokenizers/tokenizer.ts";
export * from "./tokenizers/word_tokenizer.ts";
export * from "./tokenizers/ftfy.ts";
export * from "./images/image.ts";
export * from "./images/preprocess.ts";
export * from "./formats/safetensors.ts";
export type { LayerContext } from "./layers.ts";
