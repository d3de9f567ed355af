import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { tf } from "./tf.ts";
import { assertTensorClose } from "../_testing.ts";
import {
  batchStatistics,
  BINARY_MIN,
  binaryPlan,
  CPU_DNNL,
  dnnlBackendUnavailableReason,
  registerDnnlBackend,
} from "./onednn_kernels.ts";
import { BINARY } from "./onednn.ts";
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

/** A max-pool case: [x shape, filter, strides, pad, dimRoundingMode?]. */
type MaxPoolCase = [
  number[],
  number | [number, number],
  number | [number, number],
  "same" | "valid" | number,
  ("floor" | "round" | "ceil")?,
];
const MAX_POOLS: MaxPoolCase[] = [
  [[2, 9, 9, 5], 3, 2, "same"], // ResNet-stem style 3×3/2
  [[2, 8, 8, 17], 2, 2, "valid"],
  [[1, 7, 6, 3], 3, 2, 1], // explicit padding, odd sizes
  [[3, 7, 9, 20], 3, 1, "same"], // overlapping windows, channels not a multiple of 16
  [[2, 13, 13, 33], 3, 2, "valid"],
  [[1, 6, 7, 2], [2, 3], [1, 2], "same"], // rectangular window, unequal strides
  [[2, 5, 5, 4], 1, 1, "valid"], // 1×1/1: forward is tfjs's identity, gradient oneDNN's
  [[1, 5, 5, 3], 1, 2, "valid"], // 1×1 strided
  [[1, 1, 1, 1], 1, 1, "valid"], // smallest
  [[1, 20, 19, 3], 17, 1, "valid"], // 289-element windows: oneDNN's argmax workspace is int32
  [[1, 6, 6, 2], 3, 2, 1, "ceil"], // an output size oneDNN does not compute: tfjs's kernel
];

/**
 * Output and input gradient of a max pool on `x` (a fresh random tensor; rounded to integers,
 * so that most windows hold ties, when `ties`).
 */
function maxPoolAndGrad([shape, k, s, pad, rounding]: MaxPoolCase, ties: boolean): tf.Tensor[] {
  const x = ties ? tf.tidy(() => tf.round(rnd(shape))) : rnd(shape);
  const f = (a: tf.Tensor) => tf.maxPool(a as tf.Tensor4D, k, s, pad, rounding);
  const y = f(x);
  const probe = rnd(y.shape);
  const dx = tf.grad((a) => tf.sum(tf.mul(f(a), probe)))(x);
  tf.dispose([x, probe]);
  return [y, dx];
}

Deno.test({
  name: "cpu-dnnl maxPool and its gradient equal tfjs cpu (same, valid, explicit, 1×1, batches)",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const c of MAX_POOLS) {
      // twice per shape: the second call reuses the cached primitives (and shared workspace)
      await same(
        `maxPool ${JSON.stringify(c)}`,
        () => [...maxPoolAndGrad(c, false), ...maxPoolAndGrad(c, false)],
      );
    }
  },
});

Deno.test({
  name: "cpu-dnnl maxPool ties: the gradient goes to the window's first maximum, as on tfjs cpu",
  ignore: !HAS_DNNL,
  fn: async () => {
    // Integer inputs: most windows hold their maximum more than once. tfjs's cpu kernel keeps
    // the first maximum in (row, column) scan order (strict `>`); so does oneDNN's. Exact
    // equality but for the order of sums where overlapping windows share an argmax.
    for (const c of MAX_POOLS) {
      await same(`maxPool ties ${JSON.stringify(c)}`, () => maxPoolAndGrad(c, true), 1e-6);
    }
    // one window, all equal: the whole gradient lands on its top-left element
    await tf.setBackend(CPU_DNNL);
    const x = tf.ones([1, 3, 3, 1]);
    const dx = tf.grad((a) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, 3, 1, "valid"), 5)))(x);
    assertEquals(Array.from(dx.dataSync()), [5, 0, 0, 0, 0, 0, 0, 0, 0]);
    tf.dispose([x, dx]);
  },
});

