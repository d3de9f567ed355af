import { tf } from "../clip/backends/tf.ts";
import { assertAllClose, assertEquals } from "./_testing.ts";
import { AdamW } from "./adamw.ts";

/** Scalar AdamW by hand, float64, PyTorch's formula. */
function reference(
  p0: number,
  grads: number[],
  lrs: number[],
  wd: number,
  b1: number,
  b2: number,
  eps: number,
): number[] {
  let p = p0, m = 0, v = 0;
  const out: number[] = [];
  grads.forEach((g, i) => {
    const t = i + 1, lr = lrs[i];
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    p -= (lr / (1 - b1 ** t)) * m / (Math.sqrt(v) / Math.sqrt(1 - b2 ** t) + eps);
    out.push(p);
  });
  return out;
}

Deno.test("AdamW matches PyTorch's update (hand-computed, decay + bias correction)", () => {
  const p = tf.variable(tf.tensor1d([1, -2, 0.5]));
  const params = new Map([["w", p]]);
  const opt = new AdamW({ lr: 0.1, weightDecay: 0.1, beta2: 0.98 });
  const gs = [[0.5, 1, -3], [0.25, -1, 2], [1e-3, 0, 1]];
  const lrs = [0.1, 0.05, 0.2];
  gs.forEach((g, i) => {
    opt.lr = lrs[i];
    const gt = tf.tensor1d(g);
    opt.step(params, new Map([["w", gt]]));
    gt.dispose();
  });
  const got = p.dataSync();
  for (let j = 0; j < 3; j++) {
    const ref = reference([1, -2, 0.5][j], gs.map((g) => g[j]), lrs, 0.1, 0.9, 0.98, 1e-8);
    assertAllClose([got[j]], [ref[2]], 1e-6, `param ${j}`);
  }
  // first-step value by hand for element 0 (float64): 0.99 − 0.1·0.5/(0.5+1e-8)
  const p2 = tf.variable(tf.scalar(1));
  const o2 = new AdamW({ lr: 0.1, weightDecay: 0.1 });
  const g2 = tf.scalar(0.5);
  o2.step(new Map([["x", p2]]), new Map([["x", g2]]));
  assertAllClose(p2.dataSync(), [0.99 - 0.1 * 0.5 / (0.5 + 1e-8)], 1e-7);
  [p, p2, g2].forEach((t) => t.dispose());
  opt.dispose();
  o2.dispose();
});

Deno.test("AdamW state round-trips and resumes identically; tensors stay flat", () => {
  const mk = () => new Map([["a", tf.variable(tf.tensor2d([[1, 2], [3, 4]]))]]);
  const grads = (i: number) => new Map([["a", tf.tensor2d([[i, -i], [0.5, 1 / (i + 1)]])]]);
  const run = (params: Map<string, tf.Variable>, opt: AdamW, from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const g = grads(i);
      opt.step(params, g);
      g.get("a")!.dispose();
    }
  };
  const pa = mk(), oa = new AdamW({ lr: 0.01, weightDecay: 0.1 });
  run(pa, oa, 0, 2);
  const before = tf.memory().numTensors;
  run(pa, oa, 2, 6);
  assertEquals(tf.memory().numTensors, before);
  const pb = mk(), ob = new AdamW({ lr: 0.01, weightDecay: 0.1 });
  run(pb, ob, 0, 3);
  const st = ob.getState();
  assertEquals(st.steps, { a: 3 });
  const oc = new AdamW({ lr: 0.01, weightDecay: 0.1 });
  oc.setState(st);
  run(pb, oc, 3, 6);
  assertAllClose(pb.get("a")!.dataSync(), pa.get("a")!.dataSync(), 0);
  for (const o of [oa, ob, oc]) o.dispose();
  for (const m of [pa, pb]) m.get("a")!.dispose();
});

Deno.test("AdamW: the fused host update equals the tensor update (cpu-blas vs wasm)", async () => {
  const { availableBackends } = await import("../clip/backends/backend.ts");
  const names = await availableBackends();
  const host = names.find((n) => n === "cpu-blas" || n === "cpu")!;
  const other = names.includes("wasm") ? "wasm" : undefined;
  if (!other) {
    console.warn("SKIPPING fused-AdamW comparison: wasm backend not available");
    return;
  }
  const prev = tf.getBackend();
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const p = tf.variable(tf.tensor1d([0.5, -1.25, 3, 1e-3, -2e-6, 0]), true, `fused-${backend}`);
    const params = new Map([["w", p]]);
    const opt = new AdamW({ lr: 1e-2, weightDecay: 0.1, beta2: 0.98 });
    for (let s = 0; s < 5; s++) {
      const g = tf.tensor1d([0.1 * s, -0.3, 1e-7, 2, -0.5 * s, 0]);
      opt.step(params, new Map([["w", g]]));
      g.dispose();
    }
    const out = Array.from(p.dataSync());
    opt.dispose();
    p.dispose();
    return out;
  };
  const a = await run(host);
  const b = await run(other);
  await tf.setBackend(prev);
  for (let i = 0; i < a.length; i++) {
    if (Math.abs(a[i] - b[i]) > 1e-6 * Math.max(1, Math.abs(b[i]))) {
      throw new Error(`element ${i}: ${host} ${a[i]} vs ${other} ${b[i]}`);
    }
  }
});
