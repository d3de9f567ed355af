import {
  deepStrictEqual as assertEquals,
  ok as assert,
  throws as assertThrows,
} from "node:assert/strict";
import { hashSeed, mix32, Rng } from "./rng.ts";

Deno.test("rng: xoshiro128** matches the reference implementation", () => {
  // State and outputs of Vigna's xoshiro128starstar.c from this state (published test data of
  // an independent port): four outputs and the state after each step.
  const rng = Rng.fromState([0x964d4a0c, 0xd40ab895, 0xad7fdecb, 0x3006f0f0]);
  const outputs = [0xf1391922, 0x6fe53806, 0xa5be2840, 0xf510ee70];
  const states = [
    [0x72410269, 0xef382c52, 0x2e43bec7, 0x62432f20],
    [0xff3a011b, 0xb33a90fc, 0x2c5a18ae, 0xd81b946b],
    [0x941b058c, 0x605a8949, 0xa641e1b5, 0x0824bb59],
    [0xfc65379c, 0x52006d70, 0x87487639, 0xf1908343],
  ];
  for (let k = 0; k < 4; k++) {
    assertEquals(rng.nextU32(), outputs[k]);
    assertEquals(rng.getState(), states[k]);
  }
});

Deno.test("rng: seeding, state save/restore and clone", () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xa = Array.from({ length: 8 }, () => a.nextU32());
  assertEquals(xa, Array.from({ length: 8 }, () => b.nextU32()));
  assert(xa.some((v, i) => v !== [...Array(8)].map(() => c.nextU32())[i]));
  const saved = a.getState();
  const json = JSON.parse(JSON.stringify(saved));
  const next = [a.random(), a.int(10), a.uniform(2, 3)];
  const restored = Rng.fromState(json);
  assertEquals([restored.random(), restored.int(10), restored.uniform(2, 3)], next);
  const d = a.clone();
  assertEquals(d.nextU32(), a.nextU32());
  a.seed(42);
  assertEquals(a.nextU32(), xa[0]);
  assertThrows(() => a.setState([0, 0, 0, 0]), RangeError);
  assertThrows(() => a.setState([1, 2, 3]), RangeError);
  assertThrows(() => a.setState([1, 2, 3, 2 ** 32]), RangeError);
});

Deno.test("rng: distributions", () => {
  const rng = new Rng(7);
  const counts = new Array(6).fill(0);
  let lo = 1, hi = 0;
  for (let k = 0; k < 60_000; k++) {
    counts[rng.int(6)]++;
    const u = rng.random();
    lo = Math.min(lo, u);
    hi = Math.max(hi, u);
  }
  for (const n of counts) assert(Math.abs(n - 10_000) < 400, `int(6) counts ${counts}`);
  assert(lo >= 0 && lo < 1e-3 && hi < 1 && hi > 1 - 1e-3);
  assertEquals(rng.int(1), 0);
  assertThrows(() => rng.int(0), RangeError);
  assertThrows(() => rng.int(2.5), RangeError);
  const big = rng.int(2 ** 32);
  assert(Number.isInteger(big) && big >= 0 && big < 2 ** 32);
  const r = rng.intRange(-3, 3);
  assert(r >= -3 && r < 3);
  const p = rng.permutation(100);
  assertEquals([...p].sort((x, y) => x - y), [...Array(100).keys()]);
  assert(p.some((v, i) => v !== i));
  assertEquals(rng.shuffle(["x"]), ["x"]);
  assertThrows(() => rng.choice([]), RangeError);
});

Deno.test("rng: hashSeed separates tuples", () => {
  assert(hashSeed(1, 2) !== hashSeed(2, 1));
  assert(hashSeed(1) !== hashSeed(1, 0));
  assert(hashSeed(5) !== hashSeed(5 + 2 ** 32)); // high bits matter
  assertEquals(hashSeed(3, 4, 5), hashSeed(3, 4, 5));
  const seen = new Set<number>();
  for (let s = 0; s < 100; s++) for (let i = 0; i < 100; i++) seen.add(hashSeed(s, 1, i));
  assertEquals(seen.size, 10_000);
  assertEquals(mix32(0), mix32(0));
  assert(mix32(0) !== mix32(1));
});
