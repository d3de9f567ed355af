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

export * from "./state_dict.ts";
export type * from "./types.ts";
export * from "./backend.ts";
export * from "./model.ts";
export * from "./zeroshot.ts";
export * from "./load.ts";
export * from "./checkpoint.ts";
export * from "./pickle.ts";
export * from "./zip.ts";
export * from "./hf_names.ts";
export * from "./download.ts";
export * from "./cache.ts";
export * from "./progress.ts";
export * from "./registry.ts";
export * from "./tokenizer.ts";
export * from "./word_tokenizer.ts";
export * from "./ftfy.ts";
export * from "./image.ts";
export * from "./preprocess.ts";
export * from "./safetensors.ts";
export type { LayerContext } from "./layers.ts";
