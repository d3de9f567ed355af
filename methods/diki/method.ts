/**
 * DIKI as a {@link Method}: `dikiMethod({ tasks })` for `trainTask` / `runSequence`, registered
 * as `--method DIKI` with its flags. One instance carries the DIKI state (prefix pools and
 * per-task Gaussians) across the tasks of a sequence; `saveState` / `loadState` keep it in
 * `diki.safetensors` of the save folder (with the learnt tasks' names), so a killed run resumes
 * between tasks; mid-task, the engine's training state holds the pools. Evaluation uses DIKI's
 * own inference path (task-id free by default; `taskIdKnown` uses each learnt dataset's own
 * prefixes) and reports how often the task vote chose the dataset's task (`voteAccuracy`).
 *
 * @example
 * ```ts
 * import { dikiMethod, runSequence } from "jsr:@mtil/mtil/methods";
 * import { loadClip } from "jsr:@mtil/mtil/clip";
 *
 * const { model } = await loadClip("synth-tiny");
 * const order = ["Synth-shape", "Synth-colour"];
 * const r = await runSequence(model, order, {
 *   dir: "runs/diki",
 *   method: dikiMethod({ tasks: order.length, depthVision: 2, depthText: 2 }),
 *   epochs: 1,
 *   batchSize: 32,
 * });
 * console.log(r.scores);
 * ```
 *
 * @module
 */
import { readCheckpoint } from "../../clip/formats/checkpoint.ts";
import type { ClipModel } from "../../clip/types.ts";
import type { Dataset } from "../../datasets/types.ts";
import { tokenizeFor } from "../evaluate.ts";
import { parseNumberFlag } from "../flags.ts";
import {
  type FlagValues,
  type Method,
  type MethodClassifier,
  type MethodDefinition,
  registerMethod,
} from "../method.ts";
import { resolveOrder } from "../protocol.ts";
import { Diki, DIKI_RECIPE, type DikiOptions } from "./diki.ts";
import { dikiPrompts } from "./evaluate.ts";
import { dikiOptionsFromFlags } from "./flags.ts";
import { loadDiki, saveDiki } from "./io.ts";

/** Options of {@link dikiMethod}: DIKI's, with `tasks` defaulting to 1. */
export interface DikiMethodOptions extends Partial<DikiOptions> {
  /** Evaluate each learnt dataset with its own task's prefixes (task id known). */
  taskIdKnown?: boolean;
  /** Batches whose images fit a task's Gaussian (default one epoch). */
  gaussianBatches?: number;
}

/** File of the DIKI state in a save folder. */
export const DIKI_STATE_FILE = "diki.safetensors";

/** The DIKI method (see the module documentation). `state()` gives its current {@link Diki}. */
export function dikiMethod(
  options: DikiMethodOptions = {},
): Method & { state(): Diki | undefined; learnt(): readonly string[] } {
  let d: Diki | undefined;
  let learned: string[] = [];
  const ensure = (model: ClipModel): Diki => {
    if (d && d.model !== model) {
      throw new Error("DIKI: one dikiMethod() instance serves one model; make a new one");
    }
    d ??= new Diki(model, { ...options, tasks: options.tasks ?? 1 });
    return d;
  };
  return {
    name: "DIKI",
    options,
    state: () => d,
    learnt: () => learned,
    setup(ctx) {
      const s = ensure(ctx.model);
      let t = learned.indexOf(ctx.dataset.name);
      if (t < 0) t = learned.length;
      if (t >= s.options.tasks) {
        throw new Error(
          `DIKI was made for ${s.options.tasks} task(s) and has learnt ${learned.join(", ")}: ` +
            `give tasks ≥ ${t + 1} (--diki-tasks, or the sequence's --order)`,
        );
      }
      const setup = s.trainSetup(t, { gaussianBatches: options.gaussianBatches });
      // DIKI's own cross-entropy (no label smoothing) is among its parts
      return { parts: setup.parts, trainOptions: setup.options, replacesCrossEntropy: true };
    },
    afterTask(ctx) {
      if (!learned.includes(ctx.dataset.name)) learned.push(ctx.dataset.name);
    },
    async saveState(dir) {
      if (d) await saveDiki(`${dir}/${DIKI_STATE_FILE}`, d, { learned });
    },
    async loadState(dir, model) {
      const path = `${dir}/${DIKI_STATE_FILE}`;
      try {
        await Deno.stat(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return; // nothing learnt yet
        throw e;
      }
      const meta = (await readCheckpoint(path)).meta;
      const names = meta.learned;
      if (!Array.isArray(names) || names.some((n) => typeof n !== "string")) {
        throw new Error(`${path}: no list of learnt tasks; delete it to start DIKI over`);
      }
      d?.dispose();
      d = await loadDiki(path, model);
      learned = names as string[];
    },
    taskDone: (name) => learned.includes(name),
    async classifier(model: ClipModel, dataset: Dataset): Promise<MethodClassifier | undefined> {
      if (!d || d.learnt === 0) return undefined; // nothing learnt: zero-shot CLIP
      if (d.model !== model) throw new Error("DIKI: evaluating another model than DIKI's");
      const template = dataset.templates[0];
      if (!template) throw new Error(`${dataset.name}: no prompt template for DIKI's text side`);
      const tokens = await tokenizeFor(model, dikiPrompts(dataset.classnames, template), true);
      const own = learned.indexOf(dataset.name);
      const p = d.predictor(tokens, options.taskIdKnown ? { taskId: own } : {});
      return {
        predict: (images) => p.predict(images),
        details: () => {
          const out: Record<string, number> = {};
          if (own >= 0 && p.stats.images > 0) {
            out.voteAccuracy = (100 * p.stats.imagesPerTask[own]) / p.stats.images;
          }
          return out;
        },
        dispose: () => tokens.dispose(),
      };
    },
  };
}

function taskCount(f: FlagValues): number {
  const explicit = parseNumberFlag("diki-tasks", f["diki-tasks"], { integer: true, min: 1 });
  if (explicit !== undefined) return explicit;
  if (typeof f.order === "string" && f.order) return resolveOrder(f.order).length;
  if (typeof f["dataset-order"] === "string") {
    return f["dataset-order"].split(",").filter((s) => s.trim()).length;
  }
  return 1;
}

/** The definition of `DIKI` (flags, help, factory). */
export const DIKI: MethodDefinition<DikiMethodOptions> = {
  name: "DIKI",
  summary: `DIKI (ECCV 2024): frozen CLIP, per-task prefix pools (SGD lr ${DIKI_RECIPE.lr}, ` +
    `cosine), task chosen at test time by per-task Gaussians`,
  flags: {
    "diki-tasks": { type: "string", description: "pool rows (default: the order's length)" },
    "diki-depth-vision": { type: "string", description: "image blocks with prefixes (8)" },
    "diki-depth-text": { type: "string", description: "text blocks with prefixes (8)" },
    "diki-prefix-len-vision": { type: "string", description: "image prefix length (8)" },
    "diki-prefix-len-text": { type: "string", description: "text prefix length (8)" },
    "diki-weight-scale": { type: "string", description: "w = sigmoid(lp/X − 1) (512)" },
    "diki-task-id-known": { type: "boolean", default: false, description: "eval with own task" },
  },
  fromFlags: (f) => ({
    ...dikiOptionsFromFlags(f, taskCount(f)),
    taskIdKnown: !!f["diki-task-id-known"],
  }),
  create: dikiMethod,
};

registerMethod(DIKI);
