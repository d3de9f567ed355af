import { tf } from "../../clip/backends/tf.ts";
import { initBackend } from "../../clip/backends/backend.ts";
import { buildClip, type Clip, MODEL_CONFIGS, randomStateDict } from "../../clip/model.ts";
import { scaledDotProductAttention } from "../../clip/layers.ts";
import type { ClipConfig } from "../../clip/types.ts";
import type { Dataset } from "../../datasets/types.ts";
import {
  assert,
  assertAllClose,
  assertAlmostEquals,
  assertEquals,
  assertThrows,
  TINY,
} from "../_testing.ts";
import { createRun, disposeRun, runSteps, train, type TrainTask } from "../train.ts";
import { loadTrainState, saveTrainState } from "../state.ts";
import { evaluate, evaluateDataset } from "../evaluate.ts";
import { loadClip } from "../../clip/load.ts";
import { synthTask } from "../../datasets/synth.ts";
import { methodFromFlags } from "../method.ts";
import { trainTask } from "../trainer.ts";
import { dikiMethod } from "./method.ts";
import { cosineNoWarmupLr } from "../schedule.ts";
import { Sgd } from "../sgd.ts";
import {
  Diki,
  diki,
  dikiOptionsFromFlags,
  dikiPrompts,
  evaluateDiki,
  fitGaussian,
  loadDiki,
  loadDikiInto,
  poolSlots,
  prefixAttention,
  saveDiki,
  selectTask,
  sigmoid,
  TaskGaussian,
  trainableParamsPerTask,
} from "./mod.ts";

await initBackend({ prefer: "wasm", quiet: true });

/** Two heads in both towers, two layers each, 16 px images, 16-dim embedding. */
const TWO_HEADS: ClipConfig = {
  ...TINY,
  visionWidth: 128,
  visionLayers: 2,
  transformerWidth: 128,
  transformerHeads: 2,
  transformerLayers: 2,
};

function images(n: number, seed: number, shift = 0): tf.Tensor4D {
  return tf.tidy(() => tf.randomNormal([n, 16, 16, 3], shift, 1, "float32", seed)) as tf.Tensor4D;
}

function tokens(n: number): tf.Tensor2D {
  // SOT=1 … EOT has the largest id (31) in each row
  const rows = Array.from({ length: n }, (_, i) => [1, 2 + i, 3 + i, 31, 0, 0, 0, 0]);
  return tf.tensor2d(rows, undefined, "int32");
}

function task(
  name: string,
  nBatches: number,
  batch: number,
  shift: number,
  tok: tf.Tensor2D,
): TrainTask {
  return {
    name,
    classnames: ["a", "b", "c"],
    textTokens: tok,
    batchesPerEpoch: nBatches,
    batch: (s) =>
      Promise.resolve({
        images: images(batch, 100 + s, shift),
        labels: Array.from({ length: batch }, (_, i) => (i + s) % 3),
      }),
  };
}

Deno.test("attention hook: no hook and zero-valued pools leave CLIP bit-identical", () => {
  const model = buildClip(randomStateDict(TWO_HEADS, 3));
  const start = tf.memory().numTensors;
  const img = images(3, 1), tok = tokens(2);
  const enc = () =>
    tf.tidy(() => [model.encodeImage(img).dataSync(), model.encodeText(tok).dataSync()]);
  const before = enc();
  const d = diki(model, {
    tasks: 2,
    depthVision: 1,
    depthText: 2,
    prefixLenVision: 3,
    prefixLenText: 2,
  });
  d.pools.install(model, { task: 1 }); // values are 0 at init
  const withPools = enc();
  d.pools.remove(model);
  assertEquals(model.attentionHooks.size, 0);
  const after = enc();
  for (let i = 0; i < 2; i++) {
    assertEquals(Array.from(withPools[i]), Array.from(before[i]));
    assertEquals(Array.from(after[i]), Array.from(before[i]));
  }
  d.dispose();
  tf.dispose([img, tok]);
  assertEquals(tf.memory().numTensors, start); // pools and their initial values freed
  model.dispose();
});

