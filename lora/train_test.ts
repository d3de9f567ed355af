/**
 * Acceptance tests of LoRA training on real data (FashionMNIST from Debian's files) with the
 * embedded synth-tiny CLIP on the wasm backend: training only the adapters improves top-1 while
 * every base weight stays bit-identical; the merged checkpoint and the adapter file both reproduce
 * the adapted model after a save → load round trip; shared mode trains and improves; the CLI's
 * `--lora --lora-save-adapters` files load back onto a base model.
 *
 * FashionMNIST's class names are unknown words to synth-tiny's word tokenizer (every prompt would
 * be the same token sequence), so the classes are renamed with words it knows (see
 * `ogd/_real_data.ts`); images and labels are the real ones.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { loadClip } from "../clip/load.ts";
import { readCheckpoint, saveCheckpoint } from "../clip/formats/checkpoint.ts";
import type { ClipModel } from "../clip/types.ts";
import { loadDataset } from "../datasets/registry.ts";
import { evaluateDataset } from "../methods/evaluate.ts";
import { ceLoss, disposeRun, train } from "../methods/train.ts";
import { runTrainFlags } from "../tasks/train.ts";
import { parseFlags } from "../tasks/train_flags.ts";
import {
  adapterStateDict,
  injectLora,
  loadAdapterStateDict,
  type LoraOptions,
  type LoraState,
  mergedStateDict,
  removeLora,
} from "./lora.ts";
import { fashion, HAS_FMNIST, logitsOf, makeTask } from "../ogd/_real_data.ts";

const ITERATIONS = 80;
const BS = 16;
const LR = 1e-2;
const EVAL_N = 1000;

if (!HAS_FMNIST) {
  console.warn(
    "lora/train_test.ts: /usr/share/datasets/fashion-mnist is missing (Debian package " +
      "dataset-fashion-mnist): the FashionMNIST training tests are SKIPPED",
  );
}

/** Copies of every base parameter's values. */
function snapshotParams(model: ClipModel): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [k, v] of model.params) {
    const d = v.dataSync();
    out.set(k, new Uint8Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength)));
  }
  return out;
}

