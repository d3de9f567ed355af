import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tf } from "./tf.ts";
import { registerWasmTrainingKernels } from "./wasm_kernels.ts";

let HAS_WASM = false;
let why = "";
try {
  await import("@tensorflow/tfjs-backend-wasm");
  registerWasmTrainingKernels();
  HAS_WASM = await tf.setBackend("wasm") && tf.getBackend() === "wasm";
  if (!HAS_WASM) why = `tf.setBackend("wasm") failed, on ${tf.getBackend()}`;
} catch (e) {
  why = (e as Error).message;
}
if (!HAS_WASM) {
  console.warn(`%cSKIPPING wasm kernel tests: ${why}`, "color: red; font-weight: bold");
}

type Out = tf.Tensor | tf.Tensor[];
let seed = 1;
function rnd(shape: number[]): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, "float32", seed++);
}

async function same(what: string, fn: () => Out, tol = 1e-5): Promise<void> {
  const results: tf.Tensor[][] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    assertEquals(tf.getBackend(), backend);
    seed = 1000;
    const r = fn();
    results.push(Array.isArray(r) ? r : [r]);
  }
  const [c, w] = results;
  assertEquals(w.length, c.length);
  for (let t = 0; t < c.length; t++) {
    assertEquals(w[t].shape, c[t].shape, `${what}[${t}] shape`);
    const a = w[t].dataSync(), e = c[t].dataSync();
    let scale = 1;
    for (const v of e) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < e.length; i++) {
      assert(
        Math.abs(a[i] - e[i]) <= tol * scale,
        `${what}[${t}] index ${i}: wasm ${a[i]} vs cpu ${e[i]}`,
      );
    }
  }
  tf.dispose(results.flat());
}

type Pad = "same" | "valid" | number;
const CONVS: { x: number[]; w: number[]; s: number | [number, number]; pad: Pad }[] = [
  { x: [2, 9, 11, 3], w: [3, 3, 3, 5], s: 1, pad: "same" },
  { x: [2, 9, 11, 3], w: [3, 3, 3, 5], s: 2, pad: "same" },
  { x: [2, 9, 11, 3], w: [3, 2, 3, 4], s: [2, 3], pad: "valid" },
  { x: [1, 10, 10, 6], w: [3, 3, 6, 7], s: 1, pad: 1 },
  { x: [2, 7, 7, 8], w: [1, 1, 8, 4], s: 2, pad: "valid" },
  { x: [2, 16, 16, 3], w: [4, 4, 3, 8], s: 4, pad: "valid" },
  { x: [1, 5, 5, 2], w: [2, 2, 2, 3], s: 2, pad: "valid" }, // the last row/col is unused
];

Deno.test({
  name: "wasm Conv2DBackpropFilter equals cpu (strides, padding, unused rows)",
  ignore: !HAS_WASM,
  fn: async () => {
    for (const c of CONVS) {
      await same(`conv grads ${JSON.stringify(c)}`, () => {
        const x = rnd(c.x), w = rnd(c.w);
        const y0 = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad);
        const r = rnd(y0.shape);
        return tf.grads((x: tf.Tensor, w: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad), r))
        )([x, w]);
      });
    }
  },
});

Deno.test({
  name: "wasm UnsortedSegmentSum equals cpu (direct and as the gradient of gather)",
  ignore: !HAS_WASM,
  fn: async () => {
    await same(
      "segment sum",
      () => tf.unsortedSegmentSum(rnd([6, 3, 2]), tf.tensor1d([0, 2, 2, 4, 0, 1], "int32"), 5),
    );
    await same("segment sum int32", () =>
      tf.unsortedSegmentSum(
        tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], "int32"),
        tf.tensor1d([1, 1, 0], "int32"),
        3,
      ));
    await same("gather grad (embedding)", () => {
      const table = rnd([10, 4]);
      const ids = tf.tensor2d([1, 3, 3, 9, 0, 1], [2, 3], "int32");
      const r = rnd([2, 3, 4]);
      return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), r)))(table);
    });
    await same("gather grad (batch dims, end-token pooling)", () => {
      const x = rnd([3, 7, 4]);
      const idx = tf.tensor1d([6, 2, 0], "int32");
      const r = rnd([3, 4]);
      return tf.grad((t: tf.Tensor) =>
        tf.sum(tf.mul(tf.reshape(tf.gather(t, tf.reshape(idx, [3, 1]), 1, 1), [3, 4]), r))
      )(x);
    });
  },
});

Deno.test({
  name: "wasm BatchMatMul with transpose flags and its gradient equal cpu",
  ignore: !HAS_WASM,
  fn: async () => {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      await same(`matMul ta=${ta} tb=${tb}`, () => {
        const a = rnd(ta ? [3, 7, 5] : [3, 5, 7]), b = rnd(tb ? [3, 4, 7] : [3, 7, 4]);
        const r = rnd([3, 5, 4]);
        const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a, b, ta, tb), r));
        return [tf.matMul(a, b, ta, tb), ...tf.grads(f)([a, b])];
      });
    }
    await same("matMul gradient with a broadcast operand", () => {
      const a = rnd([2, 5, 7]), b = rnd([7, 4]), r = rnd([2, 5, 4]);
      return tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a, b), r)))([a, b]);
    });
  },
});

Deno.test({
  name: "wasm: a small conv + embedding + attention training step matches cpu, tensors flat",
  ignore: !HAS_WASM,
  fn: async () => {
    const out: number[][] = [];
    for (const backend of ["cpu", "wasm"]) {
      await tf.setBackend(backend);
      seed = 7;
      const conv = tf.variable(tf.mul(rnd([3, 3, 3, 4]), 0.3));
      const emb = tf.variable(tf.mul(rnd([20, 4]), 0.3));
      const proj = tf.variable(tf.mul(rnd([4, 4]), 0.3));
      const x = rnd([2, 6, 6, 3]) as tf.Tensor4D;
      const ids = tf.tensor2d([1, 5, 7, 19, 2, 2], [2, 3], "int32");
      const vars = [conv, emb, proj];
      const losses: number[] = [];
      let count = -1;
      for (let step = 0; step < 4; step++) {
        const loss = tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const img = tf.mean(tf.relu(tf.conv2d(x, conv as tf.Tensor4D, 2, "same")), [1, 2]);
            const txt = tf.mean(tf.gather(emb, ids), 1);
            const logits = tf.matMul(tf.matMul(img, proj), txt, false, true);
            return tf.losses.softmaxCrossEntropy(
              tf.oneHot(tf.tensor1d([0, 1], "int32"), 2),
              logits,
            );
          }, vars);
          for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name], 0.5)));
          return value;
        });
        losses.push(loss.dataSync()[0]);
        loss.dispose();
        if (step === 1) count = tf.memory().numTensors;
        if (step > 1) assertEquals(tf.memory().numTensors, count, "tensor count grows");
      }
      out.push([...losses, ...vars.flatMap((v) => Array.from(v.dataSync()))]);
      tf.dispose([...vars, x, ids]);
    }
    for (let i = 0; i < out[0].length; i++) {
      assert(Math.abs(out[0][i] - out[1][i]) < 1e-5, `value ${i}: ${out[0][i]} vs ${out[1][i]}`);
    }
    assert(out[0][3] < out[0][0], "loss decreases");
  },
});
