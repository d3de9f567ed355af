/**
 * mtil: continual learning of CLIP vision-language models in TypeScript on TensorFlow.js.
 *
 * This root module is the curated API a notebook or program reaches for: loading CLIP and its
 * preprocessing, tokenizing, zero-shot heads and classification, datasets, one training task
 * (`trainTask`), a whole task sequence (`runSequence`), evaluation, the method factories, LoRA
 * and OGD, the MTIL scores and plots, and the backend choice. Each folder's full API is a subpath
 * export: `@mtil/mtil/clip`, `/datasets`, `/methods`, `/lora`, `/ogd`, `/tf` (the TensorFlow.js
 * instance mtil computes with) and `/tasks` (the command-line entry points as functions).
 *
 * @example Zero-shot classification
 * ```ts
 * import { classify, initBackend, loadClip, loadDataset, zeroShotHead } from "jsr:@mtil/mtil";
 * import { tf } from "jsr:@mtil/mtil/tf";
 *
 * await initBackend({ quiet: true });
 * const { model, preprocess } = await loadClip("synth-tiny"); // bundled: no download
 * const test = await loadDataset("Synth-colour", { split: "test" });
 * const head = await zeroShotHead(model, test.classnames, test.templates);
 * const image = await preprocess(await Deno.readFile("cat.png"));
 * const { topk } = classify(model, head, tf.expandDims(image, 0) as tf.Tensor4D, { topk: 3 });
 * console.log(await topk.indices.array(), await topk.values.array());
 * ```
 *
 * @example A short continual-learning run
 * ```ts
 * import { finetune, formatMatrix, loadClip, runSequence, trainTask, zscl } from "jsr:@mtil/mtil";
 *
 * const { model } = await loadClip("synth-tiny");
 * // one task
 * const one = await trainTask(model, "Synth-shape", { method: finetune(), iterations: 20, log: "silent" });
 * console.log(one.losses.at(-1), one.trainableParameters);
 * // a sequence: accuracy matrix and MTIL scores, resumable from its folder
 * const { model: fresh } = await loadClip("synth-tiny");
 * const seq = await runSequence(fresh, ["Synth-shape", "Synth-colour"], {
 *   dir: "runs/readme",
 *   method: zscl({ refDataset: "Synth-captions", refSentences: { dataset: "Synth-captions" } }),
 *   iterations: 20,
 *   batchSize: 16,
 *   lr: 5e-4,
 *   evalLimit: 100,
 * });
 * console.log(formatMatrix(seq.matrix), seq.scores);
 * ```
 *
 * @module
 */
// models
export {
  availableModels,
  buildClip,
  type Checkpoint,
  classify,
  type ClipConfig,
  type ClipInfo,
  type ClipModel,
  loadClip,
  type LoadClipOptions,
  type LoadedClip,
  readCheckpoint,
  saveCheckpoint,
  saveClip,
  type StateDict,
  zeroShotHead,
} from "./clip/mod.ts";
export { loadTokenizer, tokenize, type Tokenizer } from "./clip/mod.ts";
export { encodePng, makePreprocess, preprocessImage } from "./clip/mod.ts";
export { availableBackends, backendReport, initBackend } from "./clip/mod.ts";
export type { tf } from "./clip/backends/tf.ts";
// datasets
export {
  type Dataset,
  DATASET_NAMES,
  loadDataset,
  type LoadDatasetOptions,
  normalizeImage,
  SYNTH_ORDER,
  synthCaptions,
  synthTask,
} from "./datasets/mod.ts";
// training, methods, sequences, evaluation
export {
  type AveragingOptions,
  DEMO_TASKS,
  demoRecipe,
  type DemoRun,
  type EvalResult,
  evaluate,
  evaluateDataset,
  finetune,
  icarl,
  type IcarlMethodOptions,
  type LogLevel,
  lwf,
  type LwfMethodOptions,
  type Method,
  type MethodContext,
  type MethodDefinition,
  methodNames,
  registerMethod,
  runDemo,
  runSequence,
  type RunSequenceOptions,
  type RunSequenceResult,
  type StepRecord,
  type TrainPart,
  trainTask,
  type TrainTaskOptions,
  type TrainTaskResult,
  wiseFt,
  zscl,
  type ZsclMethodOptions,
} from "./methods/mod.ts";
// scores and plots
export {
  accuracyCurvesSvg,
  type AccuracyMatrix,
  barChartSvg,
  formatMatrix,
  formatScores,
  heatmapSvg,
  learningGains,
  MTIL_ORDERS,
  type MtilScores,
  mtilScores,
  publishedScores,
  resolveOrder,
  roundScores,
  type SequenceMatrix,
  sideBySide,
  svgToPng,
  writePlots,
} from "./methods/mod.ts";
// LoRA and OGD
export {
  injectLora,
  loadAdapterStateDict,
  type LoraOptions,
  loraParameterCounts,
  type LoraState,
  mergedStateDict,
  removeLora,
} from "./lora/mod.ts";
export { loadBases, ogdPart, type OgdPartOptions } from "./ogd/mod.ts";
// notebook display helpers
export { pngImgTag, svgBundle } from "./notebooks/mod.ts";
