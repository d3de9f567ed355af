/**
 * Single-op medians of the kernels `cpu-dnnl` moves to oneDNN, next to `cpu-blas` (forward, and
 * forward + backward through `tf.grad`), at ResNet/ViT shapes. Short: a few seconds per backend.
 *
 * ```
 * deno run -A clip/backends/onednn_bench.ts [--threads N] [--reps 7] [--only maxPool]
 * ```
 *
 * `--only` keeps the cases whose name contains that text.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { tf } from "./tf.ts";
import { initBackend } from "./backend.ts";
import { layerNorm, quickGelu } from "../layers.ts";

const { values } = parseArgs({
  options: {
    threads: { type: "string" },
    reps: { type: "string", default: "7" },
    backends: { type: "string", default: "cpu-blas,cpu-dnnl" },
    only: { type: "string", default: "" },
  },
});
const reps = Number(values.reps);
const threads = values.threads ? Number(values.threads) : undefined;

function median(f: () => void): number {
  f();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(reps / 2)];
}

type Case = [string, number[][], (...xs: tf.Tensor[]) => tf.Tensor];
const CASES: Case[] = [
  [
    "conv3x3 [8,56,56,64]→64",
    [[8, 56, 56, 64], [3, 3, 64, 64]],
    (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 1),
  ],
  [
    "conv7x7/2 stem [8,224,224,3]→64",
    [[8, 224, 224, 3], [7, 7, 3, 64]],
    (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 3),
  ],
  [
    "patch conv32/32 [8,224,224,3]→768",
    [[8, 224, 224, 3], [32, 32, 3, 768]],
    (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 32, "valid"),
  ],
  [
    "avgPool2 [8,56,56,256]",
    [[8, 56, 56, 256]],
    (x) => tf.avgPool(x as tf.Tensor4D, 2, 2, "valid"),
  ],
  [
    "maxPool3/2 [8,112,112,64]",
    [[8, 112, 112, 64]],
    (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 1),
  ],
  ["layerNorm [400,768]", [[400, 768], [768], [768]], (x, g, b) => layerNorm(x, g, b)],
  ["quickGelu [400,3072]", [[400, 3072]], (x) => quickGelu(x)],
  ["softmax [96,50,50]", [[96, 50, 50]], (x) => tf.softmax(x)],
  ["sigmoid [1228800]", [[1228800]], (x) => tf.sigmoid(x)],
  ["add [8,56,56,256]+same", [[8, 56, 56, 256], [8, 56, 56, 256]], (a, b) => tf.add(a, b)],
  ["multiply [8,1,2048]·[8,49,2048]", [[8, 1, 2048], [8, 49, 2048]], (a, b) => tf.mul(a, b)],
  ["matmul [1576,768]·[768,768]", [[1576, 768], [768, 768]], (a, b) => tf.matMul(a, b)],
];

const rows: Record<string, Record<string, string>> = {};
const backends = values.backends!.split(",");
for (const be of backends) {
  const active = await initBackend({ prefer: be, quiet: true, threads });
  if (active !== be) {
    console.error(`${be} does not load here (got ${active}); skipped`);
    continue;
  }
  for (const [name, shapes, f] of CASES.filter(([n]) => n.includes(values.only!))) {
    const xs = shapes.map((s, i) => tf.randomNormal(s, 0, 1, "float32", i + 1));
    const fwd = median(() => tf.tidy(() => f(...xs)).dispose());
    const grad = tf.grads((...a: tf.Tensor[]) => tf.sum(f(...a)));
    const both = median(() => tf.dispose(tf.tidy(() => grad(xs))));
    (rows[name] ??= {})[`${be} fwd`] = fwd.toFixed(2);
    rows[name][`${be} fwd+bwd`] = both.toFixed(2);
    tf.dispose(xs);
  }
}
const load = (() => {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
})();
console.log(`median ms over ${reps} runs, threads ${threads ?? "default"}, load ${load}`);
console.table(rows);
