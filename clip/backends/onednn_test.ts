import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { tf } from "./tf.ts";
import { assertTensorClose } from "../_testing.ts";
import {
  batchStatistics,
  CPU_DNNL,
  dnnlBackendUnavailableReason,
  registerDnnlBackend,
} from "./onednn_kernels.ts";
import { registerCpuFixes } from "./blas_kernels.ts";
import { registerReluGradient, registerSoftmaxGradient } from "./fused.ts";
import { registerMatMulGradient } from "./wasm_kernels.ts";
import { batchNorm, type LayerContext, layerNorm, quickGelu } from "../layers.ts";

const HAS_DNNL = registerDnnlBackend();
if (!HAS_DNNL) {
  console.warn(
    `%cSKIPPING cpu-dnnl (oneDNN) tests: ${dnnlBackendUnavailableReason()}`,
    "color: red; font-weight: bold",
  );
}
registerMatMulGradient();
registerSoftmaxGradient();
registerReluGradient();
registerCpuFixes();

type Out = tf.Tensor | tf.Tensor[];
let seed = 1;

/** Run `fn` on tfjs's cpu and on cpu-dnnl with the same random inputs. */
async function onBoth(fn: () => Out): Promise<{ cpu: Out; dnnl: Out }> {
  await tf.setBackend("cpu");
  seed = 1000;
  const cpu = fn();
  await tf.setBackend(CPU_DNNL);
  assertEquals(tf.getBackend(), CPU_DNNL);
  seed = 1000;
  const dnnl = fn();
  return { cpu, dnnl };
}

async function same(what: string, fn: () => Out, tol = 2e-5): Promise<void> {
  const { cpu, dnnl } = await onBoth(fn);
  const c = Array.isArray(cpu) ? cpu : [cpu];
  const d = Array.isArray(dnnl) ? dnnl : [dnnl];
  assertEquals(d.length, c.length);
  for (let i = 0; i < c.length; i++) assertTensorClose(d[i], c[i], tol, `${what}[${i}]`);
  tf.dispose([...c, ...d]);
}

function rnd(shape: number[]): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, "float32", seed++);
}

/** Value and gradients of `sum(f(inputs) · r)` with respect to every input. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, shapes: number[][]): tf.Tensor[] {
  const xs = shapes.map(rnd);
  const probe = tf.tidy(() => rnd(f(...xs).shape));
  const g = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(...a), probe)));
  const y = f(...xs);
  const gs = g(xs);
  tf.dispose([...xs, probe]);
  return [y, ...gs];
}

/** Convolution cases: [x shape, filter HWIO shape, stride, pad]. */
const CONVS: [number[], number[], number | [number, number], "same" | "valid" | number][] = [
  [[2, 9, 9, 5], [3, 3, 5, 7], 1, 1],
  [[2, 15, 15, 3], [7, 7, 3, 8], 2, 3], // ResNet stem
  [[1, 8, 8, 16], [3, 3, 16, 16], 1, "same"],
  [[2, 7, 6, 4], [3, 3, 4, 6], 2, "same"], // odd sizes, asymmetric "same" padding
  [[2, 7, 7, 4], [2, 2, 4, 3], [2, 1], "valid"], // unequal strides
  [[3, 16, 16, 3], [8, 8, 3, 12], 8, "valid"], // ViT patch embedding
  [[2, 5, 5, 6], [1, 1, 6, 4], 1, "valid"], // pointwise
  [[1, 1, 1, 1], [1, 1, 1, 1], 1, "valid"], // smallest
  [[2, 4, 4, 3], [3, 3, 3, 2], 1, 0],
];

Deno.test({
  name: "cpu-dnnl conv2d forward and both gradients equal tfjs cpu",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const [xs, ws, stride, pad] of CONVS) {
      await same(`conv ${xs} * ${ws} s${stride} p${pad}`, () =>
        valueAndGrads(
          (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad),
          [xs, ws],
        ));
    }
  },
});

