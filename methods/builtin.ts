/**
 * The methods of the reference code as factories, each registered with its flags: `finetune`,
 * `lwf` (and LwF-VR), `ZSCL` and `icarl`. Importing this module registers them.
 *
 * The common parts every method shares (cross-entropy with label smoothing, L2 to the start
 * weights, weight averaging, WiSE merging) are options of `trainTask`, not of a method.
 *
 * @module
 */
import type { tf } from "../clip/backends/tf.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { SynthCaptions } from "../datasets/synth.ts";
import { loadSentences } from "../datasets/registry.ts";
import { evalTransform, trainTransform } from "../datasets/transforms.ts";
import { type Dataset, formatTemplate } from "../datasets/types.ts";
import { writeTextAtomic } from "./sequence.ts";
import { parseNumberFlag } from "./flags.ts";
import { StepBatches } from "./data.ts";
import { tokenizeFor } from "./evaluate.ts";
import { ExemplarMemory, herdingFeatures } from "./icarl.ts";
import { icarlPart, lwfPart, virtualVocab, type ZsclOptions, zsclPart } from "./presets.ts";
import {
  type FlagValues,
  type Method,
  type MethodContext,
  type MethodDefinition,
  registerMethod,
} from "./method.ts";

/** Prompts of a dataset's classes with its first template (or `template`). */
export function classPrompts(ds: Dataset, template?: string): string[] {
  const t = template ?? ds.templates[0];
  return ds.classnames.map((c) => formatTemplate(t, c));
}

function flagNumber(f: FlagValues, name: string): number | undefined {
  return parseNumberFlag(name, f[name]);
}

function flagPositive(f: FlagValues, name: string, integer = false): number | undefined {
  return parseNumberFlag(name, f[name], { positive: true, integer });
}

// ---------------------------------------------------------------------------------- finetune

/** Options of {@link finetune} (none: the common options of `trainTask` say everything). */
export type FinetuneOptions = Record<string, never>;

/** Plain fine-tuning: only the common parts (cross-entropy, and L2 / averaging when asked). */
export function finetune(options: FinetuneOptions = {}): Method {
  return { name: "finetune", options, setup: () => ({ parts: [] }) };
}

// --------------------------------------------------------------------------------------- LwF

/** Options of {@link lwf}. */
export interface LwfMethodOptions {
  /** Temperature (default 2). */
  T?: number;
  /**
   * Texts to distil over: the task's prompts (default) or `"random"` vocabulary sentences
   * (LwF-VR, 1000 sentences of 10 ids, seeded by the run's seed).
   */
  texts?: "prompts" | "random";
}

/**
 * LwF: distil towards the frozen start-of-task model on the task's images, image and text
 * directions; LwF-VR with `texts: "random"`.
 */
export function lwf(options: LwfMethodOptions = {}): Method {
  return {
    name: "lwf",
    options,
    setup(ctx) {
      const texts = options.texts === "random" ? randomSentences(ctx) : undefined;
      return {
        parts: [lwfPart({ T: options.T, texts })],
        dispose: () => texts?.dispose(),
      };
    },
  };
}

function randomSentences(ctx: MethodContext): tf.Tensor2D {
  // The reference seeds numpy's generator; any fixed seeded stream serves (the ids only need to
  // be arbitrary vocabulary entries).
  let s = ctx.seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
  const c = ctx.model.config;
  return virtualVocab(rand, 1000, 10, c.vocabSize, c.contextLength);
}

// -------------------------------------------------------------------------------------- ZSCL

/** Where ZSCL's reference sentences come from. */
export type RefSentences =
  | "prompts"
  | "random"
  | "conceptual_captions"
  | { dataset: string }
  | { texts: string[] };

/**
 * Options of {@link zscl}: where the reference data comes from, plus the distillation settings
 * of ZSCL's part (`refWiseAlpha`, `T`, `weightAdjust`, `featureMse`, `ablationLoss2`).
 */
