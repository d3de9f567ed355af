import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { tf } from "./tf.ts";
import { installLeanGradients, leanGradientsInstalled } from "./lean_gradients.ts";

await tf.setBackend("cpu");

/** tfjs's own `gradients`, captured before installing (the reference). */
const engine = tf.engine() as unknown as { gradients: (...a: unknown[]) => unknown };
const tfjsGradients = engine.gradients;

/** Run `fn` with tfjs's original backward pass, then with the lean one. */
function both<T>(fn: () => T): { tfjs: T; lean: T } {
  const lean = engine.gradients;
  engine.gradients = tfjsGradients;
  try {
    return { tfjs: fn(), lean: (engine.gradients = lean, fn()) };
  } finally {
    engine.gradients = lean;
  }
}

installLeanGradients();

/** A function with fan-out, a multi-output op, a pass-through gradient and a frozen branch. */
function loss(a: tf.Tensor, b: tf.Tensor, frozen: tf.Tensor): tf.Scalar {
  const h = tf.relu(tf.matMul(a, b)); // used twice below
  const [l, r] = tf.split(h, 2, 1);
  const id = tf.clone(l); // Identity: its gradient passes dy through
  const mixed = tf.add(tf.mul(id, tf.sigmoid(r)), tf.mul(h.slice([0, 0], [3, 2]), frozen));
  return tf.sum(tf.square(tf.add(mixed, tf.exp(tf.neg(h.slice([0, 2], [3, 2]))))));
}

Deno.test("lean backprop gives tfjs's gradients and leaks nothing", () => {
  assertEquals(leanGradientsInstalled(), true);
  const a = tf.variable(tf.randomNormal([3, 5], 0, 1, "float32", 1), true, "lean-a");
  const b = tf.variable(tf.randomNormal([5, 4], 0, 1, "float32", 2), true, "lean-b");
  const frozen = tf.randomNormal([3, 2], 0, 1, "float32", 3);
  const run = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => loss(a, b, frozen), [a, b]);
      return [value.dataSync()[0], ...["lean-a", "lean-b"].map((k) => [...grads[k].dataSync()])];
    });
  const before = tf.memory().numTensors;
  const { tfjs, lean } = both(run);
  assertEquals(lean, tfjs);
  assertEquals(tf.memory().numTensors, before);
  // tf.grads with a caller-supplied dy: dy survives, gradients equal
  const dy = tf.ones([3, 4]);
  const g = both(() =>
    tf.tidy(() =>
      tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.relu(tf.matMul(x, y)))([a, b], dy)
        .map((t) => [...t.dataSync()])
    )
  );
  assertEquals(g.lean, g.tfjs);
  assertEquals(dy.isDisposed, false);
  tf.dispose([a, b, frozen, dy]);
});

Deno.test("lean backprop: second-order gradients still work (they use tfjs's own pass)", () => {
  const x = tf.scalar(3);
  const d2 = both(() =>
    tf.tidy(() => tf.grad(tf.grad((t: tf.Tensor) => tf.pow(t, tf.scalar(3))))(x).dataSync()[0])
  );
  assertEquals(d2.lean, 18);
  assertEquals(d2.tfjs, 18);
  x.dispose();
});

Deno.test("lean backprop keeps tfjs's errors", () => {
  const x = tf.scalar(1);
  let msg = "";
  try {
    tf.grad(() => tf.scalar(2))(x);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("Cannot compute gradient of y=f(x)")) throw new Error(`got: ${msg}`);
  x.dispose();
});

Deno.test("lean backprop frees activations during the backward pass", () => {
  // A chain of 12 ops on 1 MiB tensors; a custom op at the bottom records the live bytes when
  // its gradient runs, which is after every other node's.
  let liveAtEnd = 0;
  const probe = tf.customGrad(
    ((x: tf.Tensor) => {
      return {
        value: tf.mul(x, 1),
        gradFunc: (dy: tf.Tensor) => {
          liveAtEnd = tf.memory().numBytes;
          return [tf.mul(dy, 1)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  const x = tf.variable(tf.randomNormal([512, 512], 0, 1, "float32", 4), true, "lean-x");
  const step = () =>
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        let h = probe(x) as tf.Tensor;
        for (let i = 0; i < 12; i++) h = tf.tanh(tf.mul(h, 1.01));
        return tf.sum(h);
      }, [x]);
      return grads["lean-x"].dataSync()[0];
    });
  const r = both(() => {
    const base = tf.memory().numBytes;
    const g = step();
    return { g, live: liveAtEnd - base };
  });
  assertEquals(r.lean.g, r.tfjs.g);
  const mib = (n: number) => n / 2 ** 20;
  // tfjs holds ~24 activations and ~24 gradients of 1 MiB at that point; lean a handful
  if (!(mib(r.lean.live) <= 4 && mib(r.tfjs.live) >= 20)) {
    throw new Error(
      `live MiB at the last gradient: lean ${mib(r.lean.live)}, tfjs ${mib(r.tfjs.live)}`,
    );
  }
  x.dispose();
});
