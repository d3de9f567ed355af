/**
 * The `webgpu` child of `deno task bench`: every read is asynchronous (WebGPU in Deno has no
 * synchronous reads) and each timed call ends with a read, so the device's queue is included.
 * On a fallback adapter (lavapipe: Vulkan on the CPU) only the matmul and the tiny CLIP step run;
 * on a real GPU also the ViT-B/32 batch-8 step (the CPU table's case) and the ViT-B/16 batch-32
 * vision training step that `deno task gpu-check` compares with PyTorch on CUDA.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { webGpuAdapter } from "../clip/backends/webgpu.ts";
import { buildClip, MODEL_CONFIGS, randomStateDict } from "../clip/model.ts";
import type { ClipConfig, ClipModel } from "../clip/types.ts";
import { AdamW } from "../methods/adamw.ts";

/** The fields of `BenchResult` this child fills. */
export interface WebGpuBenchResult {
  backend: string;
  matmulGflops?: number;
  tinyTrainStep?: number;
  vitTrainStep?: number;
  vitB16TrainStep32?: number;
  notes: string[];
}

/** Seconds per call: best of `reps` after one warm-up. */
async function timeAsync(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t);
  }
  return best / 1000;
}

function ce(logits: tf.Tensor2D): tf.Scalar {
  const n = logits.shape[0];
  const labels = tf.oneHot(tf.range(0, n, 1, "int32") as tf.Tensor1D, logits.shape[1]);
  return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
}

const l2n = (x: tf.Tensor) => tf.div(x, tf.norm(x, "euclidean", -1, true));

/** One AdamW step (tensor path on webgpu); resolves after the loss is read back. */
async function step(
  opt: AdamW,
  params: Map<string, tf.Variable>,
  loss: () => tf.Scalar,
): Promise<void> {
  const keys = [...params.keys()];
  const vars = keys.map((k) => params.get(k)!);
  const { value, grads } = tf.variableGrads(loss, vars);
  const byKey = new Map<string, tf.Tensor>();
  keys.forEach((k, i) => {
    const g = grads[vars[i].name];
    if (g) byKey.set(k, g);
  });
  opt.step(params, byKey);
  tf.dispose(Object.values(grads));
  await value.data();
  value.dispose();
}

function visionModel(config: ClipConfig): { model: ClipModel; params: Map<string, tf.Variable> } {
  const small = {
    ...config,
    vocabSize: 8,
    transformerWidth: 64,
    transformerHeads: 1,
    transformerLayers: 1,
  };
  const model = buildClip(randomStateDict(small, 1), { config: small });
  for (const [k, v] of model.params) {
    if (!k.startsWith("visual.")) {
      v.dispose();
      model.params.delete(k);
    }
  }
  model.training = true;
  const params = new Map([...model.params].filter(([, v]) => v.trainable));
  return { model, params };
}

async function visionStep(config: ClipConfig, batch: number, reps: number): Promise<number> {
  const { model, params } = visionModel(config);
  const opt = new AdamW({ lr: 1e-5, weightDecay: 0.1 });
  const x = tf.randomNormal([batch, config.imageResolution, config.imageResolution, 3]);
  const target = tf.tidy(() => l2n(tf.randomNormal([batch, config.embedDim])));
  try {
    return await timeAsync(
      () =>
        step(
          opt,
          params,
          () =>
            tf.tidy(() =>
              ce(
                tf.mul(
                  tf.matMul(l2n(model.encodeImage(x as tf.Tensor4D)), target, false, true),
                  100,
                ) as tf.Tensor2D,
              )
            ),
        ),
      reps,
    );
  } finally {
    opt.dispose();
    tf.dispose([x, target]);
    model.dispose();
  }
}

/** Run the webgpu cases (webgpu must be active). */
export async function runWebGpuChild(
  opts: { quick: boolean; tinyConfig: ClipConfig; batch: number },
): Promise<WebGpuBenchResult> {
  const r: WebGpuBenchResult = { backend: "webgpu", notes: [] };
  const adapter = webGpuAdapter();
  const software = adapter?.fallback ?? true;
  const attempt = async (what: string, f: () => Promise<void>) => {
    const t0 = performance.now();
    try {
      await f();
      console.error(`  webgpu: ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      r.notes.push(`${what}: ${(e as Error).message.split("\n")[0]}`);
    }
  };
  if (adapter) {
    r.notes.push(
      `adapter: ${adapter.description || "?"}${software ? " (fallback, software)" : ""}`,
    );
  }
  await attempt("matmul", async () => {
    const a = tf.randomNormal([1576, 768]), b = tf.randomNormal([768, 768]);
    const s = await timeAsync(async () => {
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
    }, opts.quick || software ? 2 : 20);
    r.matmulGflops = 2 * 1576 * 768 * 768 / s / 1e9;
    tf.dispose([a, b]);
  });
  await attempt("tiny train step", async () => {
    const cfg = opts.tinyConfig;
    const model = buildClip(randomStateDict(cfg, 1), { config: cfg });
    model.training = true;
    const params = new Map([...model.params].filter(([, v]) => v.trainable));
    const opt = new AdamW({ lr: 1e-5, weightDecay: 0.1 });
    const n = opts.batch;
    const x = tf.randomNormal([n, cfg.imageResolution, cfg.imageResolution, 3]) as tf.Tensor4D;
    const ids = new Int32Array(n * cfg.contextLength);
    for (let i = 0; i < n; i++) {
      ids[i * cfg.contextLength] = cfg.vocabSize - 2;
      ids[i * cfg.contextLength + 1] = 1 + i;
      ids[i * cfg.contextLength + 2] = cfg.vocabSize - 1;
    }
    const tokens = tf.tensor2d(ids, [n, cfg.contextLength], "int32");
    r.tinyTrainStep = await timeAsync(
      () =>
        step(opt, params, () =>
          tf.tidy(() => {
            const { logitsPerImage, logitsPerText } = model.forward(x, tokens);
            return tf.div(tf.add(ce(logitsPerImage), ce(logitsPerText)), 2) as tf.Scalar;
          })),
      opts.quick ? 2 : 5,
    );
    opt.dispose();
    tf.dispose([x, tokens]);
    model.dispose();
  });
  if (software) {
    r.notes.push("ViT-B/32 b8 and ViT-B/16 b32 train steps skipped on a software adapter");
    return r;
  }
  await attempt("ViT-B/32 train step", async () => {
    r.vitTrainStep = await visionStep(MODEL_CONFIGS["ViT-B/32"], opts.batch, opts.quick ? 1 : 3);
  });
  await attempt("ViT-B/16 train step b32", async () => {
    r.vitB16TrainStep32 = await visionStep(MODEL_CONFIGS["ViT-B/16"], 32, opts.quick ? 1 : 3);
  });
  return r;
}
