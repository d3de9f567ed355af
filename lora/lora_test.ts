import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { tf } from "../clip/backends/tf.ts";
import type { ClipConfig, ClipModel } from "../clip/types.ts";
import { buildClip, Clip, MODEL_CONFIGS, randomStateDict, stateDictShapes } from "../clip/model.ts";
import {
  adapterStateDict,
  injectLora,
  loadAdapterStateDict,
  loraParameterCounts,
  mergedStateDict,
  removeLora,
} from "./lora.ts";
import { maxAbsDiff, tinyClipConfig } from "../clip/_testing.ts";

const TINY: ClipConfig = tinyClipConfig({ visionLayers: 2, transformerLayers: 2 });

function inputs(): { images: tf.Tensor4D; tokens: tf.Tensor2D } {
  const images = tf.randomNormal([3, 16, 16, 3], 0, 1, "float32", 7) as tf.Tensor4D;
  const tokens = tf.tensor2d(
    [[48, 3, 4, 49, 0, 0, 0, 0], [48, 10, 49, 0, 0, 0, 0, 0], [48, 5, 6, 7, 8, 49, 0, 0]],
    [3, 8],
    "int32",
  );
  return { images, tokens };
}

function features(model: ClipModel, x: { images: tf.Tensor4D; tokens: tf.Tensor2D }) {
  return tf.tidy(() => ({
    img: model.encodeImage(x.images).dataSync() as Float32Array,
    txt: model.encodeText(x.tokens).dataSync() as Float32Array,
  }));
}

function randomizeB(state: ReturnType<typeof injectLora>, scale = 0.05) {
  let seed = 100;
  for (const [name, v] of state.variables) {
    if (name.endsWith(".lora_B")) {
      tf.tidy(() => v.assign(tf.randomNormal(v.shape, 0, scale, "float32", seed++)));
    }
  }
}

Deno.test("LoRA: with B = 0 the model equals the base", () => {
  const model = buildClip(randomStateDict(TINY, 1));
  const x = inputs();
  const base = features(model, x);
  const state = injectLora(model, { targets: ["attn", "mlp.c_fc", "mlp.c_proj"] });
  const withLora = features(model, x);
  strictEqual(maxAbsDiff(base.img, withLora.img), 0);
  strictEqual(maxAbsDiff(base.txt, withLora.txt), 0);
  removeLora(model, state);
  model.dispose();
  tf.dispose(x);
});

for (const targets of [["attn.out_proj", "mlp.c_fc", "mlp.c_proj"], ["attn"]]) {
  Deno.test(`LoRA: merged forward equals unmerged forward (targets ${targets})`, () => {
    const model = buildClip(randomStateDict(TINY, 2));
    const x = inputs();
    const base = features(model, x);
    const state = injectLora(model, { targets, seed: 3 });
    randomizeB(state);
    const unmerged = features(model, x);
    // The adapters really change the output (also on attn.out_proj, unlike the Python version).
    ok(maxAbsDiff(base.img, unmerged.img) > 1e-3, "adapters must change image features");
    ok(maxAbsDiff(base.txt, unmerged.txt) > 1e-3, "adapters must change text features");
    const merged = buildClip(mergedStateDict(model, state));
    const m = features(merged, x);
    ok(maxAbsDiff(m.img, unmerged.img) <= 1e-5, `image ${maxAbsDiff(m.img, unmerged.img)}`);
    ok(maxAbsDiff(m.txt, unmerged.txt) <= 1e-5, `text ${maxAbsDiff(m.txt, unmerged.txt)}`);
    // Base weights untouched.
    const sd = model.stateDict();
    const fresh = randomStateDict(TINY, 2);
    for (const [k, t] of fresh) strictEqual(maxAbsDiff(sd.get(k)!.data, t.data), 0, k);
    removeLora(model, state);
    merged.dispose();
    model.dispose();
    tf.dispose(x);
  });
}

Deno.test("LoRA: a target that matches nothing lists the available paths", () => {
  const model = buildClip(randomStateDict(TINY, 1));
  throws(
    () => injectLora(model, { targets: ["mlp.nothing"] }),
    /matches no module[\s\S]*mlp\.c_fc/,
  );
  model.dispose();
});

