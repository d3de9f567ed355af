import { assert, assertEquals } from "./_testing.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { loadClip } from "../clip/load.ts";
import { synthTask } from "../datasets/synth.ts";
import { icarl, ICARL_MEMORY_FILE, lwf, ZSCL } from "./builtin.ts";
import { trainTask } from "./trainer.ts";

Deno.test({
  name: "icarl: herding after each task, exemplars replayed in the next, memory resumed from disk",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const dir = await Deno.makeTempDir({ prefix: "mtil-icarl-" });
    try {
      const a = synthTask("shape", { split: "train", n: 64, size: 32 });
      const b = synthTask("colour", { split: "train", n: 64, size: 32 });
      const { model } = await loadClip("synth-tiny");
      const method = icarl({ memorySize: 24, candidates: 48 });
      const opts = { method, iterations: 2, batchSize: 8, log: "silent" as const };
      const r1 = await trainTask(model, a, { ...opts, save: { dir } });
      assert(r1.losses.every((l) => l.losses.icarl_ce === undefined), "no exemplars yet");
      const mem = JSON.parse(await Deno.readTextFile(`${dir}/${ICARL_MEMORY_FILE}`));
      assertEquals(JSON.stringify(mem).includes(a.name), true, "task 1 in the memory");
      const r2 = await trainTask(model, b, { ...opts, save: { dir } });
      assert(r2.losses.every((l) => Number.isFinite(l.losses.icarl_ce)), "exemplars replayed");
      // a fresh method instance (a new process) reads the memory and skips finished tasks
      const again = icarl({ memorySize: 24, candidates: 48 });
      const r3 = await trainTask(model, b, { ...opts, method: again, save: { dir, resume: true } });
      assert(r3.skipped, "finished task skipped on resume");
      assert(again.taskDone!(a.name) && again.taskDone!(b.name), "memory restored from disk");
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("method flags: typed options, a wrong value names its flag", async () => {
  const o = await ZSCL.fromFlags({
    "ref-dataset": "ImageNet",
    "ref-sentences": "conceptual_captions",
    "T": "2",
    "num": "64",
    "text-loss": true,
  });
  assertEquals(o.refDataset, "ImageNet");
  assertEquals(o.refSentences, "conceptual_captions");
  assertEquals([o.T, o.refNum, o.textLoss, o.imageLoss], [2, 64, true, false]);
  let err = "";
  try {
    await ZSCL.fromFlags({ "ref-dataset": "ImageNet", "T": "abc" });
  } catch (e) {
    err = (e as Error).message;
  }
  assert(/--T expects a number/.test(err), err);
  try {
    await ZSCL.fromFlags({});
  } catch (e) {
    err = (e as Error).message;
  }
  assert(/needs --ref-dataset/.test(err), err);
  assertEquals(lwf({ texts: "random" }).name, "lwf");
});