Deno.test({
  name: "cpu-dnnl maxPool with NaN and -Infinity equals tfjs cpu (windows with none finite too)",
  ignore: !HAS_DNNL,
  fn: async () => {
    const I = Infinity, N = NaN, F = -3.4028234663852886e38;
    // 2×2/2 windows. Bounded ones (some value above -FLT_MAX) run on oneDNN, which skips NaN as
    // tfjs does: finite with NaN; finite with -Infinity; NaN and -Infinity around a maximum.
    const bounded = [
      [1, N, -I, 2, 5, N],
      [3, 2, 0, -I, -I, 4],
    ];
    // The others make the kernels rerun tfjs's (oneDNN would give -FLT_MAX, not -Infinity, and
    // route the gradient to the window's first element): only -Infinity; only NaN; -FLT_MAX,
    // oneDNN's starting value, as the true maximum; NaN and -Infinity only.
    const unbounded = [
      [-I, -I, N, N, F, -I],
      [-I, -I, N, N, N, F],
      [N, -I, 7, 1, 1, 1],
      [-I, N, 1, 1, 1, 1],
    ];
    for (
      const [rows, c] of [[bounded, 1], [bounded, 18], [unbounded, 1], [unbounded, 18]] as const
    ) {
      const h = rows.length, w = rows[0].length;
      const values = rows.flat().flatMap((v) => Array(c).fill(v));
      const run = () => {
        const x = tf.tensor4d(values, [1, h, w, c]);
        const f = (a: tf.Tensor) => tf.maxPool(a as tf.Tensor4D, 2, 2, "valid");
        const y = f(x);
        const probe = tf.tensor4d(
          Array.from({ length: (h * w / 4) * c }, (_, i) => i + 1),
          [1, h / 2, w / 2, c],
        );
        const dx = tf.grad((a) => tf.sum(tf.mul(f(a), probe)))(x);
        const r = [Array.from(y.dataSync()), Array.from(dx.dataSync())];
        tf.dispose([x, probe, y, dx]);
        return r;
      };
      await tf.setBackend("cpu");
      const cpu = run();
      await tf.setBackend(CPU_DNNL);
      const dnnl = run();
      // NaN equals NaN here (deepStrictEqual compares with SameValue)
      assertEquals(dnnl, cpu, `${rows === bounded ? "bounded" : "unbounded"}, channels ${c}`);
    }
  },
});