export interface ZsclMethodOptions
  extends
    Pick<ZsclOptions, "refWiseAlpha" | "T" | "weightAdjust" | "featureMse" | "ablationLoss2"> {
  /** Reference images: a dataset (registry name or a `Dataset`) — ImageNet in the paper. */
  refDataset: string | Dataset;
  /** `--num`: ImageNetSM classes / ImageNetSUB images of the reference dataset. */
  refNum?: number;
  /**
   * Reference sentences (default `"prompts"`: the reference dataset's class prompts).
   * `{ dataset }` takes another dataset's prompts (SynthMTIL's caption stream: its captions).
   */
  refSentences?: RefSentences;
  /** At most this many reference sentences (captions; default all, 2000 for SynthMTIL). */
  refSentencesLimit?: number;
  /** `--text-datasets`: prompts of these datasets as reference sentences (overrides the above). */
  textDatasets?: string[];
  /** Reference model: the zero-shot model (default) or given weights (`--ref-model`). */
  refModel?: "zeroshot" | StateDict;
  /** Image-direction distillation (default true unless only `textLoss` is set). */
  imageLoss?: boolean;
  /** Text-direction distillation (default true unless only `imageLoss` is set). */
  textLoss?: boolean;
}

async function refSentenceTokens(
  ctx: MethodContext,
  o: ZsclMethodOptions,
  refDs: Dataset,
): Promise<tf.Tensor2D> {
  if (o.textDatasets?.length) {
    const texts: string[] = [];
    for (const n of o.textDatasets) texts.push(...classPrompts(await ctx.loadDataset(n)));
    return await tokenizeFor(ctx.model, texts);
  }
  const rs = o.refSentences ?? "prompts";
  if (rs === "random") return randomSentences(ctx);
  if (rs === "prompts") return await tokenizeFor(ctx.model, classPrompts(refDs));
  if (rs === "conceptual_captions") {
    const cc = await loadSentences({ root: ctx.dataRoot });
    const n = Math.min(cc.length, o.refSentencesLimit ?? cc.length);
    const texts: string[] = [];
    for (let i = 0; i < n; i++) texts.push(await cc.get(i));
    return await tokenizeFor(ctx.model, texts, "cut");
  }
  if ("texts" in rs) return await tokenizeFor(ctx.model, rs.texts, "cut");
  const ds = await ctx.loadDataset(rs.dataset);
  if (ds instanceof SynthCaptions) {
    // SynthMTIL's image–caption stream: its captions are the reference sentences.
    const n = Math.min(ds.length, o.refSentencesLimit ?? 2000);
    return await tokenizeFor(ctx.model, Array.from({ length: n }, (_, i) => ds.caption(i)), "cut");
  }
  return await tokenizeFor(ctx.model, classPrompts(ds));
}

/**
 * ZSCL (Zheng et al., ICCV 2023): distil the current model towards a reference model (the
 * zero-shot CLIP by default) on reference images and sentences, in feature space.
 *
 * @example
 * ```ts
 * import { zscl } from "jsr:@mtil/mtil/methods";
 * const method = zscl({ refDataset: "ImageNet", refSentences: "conceptual_captions" });
 * ```
 */
export function zscl(options: ZsclMethodOptions): Method {
  return {
    name: "ZSCL",
    options: { ...options, refModel: options.refModel === undefined ? "zeroshot" : "weights" },
    async setup(ctx) {
      const refDs = typeof options.refDataset === "string"
        ? await ctx.loadDataset(options.refDataset, { num: options.refNum })
        : options.refDataset;
      const stream = new StepBatches(refDs, {
        batchSize: ctx.batchSize,
        seed: ctx.seed + 1,
        transform: evalTransform(ctx.model.config.imageResolution),
        workers: ctx.workers,
      });
      let refTexts: tf.Tensor2D | undefined;
      try {
        refTexts = await refSentenceTokens(ctx, options, refDs);
      } catch (e) {
        await stream.close();
        throw e;
      }
      const onlyText = options.textLoss && !options.imageLoss;
      const onlyImage = options.imageLoss && !options.textLoss;
      const part = zsclPart({
        refStateDict: options.refModel === undefined || options.refModel === "zeroshot"
          ? ctx.zeroShot
          : options.refModel,
        refWiseAlpha: options.refWiseAlpha,
        refImages: async (s) => (await stream.batch(s)).images,
        refTexts,
        T: options.T,
        imageLoss: !onlyText,
        textLoss: !onlyImage,
        weightAdjust: options.weightAdjust,
        featureMse: options.featureMse,
        ablationLoss2: options.ablationLoss2,
      });
      return {
        parts: [part],
        dispose: async () => {
          await stream.close();
          refTexts?.dispose();
        },
      };
    },
  };
}

// ------------------------------------------------------------------------------------- iCaRL

