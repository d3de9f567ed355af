/**
 * The `deno task` entry points as functions over parsed flags, for scripts that want the command
 * line's behaviour: training, evaluation, task sequences, the demo, the embedded model's
 * pretraining and layer listing. Notebooks and programs use the typed library instead
 * (`trainTask`, `runSequence`, `evaluate`, `runDemo` from the root module). Each task's module
 * also runs as a program (`deno task <name> --help`).
 *
 * @module
 */
export { parseTrainArgs, runTrainFlags } from "./train.ts";
export { EVAL_FLAGS, parseEvalArgs, runEval, type TopEntry } from "./eval.ts";
export { parseSequenceArgs, runSequenceFlags, SEQUENCE_FLAGS } from "./sequence.ts";
export { main as demoMain } from "./demo.ts";
export { main as pretrainSynth, synthZeroShot } from "./pretrain_synth.ts";
export { linearPathsOf, modulePaths, type ParamRow, paramRowsOf } from "./list_layers.ts";
export {
  type FlagOptions,
  flagsHelp,
  listFlag,
  normalizeFlags,
  numberFlag,
  parseFlags,
  runWithPreloads,
  splitImports,
  TRAIN_FLAGS,
  trainOptionsFromFlags,
  validateTrainFlags,
} from "./train_flags.ts";