Deno.test("prefixAttention equals a per-head, per-sequence computation (2 heads, weights)", () => {
  const n = 3, heads = 2, l = 5, hd = 4, len = 6;
  const q = tf.randomNormal([n * heads, l, hd], 0, 1, "float32", 1) as tf.Tensor3D;
  const row = tf.randomNormal([2, len, heads * hd], 0, 1, "float32", 2);
  const w = tf.tensor1d([0.5, 1, 0.25]);
  const got = prefixAttention(q, n, heads, row, w).arraySync();
  for (let i = 0; i < n; i++) {
    for (let h = 0; h < heads; h++) {
      const ref = tf.tidy(() => {
        const qi = tf.slice(q, [i * heads + h, 0, 0], [1, l, hd]) as tf.Tensor3D;
        const k = tf.reshape(tf.slice(row, [0, 0, h * hd], [1, len, hd]), [
          1,
          len,
          hd,
        ]) as tf.Tensor3D;
        const v = tf.reshape(tf.slice(row, [1, 0, h * hd], [1, len, hd]), [
          1,
          len,
          hd,
        ]) as tf.Tensor3D;
        return tf.mul(scaledDotProductAttention(qi, k, v), w.arraySync()[i])
          .arraySync() as number[][][];
      });
      assertAllClose(got[i * heads + h].flat(), ref[0].flat(), 1e-6, `seq ${i} head ${h}`);
    }
  }
  tf.dispose([q, row, w]);
});

Deno.test("poolSlots: depth clamps to the layers, lengths per tower, ResNet vision refused", () => {
  const slots = poolSlots(TWO_HEADS, {
    tasks: 3,
    depthVision: 8,
    depthText: 1,
    prefixLenVision: 4,
    prefixLenText: 2,
  });
  assertEquals(slots.map((s) => [s.name, s.prefixLen]), [
    ["image_encoder.transformer.resblocks.0.attn.prefix_pool", 4],
    ["image_encoder.transformer.resblocks.1.attn.prefix_pool", 4],
    ["text_encoder.transformer.resblocks.0.attn.prefix_pool", 2],
  ]);
  const rn = { ...MODEL_CONFIGS["RN50"] };
  assertThrows(
    () =>
      poolSlots(rn, {
        tasks: 1,
        depthVision: 1,
        depthText: 1,
        prefixLenVision: 1,
        prefixLenText: 1,
      }),
    "ViT",
  );
  assertEquals(
    poolSlots(rn, { tasks: 1, depthVision: 0, depthText: 2, prefixLenVision: 0, prefixLenText: 1 })
      .length,
    2,
  );
  assertThrows(
    () =>
      poolSlots(TINY, {
        tasks: 0,
        depthVision: 1,
        depthText: 1,
        prefixLenVision: 1,
        prefixLenText: 1,
      }),
    "tasks",
  );
});

Deno.test("trainable parameters per task: ViT-B/16, depth 8, length 8", () => {
  const n = trainableParamsPerTask(MODEL_CONFIGS["ViT-B/16"], {
    tasks: 11,
    depthVision: 8,
    depthText: 8,
    prefixLenVision: 8,
    prefixLenText: 8,
  });
  // 8 blocks × 2 × 8 × 768 (vision) + 8 blocks × 2 × 8 × 512 (text)
  assertEquals(n, 8 * 2 * 8 * 768 + 8 * 2 * 8 * 512);
  assertEquals(n, 163840);
});

