import { tf } from "../clip/backends/tf.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { buildClip, randomStateDict } from "../clip/model.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { assert, assertAllClose, assertEquals, TINY } from "./_testing.ts";
import { baseParts, icarlPart, lwfPart, virtualVocab, zsclPart } from "./presets.ts";
import {
  createRun,
  disposeRun,
  runSteps,
  train,
  type TrainOptions,
  type TrainPart,
  type TrainTask,
  weightsToSave,
} from "./train.ts";
import { loadTrainState, saveTrainState } from "./state.ts";
import { mulberry32 } from "../datasets/rng.ts";
import { NonFiniteError } from "./train.ts";
import { readCheckpoint, saveCheckpoint } from "../clip/formats/checkpoint.ts";

await initBackend({ prefer: "wasm", quiet: true });

/** Deterministic pseudo-random numbers from a seed. */
const rand = mulberry32;

/** Token rows `[SOT, ids…, EOT, 0…]` with EOT = vocab−1 (the largest id, as CLIP's pooling needs). */
function tokens(rows: number[][]): tf.Tensor2D {
  const out = rows.map((r) => {
    const t = [30, ...r, 31];
    while (t.length < TINY.contextLength) t.push(0);
    return t;
  });
  return tf.tensor2d(out, undefined, "int32");
}

function tinyTask(): TrainTask {
  return {
    name: "Tiny",
    classnames: ["a", "b", "c"],
    textTokens: tokens([[1, 2], [3], [4, 5, 6]]),
    batch: (step) => {
      const r = rand(1000 + step);
      const n = 2;
      const data = Float32Array.from({ length: n * 16 * 16 * 3 }, () => r() * 2 - 1);
      return Promise.resolve({
        images: tf.tensor4d(data, [n, 16, 16, 3]),
        labels: [Math.floor(r() * 3), Math.floor(r() * 3)],
      });
    },
  };
}

function refImages(step: number): Promise<tf.Tensor4D> {
  const r = rand(5000 + step);
  return Promise.resolve(
    tf.tensor4d(Float32Array.from({ length: 2 * 16 * 16 * 3 }, () => r() * 2 - 1), [2, 16, 16, 3]),
  );
}

function zsclOptions(refTexts: tf.Tensor2D, iterations: number): TrainOptions {
  return {
    iterations,
    lr: 1e-3,
    weightDecay: 0.1,
    warmupLength: 2,
    parts: [
      ...baseParts({ labelSmoothing: 0.2, l2: 1, we: true, avgFreq: 2 }),
      zsclPart({ refImages, refTexts, T: 2 }),
    ],
  };
}

function snapshot(m: ReadonlyMap<string, tf.Tensor>): Map<string, Float32Array> {
  return new Map([...m].map(([k, t]) => [k, Float32Array.from(t.dataSync())]));
}