Deno.test("LoRA shared: one variable per key, and a gradient step moves every user", () => {
  const model = buildClip(randomStateDict(TINY, 4));
  const state = injectLora(model, { targets: ["attn", "mlp.c_fc", "mlp.c_proj"], shared: true });
  // Vision and text both have width 64 and 1 head here, so they share: one attention pair and
  // one pair per MLP direction.
  deepStrictEqual([...state.variables.keys()].sort(), [
    "attn:64:1.lora_A",
    "attn:64:1.lora_B",
    "mlp:256:64.lora_A",
    "mlp:256:64.lora_B",
    "mlp:64:256.lora_A",
    "mlp:64:256.lora_B",
  ]);
  const attnUsers = state.adapters.filter((a) => a.key === "attn:64:1");
  strictEqual(attnUsers.length, 2 * 2 * 4); // 2 towers × 2 blocks × q/k/v/o
  ok(attnUsers.every((a) => a.A === attnUsers[0].A && a.B === attnUsers[0].B));
  // One SGD step on B: every user's delta changes together.
  const x = inputs();
  const B = attnUsers[0].B;
  const { grads } = tf.variableGrads(
    () => tf.sum(tf.square(model.encodeText(x.tokens))) as tf.Scalar,
    [B],
  );
  tf.tidy(() => B.assign(B.sub(grads[B.name].mul(0.1))));
  ok(tf.sum(tf.abs(B)).dataSync()[0] > 0, "shared B moved");
  for (const a of attnUsers) strictEqual(a.B, B);
  tf.dispose(grads);
  // split-qkvo: the projection joins the key.
  removeLora(model, state);
  const split = injectLora(model, { targets: ["attn"], shared: true, splitQkvo: true });
  deepStrictEqual(
    [...split.variables.keys()].filter((k) => k.endsWith("A")).sort(),
    ["attn:64:1:k.lora_A", "attn:64:1:o.lora_A", "attn:64:1:q.lora_A", "attn:64:1:v.lora_A"],
  );
  removeLora(model, split);
  model.dispose();
  tf.dispose(x);
});

/** A shapes-only stand-in for a model (no weights allocated) to count parameters of big configs. */
function shapeModel(config: ClipConfig): ClipModel {
  const params = new Map<string, tf.Variable>();
  for (const e of stateDictShapes(config)) {
    const size = e.shape.reduce((a, b) => a * b, 1);
    params.set(e.key, { shape: e.shape, size } as unknown as tf.Variable);
  }
  const fake = { config, params, denseHooks: new Map(), training: false } as unknown as Clip;
  fake.linearPaths = () => Clip.prototype.linearPaths.call(fake);
  return fake;
}

Deno.test("LoRA parameter counts for ViT-B/16 and RN50 shapes, derived by hand", () => {
  const r = 8;
  // A is [r, in], B is [out, r]: an adapter has r·(in + out) parameters.
  const ad = (i: number, o: number) => r * (i + o);
  const vitB16 = MODEL_CONFIGS["ViT-B/16"];
  const rn50 = MODEL_CONFIGS["RN50"];
  const cases: [ClipConfig, Parameters<typeof injectLora>[1], number][] = [
    // ViT-B/16: vision width 768 (mlp 3072), 12 blocks; text width 512 (mlp 2048), 12 blocks.
    [
      vitB16,
      {},
      12 * (ad(768, 768) + ad(768, 3072) + ad(3072, 768)) +
      12 * (ad(512, 512) + ad(512, 2048) + ad(2048, 512)),
    ],
    // shared: one pair per (attn, width, heads) and per (mlp, in, out), per tower.
    [
      vitB16,
      { shared: true },
      ad(768, 768) + ad(768, 3072) + ad(3072, 768) +
      ad(512, 512) + ad(512, 2048) + ad(2048, 512),
    ],
    [vitB16, { targets: ["attn"] }, 12 * 4 * ad(768, 768) + 12 * 4 * ad(512, 512)],
    [vitB16, { targets: ["attn"], shared: true }, ad(768, 768) + ad(512, 512)],
    [
      vitB16,
      { targets: ["attn"], shared: true, splitQkvo: true },
      4 * ad(768, 768) +
      4 * ad(512, 512),
    ],
    // RN50: the image tower is a ResNet, so the default targets hit only the text blocks.
    [rn50, {}, 12 * (ad(512, 512) + ad(512, 2048) + ad(2048, 512))],
    [rn50, { shared: true }, ad(512, 512) + ad(512, 2048) + ad(2048, 512)],
    // attention pooling: c_proj 2048 → 1024.
    [rn50, { targets: ["attnpool.c_proj"] }, ad(2048, 1024)],
  ];
  for (const [config, opts, expected] of cases) {
    const model = shapeModel(config);
    const state = injectLora(model, { ...opts, r });
    const counts = loraParameterCounts(model, state);
    strictEqual(counts.trainable, expected, `${JSON.stringify(opts)} on ${config.visionWidth}`);
    for (const v of new Set(state.variables.values())) v.dispose();
  }
});

Deno.test("LoRA adapters alone: save → load onto a fresh base gives the same outputs", () => {
  const model = buildClip(randomStateDict(TINY, 5));
  const x = inputs();
  const state = injectLora(model, { targets: ["attn", "mlp.c_fc"], seed: 9 });
  randomizeB(state);
  const want = features(model, x);
  const sd = adapterStateDict(state);
  const model2 = buildClip(randomStateDict(TINY, 5));
  const state2 = injectLora(model2, { targets: ["attn", "mlp.c_fc"], seed: 1 });
  loadAdapterStateDict(state2, sd);
  const got = features(model2, x);
  strictEqual(maxAbsDiff(want.img, got.img), 0);
  strictEqual(maxAbsDiff(want.txt, got.txt), 0);
  removeLora(model, state);
  removeLora(model2, state2);
  model.dispose();
  model2.dispose();
  tf.dispose(x);
});
