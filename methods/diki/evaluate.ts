/**
 * DIKI's inference path in evaluation and the accuracy matrix: {@link evaluateDiki} evaluates a
 * dataset through {@link Diki.predictor} (task-id free by default, task-id known on request) and
 * reports how often the task vote picked the dataset's own task.
 *
 * @module
 */
import type { tf } from "../../clip/backends/tf.ts";
import { fillTemplate, type Template } from "../../clip/zeroshot.ts";
import type { Dataset } from "../../datasets/types.ts";
import {
  type EvalResult,
  evaluateDataset,
  type EvaluateOptions,
  tokenizeFor,
} from "../evaluate.ts";
import type { Diki } from "./diki.ts";

/**
 * DIKI's class prompts: the template filled with each class name, then `_` → space on the whole
 * string (the reference replaces underscores after formatting).
 */
export function dikiPrompts(classnames: readonly string[], template: Template): string[] {
  return classnames.map((c) => fillTemplate(template, c).replaceAll("_", " "));
}

/** Options of {@link evaluateDiki}. */
export interface EvaluateDikiOptions
  extends Pick<EvaluateOptions, "batchSize" | "limit" | "workers" | "onProgress"> {
  /** Prompt template (default: the dataset's first, its training prompt). */
  template?: Template;
  /** Evaluate with this task's prefixes at weight 1 (task id known) instead of the vote. */
  taskId?: number;
  /**
   * The dataset's own task in the sequence, if it has one: the result then says how often the
   * vote chose it (`voteAccuracy`).
   */
  expectedTask?: number;
}

/** {@link EvalResult} plus DIKI's task statistics. */
export interface DikiEvalResult extends EvalResult {
  /** Images whose batch used each task (task-id free path; all on `taskId` when known). */
  imagesPerTask: number[];
  /** Share (percent) of images whose batch used `expectedTask`, when it was given. */
  voteAccuracy?: number;
}

/**
 * The reference's evaluation batch (2·128: its `batchwise_prompt` doubles the batch size). The
 * task vote is per batch, so the batch size matters for the task-id-free path.
 */
export const DIKI_EVAL_BATCH = 256;

/**
 * Top-1 / top-5 of DIKI on a dataset (batches of {@link DIKI_EVAL_BATCH} by default, as the
 * reference: the vote is per batch).
 */
export async function evaluateDiki(
  d: Diki,
  dataset: Dataset,
  options: EvaluateDikiOptions = {},
): Promise<DikiEvalResult> {
  const template = options.template ?? dataset.templates[0];
  if (!template) throw new Error(`${dataset.name}: no prompt template for DIKI's text side`);
  const tokens: tf.Tensor2D = await tokenizeFor(
    d.model,
    dikiPrompts(dataset.classnames, template),
    true,
  );
  try {
    const p = d.predictor(tokens, { taskId: options.taskId });
    const r = await evaluateDataset(d.model, dataset, {
      batchSize: options.batchSize ?? DIKI_EVAL_BATCH,
      limit: options.limit,
      workers: options.workers,
      onProgress: options.onProgress,
      predict: p.predict,
    });
    const out: DikiEvalResult = { ...r, imagesPerTask: [...p.stats.imagesPerTask] };
    if (options.expectedTask !== undefined) {
      out.voteAccuracy = (100 * (p.stats.imagesPerTask[options.expectedTask] ?? 0)) /
        p.stats.images;
    }
    return out;
  } finally {
    tokens.dispose();
  }
}
