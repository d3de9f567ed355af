/**
 * DIKI (ECCV 2024): prefix pools on a frozen CLIP, per-task Gaussians, task-id-free inference.
 * See `diki.ts` for the method, `prefix.ts`, `gaussian.ts`, `select.ts` for its parts and
 * `io.ts` for checkpoints. Importing this module registers the `DIKI` method.
 *
 * @module
 */
export * from "./diki.ts";
export * from "./prefix.ts";
export * from "./gaussian.ts";
export * from "./select.ts";
export * from "./io.ts";
export * from "./method.ts";
export * from "./evaluate.ts";
export * from "./flags.ts";
