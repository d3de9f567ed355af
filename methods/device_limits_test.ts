import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { setDeviceLimitForTesting } from "../clip/backends/webgpu.ts";
import { buildClip, MODEL_CONFIGS, randomStateDict } from "../clip/model.ts";
import { assert, assertEquals, methodParts, TINY } from "./_testing.ts";
import { checkDeviceLimits, DeviceLimitError, stepTensors } from "./device_limits.ts";
import "./presets.ts";
import { createRun, disposeRun, runSteps, type TrainTask } from "./train.ts";

const LAVAPIPE = 134_217_728;

function limitError(fn: () => void): DeviceLimitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DeviceLimitError) return e;
    throw e;
  }
  throw new Error("expected a DeviceLimitError");
}

Deno.test("device limits: ViT-B/16 at batch 64 fails on a 128 MiB binding, naming op, size, limit, batch", () => {
  const vit = MODEL_CONFIGS["ViT-B/16"];
  const t = stepTensors(vit, { batch: 64 });
  // the figure: attention scores of ViT-B/16 at batch 64 are ~119 MB
  const scores = t.find((x) => x.op.startsWith("vision attention scores"))!;
  assertEquals(scores.bytes, 64 * 12 * 197 * 197 * 4);
  const e = limitError(() => checkDeviceLimits(vit, { batch: 64 }, LAVAPIPE));
  // the MLP hidden activation [64·197, 3072] is the largest (154.9 MB)
  assertEquals(e.op, "vision MLP hidden (c_fc, GELU)");
  assertEquals(e.bytes, 64 * 197 * 3072 * 4);
  assertEquals(e.limit, LAVAPIPE);
  assertEquals(e.largestBatch, Math.floor(LAVAPIPE / (197 * 3072 * 4))); // 55
  for (
    const s of [
      "vision MLP hidden",
      "154.9 MB",
      "134217728",
      "batch per pass that fits is 55",
      "--accum-steps 2",
    ]
  ) {
    assert(e.message.includes(s), `"${s}" missing in: ${e.message}`);
  }
  // the largest batch that fits does fit
  checkDeviceLimits(vit, { batch: 55 }, LAVAPIPE);
});

Deno.test("device limits: a batch-independent tensor over the limit says no batch fits", () => {
  // ViT-L/14's token-embedding gradient: 49408 × 768 floats = 151.8 MB
  const e = limitError(() =>
    checkDeviceLimits(
      MODEL_CONFIGS["ViT-L/14"],
      { batch: 1, tokenEmbeddingTrained: true },
      LAVAPIPE,
    )
  );
  assertEquals(e.op, "token-embedding gradient (UnsortedSegmentSum)");
  assertEquals(e.largestBatch, 0);
  assert(e.message.includes("no batch size fits") && e.message.includes("--freeze"), e.message);
  // frozen embeddings: fits
  checkDeviceLimits(MODEL_CONFIGS["ViT-L/14"], { batch: 1 }, LAVAPIPE);
});

Deno.test("device limits: RN50 at batch 64 is estimated (stem and layer1 maps)", () => {
  const t = stepTensors(MODEL_CONFIGS["RN50"], { batch: 64 });
  assertEquals(t[0].op, "ResNet layer1 output");
  assertEquals(t[0].bytes, 64 * 56 * 56 * 256 * 4);
});

Deno.test("device limits: a training step over a (fake) small limit fails before any update", async () => {
  await initBackend({ prefer: "cpu", quiet: true });
  const model = buildClip(randomStateDict(TINY, 5));
  const textTokens = tf.tensor2d(
    [[30, 1, 31, 0, 0, 0, 0, 0], [30, 2, 31, 0, 0, 0, 0, 0], [30, 3, 4, 31, 0, 0, 0, 0]],
    undefined,
    "int32",
  );
  const task: TrainTask = {
    name: "limits",
    classnames: ["a", "b", "c"],
    textTokens,
    batch: (s) =>
      Promise.resolve({
        images: tf.randomNormal([6, 16, 16, 3], 0, 1, "float32", s) as tf.Tensor4D,
        labels: [0, 1, 2, 0, 1, 2],
      }),
  };
  const before = new Map([...model.params].map(([k, v]) => [k, Array.from(v.dataSync())]));
  // tiny ViT: vision MLP hidden is 5 tokens × 256 × 4 B = 5120 B per image → 30720 B at batch 6
  setDeviceLimitForTesting(30_000);
  try {
    const run = await createRun(model, task, { iterations: 1, parts: methodParts("finetune") });
    let err: unknown;
    try {
      await runSteps(run);
    } catch (e) {
      err = e;
    }
    disposeRun(run);
    assert(err instanceof DeviceLimitError, String(err));
    assertEquals((err as DeviceLimitError).largestBatch, 5);
    assert((err as Error).message.includes("--accum-steps 2"), (err as Error).message);
    for (const [k, v] of model.params) {
      assertEquals(Array.from(v.dataSync()), before.get(k), `${k} changed`);
    }
    // the suggested accumulation runs
    const run2 = await createRun(model, task, {
      iterations: 1,
      parts: methodParts("finetune"),
      accumSteps: 2,
      finalStep: false,
    });
    const r = await runSteps(run2);
    assertEquals(r.records.length, 1);
    disposeRun(run2);
  } finally {
    setDeviceLimitForTesting(undefined);
    textTokens.dispose();
    model.dispose();
  }
});