/** Options of {@link icarl}. */
export interface IcarlMethodOptions {
  /** Total exemplar budget K; each of t tasks keeps floor(K/t) (default 10000). */
  memorySize?: number;
  /** Training images of a task that herding chooses from (default 2000). */
  candidates?: number;
  /** Distillation temperature (default 2). */
  T?: number;
}

/** File name of iCaRL's exemplar memory in a save folder. */
export const ICARL_MEMORY_FILE = "icarl_memory.json";

/**
 * iCaRL: each task trains with the exemplars of earlier tasks (cross-entropy over all seen
 * classes and distillation to the start-of-task model); after the task, herding picks its
 * exemplars from `candidates` training images. The memory lives in the method (one instance
 * across a sequence) and in `icarl_memory.json` of the save folder.
 */
export function icarl(options: IcarlMethodOptions = {}): Method {
  let memory = new ExemplarMemory(options.memorySize ?? 10000);
  const datasets = new Map<string, Dataset>();
  const ds = async (ctx: MethodContext, n: string) => {
    if (n === ctx.dataset.name) return ctx.dataset;
    if (!datasets.has(n)) datasets.set(n, await ctx.loadDataset(n));
    return datasets.get(n)!;
  };
  return {
    name: "icarl",
    options,
    async setup(ctx) {
      const ex = memory.exemplars();
      const tasks = [...new Set(ex.map((e) => e.task))];
      const offsets = new Map<string, number>();
      const texts: string[] = [];
      for (const t of tasks) {
        offsets.set(t, texts.length);
        texts.push(...classPrompts(await ds(ctx, t)));
      }
      const memoryTexts = await tokenizeFor(ctx.model, texts.length ? texts : ["a photo."]);
      if (!ex.length) {
        return {
          parts: [
            icarlPart({ exemplars: () => Promise.resolve(undefined), memoryTexts, T: options.T }),
          ],
          dispose: () => memoryTexts.dispose(),
        };
      }
      const sources = new Map<string, Dataset>();
      for (const t of tasks) sources.set(t, await ds(ctx, t));
      const wrapper: Dataset = {
        name: "icarl-exemplars",
        split: "train",
        classnames: texts,
        templates: ["{}"],
        length: ex.length,
        get: async (i) => {
          const e = ex[i];
          const item = await sources.get(e.task)!.get(e.index);
          return { ...item, label: offsets.get(e.task)! + e.label };
        },
      };
      const stream = new StepBatches(wrapper, {
        batchSize: ctx.batchSize,
        seed: ctx.seed + 2,
        transform: trainTransform(ctx.model.config.imageResolution),
        workers: ctx.workers,
      });
      return {
        parts: [icarlPart({ exemplars: (s) => stream.batch(s), memoryTexts, T: options.T })],
        dispose: async () => {
          await stream.close();
          memoryTexts.dispose();
        },
      };
    },
    async afterTask(ctx) {
      if (memory.exemplars().some((e) => e.task === ctx.dataset.name)) return;
      const r = await herdingFeatures(ctx.model, ctx.weights, ctx.dataset, {
        candidates: options.candidates ?? 2000,
        seed: ctx.seed + 3,
        batchSize: ctx.batchSizeEval,
        workers: ctx.workers,
      });
      memory.addTask(ctx.dataset.name, r.indices, r.labels, r.features, r.dim);
      ctx.log(`iCaRL memory: ${memory.exemplars().length} exemplars over ${memory.tasks} tasks`);
    },
    async saveState(dir) {
      await writeTextAtomic(`${dir}/${ICARL_MEMORY_FILE}`, JSON.stringify(memory.toJSON()) + "\n");
    },
    async loadState(dir, _model) {
      try {
        const text = await Deno.readTextFile(`${dir}/${ICARL_MEMORY_FILE}`);
        memory = ExemplarMemory.fromJSON(JSON.parse(text));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          throw new Error(`${dir}/${ICARL_MEMORY_FILE}: ${(e as Error).message}`);
        }
      }
    },
    taskDone: (name) => memory.exemplars().some((e) => e.task === name),
  };
}

// ---------------------------------------------------------------------------------- registry

/** The definition of `finetune`. */
export const FINETUNE: MethodDefinition<FinetuneOptions> = {
  name: "finetune",
  summary: "plain fine-tuning (cross-entropy; --l2, --we, --wise-merge apply to every method)",
  flags: {},
  fromFlags: () => ({}),
  create: finetune,
};