Deno.test("kill at step k, save, rebuild, resume: same final weights as an uninterrupted run", async () => {
  const sd0: StateDict = randomStateDict(TINY, 7);
  const refTexts = tokens([[7, 8], [9], [10, 11, 12], [13]]);
  const task = tinyTask();
  // uninterrupted
  const a = buildClip(sd0);
  const ra = await train(a, task, zsclOptions(refTexts, 6));
  const wantModel = snapshot(a.params);
  const wantWe = snapshot(weightsToSave(ra.run));
  disposeRun(ra.run);
  a.dispose();
  // interrupted after 3 steps ...
  const dir = await Deno.makeTempDir();
  const b = buildClip(sd0);
  const rb = await train(b, task, { ...zsclOptions(refTexts, 6), stopAfter: 3 });
  assertEquals([rb.finished, rb.run.step], [false, 3]);
  await saveTrainState(`${dir}/state.safetensors`, rb.run, { note: "test" });
  disposeRun(rb.run);
  b.dispose();
  // ... rebuilt from the start weights and resumed
  const c = buildClip(sd0);
  const run = await createRun(c, task, zsclOptions(refTexts, 6));
  const meta = await loadTrainState(`${dir}/state.safetensors`, run);
  assertEquals([meta.step, meta.extra?.note], [3, "test"]);
  const rc = await runSteps(run);
  assert(rc.finished && rc.records.length === 4, "steps 3–5 and the final lr(6) step");
  for (const [k, v] of snapshot(c.params)) assertAllClose(v, wantModel.get(k)!, 1e-5, k);
  for (const [k, v] of snapshot(weightsToSave(run))) {
    assertAllClose(v, wantWe.get(k)!, 1e-5, `we ${k}`);
  }
  disposeRun(run);
  c.dispose();
  refTexts.dispose();
  task.textTokens.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the reference's final iteration: lr(total) = 0, weights unchanged, a last WE sample", async () => {
  const sd0: StateDict = randomStateDict(TINY, 3);
  const refTexts = tokens([[7, 8], [9]]);
  const task = tinyTask();
  const runWith = async (finalStep: boolean) => {
    const m = buildClip(sd0);
    const r = await train(m, task, { ...zsclOptions(refTexts, 4), finalStep });
    const out = {
      records: r.records,
      model: snapshot(m.params),
      we: snapshot(weightsToSave(r.run)),
      step: r.run.step,
    };
    disposeRun(r.run);
    m.dispose();
    return out;
  };
  const exact = await runWith(false);
  const ref = await runWith(true);
  assertEquals([exact.records.length, exact.step], [4, 4]);
  assertEquals([ref.records.length, ref.step], [5, 5]);
  assertEquals(ref.records[4].lr, 0); // warm-up cosine at step = total
  assertEquals(ref.records.slice(0, 4).map((r) => r.lr), exact.records.map((r) => r.lr));
  // lr 0 moves no weight (decoupled decay and Adam step both scale with lr)
  for (const [k, v] of ref.model) assertEquals(Array.from(v), Array.from(exact.model.get(k)!), k);
  // avgFreq 2: samples after steps 0 and 2 (n = 1, 2), and with the final step after step 4 (n = 3):
  // we₃ = (we₂·3 + θ)/4 with θ the (unchanged) final weights
  for (const [k, we2] of exact.we) {
    const th = exact.model.get(k)!;
    const want = we2.map((x, i) => (x * 3 + th[i]) / 4);
    assertAllClose(ref.we.get(k)!, want, 1e-6, `we ${k}`);
  }
  refTexts.dispose();
  task.textTokens.dispose();
});

Deno.test("tensor count stays flat over 200 ZSCL steps (tiny model)", async () => {
  const model = buildClip(randomStateDict(TINY, 3));
  const refTexts = tokens([[7, 8], [9]]);
  const task = tinyTask();
  const counts: number[] = [];
  const { run } = await train(model, task, {
    ...zsclOptions(refTexts, 200),
    onStep: (rec) => {
      if (rec.step === 4 || rec.step === 199) counts.push(tf.memory().numTensors);
    },
  });
  assertEquals(counts.length, 2);
  assertEquals(counts[1], counts[0], `tensors after step 4: ${counts[0]}, after 199: ${counts[1]}`);
  disposeRun(run);
  model.dispose();
  refTexts.dispose();
  task.textTokens.dispose();
});

Deno.test("a part runs its hooks in order without touching the loop; train modes select params", async () => {
  const seen: string[] = [];
  const probe: TrainPart = {
    name: "probe",
    init: () => void seen.push("init"),
    prepare: (_r, s) => void seen.push(`prepare ${s}`),
    loss: (ctx) => ({ zero: { value: tf.mul(tf.sum(ctx.logits()), 0) as tf.Scalar, weight: 1 } }),
    afterStep: (_r, s) => void seen.push(`after ${s}`),
    end: () => void seen.push("end"),
  };
  const model = buildClip(randomStateDict(TINY, 1));
  const before = snapshot(model.params);
  const task = tinyTask();
  const { run, records } = await train(model, task, {
    iterations: 2,
    parts: [probe],
    trainMode: "image",
    weightDecay: 0.1,
  });
  assertEquals(seen, [
    "init",
    ...[0, 1, 2].flatMap((s) => [`prepare ${s}`, `after ${s}`]), // 2 steps + the final lr(2) one
    "end",
  ]);
  assertEquals(records[0].losses, { zero: 0, total: 0 });
  // image mode: only visual.* moved (by weight decay, the loss being zero); text untouched
  for (const [k, v] of snapshot(model.params)) {
    const moved = v.some((x, i) => x !== before.get(k)![i]);
    const zero = before.get(k)!.every((x) => x === 0); // decay leaves zeros (biases) at zero
    if (k.startsWith("visual.") && !zero) assert(moved, `${k} should train`);
    if (!k.startsWith("visual.")) assert(!moved, `${k} should not train`);
  }
  disposeRun(run);
  model.dispose();
  task.textTokens.dispose();
});

