import { assert, assertEquals } from "./_testing.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { loadClip } from "../clip/load.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { tf } from "../clip/backends/tf.ts";
import { synthTask } from "../datasets/synth.ts";
import { trainTask } from "./trainer.ts";
import { evaluateDataset } from "./evaluate.ts";
import { splitHead } from "./params.ts";

Deno.test({
  name: "linear probe: fc head on cached features (computed once), encoder untouched, head saved",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const dir = await Deno.makeTempDir({ prefix: "mtil-probe-" });
    try {
      const train = synthTask("texture", { split: "train", n: 96, size: 32 });
      const test = synthTask("texture", { split: "test", n: 64, size: 32 });
      const { model } = await loadClip("synth-tiny");
      const before = model.stateDict();
      // the zero-shot-initialised head gives the zero-shot logits: same accuracy at step 0
      const zs = await evaluateDataset(model, test, { templates: [test.templates[0]] });
      const opts = {
        trainMode: "fc" as const,
        head: { init: "zeroshot" as const },
        featureCache: `${dir}/features`,
        iterations: 30,
        batchSize: 32,
        lr: 1e-2,
        warmupLength: 1,
        log: "silent" as const,
      };
      const r = await trainTask(model, train, { ...opts, save: { dir: `${dir}/a` } });
      assertEquals(r.trainableParameters, model.config.embedDim * 4 + 4); // W [4, E] and b [4]
      const files = [...Deno.readDirSync(`${dir}/features`)].map((e) => e.name);
      assertEquals(files.length, 1, files.join(", "));
      const mtime = Deno.statSync(`${dir}/features/${files[0]}`).mtime!.getTime();
      // the encoder did not move; the checkpoint carries the head
      const ck = await readCheckpoint(r.saved.checkpoint!);
      const { model: weights, head } = splitHead(ck.stateDict);
      for (const [k, t] of before) {
        const u = weights.get(k)!.data;
        assert(t.data.every((v, i) => v === u[i]), `${k} must stay frozen`);
      }
      assert(head?.has("head.weight") && head.has("head.bias"), "head saved");
      const first = r.losses[0].losses.ce, last = r.losses.at(-1)!.losses.ce;
      assert(last < first, `the probe learns: ce ${first} → ${last}`);
      // with the trained head, evaluation uses it
      const w = head!.get("head.weight")!, b = head!.get("head.bias")!;
      const lin = {
        weight: tf.tensor2d(w.data as Float32Array, w.shape as [number, number]),
        bias: tf.tensor1d(b.data as Float32Array),
      };
      const probe = await evaluateDataset(model, test, { linearHead: lin });
      tf.dispose([lin.weight, lin.bias]);
      console.log(
        `linear probe on Synth-texture: zero-shot ${zs.top1.toFixed(1)}% → ${probe.top1}%`,
      );
      // a second run reuses the cache (same encoder weights): the file is not rewritten
      model.loadStateDict(before);
      await trainTask(model, train, { ...opts, iterations: 2 });
      assertEquals(Deno.statSync(`${dir}/features/${files[0]}`).mtime!.getTime(), mtime);
      // the probe needs the fc mode; a zero head needs enough rows
      let err = "";
      await trainTask(model, train, { ...opts, trainMode: "image" }).catch((e) => err = e.message);
      assert(/needs trainMode "fc"/.test(err), err);
      await trainTask(model, train, { ...opts, head: { init: "zeros", classes: 2 } })
        .catch((e) => err = e.message);
      assert(/2 rows but .* 4 classes/.test(err), err);
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
