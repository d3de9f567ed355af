import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tf } from "./tf.ts";
import { assertTensorClose } from "../_testing.ts";
import {
  blasBackendUnavailableReason,
  CPU_BLAS,
  registerBlasBackend,
  registerCpuFixes,
} from "./blas_kernels.ts";

const HAS_BLAS = registerBlasBackend();
if (!HAS_BLAS) {
  console.warn(
    `%cSKIPPING cpu-blas tests: ${blasBackendUnavailableReason()}`,
    "color: red; font-weight: bold",
  );
}

type Out = tf.Tensor | tf.Tensor[];
let seed = 1;

/** Run `fn` on cpu and on cpu-blas; return both results as flat arrays + shapes. */
async function onBoth(fn: () => Out): Promise<{ cpu: Out; blas: Out }> {
  await tf.setBackend("cpu");
  seed = 1000;
  const cpu = fn();
  await tf.setBackend(CPU_BLAS);
  assertEquals(tf.getBackend(), CPU_BLAS);
  seed = 1000;
  const blas = fn();
  return { cpu, blas };
}

async function same(what: string, fn: () => Out, tol = 1e-5): Promise<void> {
  const { cpu, blas } = await onBoth(fn);
  const c = Array.isArray(cpu) ? cpu : [cpu];
  const b = Array.isArray(blas) ? blas : [blas];
  assertEquals(b.length, c.length);
  for (let i = 0; i < c.length; i++) assertTensorClose(b[i], c[i], tol, `${what}[${i}]`);
  tf.dispose([...c, ...b]);
}

function rnd(shape: number[]): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, "float32", seed++);
}

Deno.test({
  name: "cpu-blas BatchMatMul equals cpu: transposes, odd shapes, batch broadcasting",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[5, 7], [7, 3], false, false],
      [[7, 5], [7, 3], true, false],
      [[5, 7], [3, 7], false, true],
      [[7, 5], [3, 7], true, true],
      [[1, 1], [1, 1], false, false],
      [[2, 3, 5, 7], [7, 4], false, false], // shared weights
      [[2, 3, 5, 7], [4, 7], false, true],
      [[4, 5, 7], [4, 7, 3], false, false],
      [[4, 7, 5], [4, 3, 7], true, true],
      [[1, 5, 7], [4, 7, 3], false, false], // broadcast a
      [[4, 7, 5], [7, 3], true, false],
      [[3, 33, 65], [3, 65, 17], false, false],
    ];
    for (const [as, bs, ta, tb] of cases) {
      seed = 10;
      await same(`matMul ${as}${ta ? "ᵀ" : ""}·${bs}${tb ? "ᵀ" : ""}`, () => {
        seed = 10;
        return tf.matMul(rnd(as), rnd(bs), ta, tb);
      });
    }
  },
});

Deno.test({
  name: "cpu-blas BatchMatMul broadcasts both operands' batch dims (vs explicit tiling)",
  ignore: !HAS_BLAS,
  fn: async () => {
    await tf.setBackend(CPU_BLAS);
    const a = rnd([2, 1, 5, 7]), b = rnd([1, 3, 7, 4]);
    const y = tf.matMul(a, b);
    const expected = tf.matMul(tf.tile(a, [1, 3, 1, 1]), tf.tile(b, [2, 1, 1, 1]));
    assertTensorClose(y, expected, 1e-6, "broadcast");
    tf.dispose([a, b, y, expected]);
  },
});

Deno.test({
  name: "cpu-blas _FusedMatMul (bias + activations) equals cpu",
  ignore: !HAS_BLAS,
  fn: async () => {
    const acts = ["linear", "relu", "relu6", "sigmoid", "elu", "leakyrelu", "prelu"] as const;
    for (const activation of acts) {
      await same(`fused matMul ${activation}`, () => {
        seed = 20;
        const a = rnd([6, 9]), b = rnd([5, 9]), bias = rnd([5]);
        const prelu = activation === "prelu" ? rnd([5]) : undefined;
        return tf.fused.matMul({
          a,
          b,
          transposeB: true,
          bias,
          activation,
          preluActivationWeights: prelu,
          leakyreluAlpha: 0.1,
        });
      });
    }
    await same("fused matMul 2-D bias", () => {
      seed = 30;
      return tf.fused.matMul({ a: rnd([6, 9]), b: rnd([9, 5]), bias: rnd([6, 5]) });
    });
  },
});