Deno.test("Gaussian: float64 fit and log-probability equal the textbook formulas", () => {
  const dim = 3, n = 9;
  const rows = Array.from({ length: n * dim }, (_, i) => Math.sin(i * i * 0.37) + (i % dim) * 0.1);
  const g = fitGaussian(rows, dim, { normalize: false, jitter: 0 });
  const mean = [0, 1, 2].map((j) =>
    rows.filter((_, i) => i % dim === j).reduce((a, b) => a + b) / n
  );
  assertAllClose(g.mean, mean, 1e-7);
  const cov = (a: number, b: number) =>
    Array.from(
      { length: n },
      (_, r) => (rows[r * dim + a] - mean[a]) * (rows[r * dim + b] - mean[b]),
    )
      .reduce((x, y) => x + y) / (n - 1);
  for (let a = 0; a < dim; a++) {
    for (let b = 0; b < dim; b++) assertAlmostEquals(g.cov[a * dim + b], cov(a, b), 1e-7);
  }
  // 3×3 inverse and determinant by cofactors, in float64 from the stored float32 values
  const c = Array.from(g.cov);
  const m = (i: number, j: number) => c[i * 3 + j];
  const det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1)) -
    m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0)) +
    m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
  const inv = [
    [
      m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1),
      m(0, 2) * m(2, 1) - m(0, 1) * m(2, 2),
      m(0, 1) * m(1, 2) - m(0, 2) * m(1, 1),
    ],
    [
      m(1, 2) * m(2, 0) - m(1, 0) * m(2, 2),
      m(0, 0) * m(2, 2) - m(0, 2) * m(2, 0),
      m(0, 2) * m(1, 0) - m(0, 0) * m(1, 2),
    ],
    [
      m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0),
      m(0, 1) * m(2, 0) - m(0, 0) * m(2, 1),
      m(0, 0) * m(1, 1) - m(0, 1) * m(1, 0),
    ],
  ].map((r) => r.map((v) => v / det));
  assertAlmostEquals(g.logDet, Math.log(det), 1e-9);
  const x = [0.3, -0.2, 0.5];
  const d = x.map((v, i) => v - g.mean[i]);
  let maha = 0;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) maha += d[i] * inv[i][j] * d[j];
  assertAlmostEquals(g.logProb(x), -0.5 * (3 * Math.log(2 * Math.PI) + Math.log(det) + maha), 1e-9);
  // too few images for the width: a clear error
  assertThrows(() => fitGaussian([1, 0, 0, 0, 1, 0], 3, { jitter: 0 }), "positive definite");
});

Deno.test("selectTask: per-image best task and weight, batch vote, mean text weight, ties low", () => {
  const s = selectTask([[10, -50], [-300, 40], [-2, 60]], 512);
  assertEquals(s.rawTasks, [0, 1, 1]);
  assertEquals(s.task, 1);
  assertEquals(s.votes, [1, 2]);
  assertAllClose(
    s.weights,
    [sigmoid(10 / 512 - 1), sigmoid(40 / 512 - 1), sigmoid(60 / 512 - 1)],
    1e-15,
  );
  assertAlmostEquals(s.textWeight, (s.weights[0] + s.weights[1] + s.weights[2]) / 3, 1e-15);
  assertEquals(selectTask([[1, 0], [0, 1]]).task, 0);
  assertEquals(selectTask([[-1e6]]).weights[0], 0);
});

Deno.test("SGD: p − lr·g; momentum and weight decay as torch.optim.SGD; state round trip", () => {
  const p = tf.variable(tf.tensor1d([1, -2, 3]));
  const params = new Map([["p", p]]);
  const g = tf.tensor1d([0.5, 0.25, -1]);
  const plain = new Sgd({ lr: 2 });
  plain.step(params, new Map([["p", g]]));
  assertAllClose(p.dataSync(), [0, -2.5, 5], 0);
  const q = tf.variable(tf.tensor1d([1, 1, 1]));
  const qp = new Map([["q", q]]);
  const m = new Sgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  // torch: d = g + wd·p; buf = d (first) / μ·buf + d; p −= lr·buf
  let buf = [0, 0, 0], ref = [1, 1, 1];
  for (let s = 0; s < 3; s++) {
    m.step(qp, new Map([["q", g]]));
    const gd = Array.from(g.dataSync());
    const d = ref.map((v, i) => gd[i] + 0.01 * v);
    buf = s === 0 ? d : buf.map((b, i) => 0.9 * b + d[i]);
    ref = ref.map((v, i) => v - 0.1 * buf[i]);
  }
  assertAllClose(q.dataSync(), ref, 1e-6);
  const st = m.getState();
  const m2 = new Sgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  m2.setState(st);
  assertEquals(m2.getState().steps, { q: 3 });
  assertAllClose(m2.getState().expAvg.get("q")!.data, st.expAvg.get("q")!.data, 0);
  for (const o of [plain, m, m2]) o.dispose();
  tf.dispose([p, q, g]);
});

Deno.test("cosineNoWarmupLr: f + ½(lr − f)(1 + cos(πi/total)), f = lr·1e-3", () => {
  const s = cosineNoWarmupLr(5, 4);
  assertEquals([0, 2, 3, 4].map(s), [5, 2.5025, 0.7365008139865977, 0.005]);
});