Deno.test({
  name: "cpu-dnnl fused conv2d (bias, relu) equals tfjs cpu, gradients included",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const [xs, ws, stride, pad] of CONVS.slice(0, 4)) {
      for (const activation of ["linear", "relu"] as const) {
        await same(
          `fused conv ${xs} ${activation}`,
          () =>
            valueAndGrads((x, w, b) =>
              tf.fused.conv2d({
                x: x as tf.Tensor4D,
                filter: w as tf.Tensor4D,
                strides: stride,
                pad,
                bias: b,
                activation,
              }), [xs, ws, [ws[3]]]),
        );
      }
    }
  },
});

Deno.test({
  name: "cpu-dnnl avgPool and its gradient equal tfjs cpu (valid, same, overlapping)",
  ignore: !HAS_DNNL,
  fn: async () => {
    const cases: [number[], number, number, "same" | "valid"][] = [
      [[2, 8, 8, 5], 2, 2, "valid"],
      [[1, 7, 7, 3], 3, 2, "same"],
      [[2, 6, 5, 4], 3, 1, "same"],
      [[2, 9, 9, 2], 3, 3, "valid"],
      [[1, 4, 4, 1], 4, 4, "valid"],
    ];
    for (const [xs, k, s, pad] of cases) {
      await same(
        `avgPool ${xs} k${k} s${s} ${pad}`,
        () => valueAndGrads((x) => tf.avgPool(x as tf.Tensor4D, k, s, pad), [xs]),
      );
    }
  },
});

Deno.test({
  name: "cpu-dnnl softmax, its gradient, and the unary ops equal tfjs cpu (small and large)",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const shape of [[7], [3, 5], [4, 50, 50], [2, 3, 17, 77], [1, 1]]) {
      await same(`softmax ${shape}`, () => valueAndGrads((x) => tf.softmax(x), [shape]));
    }
    await same("softmax with -inf mask", () => {
      const mask = tf.tensor2d([0, -Infinity, 0, 0, 0, -Infinity, -Infinity, 0, 0], [3, 3]);
      const r = valueAndGrads(
        (x) => tf.softmax(tf.add(tf.tile(x, [1, 1000]), tf.tile(mask, [1, 1000]))),
        [[3, 3]],
      );
      mask.dispose();
      return r;
    });
    for (const n of [100, 5000]) {
      await same(`exp ${n}`, () => valueAndGrads((x) => tf.exp(x), [[n]]));
      await same(`sigmoid ${n}`, () => valueAndGrads((x) => tf.sigmoid(x), [[n]]));
      await same(`tanh ${n}`, () => valueAndGrads((x) => tf.tanh(x), [[n]]));
      await same(`relu ${n}`, () => valueAndGrads((x) => tf.relu(x), [[n]]));
      await same(`relu with zeros ${n}`, () => valueAndGrads((x) => tf.relu(tf.round(x)), [[n]]));
      await same(`sqrt ${n}`, () => tf.sqrt(tf.abs(rnd([n]))));
    }
  },
});

Deno.test({
  name: "cpu-dnnl Transpose equals tfjs cpu (weights, heads, size-1 axes, small)",
  ignore: !HAS_DNNL,
  fn: async () => {
    const cases: [number[], number[]][] = [
      [[16, 8, 3, 3], [2, 3, 1, 0]],
      [[3, 3, 8, 16], [3, 2, 0, 1]],
      [[2, 10, 4, 16], [0, 2, 1, 3]],
      [[50, 3, 64], [1, 0, 2]],
      [[70, 90], [1, 0]],
      [[64, 32, 1, 1], [2, 3, 1, 0]],
      [[1, 4096], [1, 0]],
      [[3, 4], [1, 0]],
      [[2, 3, 4, 5, 6, 7], [5, 3, 1, 0, 2, 4]],
    ];
    for (const [shape, perm] of cases) {
      await same(
        `transpose ${shape} ${perm}`,
        () => valueAndGrads((x) => tf.transpose(x, perm), [shape]),
        0,
      );
    }
  },
});

