/**
 * Gradient accumulation (`TrainOptions.accumSteps`): N micro-batches give the update of one batch
 * N times larger, on the cpu backend and (where an adapter loads) on webgpu.
 */
import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { parityBackends } from "../clip/_testing.ts";
import { buildClip, randomStateDict } from "../clip/model.ts";
import { assert, methodParts, TINY } from "./_testing.ts";
import "./presets.ts";
import { createRun, disposeRun, runSteps, type TrainPart, type TrainTask } from "./train.ts";

/** Deterministic pseudo-random numbers from a seed (mulberry32). */
function rand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function images(seed: number, n: number): tf.Tensor4D {
  const r = rand(seed);
  const data = Float32Array.from({ length: n * 16 * 16 * 3 }, () => r() * 2 - 1);
  return tf.tensor4d(data, [n, 16, 16, 3]);
}

function tokens(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(
    rows.map((r) => {
      const t = [30, ...r, 31];
      while (t.length < TINY.contextLength) t.push(0);
      return t;
    }),
    undefined,
    "int32",
  );
}

interface Outcome {
  losses: Record<string, number>[];
  grads: Map<string, Float32Array>[];
  params: Map<string, Float32Array>;
}

/** Two steps of `method` on a batch of 6 with `accum` micro-batches; gradients recorded. */
async function runWith(method: string, accum: number): Promise<Outcome> {
  const model = buildClip(randomStateDict(TINY, 5));
  const textTokens = tokens([[1, 2], [3], [4, 5, 6]]);
  const refTexts = tokens([[7], [8, 9], [10], [11, 12, 13]]);
  const task: TrainTask = {
    name: "accum",
    classnames: ["a", "b", "c"],
    textTokens,
    batch: (s) => Promise.resolve({ images: images(100 + s, 6), labels: [0, 1, 2, 2, 1, 0] }),
  };
  const pending: Map<string, tf.Tensor>[] = [];
  const grads: Map<string, Float32Array>[] = [];
  const losses: Record<string, number>[] = [];
  const recorder: TrainPart = {
    name: "grad-recorder",
    transformGrads(_run, step, g) {
      pending[step] = new Map([...g].map(([k, t]) => [k, tf.keep(t.clone())]));
    },
  };
  const run = await createRun(model, task, {
    iterations: 2,
    lr: 1e-5,
    warmupLength: 1,
    finalStep: false,
    parts: [
      ...methodParts(method, {
        labelSmoothing: 0.2,
        l2: 1,
        T: 2,
        refTexts,
        refImages: (s: number) => Promise.resolve(images(500 + s, 4)),
      }),
      recorder,
    ],
    accumSteps: accum,
    onStep: async (rec) => {
      losses.push(rec.losses);
      const m = new Map<string, Float32Array>();
      for (const [k, t] of pending[rec.step]) m.set(k, (await t.data()) as Float32Array);
      tf.dispose([...pending[rec.step].values()]);
      grads.push(m);
    },
  });
  await runSteps(run);
  const params = new Map<string, Float32Array>();
  for (const [k, v] of model.params) {
    if (v.dtype === "float32") params.set(k, (await v.data()) as Float32Array);
  }
  disposeRun(run);
  model.dispose();
  tf.dispose([textTokens, refTexts]);
  return { losses, grads, params };
}

/**
 * Max |a−b| over a tensor, relative to the tensor's largest magnitude (floor 1). The key third of
 * an `in_proj_bias` is skipped: a key bias cannot change the attention (softmax is shift-invariant),
 * so its gradient is rounding noise in any implementation and any summation order (the
 * step-parity test treats it the same way).
 */
