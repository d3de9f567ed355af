import { assertAlmostEquals, assertEquals } from "./_testing.ts";
import { constantLr, cosineLr } from "./schedule.ts";

Deno.test("cosineLr matches the reference warm-up cosine (hand values)", () => {
  const s = cosineLr(1e-3, 2, 4);
  // warm-up: 1e-3·1/2, 1e-3·2/2; cosine: e=0 → 1e-3, e=1, es=2 → 0.5·(1+cos(π/2))·1e-3
  assertEquals([0, 1, 2].map(s), [0.0005, 0.001, 0.001]);
  assertAlmostEquals(s(3), 0.0005, 1e-18);
  const t = cosineLr(0.1, 0, 10);
  assertEquals(t(0), 0.1);
  assertAlmostEquals(t(5), 0.05, 1e-15);
  assertAlmostEquals(t(10), 0, 1e-15);
  assertEquals(cosineLr(0.1, 3, 3)(3), 0.1);
  assertEquals(constantLr(0.2)(7), 0.2);
});