Deno.test({
  name: "cpu-dnnl fused LayerNorm and QuickGELU equal the composite ops on tfjs cpu",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const shape of [[4, 50, 64], [3, 7], [1, 768], [2, 1, 5]]) {
      const c = shape[shape.length - 1];
      await same(
        `layerNorm ${shape}`,
        () => valueAndGrads((x, g, b) => layerNorm(x, g, b), [shape, [c], [c]]),
        5e-5,
      );
      await same(`quickGelu ${shape}`, () => valueAndGrads((x) => quickGelu(x), [shape]));
    }
  },
});

Deno.test({
  name: "cpu-dnnl fused training BatchNorm equals the composite ops on tfjs cpu",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const shape of [[4, 6, 6, 8], [3, 2, 2, 5], [1, 1, 1, 3]]) {
      const c = shape[3];
      await same(`batchNorm ${shape}`, () => {
        const params = new Map<string, tf.Variable>([
          ["bn.weight", tf.variable(rnd([c]))],
          ["bn.bias", tf.variable(rnd([c]))],
          ["bn.running_mean", tf.variable(tf.zeros([c]))],
          ["bn.running_var", tf.variable(tf.ones([c]))],
        ]);
        const ctx: LayerContext = { params, denseHooks: new Map(), training: true };
        const r = [false, true].flatMap((relu) =>
          valueAndGrads(
            (x) => batchNorm(ctx, "bn", x as tf.Tensor4D, relu),
            [shape],
          )
        );
        const stats = [params.get("bn.running_mean")!, params.get("bn.running_var")!].map((v) =>
          tf.clone(v)
        );
        tf.dispose([...params.values()]);
        return [...r, ...stats];
      }, 5e-5);
    }
  },
});

/** Per-channel mean and biased variance of `[rows, c]` data, exactly (two passes in float64). */
function exactStats(x: Float32Array, c: number): { mean: number[]; variance: number[] } {
  const rows = x.length / c;
  const mean = Array.from({ length: c }, (_, j) => {
    let s = 0;
    for (let r = 0; r < rows; r++) s += x[r * c + j];
    return s / rows;
  });
  const variance = mean.map((m, j) => {
    let s = 0;
    for (let r = 0; r < rows; r++) s += (x[r * c + j] - m) ** 2;
    return s / rows;
  });
  return { mean, variance };
}

Deno.test("batchStatistics: float64-accurate BatchNorm statistics (the PyTorch reference's are)", () => {
  // a mean 300 standard deviations from zero over 2^20 rows: float32 sums lose ~1e-4 here;
  // a first row far out (k); row counts that the four-row loop does not divide
  for (const [rows, c, offset] of [[1 << 20, 3, 300], [4099, 5, -2e4], [7, 2, 1], [1, 4, 0]]) {
    let s = 77;
    const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
    const x = new Float32Array(rows * c).map((_, i) => offset + (i % c) + rand());
    if (rows > 1) x[0] = offset + 40; // k far from the mean
    const mean = new Float32Array(c), variance = new Float32Array(c);
    batchStatistics(x, c, mean, variance);
    const exact = exactStats(x, c);
    for (let j = 0; j < c; j++) {
      // rounded once: within half a float32 ulp (2^-24 relative) of the exact value
      const em = Math.abs(mean[j] - exact.mean[j]), ev = Math.abs(variance[j] - exact.variance[j]);
      const what = `rows ${rows} channel ${j}: mean ${mean[j]} vs ${exact.mean[j]}, ` +
        `variance ${variance[j]} vs ${exact.variance[j]}`;
      assertEquals(em <= Math.abs(exact.mean[j]) * 2 ** -24, true, what);
      assertEquals(ev <= exact.variance[j] * 2 ** -24, true, what);
    }
  }
});

