import { assert, assertAlmostEquals, assertEquals, assertThrows } from "./_testing.ts";
import {
  type AccuracyMatrix,
  learningGains,
  mtilScores,
  npAround,
  npMean,
  pairwiseSum,
  parseAccuracyMatrix,
  referenceStatistics,
  rint,
  roundScores,
  zeroShotScores,
} from "./metrics.ts";
import {
  MTIL_ORDERS,
  ORDER_II_PERMUTATION,
  PUBLISHED_ZERO_SHOT,
  publishedMatrices,
  publishedScores,
} from "./protocol.ts";
import { HAS_SHARED, sharedPath, skipWithoutShared } from "../clip/_testing.ts";

Deno.test("rint / npAround round half to even like numpy", () => {
  assertEquals([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(rint), [0, 2, 2, -0, -2, 2, 3]);
  assertEquals(npAround(44.5577, 1), 44.6);
  assertEquals(npAround(0.25, 1), 0.2); // 2.5 -> 2
  assertEquals(npAround(77.26, 1), 77.3);
});

Deno.test("pairwiseSum matches numpy's block order", () => {
  // numpy sums 1e16 + 1 + ... in 8 accumulators; a naive left-to-right sum differs.
  const a = [1e16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
  // accumulators r0 = 1e16, r1..r7 = 1 -> ((1e16+1)+(1+1))+((1+1)+(1+1)) = 1e16+2 (1e16+1 rounds to 1e16)
  // then + 1 + 1 + 1 sequentially, each lost again -> 1e16 + 2? compute in JS the same way:
  let naive = 0;
  for (const x of a) naive += x;
  const r = ((1e16 + 1) + (1 + 1)) + ((1 + 1) + (1 + 1));
  const expected = ((r + 1) + 1) + 1;
  assertEquals(pairwiseSum(a), expected);
  assert(pairwiseSum(a) !== naive, "test must distinguish the summation orders");
  assertEquals(npMean([1, 2, 3, 4]), 2.5);
});

Deno.test("hand-derived 3-task scores (transfer, avg, last, bwt, forgetting)", () => {
  const m: AccuracyMatrix = {
    tasks: ["A", "B", "C"],
    datasets: ["A", "B", "X", "C"],
    values: [
      [90, 40, 5, 30],
      [70, 80, 5, 35],
      [60, 75, 5, 85],
    ],
    zeroShot: [50, 45, 5, 33],
  };
  const s = mtilScores(m);
  // transfer: B: mean(40)=40; C: mean(30,35)=32.5 -> 36.25
  assertAlmostEquals(s.transfer, 36.25, 1e-12);
  // avg of 3x3 = (90+40+30+70+80+35+60+75+85)/9 = 565/9
  assertAlmostEquals(s.avg, 565 / 9, 1e-12);
  assertAlmostEquals(s.last, (60 + 75 + 85) / 3, 1e-12);
  // bwt: (60-90 + 75-80)/2 = -17.5
  assertAlmostEquals(s.bwt, -17.5, 1e-12);
  // forgetting: A: max(90,70)-60 = 30; B: max(80)-75 = 5 -> 17.5
  assertAlmostEquals(s.forgetting, 17.5, 1e-12);
  assertEquals(s.transferPerTask, [40, 32.5]);
  const z = zeroShotScores(m.tasks, m.datasets, m.zeroShot!);
  assertAlmostEquals(z.raw.transfer, (45 + 33) / 2, 1e-12);
  assertAlmostEquals(z.raw.avg, (50 + 45 + 33) / 3, 1e-12);
});

Deno.test("malformed matrices fail with a clear message", () => {
  assertThrows(
    () => mtilScores({ tasks: ["A", "B"], datasets: ["A"], values: [[1], [2]] }),
    `task "B" has no column`,
  );
  assertThrows(
    () => mtilScores({ tasks: ["A"], datasets: ["A"], values: [[1], [2]] }),
    "2 rows for 1 tasks",
  );
  assertThrows(
    () => mtilScores({ tasks: ["A", "B"], datasets: ["A", "B"], values: [[1, NaN], [2, 3]] }),
    "missing",
  );
  assertThrows(() => parseAccuracyMatrix({ tasks: ["A"] }, "x.json"), "x.json");
});

Deno.test("parseAccuracyMatrix accepts null for missing and aliases", () => {
  const m = parseAccuracyMatrix({
    tasks: ["A", "B"],
    datasets: ["A", "B"],
    matrix: [[1, null], [2, 3]],
    zero_shot: [0.5, 0.25],
  });
  assert(Number.isNaN(m.values[0][1]));
  assertEquals(m.zeroShot, [0.5, 0.25]);
});

Deno.test("all 42 published Transfer/Avg/Last values reproduce (training-order matrices)", () => {
  const all = publishedMatrices();
  assertEquals(all.length, 14);
  let checked = 0;
  for (const p of all) {
    const got = roundScores(mtilScores(p.matrix));
    assertEquals(got, p.expected, `${p.order} ${p.method}`);
    // and the paper's tables (protocol file) say the same
    assertEquals(got, publishedScores(p.order, p.method), `${p.order} ${p.method} (table)`);
    checked += 3;
  }
  assertEquals(checked, 42);
});

Deno.test("reference statistics() path (drop CIFAR10, permute order II) gives the same 42", () => {
  for (const p of publishedMatrices()) {
    const s = referenceStatistics(p.raw, {
      dropColumn: 2,
      permutation: p.order === "II" ? [...ORDER_II_PERMUTATION] : undefined,
    });
    assertEquals(roundScores(s), p.expected, `${p.order} ${p.method}`);
    // identical floating-point values to the training-order path
    const t = mtilScores(p.matrix);
    assertEquals([s.transfer, s.avg, s.last], [t.transfer, t.avg, t.last]);
  }
});

Deno.test("spot values: Continual-FT order I unrounded, numpy float64", () => {
  const p = publishedMatrices().find((x) => x.order === "I" && x.method === "Continual-FT")!;
  const s = mtilScores(p.matrix);
  // numpy: arr.mean(axis=0).mean() = 55.85003065289256
  assertEquals(s.avg, 55.85003065289256);
  assertAlmostEquals(s.transfer, 44.5577, 1e-4);
  assertAlmostEquals(s.last, 77.2661, 1e-4);
});

Deno.test("published Zero-shot rows from the published zero-shot accuracies", () => {
  for (const o of ["I", "II"] as const) {
    const tasks = [...MTIL_ORDERS[o]];
    const z = zeroShotScores(tasks, tasks, tasks.map((t) => PUBLISHED_ZERO_SHOT[t]));
    const pub = publishedScores(o, "Zero-shot");
    assertAlmostEquals(z.transfer, pub.transfer, 0.051, o);
    assertEquals(z.avg, pub.avg, o);
    assertEquals(z.last, pub.last, o);
  }
});

Deno.test({
  name: "data/protocol/published.json equals ../shared's published matrices",
  ignore: skipWithoutShared(),
  fn() {
    if (!HAS_SHARED) return;
    const shared = JSON.parse(
      Deno.readTextFileSync(sharedPath("protocol/published-accuracy-matrices.json")),
    );
    const ours = JSON.parse(
      Deno.readTextFileSync(new URL("../data/protocol/published.json", import.meta.url)),
    );
    assertEquals(ours, shared);
  },
});

Deno.test("learningGains: diagonal minus zero-shot, columns found by name", () => {
  const m: AccuracyMatrix = {
    tasks: ["b", "a"],
    datasets: ["a", "x", "b"],
    values: [[40, 1, 80], [90, 2, 70]],
    zeroShot: [50, 0, 45],
  };
  assertEquals(learningGains(m), [35, 40]);
  assertThrows(() => learningGains({ ...m, zeroShot: undefined }), "zero-shot");
});
