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
import { EXIT_USAGE, isUserError } from "../methods/flags.ts";
import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { checkWeights, loadClip } from "../clip/load.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { classify, zeroShotHead } from "../clip/zeroshot.ts";
import { wiseFt } from "../methods/ensemble.ts";
import {
  appendAllResults,
  appendResultsDb,
  evaluate,
  type LinearHead,
} from "../methods/evaluate.ts";
import { splitHead } from "../methods/params.ts";
import type { FlagSpec, FlagValues } from "../methods/method.ts";
import { flagsHelp, listFlag, numberFlag, parseFlags } from "./train_flags.ts";

/** Flags of the eval task besides the training ones. */
export const EVAL_FLAGS: Record<string, FlagSpec> = {
  "eval-single": { type: "string", description: "classify one image" },
  "class-names": { type: "string", description: "class names file (one per line)" },
  "prompt": { type: "string", default: "a photo of a {}.", description: "--eval-single prompt" },
  "results": { type: "string", description: "results CSV (default evaluate_all_results.csv)" },
};

/** Parse the eval CLI. */
export function parseEvalArgs(argv: string[]): FlagValues {
  return parseFlags(argv, EVAL_FLAGS);
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
  const alpha = numberFlag(a, "alpha", { min: 0, max: 1 })!;
  const limit = numberFlag(a, "eval-limit", { integer: true, positive: true });
  const batchSize = numberFlag(a, "batch-size-eval", { integer: true, positive: true });
  const workers = numberFlag(a, "workers", { integer: true, min: 0 });
  const backend = await initBackend({
    prefer: a.backend as string | undefined,
    quiet: !!a.quiet,
    threads: numberFlag(a, "threads"),
  });
  const { model, preprocess } = await loadClip(String(a.model), {
    cacheDir: a["cache-dir"] as string,
  });
  let linearHead: LinearHead | undefined;
  try {
    let modelName = String(a.model);
    if (a.load) {
      const ck = await readCheckpoint(String(a.load));
      // an fc train mode's checkpoint also holds its linear head (`head.*`)
      const { model: weights, head } = splitHead(ck.stateDict);
      const file = String(a.load);
      const strict = { strict: !a["non-strict"] };
      if (a["wise-ft"]) {
        const merged = wiseFt(checkWeights(model, weights, file, strict), model.stateDict(), alpha);
        model.loadStateDict(merged, { strict: false });
        modelName = `${a.load} (wise-ft α=${alpha})`;
      } else {
        model.loadStateDict(checkWeights(model, weights, file, strict), { strict: false });
        modelName = String(a.load);
      }
      if (head?.has("head.weight") && head.has("head.bias")) {
        const w = head.get("head.weight")!, b = head.get("head.bias")!;
        linearHead = {
          weight: tf.tensor2d(w.data as Float32Array, w.shape as [number, number]),
          bias: tf.tensor1d(b.data as Float32Array),
        };
      }
    }
    let top: TopEntry[] | undefined;
    if (a["eval-single"]) {
      if (!a["class-names"]) {
        throw new Error("--eval-single needs --class-names FILE (one per line)");
      }
      const file = String(a["class-names"]);
      const names = (await Deno.readTextFile(file))
        .split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length);
      if (!names.length) throw new Error(`--class-names ${file}: no class names (one per line)`);
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
    const names = listFlag(a, "eval-datasets") ?? [];
    if (names.length) {
      const results = await evaluate(model, names, {
        dataRoot: String(a["data-location"]),
        batchSize,
        limit,
        workers,
        log: "progress",
        linearHead,
        datasetShift: !!a["dataset-shift"],
      });
      const dir = typeof a.save === "string" ? a.save : ".";
      if (dir !== ".") await Deno.mkdir(dir, { recursive: true });
      const path = (a.results as string | undefined) ?? `${dir}/evaluate_all_results.csv`;
      await appendAllResults(path, modelName, results, a["wise-ft"] ? `alpha=${alpha}` : "");
      console.log(`appended ${results.length} rows to ${path}`);
      if (typeof a["results-db"] === "string") {
        await appendResultsDb(a["results-db"], a, results, { model: modelName });
      }
    }
    if (!top && !names.length) {
      throw new Error("nothing to do: give --eval-datasets A,B and/or --eval-single IMAGE");
    }
    return top;
  } finally {
    if (linearHead) tf.dispose([linearHead.weight, linearHead.bias]);
    model.dispose();
  }
}

if (import.meta.main) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(flagsHelp("deno task eval --eval-datasets A,B | --eval-single IMG", EVAL_FLAGS));
    Deno.exit(0);
  }
  try {
    await runEval(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(isUserError(e) ? EXIT_USAGE : 1);
  }
}
