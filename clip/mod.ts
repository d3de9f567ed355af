/**
 * CLIP models, checkpoints, tokenizer, preprocessing and compute backends.
 *
 * @module
 */
export * from "./state_dict.ts";
export { tf } from "./tf.ts";
export type * from "./types.ts";
