/**
 * `deno task eval`: zero-shot evaluation of a model (the seed's `--eval-only`).
 *
 * ```
 * deno task eval --model ViT-B/16 --load ckpt/DTD.safetensors --eval-datasets DTD,MNIST
 * deno task eval --model synth-tiny --eval-single img.png --class-names classes.txt
 * deno task eval --model ViT-B/16 --load ckpt/DTD.pth --wise-ft --alpha 0.5 --eval-datasets DTD
 * ```
 *
 * Results of `--eval-datasets` are printed and appended to `evaluate_all_results.csv` (in
 * `--save DIR` when given, else the working directory; `--results FILE` overrides).
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { validateTrainFlags } from "./flags.ts";
import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { checkWeights, loadClip } from "../clip/load.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { classify, zeroShotHead } from "../clip/zeroshot.ts";
import { wiseFt } from "../methods/ensemble.ts";
import { appendAllResults } from "../methods/evaluate.ts";
import { evaluateAll, normalizeFlags, TRAIN_FLAGS, type TrainArgs } from "./train.ts";

/** Flags of the eval task: every train flag plus the eval-only ones. */
export const EVAL_FLAGS = {
  ...TRAIN_FLAGS,
  "eval-single": { type: "string" },
  "class-names": { type: "string" },
  "prompt": { type: "string", default: "a photo of a {}." },
  "results": { type: "string" },
} as const;

/** Parse the eval CLI. */
export function parseEvalArgs(argv: string[]): TrainArgs {
  const { values } = parseArgs({
    args: normalizeFlags(argv),
    options: EVAL_FLAGS as unknown as NonNullable<Parameters<typeof parseArgs>[0]>["options"],
    strict: true,
    allowPositionals: false,
  });
  validateTrainFlags(values);
  return values as TrainArgs;
}

/** One line of a top-k listing. */
export interface TopEntry {
  /** Class name. */
  label: string;
  /** Softmax probability over the classes. */
  prob: number;
}

/** Run the eval task; returns the top-k of `--eval-single` (if given). */
export async function runEval(argv: string[]): Promise<TopEntry[] | undefined> {
  const a = parseEvalArgs(argv);
  const backend = await initBackend({ prefer: a.backend as string | undefined, quiet: !!a.quiet });
  const { model, preprocess } = await loadClip(String(a.model), {
    cacheDir: a["cache-dir"] as string,
  });
  try {
    let modelName = String(a.model);
    if (a.load) {
      const ck = await readCheckpoint(String(a.load));
      const strict = !a["non-strict"];
      ck.stateDict = checkWeights(model, ck.stateDict, String(a.load), { strict });
      if (a["wise-ft"]) {
        const alpha = Number(a.alpha);
        model.loadStateDict(wiseFt(ck.stateDict, model.stateDict(), alpha), { strict: false });
        modelName = `${a.load} (wise-ft α=${alpha})`;
      } else {
        model.loadStateDict(ck.stateDict, { strict: false });
        modelName = String(a.load);
      }
    }
    let top: TopEntry[] | undefined;
    if (a["eval-single"]) {
      if (!a["class-names"]) {
        throw new Error("--eval-single needs --class-names FILE (one per line)");
      }
      const names = (await Deno.readTextFile(String(a["class-names"])))
        .split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length);
      if (!names.length) throw new Error(`${a["class-names"]}: no class names (one per line)`);
      const head = await zeroShotHead(model, names, [String(a.prompt)]);
      const img = await preprocess(await Deno.readFile(String(a["eval-single"])));
      const batch = tf.expandDims(img, 0) as tf.Tensor4D;
      const r = classify(model, head, batch, { topk: 5 });
      const idx = r.topk.indices.dataSync(), p = r.topk.values.dataSync();
      top = Array.from(idx, (k, i) => ({ label: names[k], prob: p[i] }));
      console.log(`${a["eval-single"]} (${modelName}, backend ${backend}):`);
      for (const t of top) console.log(`  ${(100 * t.prob).toFixed(2).padStart(6)}%  ${t.label}`);
      tf.dispose([head, img, batch, r.logits, r.probs, r.topk.indices, r.topk.values]);
    }
    const names = typeof a["eval-datasets"] === "string"
      ? String(a["eval-datasets"]).split(",").map((s) => s.trim())
      : [];
    if (names.length) {
      const results = await evaluateAll(model, names, a, 0);
      const dir = typeof a.save === "string" ? a.save : ".";
      if (dir !== ".") await Deno.mkdir(dir, { recursive: true });
      const path = (a.results as string | undefined) ?? `${dir}/evaluate_all_results.csv`;
      await appendAllResults(path, modelName, results, a["wise-ft"] ? `alpha=${a.alpha}` : "");
      console.log(`appended ${results.length} rows to ${path}`);
    }
    if (!top && !names.length) {
      throw new Error("nothing to do: give --eval-datasets A,B and/or --eval-single IMAGE");
    }
    return top;
  } finally {
    model.dispose();
  }
}

if (import.meta.main) {
  try {
    await runEval(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
