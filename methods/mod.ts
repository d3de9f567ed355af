/**
 * Continual-learning methods, the task-sequence protocol, MTIL metrics, plots and job scripts.
 *
 * @module
 */
export * from "./metrics.ts";
export * from "./plots.ts";
export * from "./protocol.ts";
export * from "./slurm.ts";
