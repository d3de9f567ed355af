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
export {
  attentionModulePaths,
  buildClip,
  type BuildClipOptions,
  Clip,
  type EntryKind,
  inferConfig,
  linearModulePaths,
  MODEL_CONFIGS,
  NON_PARAMETER_KEYS,
  randomStateDict,
  type Shaped,
  type ShapeEntry,
  stateDictShapes,
} from "./model.ts";
export * from "./zeroshot.ts";
export { type InitRule, initRule, reinitializeClip } from "./init.ts";
export {
  checkWeights,
  type ClipInfo,
  compareWeights,
  EMBEDDED_MODEL,
  EMBEDDED_MODEL_PATH,
  formatWeightsReport,
  loadClip,
  type LoadClipOptions,
  type LoadedClip,
  loadWeights,
  type LoadWeightsOptions,
  type Preprocess,
  saveClip,
  tokenizerMeta,
  type WeightsReport,
} from "./load.ts";
export * from "./formats/checkpoint.ts";
export {
  isNumpyArray,
  isTensorRef,
  type NumpyArray,
  type PyKey,
  type PyObject,
  type TorchStorageType,
  type TorchTensorRef,
  unpickle,
  type UnpickleOptions,
  type UnpickleResult,
} from "./formats/pickle.ts";
export * from "./formats/zip.ts";
export * from "./formats/hf_names.ts";
export {
  DTYPE_SIZE,
  floatToHalf,
  halfToFloat,
  readSafetensorsSource,
  type SafetensorsFile,
  writeFileAtomic,
  writeSafetensorsFile,
  type WriteSafetensorsOptions,
} from "./formats/safetensors.ts";
export * from "./download/download.ts";
export * from "./download/cache.ts";
export { ProgressBar, type ProgressOptions } from "./download/progress.ts";
export * from "./registry.ts";
export {
  BPE_VOCAB_FILE,
  cleanText,
  CONTEXT_LENGTH,
  EOT_TOKEN,
  loadTokenizer,
  type LoadTokenizerOptions,
  SOT_TOKEN,
  tokenize,
  type TokenizeOptions,
  type Tokenizer,
  tokenizerFromBytes,
  type Truncate,
} from "./tokenizers/tokenizer.ts";
export * from "./tokenizers/word_tokenizer.ts";
export { fixText, htmlUnescape } from "./tokenizers/ftfy.ts";
export {
  type Box,
  type DecodedPixels,
  decodeImage,
  type DecodeOptions,
  decodePixels,
  type DecoderName,
  encodePng,
  type ImageMode,
  type Pixels,
  resizeLikePil,
  type RgbImage,
} from "./images/image.ts";
export {
  centerCrop,
  centerCropRect,
  CLIP_MEAN,
  CLIP_STD,
  type CropBox,
  cropImage,
  makePreprocess,
  normalize,
  preprocessImage,
  type PreprocessOptions,
  preprocessPixels,
  resizeAndCenterCrop,
  resizeCenterCrop,
  resizeShortestSide,
} from "./images/preprocess.ts";
export type { LayerContext } from "./layers.ts";