type Pad = "same" | "valid" | number | [[0, 0], [number, number], [number, number], [0, 0]];
const CONVS: { x: number[]; w: number[]; s: [number, number]; pad: Pad; d: number }[] = [
  { x: [2, 9, 11, 3], w: [3, 3, 3, 5], s: [1, 1], pad: "same", d: 1 },
  { x: [2, 9, 11, 3], w: [3, 3, 3, 5], s: [2, 2], pad: "same", d: 1 },
  { x: [2, 9, 11, 3], w: [3, 2, 3, 4], s: [2, 3], pad: "valid", d: 1 },
  { x: [1, 10, 10, 20], w: [3, 3, 20, 6], s: [1, 1], pad: 1, d: 1 },
  { x: [2, 8, 8, 4], w: [2, 2, 4, 3], s: [1, 1], pad: [[0, 0], [1, 0], [0, 2], [0, 0]], d: 1 },
  { x: [2, 7, 7, 16], w: [1, 1, 16, 8], s: [1, 1], pad: "valid", d: 1 }, // pointwise
  { x: [2, 7, 7, 16], w: [1, 1, 16, 8], s: [2, 2], pad: "valid", d: 1 },
  { x: [2, 16, 16, 3], w: [4, 4, 3, 8], s: [4, 4], pad: "valid", d: 1 }, // patch embedding
  { x: [1, 5, 5, 2], w: [2, 2, 2, 3], s: [2, 2], pad: "valid", d: 1 }, // drops a row and col
  { x: [2, 9, 9, 3], w: [3, 3, 3, 4], s: [1, 1], pad: "same", d: 2 }, // dilation (forward)
];

Deno.test({
  name: "cpu-blas Conv2D / FusedConv2D equal cpu: strides, padding, dilation, pointwise",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const c of CONVS) {
      await same(`conv2d ${JSON.stringify(c)}`, () => {
        seed = 40;
        return tf.conv2d(
          rnd(c.x) as tf.Tensor4D,
          rnd(c.w) as tf.Tensor4D,
          c.s,
          c.pad as "same",
          "NHWC",
          c.d,
        );
      });
    }
    await same("fused conv2d relu", () => {
      seed = 41;
      return tf.fused.conv2d({
        x: rnd([2, 9, 11, 3]) as tf.Tensor4D,
        filter: rnd([3, 3, 3, 5]) as tf.Tensor4D,
        strides: 2,
        pad: "same",
        bias: rnd([5]),
        activation: "relu",
      });
    });
  },
});

Deno.test({
  name: "cpu-blas conv gradients (Conv2DBackpropInput/Filter) equal cpu",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const c of CONVS.filter((c) => c.d === 1)) {
      await same(`conv2d grads ${JSON.stringify(c)}`, () => {
        seed = 50;
        const x = rnd(c.x), w = rnd(c.w);
        const y0 = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad as "same");
        const r = rnd(y0.shape);
        const f = (x: tf.Tensor, w: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad as "same"), r));
        return tf.grads(f)([x, w]);
      }, 2e-5);
    }
  },
});

Deno.test({
  name: "cpu-blas element-wise kernels equal cpu (broadcasting, reductions, transpose)",
  ignore: !HAS_BLAS,
  fn: async () => {
    const pairs: [number[], number[]][] = [
      [[2, 3, 4], [2, 3, 4]],
      [[2, 3, 4], [4]],
      [[4], [2, 3, 4]],
      [[2, 3, 4], [3, 1]],
      [[2, 3, 4], [2, 1, 1]],
      [[2, 3, 4], []],
      [[], [2, 3, 4]],
      [[3, 1], [1, 4]], // both broadcast: cpu fallback
      [[1, 4], [3, 4]],
      [[2, 1, 4], [2, 3, 4]],
    ];
    for (const [as, bs] of pairs) {
      for (const op of [tf.add, tf.sub, tf.mul, tf.div]) {
        await same(`${op.name} [${as}] [${bs}]`, () => {
          seed = 60;
          return op(rnd(as), rnd(bs));
        });
      }
    }
    for (const op of [tf.add, tf.sub, tf.mul, tf.div]) {
      await same(`${op.name} large (BLAS level-1 path)`, () => [
        op(rnd([300, 301]), rnd([300, 301])),
        op(rnd([300, 301]), 0.7),
        op(1.3, rnd([300, 301])),
      ], 0);
    }
    await same("int32 add (fallback)", () => tf.add(tf.tensor1d([1, 2], "int32"), 3));
    await same("softmax", () => tf.softmax(rnd([2, 3, 7])));
    await same("softmax big", () => tf.softmax(tf.mul(rnd([5, 50]), 30)));
    for (const axis of [-1, 2, [1, 2], 0, [0, 1], [0, 2], 1]) {
      for (const keepDims of [false, true]) {
        await same(`sum/mean/max axis ${axis} keep ${keepDims}`, () => {
          seed = 70;
          const x = rnd([2, 3, 5]);
          return [tf.sum(x, axis, keepDims), tf.mean(x, axis, keepDims), tf.max(x, axis, keepDims)];
        });
      }
    }
    for (const axis of [[1, 2], 2, [-3, -2]]) {
      await same(`sum/mean/max [2,3,4,5] middle axes ${axis}`, () => {
        const x = rnd([2, 3, 4, 5]);
        return [tf.sum(x, axis, true), tf.mean(x, axis), tf.max(x, axis)];
      });
    }
    await same("sum all", () => tf.sum(rnd([3, 4])));
    for (const perm of [[1, 0], [0, 2, 1, 3], [0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 2, 3]]) {
      await same(
        `transpose ${perm}`,
        () => tf.transpose(rnd([2, 3, 4, 5].slice(0, perm.length)), perm),
      );
    }
    // permutations that move no data (identity, size-1 axes) share the input's buffer
    for (
      const [shape, perm] of [[[4, 3], [0, 1]], [[1, 5, 3], [1, 0, 2]], [[2, 1, 3], [0, 2, 1]]]
    ) {
      await same(`transpose ${shape} ${perm} (no data moved)`, () => {
        const x = rnd(shape);
        const y = tf.transpose(x, perm);
        x.dispose(); // the shared buffer outlives x
        return tf.add(y, 0);
      });
    }
    for (
      const pads of [[[0, 0], [1, 2], [0, 3]], [[2, 1], [0, 0], [0, 0]], [[0, 0], [0, 0], [1, 1]]]
    ) {
      await same(`pad ${JSON.stringify(pads)}`, () => [
        tf.pad(rnd([2, 3, 4]), pads as [number, number][]),
        tf.pad(rnd([2, 3, 4]), pads as [number, number][], 1.5),
      ]);
    }
    await same("transpose last two, big", () => tf.transpose(rnd([3, 70, 45]), [0, 2, 1]));
    await same("unary", () => {
      seed = 90;
      const x = rnd([4, 5]);
      const p = tf.abs(x);
      return [
        tf.exp(x),
        tf.sigmoid(x),
        tf.sqrt(p),
        tf.rsqrt(p),
        tf.square(x),
        tf.neg(x),
        tf.relu(x),
      ];
    });
  },
});