function relErr(a: Float32Array, b: Float32Array, key = ""): number {
  let worst = 0, scale = 1;
  const third = a.length / 3;
  const skipKey = key.endsWith("in_proj_bias");
  for (let i = 0; i < a.length; i++) {
    if (skipKey && i >= third && i < 2 * third) continue;
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return worst / scale;
}

for (const backend of await parityBackends(["cpu"])) {
  for (const method of ["finetune", "ZSCL"]) {
    Deno.test(`accumSteps: 2 and 3 micro-batches equal one batch (${method}, ViT) on ${backend}`, async () => {
      await tf.ready();
      const before = tf.getBackend();
      await initBackend({ prefer: backend, quiet: true });
      const start = tf.memory().numTensors;
      try {
        const whole = await runWith(method, 1);
        for (const accum of [2, 3]) {
          const got = await runWith(method, accum);
          for (let s = 0; s < 2; s++) {
            for (const [k, v] of Object.entries(whole.losses[s])) {
              const e = Math.abs(got.losses[s][k] - v) / Math.max(1, Math.abs(v));
              assert(e <= 1e-5, `accum ${accum} step ${s} loss ${k}: ${got.losses[s][k]} vs ${v}`);
            }
            assert(got.grads[s].size === whole.grads[s].size, "same gradients");
            for (const [k, g] of whole.grads[s]) {
              const e = relErr(got.grads[s].get(k)!, g, k);
              assert(e <= 1e-5, `accum ${accum} step ${s} grad ${k}: rel err ${e}`);
            }
          }
          for (const [k, p] of whole.params) {
            const e = relErr(got.params.get(k)!, p, k);
            assert(e <= 1e-5, `accum ${accum} param ${k}: rel err ${e}`);
          }
        }
      } finally {
        await tf.setBackend(before);
      }
      assert(tf.memory().numTensors <= start, "tensors leaked");
    });
  }
}

Deno.test("accumSteps: invalid counts and whole-batch parts are refused, no update taken", async () => {
  const model = buildClip(randomStateDict(TINY, 5));
  const textTokens = tokens([[1, 2], [3]]);
  const task: TrainTask = {
    name: "accum",
    classnames: ["a", "b"],
    textTokens,
    batch: () => Promise.resolve({ images: images(1, 2), labels: [0, 1] }),
  };
  const expectError = async (opts: Record<string, unknown>, includes: string) => {
    const run = await createRun(model, task, {
      iterations: 1,
      parts: methodParts("finetune"),
      ...opts,
    });
    try {
      await runSteps(run);
      throw new Error("expected a failure");
    } catch (e) {
      assert((e as Error).message.includes(includes), (e as Error).message);
    } finally {
      disposeRun(run);
    }
  };
  await expectError({ accumSteps: 0 }, "positive integer");
  await expectError({ accumSteps: 3 }, "exceeds the batch size 2");
  await expectError({
    accumSteps: 2,
    parts: [{ name: "needs-all", wholeBatchOnly: true }],
  }, 'part "needs-all" needs the whole batch');
  textTokens.dispose();
  model.dispose();
});

Deno.test("accumSteps on a ResNet: BatchNorm sees each micro-batch (as PyTorch's accumulation)", async () => {
  await initBackend({ prefer: "wasm", quiet: true });
  const rn = {
    ...TINY,
    vision: "resnet" as const,
    imageResolution: 64,
    visionLayers: [1, 1, 1, 1],
    visionWidth: 8,
    visionPatchSize: undefined,
  };
  const tracked = async (accum: number) => {
    const model = buildClip(randomStateDict(rn, 5));
    const textTokens = tokens([[1, 2], [3]]);
    const task: TrainTask = {
      name: "accum-rn",
      classnames: ["a", "b"],
      textTokens,
      batch: (s) =>
        Promise.resolve({
          images: tf.randomNormal([4, 64, 64, 3], 0, 1, "float32", s) as tf.Tensor4D,
          labels: [0, 1, 1, 0],
        }),
    };
    const run = await createRun(model, task, {
      iterations: 2,
      finalStep: false,
      parts: methodParts("finetune"),
      accumSteps: accum,
    });
    await runSteps(run);
    const n = (await model.params.get("visual.bn1.num_batches_tracked")!.data())[0];
    const mean = await model.params.get("visual.bn1.running_mean")!.data() as Float32Array;
    disposeRun(run);
    textTokens.dispose();
    model.dispose();
    return { n, mean };
  };
  const one = await tracked(1), two = await tracked(2);
  // one forward per micro-batch: the running statistics move twice per step
  assert(one.n === 2 && two.n === 4, `num_batches_tracked ${one.n}, ${two.n}`);
  assert(relErr(one.mean, two.mean) > 1e-7, "micro-batch statistics differ from whole-batch ones");
});
