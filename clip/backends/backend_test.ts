import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { VIT_TINY_CONFIG } from "../_testing.ts";
import { tf } from "./tf.ts";
import { availableBackends, BACKEND_NAMES, backendReport, initBackend } from "./backend.ts";
import { buildClip, randomStateDict } from "../model.ts";
import type { ClipConfig } from "../types.ts";

const AVAILABLE = await availableBackends();
console.error(`backends that load here: ${AVAILABLE.join(", ")}`);

Deno.test("initBackend: unknown names are an error listing the valid ones", async () => {
  await rejects(
    () => initBackend({ prefer: "cuda", quiet: true }),
    (e: Error) => {
      assert(e.message.includes('"cuda"'), e.message);
      for (const n of BACKEND_NAMES) assert(e.message.includes(n), e.message);
      return true;
    },
  );
});

Deno.test("initBackend: --backend / prefer and MTIL_BACKEND select; report says why", async () => {
  assertEquals(await initBackend({ prefer: "cpu", quiet: true }), "cpu");
  assertEquals(tf.getBackend(), "cpu");
  const report = backendReport();
  assertEquals(report[0], { name: "cpu", state: "active", detail: "pure JS" });
  assert(report.slice(1).every((s) => s.state === "untried"));

  const before = Deno.env.get("MTIL_BACKEND");
  try {
    Deno.env.set("MTIL_BACKEND", "cpu");
    assertEquals(await initBackend({ quiet: true }), "cpu");
    Deno.env.set("MTIL_BACKEND", "bogus");
    await rejects(() => initBackend({ quiet: true }), /MTIL_BACKEND/);
    // The option wins over the environment.
    assertEquals(await initBackend({ prefer: "cpu", quiet: true }), "cpu");
  } finally {
    if (before === undefined) Deno.env.delete("MTIL_BACKEND");
    else Deno.env.set("MTIL_BACKEND", before);
  }
});

Deno.test("initBackend: automatic choice is the fastest backend that loads", async () => {
  const before = Deno.env.get("MTIL_BACKEND");
  Deno.env.delete("MTIL_BACKEND");
  try {
    const active = await initBackend({ quiet: true });
    // (listed without MTIL_BACKEND: a software WebGPU adapter is then not a candidate)
    assertEquals(active, (await availableBackends())[0]);
    assertEquals(tf.getBackend(), active);
    const report = backendReport();
    // tfjs-node cannot load here (no libtensorflow): it must be reported as skipped, not crash.
    if (!AVAILABLE.includes("tensorflow")) {
      const tfNode = report.find((s) => s.name === "tensorflow")!;
      assertEquals(tfNode.state, "skipped");
      assert(tfNode.detail.length > 0);
    }
    assertEquals(report.filter((s) => s.state === "active").length, 1);
  } finally {
    if (before !== undefined) Deno.env.set("MTIL_BACKEND", before);
  }
});

const TINY_VIT: ClipConfig = VIT_TINY_CONFIG;
const TINY_RN: ClipConfig = {
  ...TINY_VIT,
  vision: "resnet",
  imageResolution: 64,
  visionLayers: [1, 1, 1, 1],
  visionWidth: 16,
  visionPatchSize: undefined,
  transformerLayers: 1,
};

/** Forward outputs and the gradients of one contrastive step of a tiny CLIP on `backend`. */
async function runTiny(config: ClipConfig, backend: string): Promise<Float32Array[]> {
  await initBackend({ prefer: backend, quiet: true });
  assertEquals(tf.getBackend(), backend);
  const model = buildClip(randomStateDict(config, 3), { config });
  const n = 3;
  const images = tf.randomNormal(
    [n, config.imageResolution, config.imageResolution, 3],
    0,
    1,
    "float32",
    11,
  ) as tf.Tensor4D;
  const ids = new Int32Array(n * 77);
  for (let i = 0; i < n; i++) {
    ids[i * 77] = 49406;
    for (let j = 1; j < 4 + i; j++) ids[i * 77 + j] = 100 + 37 * i + j;
    ids[i * 77 + 4 + i] = 49407;
  }
  const tokens = tf.tensor2d(ids, [n, 77], "int32");
  const outs: Float32Array[] = [];
  const start = tf.memory().numTensors;
  const fwd = model.forward(images, tokens);
  outs.push(await fwd.logitsPerImage.data() as Float32Array); // async: webgpu reads no other way
  tf.dispose([fwd.logitsPerImage, fwd.logitsPerText]);
  model.training = true;
  const vars = [...model.params.values()].filter((v) => v.trainable);
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 1, 2], "int32"), n));
  const { value, grads } = tf.variableGrads(
    () =>
      tf.losses.softmaxCrossEntropy(
        labels,
        model.forward(images, tokens).logitsPerImage,
      ) as tf.Scalar,
    vars,
  );
  outs.push(await value.data() as Float32Array);
  for (const v of vars) outs.push(await grads[v.name].data() as Float32Array);
  tf.dispose([value, ...Object.values(grads), labels]);
  assertEquals(tf.memory().numTensors, start, "tensors leaked by a forward + gradient");
  tf.dispose([images, tokens]);
  model.dispose();
  return outs;
}

for (const [label, config] of [["ViT", TINY_VIT], ["ResNet", TINY_RN]] as const) {
  Deno.test(`tiny ${label} CLIP: logits and every gradient equal cpu on each backend`, async () => {
    const ref = await runTiny(config, "cpu");
    for (const backend of AVAILABLE.filter((b) => b !== "cpu")) {
      const got = await runTiny(config, backend);
      assertEquals(got.length, ref.length);
      for (let t = 0; t < ref.length; t++) {
        let scale = 1e-3, worst = 0;
        for (const v of ref[t]) scale = Math.max(scale, Math.abs(v));
        for (let i = 0; i < ref[t].length; i++) {
          worst = Math.max(worst, Math.abs(got[t][i] - ref[t][i]));
        }
        assert(worst <= 1e-4 * scale, `${backend} tensor ${t}: max diff ${worst} (scale ${scale})`);
      }
    }
  });
}