/** A small conv + attention + MLP net with every kernel class of a CLIP tower. */
function tinyNet(params: tf.Tensor[], x: tf.Tensor4D): tf.Tensor {
  const [conv, ln, qkv, proj, fc, bias] = params;
  const h = tf.conv2d(x, conv as tf.Tensor4D, 2, "same"); // [n, 4, 4, 8]
  const t = tf.reshape(h, [x.shape[0], 16, 8]);
  const mean = tf.mean(t, -1, true);
  const v = tf.mean(tf.square(tf.sub(t, mean)), -1, true);
  const n = tf.mul(tf.div(tf.sub(t, mean), tf.sqrt(tf.add(v, 1e-5))), ln);
  const q = tf.matMul(tf.reshape(n, [-1, 8]), qkv); // [n*16, 24]
  const [qq, kk, vv] = tf.split(tf.reshape(q, [x.shape[0], 16, 24]), 3, -1);
  const att = tf.softmax(tf.mul(tf.matMul(qq, tf.transpose(kk, [0, 2, 1])), 1 / Math.sqrt(8)));
  const o = tf.matMul(tf.matMul(att, vv), proj);
  const m = tf.mul(o, tf.sigmoid(tf.mul(o, 1.702)));
  return tf.add(tf.matMul(tf.reshape(tf.mean(m, 1), [x.shape[0], 8]), fc), bias);
}

Deno.test({
  name: "cpu-blas tiny net: outputs, gradients and 5 SGD steps equal cpu; tensor count flat",
  ignore: !HAS_BLAS,
  fn: async () => {
    const shapes = [[3, 3, 3, 8], [8], [8, 24], [8, 8], [8, 5], [5]];
    const result: Record<string, number[][]> = {};
    for (const backend of ["cpu", CPU_BLAS]) {
      await tf.setBackend(backend);
      seed = 100;
      const params = shapes.map((s) => tf.variable(tf.mul(rnd(s), 0.5)));
      const x = rnd([2, 8, 8, 3]) as tf.Tensor4D;
      const labels = tf.oneHot(tf.tensor1d([1, 3], "int32"), 5);
      const losses: number[] = [];
      let count = -1;
      for (let step = 0; step < 5; step++) {
        const loss = tf.tidy(() => {
          const { value, grads } = tf.variableGrads(
            () => tf.losses.softmaxCrossEntropy(labels, tinyNet(params, x)) as tf.Scalar,
            params as tf.Variable[],
          );
          for (const p of params) (p as tf.Variable).assign(tf.sub(p, tf.mul(grads[p.name], 0.1)));
          return value;
        });
        losses.push(loss.dataSync()[0]);
        loss.dispose();
        if (step === 1) count = tf.memory().numTensors;
        if (step > 1) assertEquals(tf.memory().numTensors, count, "tensor count grows");
      }
      result[backend] = [losses, ...params.map((p) => Array.from(p.dataSync()))];
      tf.dispose([...params, x, labels]);
    }
    const a = result["cpu"], b = result[CPU_BLAS];
    for (let i = 0; i < a.length; i++) {
      for (let j = 0; j < a[i].length; j++) {
        assert(Math.abs(a[i][j] - b[i][j]) < 1e-4, `tensor ${i} [${j}]: ${a[i][j]} vs ${b[i][j]}`);
      }
    }
    assert(a[0][4] < a[0][0], "loss decreases");
  },
});