Deno.test({
  name: "cpu-dnnl training BatchNorm returns and normalises with the accurate batch statistics",
  ignore: !HAS_DNNL,
  fn: async () => {
    await tf.setBackend(CPU_DNNL);
    const [n, h, w, c] = [16, 32, 32, 4];
    const x = tf.tidy(() => tf.add(rnd([n, h, w, c]), 50));
    const ones = tf.ones([c]), zeros = tf.zeros([c]);
    const [y, mean, variance] = tf.engine().runKernel(
      "MtilBatchNormTrain",
      { x, scale: ones, shift: zeros },
      { eps: 1e-5 } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor[];
    const xv = x.dataSync() as Float32Array;
    const exact = exactStats(xv, c);
    assertEquals(Array.from(mean.dataSync()), exact.mean.map(Math.fround));
    assertEquals(Array.from(variance.dataSync()), exact.variance.map(Math.fround));
    // the output is normalised with those statistics: per channel mean 0, variance 1 − ε/(σ²+ε)
    const got = exactStats(y.dataSync() as Float32Array, c);
    for (let j = 0; j < c; j++) {
      assertEquals(Math.abs(got.mean[j]) < 1e-5, true, `output mean ${got.mean[j]}`);
      const want = exact.variance[j] / (exact.variance[j] + 1e-5);
      assertEquals(
        Math.abs(got.variance[j] - want) < 1e-5,
        true,
        `output variance ${got.variance[j]}`,
      );
    }
    tf.dispose([x, ones, zeros, y, mean, variance]);
  },
});

Deno.test({
  name: "cpu-dnnl kernels keep tensor counts flat",
  ignore: !HAS_DNNL,
  fn: async () => {
    await tf.setBackend(CPU_DNNL);
    const x = rnd([2, 9, 9, 4]), w = rnd([3, 3, 4, 4]), g = rnd([4]), b = rnd([4]);
    const step = () =>
      tf.tidy(() => {
        const f = (xi: tf.Tensor) =>
          tf.sum(quickGelu(layerNorm(tf.conv2d(xi as tf.Tensor4D, w as tf.Tensor4D, 1, 1), g, b)));
        return tf.grad(f)(x);
      }).dispose();
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    assertEquals(tf.memory().numTensors, before);
    tf.dispose([x, w, g, b]);
  },
});

Deno.test({
  name: "initBackend: a missing oneDNN is one skip line and cpu-blas takes over",
  ignore: !HAS_DNNL,
  fn: async () => {
    const code =
      `import { initBackend } from "${new URL("./backend.ts", import.meta.url).href}";\n` +
      `console.log(await initBackend());`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      env: { MTIL_DNNL_LIB: "/nonexistent/libdnnl.so.2", MTIL_THREADS: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.success, true, stderr);
    assertEquals(stdout, "cpu-blas");
    const lines = stderr.split("\n").filter((l) => l.includes("cpu-dnnl"));
    assertEquals(lines.length, 1, stderr);
    assertEquals(
      lines[0].startsWith("mtil: backend cpu-dnnl skipped: /nonexistent/libdnnl.so.2"),
      true,
      lines[0],
    );
  },
});

Deno.test({
  name: "threads: MTIL_THREADS and initBackend({ threads }) reach oneDNN; bad values are errors",
  ignore: !HAS_DNNL,
  fn: async () => {
    const { initBackend } = await import("./backend.ts");
    const { dnnlThreads } = await import("./onednn.ts");
    const original = tf.getBackend();
    try {
      assertEquals(await initBackend({ prefer: CPU_DNNL, quiet: true, threads: 1 }), CPU_DNNL);
      assertEquals(dnnlThreads(), 1);
      await initBackend({ prefer: CPU_DNNL, quiet: true, threads: 2 });
      assertEquals(dnnlThreads(), 2);
      let threw = false;
      try {
        await initBackend({ prefer: CPU_DNNL, quiet: true, threads: 0 });
      } catch (e) {
        threw = /threads must be a positive integer/.test((e as Error).message);
      }
      assertEquals(threw, true);
    } finally {
      await initBackend({ prefer: CPU_DNNL, quiet: true, threads: 1 });
      await tf.setBackend(original);
    }
  },
});
