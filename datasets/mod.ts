/**
 * Datasets: readers, the registry, the batch loader and SynthMTIL.
 *
 * @module
 */
export { hashSeed, Rng, type RngState } from "./rng.ts";
export {
  applyTransform,
  decodeAndTransform,
  evalTransform,
  type EvalTransformSpec,
  normalizeImage,
  type NormalizeOptions,
  normalizeTransform,
  type NormalizeTransformSpec,
  type PilImage,
  randomResizedCropParams,
  trainTransform,
  type TrainTransformSpec,
  transformGeometry,
  type TransformSpec,
} from "./transforms.ts";
export * from "./pool.ts";
export * from "./loader.ts";
export * from "./synth_render.ts";
export * from "./synth.ts";
export * from "./synth_domains.ts";
export * from "./types.ts";
export {
  IDX_DTYPES,
  type IdxArray,
  type IdxDtype,
  IdxFormatError,
  IdxImageDataset,
  type IdxImageDatasetOptions,
  type IdxOptions,
  parseIdx,
  readIdx,
} from "./idx.ts";
export * from "./mat.ts";
export * from "./cifar.ts";
export * from "./image_folder.ts";
export * from "./archive.ts";
export * from "./sources.ts";
export * from "./download.ts";
export * from "./registry.ts";
