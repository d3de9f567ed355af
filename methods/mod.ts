/**
 * Continual-learning methods, the task-sequence protocol, MTIL metrics, plots and job scripts.
 *
 * @module
 */
export * from "./metrics.ts";
export * from "./plots.ts";
export * from "./protocol.ts";
export * from "./slurm.ts";
export * from "./adamw.ts";
export * from "./schedule.ts";
export * from "./losses.ts";
export * from "./params.ts";
export * from "./ensemble.ts";
export * from "./icarl.ts";
export * from "./train.ts";
export * from "./device_limits.ts";
export * from "./presets.ts";
export * from "./state.ts";
export * from "./evaluate.ts";
export * from "./data.ts";
export * from "./sequence.ts";
export * from "./pretrain.ts";
