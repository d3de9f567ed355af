/**
 * mtil: continual learning of CLIP vision-language models in TypeScript on TensorFlow.js —
 * models and checkpoints (`clip`), training methods and the MTIL protocol (`methods`), LoRA
 * (`lora`), orthogonal gradient descent (`ogd`) and datasets (`datasets`).
 *
 * @module
 */
export * from "./clip/mod.ts";
export * from "./methods/mod.ts";
export * from "./lora/mod.ts";
export * from "./ogd/mod.ts";
export * from "./datasets/mod.ts";
export * from "./tasks/mod.ts";
export * from "./data/mod.ts";
export * from "./notebooks/mod.ts";
export type { tf } from "./clip/backends/tf.ts";