Deno.test({
  name: "UnsortedSegmentSum scatter-add (cpu-blas and the patched cpu) equals hand-derived sums",
  ignore: !HAS_BLAS,
  fn: async () => {
    registerCpuFixes();
    for (const backend of ["cpu", CPU_BLAS]) {
      await tf.setBackend(backend);
      const x = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
      const ids = tf.tensor1d([2, 0, 2, 5], "int32"); // 5 is out of range: dropped
      const y = tf.unsortedSegmentSum(x, ids, 3);
      assertEquals(y.shape, [3, 2]);
      assertEquals(Array.from(y.dataSync()), [3, 4, 0, 0, 6, 8]);
      const yi = tf.unsortedSegmentSum(
        tf.tensor1d([1, 2, 3], "int32"),
        tf.tensor1d([1, 1, 0], "int32"),
        2,
      );
      assertEquals(yi.dtype, "int32");
      assertEquals(Array.from(yi.dataSync()), [3, 3]);
      tf.dispose([x, ids, y, yi]);
    }
  },
});

Deno.test({
  name: "cpu-blas Step and AvgPoolGrad equal cpu (fast paths and fallbacks)",
  ignore: !HAS_BLAS,
  fn: async () => {
    await same("relu grad", () => {
      const x = tf.concat([rnd([2, 6, 6, 5]).reshape([-1]), tf.tensor1d([0, -0])]);
      return tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.relu(v), tf.range(0, v.size))))(x);
    }, 0);
    await same("step alpha", () => tf.step(rnd([3, 7]), 0.25), 0);
    const { cpu, blas } = await onBoth(() => tf.step(tf.tensor1d([NaN, 0, -1, 2]), 0.5));
    assertEquals(
      Array.from((blas as tf.Tensor).dataSync()),
      Array.from((cpu as tf.Tensor).dataSync()),
    );
    assertEquals(Array.from((blas as tf.Tensor).dataSync()), [NaN, 0.5, 0.5, 1]);
    tf.dispose([cpu, blas] as tf.Tensor[]);
    for (const [shape, k] of [[[2, 8, 8, 3], 2], [[1, 12, 12, 4], 3], [[2, 4, 4, 2], 1]] as const) {
      await same(`avgPool grad ${shape} k${k}`, () => {
        const x = rnd([...shape]) as tf.Tensor4D;
        const wts = rnd([shape[0], shape[1] / k, shape[2] / k, shape[3]]);
        return tf.grad((v: tf.Tensor) =>
          tf.sum(tf.mul(tf.avgPool(v as tf.Tensor4D, k, k, "valid"), wts))
        )(x);
      });
    }
    // overlapping windows and padding take tfjs's kernel
    await same("avgPool grad overlapping", () => {
      const x = rnd([1, 7, 7, 2]) as tf.Tensor4D;
      return tf.grad((v: tf.Tensor) => tf.sum(tf.avgPool(v as tf.Tensor4D, 3, 2, "same")))(x);
    });
  },
});

Deno.test({
  name: "cpu-blas Slice and SplitV equal cpu (strided boxes, -1 sizes, concat gradients)",
  ignore: !HAS_BLAS,
  fn: async () => {
    await same("slice box", () => tf.slice(rnd([3, 5, 4, 6]), [1, 2, 0, 3], [2, 2, 4, 3]), 0);
    await same("slice -1", () => tf.slice(rnd([4, 7]), [1, 2], [-1, 3]), 0);
    await same("slice 1-D", () => tf.slice(rnd([10]), 3, 4), 0);
    await same("slice empty", () => tf.slice(rnd([3, 4]), [1, 1], [0, 2]), 0);
    await same("split equal", () => tf.split(rnd([2, 6, 3]), 3, 1), 0);
    await same("split sizes", () => tf.split(rnd([4, 5, 7]), [2, -1, 1], 2), 0);
    await same("split axis -1", () => tf.split(rnd([3, 8]), [5, 3], -1), 0);
    await same("concat grad", () => {
      const a = rnd([8, 1, 16]), b = rnd([8, 4, 16]), w = rnd([8, 5, 16]);
      return tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.concat([p, q], 1), w)))([
        a,
        b,
      ]);
    }, 0);
  },
});