async function trainDiki(
  model: Clip,
  d: Diki,
  t: number,
  tk: TrainTask,
  iterations: number,
): Promise<number[]> {
  const setup = d.trainSetup(t);
  const { records, run } = await train(model, tk, {
    iterations,
    ...setup.options,
    parts: setup.parts,
  });
  disposeRun(run);
  return records.map((r) => r.losses.ce);
}

const SMALL = { depthVision: 1, depthText: 1, prefixLenVision: 2, prefixLenText: 3 };

Deno.test("DIKI training: only the task's pool row moves, CLIP stays frozen, tensors flat", async () => {
  const model = buildClip(randomStateDict(TWO_HEADS, 5));
  const frozen = model.stateDict();
  const tok = tokens(3);
  const d = diki(model, { tasks: 2, ...SMALL });
  const before = d.pools.stateDict();
  const start = tf.memory().numTensors;
  const losses = await trainDiki(model, d, 1, task("t1", 3, 20, 0.5, tok), 3);
  assertEquals(tf.memory().numTensors, start);
  assertEquals(losses.length, 3);
  assertEquals(d.learnt, 0); // task 1 only: learnt counts from task 0
  assert(d.gaussians[1] !== undefined && d.gaussians[1].count === 60);
  assertEquals(model.attentionHooks.size, 0); // removed at the end
  for (const [k, r] of d.pools.stateDict()) {
    const b = before.get(k)!.data;
    const half = b.length / 2; // row 0 | row 1
    assertEquals(
      Array.from(r.data.subarray(0, half)),
      Array.from(b.subarray(0, half)),
      `${k} row 0`,
    );
    assert(r.data.subarray(half).some((v, i) => v !== b[half + i]), `${k} row 1 moved`);
  }
  for (const [k, r] of model.stateDict()) {
    assertEquals(Array.from(r.data), Array.from(frozen.get(k)!.data), `CLIP ${k} changed`);
  }
  d.dispose();
  tok.dispose();
  model.dispose();
});

Deno.test({
  name: "DIKI registered: --method DIKI through trainTask trains only the pools, with SGD",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { model } = await loadClip("synth-tiny");
    const method = await methodFromFlags("DIKI", {
      "diki-tasks": "1",
      "diki-depth-vision": "1",
      "diki-depth-text": "1",
      "diki-prefix-len-vision": "2",
      "diki-prefix-len-text": "2",
    }) as ReturnType<typeof dikiMethod>;
    const before = model.stateDict();
    const ds = synthTask("shape", { split: "train", n: 32, size: model.config.imageResolution });
    const r = await trainTask(model, ds, { method, iterations: 2, batchSize: 8, log: "silent" });
    assertEquals(r.losses.map((l) => l.lr), [5, cosineNoWarmupLr(5, 2)(1)]);
    assertEquals(r.steps, 2); // exactly the scheduled steps, as the reference
    const d = method.state()!;
    assertEquals(d.learnt, 1);
    assertEquals(method.learnt(), [ds.name]);
    assertEquals(r.trainableParameters, trainableParamsPerTask(model.config, d.options));
    for (const [k, t] of model.stateDict()) {
      assertEquals(Array.from(t.data), Array.from(before.get(k)!.data), `CLIP ${k} changed`);
    }
    // DIKI's inference path evaluates the learnt task; its vote is reported
    const [e] = await evaluate(model, [ds], { method, log: "silent", limit: 16 });
    assert(e.details?.voteAccuracy !== undefined, JSON.stringify(e));
    d.dispose();
    model.dispose();
  },
});

