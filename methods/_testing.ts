/**
 * Minimal assertions for the `methods/` tests (JSR's `@std/assert` is unreachable offline; this
 * wraps `node:assert`). Not part of the public API.
 *
 * @module
 */
import { tinyClipConfig } from "../clip/_testing.ts";
import {
  type BaseMethodOptions,
  baseParts,
  type LwfOptions,
  lwfPart,
  type ZsclOptions,
  zsclPart,
} from "./presets.ts";
import type { TrainPart } from "./train.ts";
import nodeAssert from "node:assert";
import type { ClipConfig } from "../clip/types.ts";

/** A tiny ViT CLIP for fast tests: width 64 (one head), 1 layer, 16 px, 32-token vocabulary. */
export const TINY: ClipConfig = tinyClipConfig({ vocabSize: 32 });

/** Assert that a condition holds. */
export function assert(cond: unknown, msg?: string): asserts cond {
  if (msg === undefined) nodeAssert.ok(cond);
  else nodeAssert.ok(cond, msg);
}

/** Deep strict equality. */
export function assertEquals(actual: unknown, expected: unknown, msg?: string): void {
  if (msg === undefined) nodeAssert.deepStrictEqual(actual, expected);
  else nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** `|actual − expected| <= tol`. */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  tol = 1e-7,
  msg?: string,
): void {
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(
      `${msg ?? "values differ"}: actual ${actual}, expected ${expected}, tolerance ${tol}`,
    );
  }
}

/** Element-wise {@link assertAlmostEquals}. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol = 1e-6,
  msg?: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${msg ?? "arrays"}: length ${actual.length} vs ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    assertAlmostEquals(actual[i], expected[i], tol, `${msg ?? "arrays"} [${i}]`);
  }
}

/** `|actual − expected| <= rel·|expected|` (plus a tiny absolute floor). */
export function assertRelClose(actual: number, expected: number, rel: number, msg?: string): void {
  const tol = rel * Math.abs(expected) + 1e-12;
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(
      `${msg ?? "values differ"}: actual ${actual}, expected ${expected}, rel ${
        Math.abs(actual - expected) / Math.abs(expected)
      } > ${rel}`,
    );
  }
}

/** Assert that `fn` throws an error whose message contains `includes`. */
export function assertThrows(fn: () => unknown, includes?: string): void {
  let threw = false;
  try {
    fn();
  } catch (e) {
    threw = true;
    if (includes && !String((e as Error).message).includes(includes)) {
      throw new Error(`error message ${(e as Error).message} lacks "${includes}"`);
    }
  }
  if (!threw) throw new Error("expected a throw");
}

/**
 * The parts of a method by its reference name, from one bag of options (the engine-level form of
 * `finetune()`, `zscl(…)`, `lwf()`: common parts plus the method's own), for engine tests.
 */
export function methodParts(
  name: "finetune" | "ZSCL" | "lwf" | string,
  options: Record<string, unknown> = {},
): TrainPart[] {
  const base = baseParts(options as BaseMethodOptions);
  if (name === "ZSCL") return [...base, zsclPart(options as unknown as ZsclOptions)];
  if (name === "lwf") return [...base, lwfPart(options as LwfOptions)];
  if (name === "finetune") return base;
  throw new Error(`methodParts: unknown method ${name}`);
}
