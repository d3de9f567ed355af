/**
 * `deno task train`: one training task with the seed's flags (README table and the Python
 * argument list; `--image_loss` and `--image-loss` spellings both work).
 *
 * ```
 * deno task train --model synth-tiny --train-dataset FashionMNIST --method ZSCL \
 *   --ref-dataset FashionMNIST --iterations 200 --lr 1e-5 --save ckpt/
 * ```
 *
 * `--save DIR` writes `DIR/<train-dataset>.safetensors` (the weight-ensembled model with
 * `--we`), `DIR/<train-dataset>.manifest.json`, and while running the resume state
 * `DIR/<train-dataset>.state.safetensors` (on SIGINT/SIGTERM/SIGUSR1 and every
 * `--save-interval` steps). `--resume` continues from that state.
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import { loadClip, tokenizerMeta } from "../clip/load.ts";
import { readCheckpoint, saveCheckpoint } from "../clip/formats/checkpoint.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import type { ClipModel } from "../clip/types.ts";
import { ProgressBar } from "../clip/download/progress.ts";
import { loadDataset, loadSentences } from "../datasets/registry.ts";
import { evalTransform, trainTransform } from "../datasets/transforms.ts";
import { type Dataset, formatTemplate } from "../datasets/types.ts";
import "../methods/presets.ts";
import { virtualVocab } from "../methods/presets.ts";
import {
  createRun,
  disposeRun,
  runSteps,
  type TrainOptions,
  type TrainRun,
  type TrainTask,
  varsToSd,
  weightsToSave,
} from "../methods/train.ts";
import { assignVars, cloneVars, disposeVars } from "../methods/ensemble.ts";
import { StepBatches } from "../methods/data.ts";
import { loadTrainState, saveTrainState } from "../methods/state.ts";
import { evaluateDataset, recordMetrics, tokenizeFor } from "../methods/evaluate.ts";
import { TRAIN_MODES } from "../methods/params.ts";
import { ExemplarMemory } from "../methods/icarl.ts";
import { normalizeRows } from "../methods/losses.ts";
import { batches } from "../datasets/loader.ts";
import { Rng } from "../datasets/rng.ts";
import { removeStaleTemps, writeFileAtomic } from "../clip/formats/safetensors.ts";
import { SynthCaptions } from "../datasets/synth.ts";
import {
  adapterStateDict,
  injectLora,
  loraParameterCounts,
  type LoraState,
  mergedStateDictAsync,
  removeLora,
} from "../lora/lora.ts";
import { ogdPart } from "../ogd/part.ts";

/** Flag definitions (kebab-case; `_` spellings are normalised before parsing). */
export const TRAIN_FLAGS = {
  "model": { type: "string", default: "ViT-B/16" },
  "batch-size": { type: "string", default: "64" },
  "batch-size-eval": { type: "string", default: "128" },
  "lr": { type: "string", default: "0.001" },
  "wd": { type: "string", default: "0" },
  "ls": { type: "string", default: "0" },
  "warmup-length": { type: "string", default: "100" },
  "beta2": { type: "string", default: "0.999" },
  "seed": { type: "string", default: "42" },
  "epochs": { type: "string" },
  "iterations": { type: "string" },
  "eval-interval": { type: "string" },
  "loss-interval": { type: "string", default: "1000" },
  "eval-every-epoch": { type: "boolean", default: false },
  "eval-only": { type: "boolean", default: false },
  "method": { type: "string", default: "finetune" },
  "train-mode": { type: "string", default: "whole" },
  "freeze": { type: "boolean", default: false },
  "data-location": { type: "string", default: "./data" },
  "train-dataset": { type: "string" },
  "eval-datasets": { type: "string" },
  "eval-limit": { type: "string" },
  "text-datasets": { type: "string" },
  "template": { type: "string" },
  "save": { type: "string" },
  "save-interval": { type: "string", default: "0" },
  "resume": { type: "boolean", default: false },
  "load": { type: "string" },
  "we": { type: "boolean", default: false },
  "we-wise": { type: "boolean", default: false },
  "we-wise-alpha": { type: "string", default: "0.98" },
  "moving-avg": { type: "boolean", default: false },
  "avg-freq": { type: "string", default: "100" },
  "mv-avg-decay": { type: "string", default: "0.999" },
  "mv-avg-model": { type: "string", default: "n" },
  "l2": { type: "string", default: "0" },
  "ref-wise-alpha": { type: "string", default: "0.8" },
  "ref-wise": { type: "boolean", default: false },
  "ref-dataset": { type: "string" },
  "ref-model": { type: "string" },
  "ref-sentences": { type: "string" },
  "ref-sentences-limit": { type: "string" },
  "T": { type: "string", default: "2" },
  "num": { type: "string", default: "64" },
  "dataset-order": { type: "string" },
  "memory-size": { type: "string", default: "10000" },
  "icarl-candidates": { type: "string", default: "2000" },
  "weight-adjust": { type: "boolean", default: false },
  "feature-mse": { type: "boolean", default: false },
  "image-loss": { type: "boolean", default: false },
  "text-loss": { type: "boolean", default: false },
  "ablation-loss-2": { type: "boolean", default: false },
  "wise-merge": { type: "boolean", default: false },
  "wise-ft": { type: "boolean", default: false },
  "wise-ft-model": { type: "string", default: "n" },
  "wise-ft-alpha": { type: "string", default: "0.8" },
  "alpha": { type: "string", default: "0.5" },
  "exp-name": { type: "string" },
  "cache-dir": { type: "string" },
  "backend": { type: "string" },
  "lora": { type: "boolean", default: false },
  "lora-r": { type: "string", default: "8" },
  "lora-alpha": { type: "string", default: "16" },
  "lora-dropout": { type: "string", default: "0.1" },
  "lora-target-modules": { type: "string", default: "attn.out_proj,mlp.c_fc,mlp.c_proj" },
  "lora-shared": { type: "boolean", default: false },
  "lora-shared-split-qkvo": { type: "boolean", default: false },
  "lora-save-adapters": { type: "boolean", default: false },
  "orthogonal-gradients": { type: "string", default: "0" },
  "orthogonal-gradients-path": { type: "string" },
  "ogd-energy": { type: "string", default: "0.97" },
  "ogd-python-projection": { type: "boolean", default: false },
  "workers": { type: "string", default: "0" },
  "no-final-step": { type: "boolean", default: false },
  "quiet": { type: "boolean", default: false },
  "help": { type: "boolean", short: "h", default: false },
} as const;