const T_FLAG = { type: "string", default: "2", description: "distillation temperature" } as const;
const REF_SENTENCES = {
  type: "string",
  description: "ZSCL: conceptual_captions | random | DATASET (its prompts); LwF: random = LwF-VR",
} as const;

/** The definition of `lwf`. */
export const LWF: MethodDefinition<LwfMethodOptions> = {
  name: "lwf",
  summary: "Learning without Forgetting (distil to the start-of-task model); LwF-VR",
  flags: { "T": T_FLAG, "ref-sentences": REF_SENTENCES },
  fromFlags: (f) => ({
    T: flagPositive(f, "T"),
    texts: f["ref-sentences"] === "random" ? "random" : "prompts",
  }),
  create: lwf,
};

/** The definition of `ZSCL`. */
export const ZSCL: MethodDefinition<ZsclMethodOptions> = {
  name: "ZSCL",
  summary: "ZSCL (ICCV 2023): distil to the zero-shot model on reference images and texts",
  flags: {
    "ref-dataset": { type: "string", description: "reference images (ImageNet in the paper)" },
    "ref-sentences": REF_SENTENCES,
    "ref-sentences-limit": { type: "string", description: "at most this many sentences" },
    "text-datasets": { type: "string", description: "prompts of these datasets A,B as texts" },
    "num": { type: "string", default: "64", description: "ImageNetSM classes / SUB images" },
    "ref-model": { type: "string", description: "reference weights (default: zero-shot)" },
    "ref-wise": { type: "boolean", default: false, description: "WiSE-mix the reference" },
    "ref-wise-alpha": { type: "string", default: "0.8", description: "α of --ref-wise" },
    "T": T_FLAG,
    "image-loss": { type: "boolean", default: false, description: "only image distillation" },
    "text-loss": { type: "boolean", default: false, description: "only text distillation" },
    "weight-adjust": { type: "boolean", default: false, description: "halve distillation" },
    "feature-mse": { type: "boolean", default: false, description: "image-feature MSE" },
    "ablation-loss-2": { type: "boolean", default: false, description: "image–image loss" },
  },
  async fromFlags(f) {
    const ref = f["ref-dataset"];
    if (typeof ref !== "string" || !ref) {
      throw new Error("--method ZSCL needs --ref-dataset (e.g. ImageNet)");
    }
    const rs = f["ref-sentences"];
    let refSentences: RefSentences | undefined;
    if (rs === "random" || rs === "conceptual_captions") refSentences = rs;
    else if (typeof rs === "string" && rs) refSentences = { dataset: rs };
    const refModel = typeof f["ref-model"] === "string"
      ? (await readCheckpoint(f["ref-model"])).stateDict
      : undefined;
    const textDatasets = typeof f["text-datasets"] === "string"
      ? f["text-datasets"].split(",").map((s) => s.trim()).filter((s) => s)
      : undefined;
    return {
      refDataset: ref,
      refNum: flagPositive(f, "num", true),
      refSentences,
      refSentencesLimit: flagPositive(f, "ref-sentences-limit", true),
      textDatasets,
      refModel,
      refWiseAlpha: f["ref-wise"] ? flagNumber(f, "ref-wise-alpha") : undefined,
      T: flagPositive(f, "T"),
      imageLoss: !!f["image-loss"],
      textLoss: !!f["text-loss"],
      weightAdjust: !!f["weight-adjust"],
      featureMse: !!f["feature-mse"],
      ablationLoss2: !!f["ablation-loss-2"],
    };
  },
  create: zscl,
};

/** The definition of `icarl`. */
export const ICARL: MethodDefinition<IcarlMethodOptions> = {
  name: "icarl",
  summary: "iCaRL: exemplar memory chosen by herding, replayed with distillation",
  flags: {
    "memory-size": { type: "string", default: "10000", description: "exemplar budget K" },
    "icarl-candidates": { type: "string", default: "2000", description: "herding candidates" },
  },
  fromFlags: (f) => ({
    memorySize: flagPositive(f, "memory-size", true),
    candidates: flagPositive(f, "icarl-candidates", true),
  }),
  create: icarl,
};

registerMethod(FINETUNE);
registerMethod(LWF);
registerMethod(ZSCL);
registerMethod(ICARL);
