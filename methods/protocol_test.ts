import { assertEquals, assertThrows } from "./_testing.ts";
import {
  learningRates,
  MTIL_ORDERS,
  ORDER_II_PERMUTATION,
  orderName,
  protocolLearningRate,
  PUBLISHED_COLUMNS,
  PUBLISHED_METHODS,
  publishedScores,
  resolveOrder,
} from "./protocol.ts";
import { HAS_SHARED, sharedPath, skipWithoutShared } from "../clip/_testing.ts";

Deno.test("orders I and II, custom orders and their errors", () => {
  assertEquals(resolveOrder("I")[0], "Aircraft");
  assertEquals(resolveOrder("ii")[0], "StanfordCars");
  assertEquals(resolveOrder("I").length, 11);
  assertEquals(resolveOrder(" MNIST, EuroSAT "), ["MNIST", "EuroSAT"]);
  assertThrows(() => resolveOrder("MNIST,,DTD"), "comma-separated");
  assertThrows(() => resolveOrder("DTD,DTD"), "twice");
  assertEquals(orderName(resolveOrder("II")), "II");
  assertEquals(orderName(["MNIST"]), undefined);
  // the reference's order-II permutation is order II expressed in alphabetical (no CIFAR10) indices
  const alpha = PUBLISHED_COLUMNS.filter((c) => c !== "CIFAR10");
  assertEquals(MTIL_ORDERS.II.map((t) => alpha.indexOf(t)), [...ORDER_II_PERMUTATION]);
});

Deno.test("per-task learning rates: protocol defaults and --lr-per-task forms", () => {
  assertEquals(protocolLearningRate("Aircraft"), 5e-5);
  assertEquals(protocolLearningRate("MNIST"), 5e-5);
  assertEquals(protocolLearningRate("DTD"), 1e-5);
  const tasks = ["Aircraft", "DTD", "MNIST"];
  assertEquals(learningRates(tasks), [5e-5, 1e-5, 5e-5]);
  assertEquals(learningRates(tasks, "3e-4"), [3e-4, 3e-4, 3e-4]);
  assertEquals(learningRates(tasks, "1e-3,2e-3,3e-3"), [1e-3, 2e-3, 3e-3]);
  assertEquals(learningRates(tasks, "DTD=7e-6"), [5e-5, 7e-6, 5e-5]);
  assertThrows(() => learningRates(tasks, "1e-3,2e-3"), "2 rates for 3 tasks");
  assertThrows(() => learningRates(tasks, "Food=1e-3"), "not a task");
  assertThrows(() => learningRates(tasks, "-1"), "positive");
});

Deno.test("published tables", () => {
  assertEquals(PUBLISHED_METHODS.length, 8);
  assertEquals(publishedScores("I", "ZSCL"), { transfer: 68.1, avg: 75.4, last: 83.6 });
  assertEquals(publishedScores("II", "Zero-shot"), { transfer: 65.4, avg: 65.3, last: 65.3 });
  assertThrows(() => publishedScores("I", "_columns"), "no published scores");
});

Deno.test({
  name: "data/protocol/mtil.json carries ../shared's facts unchanged",
  ignore: skipWithoutShared(),
  fn() {
    if (!HAS_SHARED) return;
    const shared = JSON.parse(Deno.readTextFileSync(sharedPath("protocol/mtil-protocol.json")));
    const ours = JSON.parse(
      Deno.readTextFileSync(new URL("../data/protocol/mtil.json", import.meta.url)),
    );
    for (const k of Object.keys(ours).filter((k) => k !== "about")) {
      assertEquals(ours[k], shared[k], k);
    }
  },
});