/** Parsed flag values. */
export type TrainArgs = Record<string, string | boolean | undefined>;

/** `--image_loss` → `--image-loss` (flag names only; values and `--T` untouched). */
export function normalizeFlags(argv: string[]): string[] {
  return argv.map((a) => {
    if (!a.startsWith("--")) return a;
    const eq = a.indexOf("=");
    const name = eq < 0 ? a : a.slice(0, eq);
    return name.replaceAll("_", "-") + (eq < 0 ? "" : a.slice(eq));
  });
}

/** Parse the train CLI (strict: unknown flags are errors). */
export function parseTrainArgs(argv: string[]): TrainArgs {
  const { values } = parseArgs({
    args: normalizeFlags(argv),
    options: TRAIN_FLAGS as unknown as NonNullable<Parameters<typeof parseArgs>[0]>["options"],
    strict: true,
    allowPositionals: false,
  });
  return values as TrainArgs;
}

function num(a: TrainArgs, k: string): number | undefined {
  const v = a[k];
  if (v === undefined || v === false) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${k} expects a number, got "${v}"`);
  return n;
}

function list(a: TrainArgs, k: string): string[] | undefined {
  const v = a[k];
  return typeof v === "string" && v.length ? v.split(",").map((s) => s.trim()) : undefined;
}

/** The library version from deno.json. */
export async function libraryVersion(): Promise<string> {
  try {
    const j = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    return String(j.version);
  } catch {
    return "unknown";
  }
}

/** Prompts of a dataset's classes with its first template (or `template`). */
function prompts(ds: Dataset, template?: string): string[] {
  const t = template ?? ds.templates[0];
  return ds.classnames.map((c) => formatTemplate(t, c));
}

function modelSd(m: ReadonlyMap<string, tf.Tensor>): StateDict {
  return varsToSd(m);
}

/**
 * Evaluate `model` (or the given weights swapped in) on every dataset; records metrics CSVs in
 * `saveDir` under `iteration`.
 */
export async function evaluateAll(
  model: ClipModel,
  names: string[],
  a: TrainArgs,
  iteration: number,
  weights?: ReadonlyMap<string, tf.Tensor>,
): Promise<{ dataset: string; top1: number; top5: number; n: number }[]> {
  const saved = weights && weights !== model.params ? cloneVars(model.params) : undefined;
  if (saved) assignVars(model.params, weights!);
  const out = [];
  try {
    for (const name of names) {
      const ds = await loadDataset(name, { root: String(a["data-location"]), split: "test" });
      const bar = new ProgressBar({
        total: Math.min(ds.length, num(a, "eval-limit") ?? Infinity),
        label: `eval ${name}`,
        unit: "img",
      });
      let last = 0;
      const r = await evaluateDataset(model, ds, {
        batchSize: num(a, "batch-size-eval"),
        limit: num(a, "eval-limit"),
        workers: num(a, "workers"),
        onProgress: (d) => {
          bar.tick(d - last);
          last = d;
        },
      });
      bar.done();
      console.log(
        `${name} @${iteration}: top-1 ${r.top1.toFixed(2)}%  top-5 ${r.top5.toFixed(2)}%  (${r.n})`,
      );
      if (typeof a.save === "string") {
        await Deno.mkdir(a.save, { recursive: true });
        await recordMetrics(`${a.save}/metrics_${name}.csv`, iteration, r.top1, r.top5);
      }
      out.push(r);
    }
  } finally {
    if (saved) {
      assignVars(model.params, saved);
      disposeVars(saved);
    }
  }
  return out;
}

async function refTextTokens(
  model: ClipModel,
  a: TrainArgs,
  refDs: Dataset | undefined,
  seed: number,
): Promise<tf.Tensor2D> {
  const root = String(a["data-location"]);
  const textDs = list(a, "text-datasets");
  if (textDs) {
    const texts: string[] = [];
    for (const n of textDs) texts.push(...prompts(await loadDataset(n, { root })));
    return await tokenizeFor(model, texts);
  }
  const rs = a["ref-sentences"] as string | undefined;
  if (rs === "random") {
    let s = seed >>> 0;
    const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
    return virtualVocab(rand, 1000, 10, model.config.vocabSize, model.config.contextLength);
  }
  if (rs === "conceptual_captions") {
    const cc = await loadSentences({ root });
    const n = Math.min(cc.length, num(a, "ref-sentences-limit") ?? cc.length);
    const texts: string[] = [];
    for (let i = 0; i < n; i++) texts.push(await cc.get(i));
    return await tokenizeFor(model, texts, "cut");
  }
  if (rs) {
    const ds = await loadDataset(rs, { root });
    if (ds instanceof SynthCaptions) {
      // SynthMTIL's image–caption stream: its captions are the reference sentences.
      const n = Math.min(ds.length, num(a, "ref-sentences-limit") ?? 2000);
      const texts = Array.from({ length: n }, (_, i) => ds.caption(i));
      return await tokenizeFor(model, texts, "cut");
    }
    return await tokenizeFor(model, prompts(ds));
  }
  if (!refDs) throw new Error("ZSCL needs --ref-dataset (reference images)");
  return await tokenizeFor(model, prompts(refDs));
}

/** Extra method options computed from the loaded model (iCaRL's exemplar stream). */
export type MethodHook = (
  model: ClipModel,
) => Promise<{ options: Record<string, unknown>; cleanup: (() => void | Promise<void>)[] }>;

/** Run one training task from parsed arguments; returns the run's final step. */
export async function runTrain(
  a: TrainArgs,
  hook?: MethodHook,
): Promise<{ finished: boolean; step: number }> {
  const dsName = a["train-dataset"] as string | undefined;
  if (!dsName) throw new Error("--train-dataset is required (e.g. --train-dataset FashionMNIST)");
  const mode = String(a["train-mode"]);
  if (!(TRAIN_MODES as readonly string[]).includes(mode)) {
    throw new Error(`--train-mode ${mode}: use one of ${TRAIN_MODES.join(", ")}`);
  }
  const seed = num(a, "seed")!;
  const finalPath = a.save ? `${a.save}/${dsName}.safetensors` : undefined;
  if (
    a.resume && finalPath && await exists(finalPath) &&
    !await exists(`${a.save}/${dsName}.state.safetensors`)
  ) {
    console.log(`--resume: ${finalPath} exists and no state is pending: task already finished`);
    return { finished: true, step: -1 };
  }
  const backend = await initBackend({ prefer: a.backend as string | undefined, quiet: !!a.quiet });
  const config = { ...a, backend };
  if (!a.quiet) console.log("run configuration:", JSON.stringify(config, null, 2));

  const loaded = await loadClip(String(a.model), { cacheDir: a["cache-dir"] as string });
  const model = loaded.model;
  const zeroshot = model.stateDict();
  if (a.load) {
    const ck = await readCheckpoint(String(a.load));
    model.loadStateDict(ck.stateDict, { strict: false });
    console.log(`loaded ${a.load}`);
  }
  const root = String(a["data-location"]);
  const ds = await loadDataset(dsName, { root });
  const res = model.config.imageResolution;
  const workers = num(a, "workers") ?? 0;
  const bs = num(a, "batch-size")!;
  const stream = new StepBatches(ds, {
    batchSize: bs,
    seed,
    transform: trainTransform(res),
    workers,
  });
  const textTokens = await tokenizeFor(model, prompts(ds, a.template as string | undefined));
  const task: TrainTask = {
    name: dsName,
    classnames: ds.classnames,
    textTokens,
    batch: (s) => stream.batch(s),
    batchesPerEpoch: stream.perEpoch,
  };
  const method = String(a.method);
  const methodOptions: Record<string, unknown> = {
    labelSmoothing: num(a, "ls"),
    l2: num(a, "l2"),
    we: a.we,
    weWise: a["we-wise"],
    weWiseAlpha: num(a, "we-wise-alpha"),
    movingAvg: a["moving-avg"],
    mvAvgDecay: num(a, "mv-avg-decay"),
    mvAvgModel: a["mv-avg-model"],
    avgFreq: num(a, "avg-freq"),
    zeroshot,
    wiseMerge: a["wise-merge"],
    wiseFtAlpha: num(a, "wise-ft-alpha"),
    wiseFtModel: a["wise-ft-model"],
    T: num(a, "T"),
  };
  const cleanup: (() => void | Promise<void>)[] = [() => stream.close()];
  if (method === "ZSCL") {
    const refName = a["ref-dataset"] as string | undefined;
    if (!refName) throw new Error("--method ZSCL needs --ref-dataset (e.g. ImageNet)");
    const refDs = await loadDataset(refName, { root, num: num(a, "num") });
    const refStream = new StepBatches(refDs, {
      batchSize: bs,
      seed: seed + 1,
      transform: evalTransform(res),
      workers,
    });
    cleanup.push(() => refStream.close());
    const refTexts = await refTextTokens(model, a, refDs, seed);
    cleanup.push(() => refTexts.dispose());
    let refStateDict: StateDict | undefined = zeroshot;
    if (a["ref-model"]) refStateDict = (await readCheckpoint(String(a["ref-model"]))).stateDict;
    Object.assign(methodOptions, {
      refStateDict,
      refWiseAlpha: a["ref-wise"] ? num(a, "ref-wise-alpha") : undefined,
      refImages: async (s: number) => (await refStream.batch(s)).images,
      refTexts,
      imageLoss: a["image-loss"] || !a["text-loss"] ? true : false,
      textLoss: a["text-loss"] || !a["image-loss"] ? true : false,
      weightAdjust: a["weight-adjust"],
      featureMse: a["feature-mse"],
      ablationLoss2: a["ablation-loss-2"],
    });
  } else if (method === "lwf") {
    if (a["ref-sentences"] === "random") {
      const vr = await refTextTokens(model, a, undefined, seed);
      cleanup.push(() => vr.dispose());
      methodOptions.texts = vr;
    }
  } else if (method === "icarl") {
    if (!hook) throw new Error("--method icarl runs over --dataset-order (see runIcarl)");
    const h = await hook(model);
    Object.assign(methodOptions, h.options);
    cleanup.push(...h.cleanup);
  } else if (method !== "finetune") {
    throw new Error(`unknown --method ${method}: use finetune, lwf, ZSCL or icarl`);
  }

  const evalNames = list(a, "eval-datasets") ?? [];
  const evalInterval = a["eval-every-epoch"] ? stream.perEpoch : num(a, "eval-interval");
  const averaged = !!(a.we || a["we-wise"]);
  const saveDir = a.save as string | undefined;
  const statePath = saveDir ? `${saveDir}/${dsName}.state.safetensors` : undefined;
  let stop: string | undefined;
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGUSR1"];
  const handlers = signals.map((sig) => {
    const h = () => {
      if (stop) Deno.exit(130); // second signal: give up at once
      stop = sig;
      console.error(`\n${sig}: finishing the current step, then saving the training state…`);
    };
    try {
      Deno.addSignalListener(sig, h);
    } catch { /* signal not supported here */ }
    return [sig, h] as const;
  });

  let run: TrainRun | undefined;
  let lora: LoraState | undefined;
  try {
    const options: TrainOptions = {
      iterations: num(a, "iterations"),
      epochs: num(a, "epochs"),
      lr: num(a, "lr"),
      weightDecay: num(a, "wd"),
      beta2: num(a, "beta2"),
      warmupLength: num(a, "warmup-length"),
      trainMode: mode as TrainOptions["trainMode"],
      freeze: !!a.freeze,
      method,
      methodOptions,
      finalStep: !a["no-final-step"],
      shouldStop: () => stop !== undefined,
    };
    if (options.iterations === undefined && options.epochs === undefined) options.epochs = 1;
    if (a.lora) {
      lora = injectLora(model, {
        r: num(a, "lora-r"),
        alpha: num(a, "lora-alpha"),
        dropout: num(a, "lora-dropout"),
        targets: list(a, "lora-target-modules"),
        shared: !!a["lora-shared"],
        splitQkvo: !!a["lora-shared-split-qkvo"],
        seed,
      });
      const c = loraParameterCounts(model, lora);
      console.log(
        `LoRA r=${lora.r} alpha=${lora.alpha}${lora.shared ? " (shared)" : ""}: ` +
          `${c.trainable.toLocaleString("en-US")} trainable of ` +
          `${c.total.toLocaleString("en-US")} parameters ` +
          `(${(100 * c.trainable / c.total).toFixed(3)}%)`,
      );
      options.extraParams = new Map([...lora.variables].map(([k, v]) => [`lora.${k}`, v]));
      options.onlyExtra = true;
    }
    const ogdN = num(a, "orthogonal-gradients") ?? 0;
    const ogdPaths = list(a, "orthogonal-gradients-path");
    if (ogdN > 0 || ogdPaths) {
      options.parts = [
        ...(options.parts ?? []),
        ogdPart({
          snapshots: ogdN,
          energy: num(a, "ogd-energy"),
          basisPaths: ogdPaths,
          mode: a["ogd-python-projection"] ? "sequential" : "orthonormal",
          saveDir,
          track: lora ? (n) => n.startsWith("lora.") : undefined,
        }),
      ];
    }
    run = await createRun(model, task, options);
    if (a.resume && statePath) {
      try {
        await Deno.stat(statePath);
        const meta = await loadTrainState(statePath, run);
        console.log(`resumed ${statePath} at step ${meta.step}/${run.totalSteps}`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        console.log(`--resume: no state at ${statePath}, starting at step 0`);
      }
    }
    let params = 0;
    for (const n of run.trainable) params += run.params.get(n)!.size;
    const extra = run.lastStep > run.totalSteps ? " + the final lr(total) step" : "";
    console.log(
      `train ${dsName}: ${run.totalSteps} steps (${stream.perEpoch}/epoch)${extra}, ` +
        `method ${method}, mode ${mode}, ${params} trainable parameters, backend ${backend}`,
    );
    const version = await libraryVersion();
    const saveState = async () => {
      if (!statePath || !run) return;
      await Deno.mkdir(saveDir!, { recursive: true });
      await saveTrainState(statePath, run, { config, version });
    };
    if (evalNames.length && evalInterval && run.step === 0) {
      await evaluateAll(model, evalNames, a, 0, averaged ? weightsToSave(run) : undefined);
    }
    const bar = new ProgressBar({ total: run.lastStep, label: `train ${dsName}`, unit: "it" });
    bar.tick(run.step);
    const t0 = performance.now();
    let images = 0;
    const saveEvery = num(a, "save-interval") ?? 0;
    const lossEvery = num(a, "loss-interval") ?? 1000;
    run.options.onStep = async (rec, r) => {
      images += rec.batchSize;
      const secs = (performance.now() - t0) / 1000;
      const fields: Record<string, string | number> = { lr: rec.lr.toExponential(2) };
      for (const [k, v] of Object.entries(rec.losses)) fields[k] = v.toFixed(4);
      fields["img/s"] = (images / secs).toFixed(1);
      bar.tick(1, fields);
      if (a.quiet === false && lossEvery > 0 && rec.step % lossEvery === 0) {
        console.error(`\nstep ${rec.step}: ${JSON.stringify(rec.losses)}`);
      }
      const it = rec.step + 1;
      // the reference's final iteration (lr(total)) evaluates before it steps: nothing to do here
      if (rec.step >= r.totalSteps) return;
      if (evalNames.length && evalInterval && it % evalInterval === 0) {
        await evaluateAll(model, evalNames, a, it, averaged ? weightsToSave(r) : undefined);
      }
      if (saveEvery > 0 && it % saveEvery === 0 && it < r.totalSteps) await saveState();
    };
    const result = await runSteps(run);
    bar.done();
    if (!result.finished) {
      await saveState();
      console.error(`stopped at step ${run.step}/${run.totalSteps}; resume with --resume`);
      return { finished: false, step: run.step };
    }
    if (saveDir) {
      await Deno.mkdir(saveDir, { recursive: true });
      const out = `${saveDir}/${dsName}.safetensors`;
      const meta = {
        ...tokenizerMeta(model),
        iteration: run.totalSteps,
        method,
        trainDataset: dsName,
        model: a.model,
        seed,
        version,
      };
      // the model the reference saves: the weight-ensembled one with --we / --we_wise
      const weights = weightsToSave(run);
      // webgpu reads only asynchronously: fetch what the synchronous copies below read
      await readableOnHost([...weights.values(), ...(lora?.variables.values() ?? [])]);
      // With LoRA, the adapters are merged into the base weights (reference key names).
      const sd = lora ? await mergedStateDictAsync(model, lora) : modelSd(weights);
      if (lora && a["lora-save-adapters"]) {
        const ap = `${saveDir}/${dsName}.lora.safetensors`;
        await saveCheckpoint(ap, adapterStateDict(lora), {
          lora: { r: lora.r, alpha: lora.alpha, shared: lora.shared, splitQkvo: lora.splitQkvo },
        });
        console.log(`saved adapters ${ap}`);
      }
      const manifest = {
        checkpoint: out,
        config,
        version,
        seed,
        backend,
        finished: new Date().toISOString(),
      };
      await writeFileAtomic(
        `${saveDir}/${dsName}.manifest.json`,
        new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"),
      );
      // the checkpoint last: its presence marks the task done (a sequence rerun skips it)
      await saveCheckpoint(out, sd, meta);
      if (statePath) {
        await Deno.remove(statePath).catch(() => {});
        await removeStaleTemps(statePath);
      }
      console.log(`saved ${out}`);
    }
    if (evalNames.length && !(evalInterval && run.totalSteps % evalInterval === 0)) {
      await evaluateAll(
        model,
        evalNames,
        a,
        run.totalSteps,
        averaged ? weightsToSave(run) : undefined,
      );
    }
    return { finished: true, step: run.step };
  } finally {
    for (const [sig, h] of handlers) {
      try {
        Deno.removeSignalListener(sig, h);
      } catch { /* ignore */ }
    }
    if (run) disposeRun(run);
    if (lora) removeLora(model, lora);
    for (const c of cleanup) await c();
    textTokens.dispose();
    model.dispose();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * iCaRL over `--dataset-order A,B,…` in one process: each task trains from the previous task's
 * checkpoint with the exemplars of the earlier tasks (cross-entropy over all seen classes +
 * distillation to the start-of-task model), then herding picks the new task's exemplars from
 * `--icarl-candidates` training images; every task keeps `floor(K/t)` (`--memory-size K`). The
 * memory (original indices) is kept in `DIR/icarl_memory.json`; finished tasks are skipped on a
 * rerun.
 */
export async function runIcarl(a: TrainArgs): Promise<void> {
  const order = list(a, "dataset-order");
  if (!order) throw new Error("--method icarl needs --dataset-order A,B,…");
  const dir = a.save as string | undefined;
  if (!dir) throw new Error("--method icarl needs --save DIR (checkpoints and the memory)");
  const memPath = `${dir}/icarl_memory.json`;
  const memory = await exists(memPath)
    ? ExemplarMemory.fromJSON(JSON.parse(await Deno.readTextFile(memPath)))
    : new ExemplarMemory(num(a, "memory-size")!);
  const root = String(a["data-location"]);
  const datasets = new Map<string, Dataset>();
  const ds = async (n: string) => {
    if (!datasets.has(n)) datasets.set(n, await loadDataset(n, { root }));
    return datasets.get(n)!;
  };
  const seed = num(a, "seed")!;
  let load = a.load as string | undefined;
  for (const name of order) {
    const ckpt = `${dir}/${name}.safetensors`;
    const done = memory.exemplars().some((e) => e.task === name) && await exists(ckpt);
    if (!done) {
      const hook: MethodHook = async (model) => {
        const ex = memory.exemplars();
        const tasks = [...new Set(ex.map((e) => e.task))];
        const offsets = new Map<string, number>();
        const texts: string[] = [];
        for (const t of tasks) {
          offsets.set(t, texts.length);
          texts.push(...prompts(await ds(t)));
        }
        const memoryTexts = await tokenizeFor(model, texts.length ? texts : ["a photo."]);
        if (!ex.length) {
          return {
            options: { exemplars: () => Promise.resolve(undefined), memoryTexts },
            cleanup: [() => memoryTexts.dispose()],
          };
        }
        const wrapper: Dataset = {
          name: "icarl-exemplars",
          split: "train",
          classnames: texts,
          templates: ["{}"],
          length: ex.length,
          get: async (i) => {
            const e = ex[i];
            const item = await (await ds(e.task)).get(e.index);
            return { ...item, label: offsets.get(e.task)! + e.label };
          },
        };
        const stream = new StepBatches(wrapper, {
          batchSize: num(a, "batch-size")!,
          seed: seed + 2,
          transform: trainTransform(model.config.imageResolution),
          workers: num(a, "workers"),
        });
        return {
          options: { exemplars: (s: number) => stream.batch(s), memoryTexts },
          cleanup: [() => stream.close(), () => memoryTexts.dispose()],
        };
      };
      const r = await runTrain({ ...a, "train-dataset": name, load, method: "icarl" }, hook);
      if (!r.finished) throw new Error(`iCaRL stopped during ${name}; rerun to resume`);
      // herding over candidates of the new task, with the trained model
      const { model } = await loadClip(String(a.model), { cacheDir: a["cache-dir"] as string });
      try {
        model.loadStateDict((await readCheckpoint(ckpt)).stateDict, { strict: false });
        const d = await ds(name);
        const n = Math.min(d.length, num(a, "icarl-candidates")!);
        const pick = Array.from(new Rng(seed + 3).permutation(d.length).subarray(0, n));
        const sub: Dataset = { ...d, length: n, get: (i) => d.get(pick[i]) };
        const feats: Float32Array[] = [];
        const labels: number[] = [];
        for await (
          const b of batches(sub, {
            batchSize: num(a, "batch-size-eval")!,
            transform: evalTransform(model.config.imageResolution),
            workers: num(a, "workers") ?? 0,
          })
        ) {
          const f = tf.tidy(() => normalizeRows(model.encodeImage(b.images)));
          feats.push(f.dataSync() as Float32Array);
          labels.push(...b.labels.dataSync());
          tf.dispose([f, b.images, b.labels]);
        }
        const dim = model.config.embedDim;
        const all = new Float32Array(n * dim);
        let off = 0;
        for (const f of feats) (all.set(f, off), off += f.length);
        memory.addTask(name, pick, labels, all, dim);
      } finally {
        model.dispose();
      }
      await writeFileAtomic(
        memPath,
        new TextEncoder().encode(JSON.stringify(memory.toJSON()) + "\n"),
      );
      console.log(
        `iCaRL memory: ${memory.exemplars().length} exemplars over ${memory.tasks} tasks`,
      );
    }
    load = ckpt;
  }
}

const HELP = `deno task train [flags]   (the seed's flags; _ and - spellings both work)
  --model NAME|PATH  --train-dataset NAME  --data-location DIR  --method finetune|lwf|ZSCL
  --iterations N | --epochs N  --batch-size N  --lr X  --wd X  --ls X  --warmup-length N  --beta2 X
  --train-mode ${TRAIN_MODES.join("|")}  --freeze  --l2 X
  --we | --we-wise [--we-wise-alpha] | --moving-avg [--mv-avg-decay --mv-avg-model n|t|zeroshot]
  --avg-freq N  --wise-merge [--wise-ft-alpha --wise-ft-model n|zeroshot]
  ZSCL: --ref-dataset NAME --ref-sentences conceptual_captions|random|DATASET --text-datasets A,B
        --ref-model PATH --ref-wise [--ref-wise-alpha] --T X --image-loss --text-loss
        --weight-adjust --feature-mse --ablation-loss-2
  --eval-datasets A,B --eval-interval N | --eval-every-epoch  --eval-limit N
  iCaRL: --method icarl --dataset-order A,B,… --memory-size K [--icarl-candidates N] --save DIR
  LoRA: --lora --lora-r N --lora-alpha X --lora-dropout X --lora-target-modules a,b
        --lora-shared --lora-shared-split-qkvo --lora-save-adapters
  OGD:  --orthogonal-gradients N --orthogonal-gradients-path F[,F] --ogd-energy X
        --ogd-python-projection
  --save DIR [--save-interval N] --resume  --load PATH  --backend NAME  --workers N  --seed N
  --no-final-step   run exactly the scheduled steps; by default, as the seed's range(total + 1),
                    one more step at lr(total) = 0 follows (weights unchanged; BatchNorm statistics,
                    and the final weight-averaging sample when total % avg-freq == 0)`;

if (import.meta.main) {
  let args: TrainArgs;
  try {
    args = parseTrainArgs(Deno.args);
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  if (args["eval-only"]) {
    const { runEval } = await import("./eval.ts");
    await runEval(Deno.args);
  } else {
    try {
      if (args.method === "icarl") {
        await runIcarl(args);
        Deno.exit(0);
      }
      const r = await runTrain(args);
      Deno.exit(r.finished ? 0 : 3);
    } catch (e) {
      console.error(`error: ${(e as Error).message}`);
      Deno.exit(1);
    }
  }
}