Deno.test({
  name: "cpu-dnnl maxPool keeps tensor counts flat",
  ignore: !HAS_DNNL,
  fn: async () => {
    await tf.setBackend(CPU_DNNL);
    const x = rnd([2, 9, 9, 5]);
    const step = () =>
      tf.tidy(() => tf.grad((a) => tf.sum(tf.maxPool(a as tf.Tensor4D, 3, 2, "same")))(x))
        .dispose();
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    assertEquals(tf.memory().numTensors, before);
    x.dispose();
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

/** Run `fn` on both backends; every output must match tfjs cpu's bit for bit (signed zeros too). */
async function bitSame(what: string, fn: () => Out): Promise<void> {
  const { cpu, dnnl } = await onBoth(fn);
  const c = Array.isArray(cpu) ? cpu : [cpu];
  const d = Array.isArray(dnnl) ? dnnl : [dnnl];
  assertEquals(d.length, c.length);
  for (let i = 0; i < c.length; i++) {
    assertEquals([d[i].dtype, d[i].shape], [c[i].dtype, c[i].shape], `${what}[${i}]`);
    const dv = d[i].dataSync(), cv = c[i].dataSync();
    for (let j = 0; j < cv.length; j++) {
      if (!Object.is(dv[j], cv[j])) {
        throw new Error(`${what}[${i}] index ${j}: ${dv[j]} vs ${cv[j]} (cpu)`);
      }
    }
  }
  tf.dispose([...c, ...d]);
}

/** Values that float32 arithmetic treats specially, mixed into {@link awkward}'s tensors. */
const SPECIALS = [0, -0, Infinity, -Infinity, NaN, 1e-40, -1e-40, 3e38, -3e38, 1, -1, 0.5];

/**
 * A float32 tensor of normal values over many magnitudes with one in 8 from {@link SPECIALS}
 * (overflow, underflow to subnormals, signed zeros, NaN and ∞ through every op), from `seed`.
 */
function awkward(shape: number[]): tf.Tensor {
  let s = (seed++ * 2654435761) >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) {
    v[i] = next() < 0.125
      ? SPECIALS[Math.floor(next() * SPECIALS.length)]
      : (next() - 0.5) * 2 ** Math.floor(next() * 40 - 20);
  }
  return tf.tensor(v, shape);
}

const BINARY_OPS: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
  ["Add", tf.add],
  ["Sub", tf.sub],
  ["Multiply", tf.mul],
  ["RealDiv", tf.div],
];

/** Shape pairs: both orders of each run too. */
const BINARY_SHAPES: [number[], number[]][] = [
  [[8, 14, 14, 64], [8, 14, 14, 64]], // same shape
  [[9000], []], // scalar
  [[6, 70, 50], [1]], // one element, lower rank
  [[8, 49, 2048], [2048]], // bias add: rank differs
  [[8, 49, 2048], [8, 1, 2048]], // CLIP's attention-pool broadcast
  [[392, 64], [392, 1]], // per-row scale
  [[4, 1, 30, 40], [4, 10, 30, 40]], // broadcast inside, size-1 dims
  [[4, 3, 5, 7, 60], [4, 1, 5, 1, 60]], // alternating groups: oneDNN's ref code, tfjs's kernel
  [[200, 1], [1, 50]], // both broadcast: tfjs's kernel
  [[10], [10]], // small: tfjs's kernel
  [[300, 40], [40]],
  [[1, 1, 9000], [1, 1]],
];

Deno.test({
  name: "cpu-dnnl Add/Sub/Multiply/RealDiv equal tfjs cpu bit for bit (broadcasts, ∞, NaN, −0)",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const [op, f] of BINARY_OPS) {
      for (const [sa, sb] of BINARY_SHAPES) {
        for (const [x, y] of [[sa, sb], [sb, sa]]) {
          await bitSame(`${op} [${x}] [${y}]`, () => {
            const a = awkward(x), b = awkward(y);
            const r = f(a, b);
            tf.dispose([a, b]);
            return r;
          });
        }
      }
      // the same tensor on both sides (src0 and src1 bound to one array); equal values with the
      // broadcasting operand first (x − x must stay +0 through Sub's negated swap)
      await bitSame(`${op} x x`, () => {
        const a = awkward([200, 50]), row = awkward([1, 50]);
        const r = [f(a, a), f(tf.reshape(a, [1, 200, 50]), a), f(row, tf.tile(row, [200, 1]))];
        tf.dispose([a, row]);
        return r;
      });
    }
  },
});

