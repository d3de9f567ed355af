/**
 * The `deno task` entry points as functions, for scripts and notebooks: training, evaluation,
 * task sequences, the demo, the embedded model's pretraining, layer listing, summaries, SLURM
 * scripts and downloads. Each task's module also runs as a program (`deno task <name> --help`).
 *
 * @module
 */
export {
  type MethodHook,
  parseTrainArgs,
  runIcarl,
  runTrain,
  TRAIN_FLAGS,
  type TrainArgs,
} from "./train.ts";
export { parseEvalArgs, runEval, type TopEntry } from "./eval.ts";
export {
  formatMatrix,
  formatScores,
  parseSequenceArgs,
  runSequenceArgs,
  SEQUENCE_FLAGS,
} from "./sequence.ts";
export { demoArgs, main as runDemo, sideBySide } from "./demo.ts";
export { main as pretrainSynth, synthZeroShot } from "./pretrain_synth.ts";
export { linearPathsOf, modulePaths, type ParamRow, paramRowsOf } from "./list_layers.ts";
export { parseArgs } from "./cli.ts";
