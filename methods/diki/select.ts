/**
 * DIKI's task-id-free selection, on the host: each image's best task by log-probability, its
 * weight `w = sigmoid(lp/scale − 1)`, the batch vote and the text weight.
 *
 * @module
 */

/** Default of the weight scale: the reference's hard-coded 512 (ViT-B/16's embedding width). */
export const DEFAULT_WEIGHT_SCALE = 512;

/** What {@link selectTask} decides for a batch. */
export interface TaskSelection {
  /** Each image's own best task. */
  rawTasks: number[];
  /** The task the whole batch uses: the most frequent of `rawTasks` (ties: the lowest id). */
  task: number;
  /** Images that voted for each task. */
  votes: number[];
  /** Each image's weight `sigmoid(lp/scale − 1)` from its own best log-probability. */
  weights: Float64Array;
  /** The text side's weight: the mean of `weights`. */
  textWeight: number;
}

/** `1/(1 + e^(−x))` in float64. */
export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/**
 * Select the batch's task from per-image log-probabilities `logProbs[i][t]` (image i, learnt
 * task t). Each image keeps its own weight even when its best task lost the vote, as the
 * reference does. Ties in the vote (undefined in the reference: `torch.unique` + `topk`) go to
 * the lowest task id.
 */
export function selectTask(
  logProbs: ArrayLike<number>[],
  weightScale = DEFAULT_WEIGHT_SCALE,
): TaskSelection {
  if (logProbs.length === 0) throw new Error("DIKI: an empty batch has no task to select");
  const tasks = logProbs[0].length;
  if (tasks === 0) throw new Error("DIKI: no task has a Gaussian yet");
  const rawTasks: number[] = [];
  const weights = new Float64Array(logProbs.length);
  const votes = new Array(tasks).fill(0);
  logProbs.forEach((lp, i) => {
    let best = 0;
    for (let t = 1; t < tasks; t++) if (lp[t] > lp[best]) best = t;
    rawTasks.push(best);
    votes[best]++;
    weights[i] = sigmoid(lp[best] / weightScale - 1);
  });
  let task = 0;
  for (let t = 1; t < tasks; t++) if (votes[t] > votes[task]) task = t;
  let s = 0;
  for (const w of weights) s += w;
  return { rawTasks, task, votes, weights, textWeight: s / weights.length };
}