Deno.test({
  name: "cpu-dnnl binary plans: which broadcasts run on oneDNN, swapped or negated",
  ignore: !HAS_DNNL,
  fn: () => {
    const p = (op: string, a: number[], b: number[]) => {
      const r = binaryPlan(op, a, b);
      return r && { alg: r.alg, swap: r.swap, negate: r.negate, dst: r.dst, src1: r.src1 };
    };
    const plain = { swap: false, negate: false };
    assertEquals(p("Add", [8, 56, 56, 256], [8, 56, 56, 256]), {
      alg: BINARY.add,
      ...plain,
      dst: [6422528],
      src1: [6422528],
    });
    assertEquals(p("Multiply", [5000], []), { alg: BINARY.mul, ...plain, dst: [5000], src1: [1] });
    assertEquals(p("Add", [8, 56, 56, 256], [256]), {
      alg: BINARY.add,
      ...plain,
      dst: [25088, 256],
      src1: [1, 256],
    });
    assertEquals(p("Multiply", [8, 1, 2048], [8, 49, 2048]), {
      alg: BINARY.mul,
      swap: true,
      negate: false,
      dst: [8, 49, 2048],
      src1: [8, 1, 2048],
    });
    assertEquals(p("Sub", [], [7, 9]), {
      alg: BINARY.add,
      swap: true,
      negate: true,
      dst: [63],
      src1: [1],
    });
    assertEquals(p("RealDiv", [8, 49, 2048], [8, 1, 2048])?.swap, false);
    assertEquals(p("RealDiv", [8, 1, 2048], [8, 49, 2048]), null);
    assertEquals(p("Add", [80, 1], [1, 50]), null);
    assertEquals(p("Add", [3, 4], [5]), null);
    assertEquals(p("Maximum", [3], [3]), null);
    assertEquals(p("Add", [1, 1], [1]), { alg: BINARY.add, ...plain, dst: [1], src1: [1] });
    // the cases above run on oneDNN: sizes from 10000
    assertEquals(BINARY_MIN <= 10000, true);
  },
});

