/**
 * Datasets: readers, the registry, the batch loader and SynthMTIL.
 *
 * @module
 */
export * from "./rng.ts";
export * from "./transforms.ts";
export * from "./pool.ts";
export * from "./loader.ts";
export * from "./synth_render.ts";
export * from "./synth.ts";
export * from "./synth_domains.ts";
export * from "./types.ts";
export * from "./idx.ts";
export * from "./mat.ts";
export * from "./cifar.ts";
export * from "./image_folder.ts";
export * from "./archive.ts";
export * from "./sources.ts";
export * from "./download.ts";
export * from "./registry.ts";