Deno.test("DIKI resume: mid-task (training state) and between tasks (DIKI checkpoint)", async () => {
  const dir = await Deno.makeTempDir();
  const tok = tokens(3);
  const tasks = [task("t0", 2, 40, 0, tok), task("t1", 2, 40, 2, tok)];
  // uninterrupted: task 0 (4 steps) then task 1 (4 steps)
  const m1 = buildClip(randomStateDict(TINY, 8));
  const d1 = diki(m1, { tasks: 2, ...SMALL });
  await trainDiki(m1, d1, 0, tasks[0], 4);
  await trainDiki(m1, d1, 1, tasks[1], 4);
  // interrupted: task 0 stops after 2 steps, resumes from a training-state file in a fresh
  // process-like setup; after task 0 the DIKI checkpoint is reloaded into a new Diki
  const m2 = buildClip(randomStateDict(TINY, 8));
  const d2a = diki(m2, { tasks: 2, ...SMALL });
  {
    const setup = d2a.trainSetup(0);
    const { run } = await train(m2, tasks[0], {
      iterations: 4,
      stopAfter: 2,
      ...setup.options,
      parts: setup.parts,
    });
    await saveTrainState(`${dir}/state.safetensors`, run);
    disposeRun(run);
  }
  d2a.dispose();
  const d2b = diki(m2, { tasks: 2, ...SMALL, seed: 99 }); // other init: everything must come from the files
  {
    const setup = d2b.trainSetup(0);
    const run = await createRun(m2, tasks[0], {
      iterations: 4,
      ...setup.options,
      parts: setup.parts,
    });
    await loadTrainState(`${dir}/state.safetensors`, run);
    assertEquals(run.step, 2);
    await runSteps(run);
    disposeRun(run);
  }
  await saveDiki(`${dir}/after0.diki.safetensors`, d2b);
  d2b.dispose();
  const d2c = await loadDiki(`${dir}/after0.diki.safetensors`, m2);
  assertEquals(d2c.learnt, 1);
  await trainDiki(m2, d2c, 1, tasks[1], 4);
  const a = d1.stateDict(), b = d2c.stateDict();
  assertEquals([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, r] of a) assertAllClose(b.get(k)!.data, r.data, 0, k);
  // the round trip into an existing Diki, and inference equal to the bit
  await saveDiki(`${dir}/after1.diki.safetensors`, d1);
  const d3 = diki(m2, { tasks: 2, ...SMALL });
  await loadDikiInto(`${dir}/after1.diki.safetensors`, d3);
  const img = images(5, 42, 2);
  const r1 = d1.classify(img, tok), r3 = d3.classify(img, tok);
  assertEquals(r3.selection, r1.selection);
  assertAllClose(r3.logits.dataSync(), r1.logits.dataSync(), 0);
  tf.dispose([
    r1.logits,
    r1.imageFeatures,
    r1.textFeatures,
    r3.logits,
    r3.imageFeatures,
    r3.textFeatures,
  ]);
  // a checkpoint for another shape of pools is refused before anything is allocated
  const other = buildClip(randomStateDict(TWO_HEADS, 1));
  let msg = "";
  try {
    await loadDiki(`${dir}/after1.diki.safetensors`, other);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.includes("expected [2,2,2,128]"), msg);
  for (const x of [d1, d2c, d3]) x.dispose();
  for (const m of [m1, m2, other]) m.dispose();
  tf.dispose([img, tok]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("DIKI inference: zero-shot before any task; known vs free; predictor in evaluateDataset", async () => {
  const model = buildClip(randomStateDict(TINY, 9));
  const tok = tokens(3);
  const d = diki(model, { tasks: 2, ...SMALL });
  const img = images(4, 7, 2);
  // before any Gaussian the free path is zero-shot CLIP
  const zs = model.forward(img, tok);
  const r0 = d.classify(img, tok);
  assertEquals(r0.task, -1);
  assertAllClose(r0.logits.dataSync(), zs.logitsPerImage.dataSync(), 0);
  await trainDiki(model, d, 0, task("t0", 2, 40, 0, tok), 2);
  await trainDiki(model, d, 1, task("t1", 2, 40, 2, tok), 2);
  const start = tf.memory().numTensors;
  const free = d.classify(img, tok);
  assertEquals(free.task, 1); // the images were drawn like task 1's
  assertEquals(free.selection!.rawTasks, [1, 1, 1, 1]);
  const known = d.classify(img, tok, { taskId: 1 });
  // a weight below 1 moves the logits less than the known path (same task, w = 1)
  const lf = free.logits.dataSync(),
    lk = known.logits.dataSync(),
    l0 = zs.logitsPerImage.dataSync();
  let df = 0, dk = 0;
  for (let i = 0; i < lf.length; i++) {
    df += Math.abs(lf[i] - l0[i]);
    dk += Math.abs(lk[i] - l0[i]);
  }
  assert(df > 0 && df < dk, `free moved ${df}, known ${dk}`);
  tf.dispose([free.logits, free.imageFeatures, free.textFeatures]);
  tf.dispose([known.logits, known.imageFeatures, known.textFeatures]);
  assertEquals(tf.memory().numTensors, start);
  // evaluation through the predictor hook
  const pix = Array.from(
    { length: 5 },
    (_, i) => Uint8Array.from({ length: 16 * 16 * 3 }, (_, j) => (i * 31 + j * 7) % 256),
  );
  const ds: Dataset = {
    name: "TinyDs",
    split: "test",
    classnames: ["a", "b", "c"],
    templates: ["{}"],
    length: 5,
    get: (i) => Promise.resolve({ image: { data: pix[i], width: 16, height: 16 }, label: i % 3 }),
  };
  const p = d.predictor(tok);
  const res = await evaluateDataset(model, ds, { predict: p.predict, batchSize: 2 });
  assertEquals(res.n, 5);
  assertEquals(p.stats.images, 5);
  assertEquals(p.stats.imagesPerTask.reduce((a, b) => a + b), 5);
  const lim = await evaluateDataset(model, ds, {
    predict: d.predictor(tok, { taskId: 0 }).predict,
    limit: 3,
  });
  assertEquals(lim.n, 3);
  // evaluateDiki: the dataset's first template, '_' → ' ', and the vote accuracy
  const seen: string[][] = [];
  model.tokenizer = {
    tokenize: (texts) => {
      seen.push(texts);
      return tokens(texts.length);
    },
  };
  const ev = await evaluateDiki(d, {
    ...ds,
    classnames: ["a_b", "c", "d"],
    templates: ["x {}.", "y {}"],
  }, {
    batchSize: 5,
    expectedTask: 1,
  });
  assertEquals(seen, [["x a b.", "x c.", "x d."]]);
  assertEquals(ev.n, 5);
  assertEquals(ev.voteAccuracy, ev.imagesPerTask[1] === 5 ? 100 : 0);
  assertEquals(dikiPrompts(["sea_or_lake"], "a centered satellite photo of {}."), [
    "a centered satellite photo of sea or lake.",
  ]);
  assertEquals(tf.memory().numTensors, start);
  tf.dispose([zs.logitsPerImage, zs.logitsPerText, r0.logits, r0.imageFeatures, r0.textFeatures]);
  d.dispose();
  tf.dispose([img, tok]);
  model.dispose();
});

Deno.test("TaskGaussian refuses a non-square covariance", () => {
  assertThrows(() => new TaskGaussian(new Float32Array(2), new Float32Array(3), 5), "covariance");
});

Deno.test("dikiOptionsFromFlags: defaults kept, values validated with the flag's name", () => {
  assertEquals(dikiOptionsFromFlags({}, 3), { tasks: 3 });
  assertEquals(
    dikiOptionsFromFlags({
      "diki-depth-vision": "4",
      "diki-depth-text": "0",
      "diki-prefix-len-vision": "2",
      "diki-prefix-len-text": "6",
      "diki-weight-scale": "32",
    }, 2),
    {
      tasks: 2,
      depthVision: 4,
      depthText: 0,
      prefixLenVision: 2,
      prefixLenText: 6,
      weightScale: 32,
    },
  );
  assertThrows(() => dikiOptionsFromFlags({ "diki-depth-text": "-1" }, 1), "--diki-depth-text");
  assertThrows(
    () => dikiOptionsFromFlags({ "diki-prefix-len-vision": "0" }, 1),
    "--diki-prefix-len-vision",
  );
  assertThrows(() => dikiOptionsFromFlags({ "diki-depth-vision": "2.5" }, 1), "integer");
  assertThrows(
    () => dikiOptionsFromFlags({ "diki-weight-scale": "nan" }, 1),
    "--diki-weight-scale",
  );
  assertThrows(() => dikiOptionsFromFlags({ "diki-weight-scale": "0" }, 1), "positive");
  assertThrows(() => dikiOptionsFromFlags({}, 0), "task");
});