Deno.test("virtualVocab: SOT, random ids, EOT, zero padding", () => {
  const t = virtualVocab(rand(1), 3, 4, 100, 8);
  const rows = t.arraySync();
  for (const r of rows) {
    assertEquals([r[0], r[5], r[6], r[7]], [98, 99, 0, 0]); // SOT, EOT: the last two ids
    assert(r.slice(1, 5).every((x) => x >= 0 && x < 100));
  }
  t.dispose();
  const clip = virtualVocab(rand(2), 2); // CLIP's defaults: 49408 ids, 77 tokens
  assertEquals(clip.shape, [2, 77]);
  assertEquals([clip.arraySync()[0][0], clip.arraySync()[0][11]], [49406, 49407]);
  clip.dispose();
});

Deno.test("lwf and icarl presets: their terms; at step 0 the teacher equals the student", async () => {
  const model = buildClip(randomStateDict(TINY, 4));
  const task = tinyTask();
  const memoryTexts = tokens([[1], [2], [3], [4]]);
  const lwf = await train(model, task, {
    iterations: 2,
    lr: 1e-3,
    parts: [...baseParts({}), lwfPart()],
  });
  assert("lwf_image" in lwf.records[0].losses && "lwf_text" in lwf.records[0].losses);
  disposeRun(lwf.run);
  // with T = 1 and the teacher equal to the student, the image term is the entropy of the logits
  const ic = await train(model, task, {
    iterations: 1,
    parts: [
      ...baseParts({}),
      icarlPart({
        T: 1,
        memoryTexts,
        exemplars: async (s: number) => ({ ...(await task.batch(s + 50)), labels: [0, 3] }),
      }),
    ],
  });
  const l = ic.records[0].losses;
  assert(Number.isFinite(l.icarl_ce) && Number.isFinite(l.icarl_distill));
  assert(
    l.icarl_distill > 0 && l.icarl_distill <= Math.log(4) + 1e-6,
    `entropy ${l.icarl_distill}`,
  );
  disposeRun(ic.run);
  model.dispose();
  memoryTexts.dispose();
  task.textTokens.dispose();
});

Deno.test("NaN guard: lr 1e30 stops with a clear error; no NaN checkpoint is written", async () => {
  const model = buildClip(randomStateDict(TINY, 3));
  const task = tinyTask();
  const dir = await Deno.makeTempDir();
  const ckpt = `${dir}/Tiny.safetensors`;
  let saved = 0;
  let error: unknown;
  try {
    await train(model, task, {
      iterations: 20,
      lr: 1e30,
      warmupLength: 1,
      parts: baseParts({}),
      // a periodic checkpoint after every step, as the train task's --save does
      onStep: async () => {
        await saveCheckpoint(ckpt, model.stateDict(), { iteration: ++saved });
      },
    });
  } catch (e) {
    error = e;
  }
  assert(error instanceof NonFiniteError, `expected NonFiniteError, got ${error}`);
  assert(/step \d+: .*not finite|step \d+: the loss is/.test(error.message), error.message);
  assert(/--lr/.test(error.message), "the error says what to do");
  assert(error.step < 20, "stopped early");
  // the model holds the weights of the last good step: finite
  for (const [k, v] of model.params) {
    assert(v.dataSync().every(Number.isFinite), `${k} is finite after the stop`);
  }
  // whatever checkpoint exists is the last good one: every value finite
  if (saved) {
    const { stateDict } = await readCheckpoint(ckpt);
    for (const [k, t] of stateDict) assert(t.data.every(Number.isFinite), `${k} finite`);
  }
  // and a checkpoint of non-finite weights is refused
  const bad = model.stateDict();
  const first = bad.values().next().value!;
  (first.data as Float32Array)[0] = NaN;
  let refused = "";
  await saveCheckpoint(`${dir}/bad.safetensors`, bad).catch((e) => (refused = e.message));
  assert(/NaN|not finite/.test(refused), `saveCheckpoint refuses NaN weights (${refused})`);
  model.dispose();
  task.textTokens.dispose();
  await Deno.remove(dir, { recursive: true });
});