Deno.test({
  name: "cpu-dnnl binary ops: int32 stays tfjs's, gradients equal tfjs cpu, tensor counts flat",
  ignore: !HAS_DNNL,
  fn: async () => {
    for (const [op, f] of BINARY_OPS) {
      await bitSame(`${op} int32`, () => {
        const a = tf.tensor1d(Array.from({ length: 10000 }, (_, i) => i - 5000), "int32");
        const b = tf.tensor1d(Array.from({ length: 10000 }, (_, i) => (i % 7) + 1), "int32");
        const r = [f(a, b), f(a, tf.scalar(3, "int32"))];
        tf.dispose([a, b]);
        return r;
      });
      for (
        const shapes of [
          [[8, 49, 64], [8, 49, 64]],
          [[8, 49, 64], [64]],
          [[8, 1, 64], [8, 49, 64]],
          [[8, 49, 64], [8, 1, 64]],
          [[], [100, 100]],
        ]
      ) {
        await same(`${op} gradient ${JSON.stringify(shapes)}`, () =>
          valueAndGrads(
            // divisors away from 0: the gradient's a/b² stays finite
            op === "RealDiv" ? (a, b) => f(a, tf.add(tf.abs(b), 0.5)) : f,
            shapes,
          ));
      }
    }
    await tf.setBackend(CPU_DNNL);
    const a = rnd([8, 1, 256]), b = rnd([8, 49, 256]);
    const step = () =>
      tf.tidy(() =>
        tf.grads((x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.div(tf.sub(tf.mul(x, y), tf.add(y, x)), tf.add(tf.square(y), 1)))
        )([a, b])
      ).forEach((t) => t.dispose());
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    assertEquals(tf.memory().numTensors, before);
    tf.dispose([a, b]);
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
      env: { MTIL_DNNL_LIB: "/nonexistent/libdnnl.so.2", MTIL_THREADS: "1", MTIL_BACKEND: "" },
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
    // In a child process: changing OpenBLAS's thread count while another test module (a worker
    // of this process under --parallel) runs a BLAS call is unsafe (OpenBLAS resizes its
    // thread buffers), so the shared test process keeps one count throughout.
    const code = `
      import { initBackend } from "${new URL("./backend.ts", import.meta.url).href}";
      import { dnnlThreads } from "${new URL("./onednn.ts", import.meta.url).href}";
      const out = [];
      out.push(await initBackend({ prefer: "cpu-dnnl", quiet: true, threads: 1 }), dnnlThreads());
      await initBackend({ prefer: "cpu-dnnl", quiet: true, threads: 2 });
      out.push(dnnlThreads());
      try {
        await initBackend({ prefer: "cpu-dnnl", quiet: true, threads: 0 });
        out.push("no error");
      } catch (e) {
        out.push(/threads must be a positive integer/.test(e.message));
      }
      console.log(JSON.stringify(out));`;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      env: { MTIL_BACKEND: "" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    assertEquals(r.success, true, stderr);
    assertEquals(JSON.parse(new TextDecoder().decode(r.stdout).trim()), [CPU_DNNL, 1, 2, true]);
  },
});

Deno.test({
  name: "cpu-dnnl: the OIHW convolution and its gradients equal tfjs's conv2d on HWIO",
  ignore: !HAS_DNNL,
  async fn() {
    const { fusedConv2dOihw } = await import("./fused.ts");
    // [x shape, weight OIHW, stride, pad, bias, relu]
    const cases: [number[], number[], number, number, boolean, boolean][] = [
      [[2, 9, 9, 5], [7, 5, 3, 3], 1, 1, false, false],
      [[2, 9, 9, 5], [7, 5, 3, 3], 2, 1, true, true],
      [[3, 8, 8, 16], [32, 16, 1, 1], 1, 0, false, false],
      [[1, 7, 6, 3], [4, 3, 2, 2], 2, 0, true, false],
      [[2, 5, 5, 4], [6, 4, 5, 5], 1, 2, false, true],
      [[1, 4, 4, 2], [3, 2, 4, 4], 4, 0, false, false], // ViT patch embedding
    ];
    for (const [xs, ws, stride, pad, withBias, relu] of cases) {
      const what = `x ${xs} w ${ws} s${stride} p${pad}${withBias ? " bias" : ""}${
        relu ? " relu" : ""
      }`;
      const reference = (x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor) =>
        tf.fused.conv2d({
          x: x as tf.Tensor4D,
          filter: tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D,
          strides: stride,
          pad: pad === 0 ? "valid" : pad,
          bias: b,
          activation: relu ? "relu" : "linear",
        });
      const ours = (x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor) =>
        fusedConv2dOihw(x as tf.Tensor4D, w, stride, pad, b, relu)!;
      await same(what, () =>
        valueAndGrads(
          tf.getBackend() === "cpu" ? reference : ours,
          withBias ? [xs, ws, [ws[0]]] : [xs, ws],
        ), 1e-4);
    }
    await tf.setBackend(CPU_DNNL);
    const x = tf.randomNormal([2, 9, 9, 5]) as tf.Tensor4D, w = tf.randomNormal([7, 5, 3, 3]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      tf.dispose(
        tf.grads((a: tf.Tensor, c: tf.Tensor) =>
          tf.sum(fusedConv2dOihw(a as tf.Tensor4D, c, 1, 1, undefined, true)!)
        )([x, w]),
      );
    }
    assertEquals(tf.memory().numTensors, before);
    tf.dispose([x, w]);
  },
});

Deno.test({
  name: "cpu-dnnl: the fused residual join relu(a + b) and its gradients equal tfjs cpu",
  ignore: !HAS_DNNL,
  async fn() {
    const { fusedAddRelu } = await import("./fused.ts");
    for (const shape of [[2, 16, 16, 64], [1, 3, 3, 5], [8, 7, 7, 2048]]) {
      await same(`addRelu ${shape}`, () =>
        valueAndGrads(
          (a, b) => tf.getBackend() === "cpu" ? tf.relu(tf.add(a, b)) : fusedAddRelu(a, b)!,
          [shape, shape],
        ), 0);
    }
    await tf.setBackend(CPU_DNNL);
    const a = tf.randomNormal([2, 16, 16, 64]), b = tf.randomNormal([2, 16, 16, 64]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      tf.dispose(tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(fusedAddRelu(x, y)!))([a, b]));
    }
    assertEquals(tf.memory().numTensors, before);
    tf.dispose([a, b]);
  },
});
