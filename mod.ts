/**
 * mtil: continual learning of CLIP vision-language models in TypeScript on TensorFlow.js.
 *
 * @module
 */
export * from "./clip/mod.ts";
