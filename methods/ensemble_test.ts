import { tf } from "../clip/backends/tf.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { assertAllClose, assertEquals } from "./_testing.ts";
import {
  cloneVars,
  disposeVars,
  mergeWe,
  movingAvg,
  wiseFt,
  wiseMerge,
  wiseWe,
} from "./ensemble.ts";

const vars = (w: number[], rm: number[]) =>
  new Map([
    ["w", tf.variable(tf.tensor1d(w))],
    ["bn.running_mean", tf.variable(tf.tensor1d(rm), false)],
  ]);

Deno.test("mergeWe: running mean of the samples, buffers untouched", () => {
  const we = vars([0, 0], [5, 5]); // start copy θ0 = 0
  const m1 = vars([3, 6], [1, 1]);
  mergeWe(m1, we, 1); // (0·1 + θ1)/2
  assertAllClose(we.get("w")!.dataSync(), [1.5, 3]);
  const m2 = vars([6, 0], [1, 1]);
  mergeWe(m2, we, 2); // (1.5·2 + 6)/3 = 3, (3·2 + 0)/3 = 2 → mean of 0, θ1, θ2
  assertAllClose(we.get("w")!.dataSync(), [3, 2]);
  assertAllClose(we.get("bn.running_mean")!.dataSync(), [5, 5]);
  [we, m1, m2].forEach(disposeVars);
});

Deno.test("wiseWe, movingAvg, wiseMerge: hand-computed formulas", () => {
  const we = vars([2, 4], [0, 0]);
  const model = vars([8, 1], [0, 0]);
  const fixed = vars([0, 10], [0, 0]);
  wiseWe(model, we, 1, fixed, 0.9); // ((2+8)/2)·0.9 + 0 = 4.5 ; ((4+1)/2)·0.9 + 10·0.1 = 3.25
  assertAllClose(we.get("w")!.dataSync(), [4.5, 3.25], 1e-6);
  const anchor = vars([0, 0], [7, 7]);
  movingAvg(model, anchor, 0.75); // model pulled: 8·0.75 = 6, 1·0.75 = 0.75
  assertAllClose(model.get("w")!.dataSync(), [6, 0.75], 1e-6);
  assertAllClose(model.get("bn.running_mean")!.dataSync(), [0, 0]);
  wiseMerge(model, fixed, 0.5); // (6+0)/2, (0.75+10)/2
  assertAllClose(model.get("w")!.dataSync(), [3, 5.375], 1e-6);
  const c = cloneVars(model);
  assertEquals(c.get("w")!.trainable, false);
  assertAllClose(c.get("w")!.dataSync(), [3, 5.375]);
  [we, model, fixed, anchor, c].forEach(disposeVars);
});

Deno.test("wiseFt interpolates parameters, keeps buffers of the fine-tuned model", () => {
  const ft: StateDict = new Map([
    ["w", { shape: [2], dtype: "float32", data: new Float32Array([1, 3]) }],
    ["bn.running_var", { shape: [1], dtype: "float32", data: new Float32Array([9]) }],
  ]);
  const zs: StateDict = new Map([
    ["w", { shape: [2], dtype: "float16", data: new Float32Array([5, -1]) }],
    ["bn.running_var", { shape: [1], dtype: "float32", data: new Float32Array([1]) }],
  ]);
  const m = wiseFt(ft, zs, 0.25); // 0.25·1 + 0.75·5 = 4 ; 0.75 − 0.75 = 0
  assertAllClose(m.get("w")!.data, [4, 0]);
  assertAllClose(m.get("bn.running_var")!.data, [9]);
});
