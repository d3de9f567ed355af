/**
 * Continual-learning methods, the task-sequence protocol, MTIL metrics, plots and job scripts.
 *
 * @module
 */
export {
  type AccuracyMatrix,
  fromAlphabetical,
  learningGains,
  type MtilScores,
  mtilScores,
  parseAccuracyMatrix,
  referenceStatistics,
  type RoundedScores,
  roundScores,
  scoresOfSquare,
  taskSquare,
  validateMatrix,
  zeroShotScores,
} from "./metrics.ts";
export * from "./plots.ts";
export * from "./protocol.ts";
export * from "./slurm.ts";
export * from "./sweep.ts";
export * from "./summary.ts";
export * from "./k8s.ts";
export * from "./adamw.ts";
export * from "./sgd.ts";
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
export * from "./method.ts";
export * from "./builtin.ts";
export * from "./trainer.ts";
export * from "./run_sequence.ts";
export * from "./report.ts";
export * from "./demo.ts";
export * from "./features.ts";
export * from "./fingerprint.ts";
export * from "./flags.ts";
export * from "./diki/mod.ts";