function bitIdentical(model: ClipModel, before: Map<string, Uint8Array>): string[] {
  const changed: string[] = [];
  assertEquals([...model.params.keys()].sort(), [...before.keys()].sort());
  for (const [k, v] of model.params) {
    const d = v.dataSync();
    const now = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    const was = before.get(k)!;
    if (now.length !== was.length || now.some((b, i) => b !== was[i])) changed.push(k);
  }
  return changed;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assertEquals(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

/** Train only the adapters of `model` on FashionMNIST; returns top-1 before and after. */
async function trainLora(
  model: ClipModel,
  options: LoraOptions,
): Promise<{ lora: LoraState; before: number; after: number; secs: number }> {
  const fm = await fashion();
  const before = (await evaluateDataset(model, fm.test, { limit: EVAL_N })).top1;
  const lora = injectLora(model, options);
  const t = await makeTask(model, fm.train, "FashionMNIST", BS, 42);
  const t0 = performance.now();
  const r = await train(model, t.task, {
    iterations: ITERATIONS,
    lr: LR,
    warmupLength: 5,
    parts: [ceLoss()],
    extraParams: new Map([...lora.variables].map(([k, v]) => [`lora.${k}`, v])),
    onlyExtra: true,
  });
  const secs = (performance.now() - t0) / 1000;
  assertEquals(r.run.trainable.length, lora.variables.size);
  assert(r.run.trainable.every((n) => n.startsWith("lora.")), "only adapters train");
  disposeRun(r.run);
  await t.close();
  const after = (await evaluateDataset(model, fm.test, { limit: EVAL_N })).top1;
  return { lora, before, after, secs };
}

Deno.test({
  name:
    "LoRA on FashionMNIST: accuracy improves, base weights bit-identical, save → load → evaluate",
  ignore: !HAS_FMNIST,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t0 = performance.now();
    await initBackend({ prefer: "wasm", quiet: true });
    const tensorsBefore = tf.memory().numTensors;
    const dir = await Deno.makeTempDir({ prefix: "lora_train_test_" });
    const { model } = await loadClip("synth-tiny");
    const fresh: ClipModel[] = [];
    try {
      const base = snapshotParams(model);
      const { lora, before, after, secs } = await trainLora(model, { dropout: 0, seed: 1 });
      // every base parameter of the trained model is untouched, bit for bit
      assertEquals(bitIdentical(model, base), []);
      // and the adapters did move (B starts at zero)
      const bNorm = lora.adapters.reduce((s, a) => s + maxAbs(a.B.dataSync() as Float32Array), 0);
      assert(bNorm > 0, "the adapters' B moved");

      const fm = await fashion();
      const logitsAdapted = await logitsOf(model, fm.test, 200);

      // merged checkpoint → fresh model
      const mergedPath = `${dir}/merged.safetensors`;
      await saveCheckpoint(mergedPath, mergedStateDict(model, lora), { lora: "merged" });
      const m1 = (await loadClip("synth-tiny")).model;
      fresh.push(m1);
      m1.loadStateDict((await readCheckpoint(mergedPath)).stateDict);
      const logitsMerged = await logitsOf(m1, fm.test, 200);
      const dMerged = maxDiff(logitsAdapted, logitsMerged);
      const scale = maxAbs(logitsAdapted);
      const accMerged = (await evaluateDataset(m1, fm.test, { limit: EVAL_N })).top1;

      // adapters alone → base model + injectLora + loadAdapterStateDict
      const adaptersPath = `${dir}/adapters.safetensors`;
      await saveCheckpoint(adaptersPath, adapterStateDict(lora), { lora: { r: lora.r } });
      const m2 = (await loadClip("synth-tiny")).model;
      fresh.push(m2);
      const lora2 = injectLora(m2, { dropout: 0, seed: 7 }); // other seed: A comes from the file
      loadAdapterStateDict(lora2, (await readCheckpoint(adaptersPath)).stateDict);
      const logitsAdapters = await logitsOf(m2, fm.test, 200);
      const dAdapters = maxDiff(logitsAdapted, logitsAdapters);
      removeLora(m2, lora2);

      console.log(
        `LoRA FashionMNIST (synth-tiny, wasm, r ${lora.r}, alpha ${lora.alpha}, dropout 0, ` +
          `lr ${LR}, bs ${BS}, ${ITERATIONS} it in ${secs.toFixed(1)} s): top-1 ` +
          `${before.toFixed(2)} → ${after.toFixed(2)} (${EVAL_N} test images); merged ` +
          `checkpoint top-1 ${accMerged.toFixed(2)}, max |Δ logit| merged ${
            dMerged.toExponential(2)
          } (max |logit| ${scale.toFixed(2)}), adapter file ${dAdapters.toExponential(2)}; ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      assert(
        after >= before + 10,
        `LoRA training improves top-1 by ≥ 10 points: ${before} → ${after}`,
      );
      assert(dMerged <= 1e-5 * Math.max(1, scale), `merged logits differ by ${dMerged}`);
      assertEquals(accMerged, after);
      assert(dAdapters <= 1e-6 * Math.max(1, scale), `adapter-file logits differ by ${dAdapters}`);
      removeLora(model, lora);
    } finally {
      model.dispose();
      for (const m of fresh) m.dispose();
      await Deno.remove(dir, { recursive: true });
    }
    assertEquals(tf.memory().numTensors, tensorsBefore, "no tensor leaked");
  },
});

Deno.test({
  name: "LoRA shared mode on FashionMNIST: training runs and improves accuracy",
  ignore: !HAS_FMNIST,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const { model } = await loadClip("synth-tiny");
    try {
      const base = snapshotParams(model);
      const { lora, before, after, secs } = await trainLora(model, {
        shared: true,
        dropout: 0,
        seed: 1,
      });
      // one A/B pair per key, several adapters per pair
      assert(new Set(lora.adapters.map((a) => a.key)).size * 2 === lora.variables.size);
      assert(lora.adapters.length > lora.variables.size / 2, "adapters really share");
      console.log(
        `LoRA shared FashionMNIST: ${lora.adapters.length} adapters on ${
          lora.variables.size / 2
        } A/B pairs, ${ITERATIONS} it in ${secs.toFixed(1)} s: top-1 ${before.toFixed(2)} → ${
          after.toFixed(2)
        }`,
      );
      assertEquals(bitIdentical(model, base), []);
      assert(
        after >= before + 10,
        `shared LoRA improves top-1 by ≥ 10 points: ${before} → ${after}`,
      );
      removeLora(model, lora);
    } finally {
      model.dispose();
    }
  },
});

Deno.test({
  name: "LoRA CLI: --lora --lora-save-adapters checkpoint and adapter file reproduce each other",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lora_cli_test_" });
    const ds = "Synth-shape";
    try {
      const r = await runTrainFlags(parseFlags([
        "--model",
        "synth-tiny",
        "--train-dataset",
        ds,
        "--data-location",
        dir,
        "--iterations",
        "20",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--warmup-length",
        "5",
        "--lora",
        "--lora-save-adapters",
        "--save",
        `${dir}/out`,
        "--backend",
        "wasm",
        "--quiet",
      ]));
      assert(r[0].finished);
      const merged = await readCheckpoint(`${dir}/out/${ds}.safetensors`);
      const adapters = await readCheckpoint(`${dir}/out/${ds}.lora.safetensors`);
      assert([...adapters.stateDict.keys()].every((k) => /\.lora_[AB]$/.test(k)));
      assertEquals(adapters.meta.lora, { r: 8, alpha: 16, shared: false, splitQkvo: false });
      const test = await loadDataset(ds, { root: dir, split: "test" });

      const base = (await loadClip("synth-tiny")).model;
      const logitsBase = await logitsOf(base, test, 64);
      const m1 = (await loadClip("synth-tiny")).model;
      m1.loadStateDict(merged.stateDict);
      const logitsMerged = await logitsOf(m1, test, 64);
      const lora = injectLora(base, { seed: 42 });
      loadAdapterStateDict(lora, adapters.stateDict);
      const logitsAdapters = await logitsOf(base, test, 64);
      const scale = maxAbs(logitsMerged);
      const d = maxDiff(logitsMerged, logitsAdapters);
      const moved = maxDiff(logitsBase, logitsMerged);
      console.log(
        `LoRA CLI round trip (${ds}): max |Δ logit| merged vs base+adapters ${
          d.toExponential(2)
        }, ` +
          `vs base ${moved.toFixed(3)}`,
      );
      assert(moved > 1e-3, "training changed the model");
      assert(d <= 1e-5 * Math.max(1, scale), `merged vs adapters differ by ${d}`);
      removeLora(base, lora);
      base.dispose();
      m1.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
