import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { buildClip, randomStateDict } from "../clip/model.ts";
import type { Dataset } from "../datasets/types.ts";
import { assertAlmostEquals, assertEquals, TINY } from "./_testing.ts";
import {
  appendAllResults,
  evaluateDataset,
  recordMetrics,
  topkHits,
  topkHitsAsync,
} from "./evaluate.ts";
import { normalizeRows } from "./losses.ts";

// MTIL_BACKEND=webgpu runs the evaluation on the GPU path
await initBackend({ prefer: Deno.env.get("MTIL_BACKEND") || "wasm", quiet: true });

Deno.test("topkHits counts top-1 and top-5 (k capped by classes)", async () => {
  const l = tf.tensor2d([[0, 1, 2], [5, 1, 0], [1, 0, 9]]);
  assertEquals(await topkHitsAsync(l, [2, 1, 1], 2), [1, 2]);
  assertEquals(await topkHitsAsync(l, [2, 1, 1]), [1, 3]);
  if (tf.getBackend() !== "webgpu") {
    // the synchronous form reads synchronously: not on webgpu
    assertEquals(topkHits(l, [2, 1, 1], 2), [1, 2]);
    assertEquals(topkHits(l, [2, 1, 1]), [1, 3]);
  }
  l.dispose();
});

Deno.test("recordMetrics de-duplicates by iteration; appendAllResults appends", async () => {
  const dir = await Deno.makeTempDir();
  const p = `${dir}/metrics_X.csv`;
  await recordMetrics(p, 100, 50, 90);
  await recordMetrics(p, 0, 10, 20);
  await recordMetrics(p, 100, 55, 91); // a resumed run re-evaluates iteration 100
  assertEquals(await Deno.readTextFile(p), "iteration,top1,top5\n0,10,20\n100,55,91\n");
  const r = { dataset: "X", top1: 1, top5: 2, n: 3 };
  await appendAllResults(`${dir}/all.csv`, "m.safetensors", [r]);
  await appendAllResults(`${dir}/all.csv`, "m.safetensors", [r, { ...r, dataset: "Y" }]);
  const lines = (await Deno.readTextFile(`${dir}/all.csv`)).trim().split("\n");
  assertEquals(lines.length, 4);
  assertEquals(lines[0], "time,model,dataset,top1,top5,n,note");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("evaluateDataset: accuracy of a tiny model equals a direct computation", async () => {
  const model = buildClip(randomStateDict(TINY, 11));
  const n = 7;
  const pix = Array.from({ length: n }, (_, i) => {
    const d = new Uint8Array(16 * 16 * 3);
    for (let j = 0; j < d.length; j++) d[j] = (i * 37 + j * 11) % 256;
    return d;
  });
  const ds: Dataset = {
    name: "TinyDs",
    split: "test",
    classnames: ["a", "b", "c"],
    templates: ["{}"],
    length: n,
    get: (i) => Promise.resolve({ image: { data: pix[i], width: 16, height: 16 }, label: i % 3 }),
  };
  const head = tf.tidy(() =>
    tf.transpose(normalizeRows(tf.randomNormal([3, TINY.embedDim], 0, 1, "float32", 5)))
  ) as tf.Tensor2D;
  const res = await evaluateDataset(model, ds, { head, batchSize: 3 });
  // direct: the same eval transform at 16 px is the identity resize; normalise as CLIP
  const { batches } = await import("../datasets/loader.ts");
  const { evalTransform } = await import("../datasets/transforms.ts");
  let hits = 0;
  for await (const b of batches(ds, { batchSize: n, transform: evalTransform(16), workers: 0 })) {
    const pred = tf.tidy(() =>
      tf.argMax(tf.matMul(normalizeRows(model.encodeImage(b.images)), head), 1)
    );
    const p = await pred.data(), lab = await b.labels.data();
    for (let i = 0; i < n; i++) if (p[i] === lab[i]) hits++;
    tf.dispose([pred, b.images, b.labels]);
  }
  assertEquals(res.n, n);
  assertAlmostEquals(res.top1, (100 * hits) / n, 1e-9);
  assertEquals(res.top5, 100); // 3 classes: top-5 always hits
  const lim = await evaluateDataset(model, ds, { head, batchSize: 3, limit: 4 });
  assertEquals(lim.n, 4);
  head.dispose();
  model.dispose();
});
