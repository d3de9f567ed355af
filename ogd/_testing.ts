/**
 * Test helpers for `ogd/`: a seeded random generator and random orthonormal matrices. Not part of
 * the public API.
 *
 * @module
 */
import { type Basis, orthonormalizeRows } from "./basis.ts";
import { mulberry32 } from "../datasets/rng.ts";

/** Deterministic uniform [0, 1) generator (mulberry32). */
export const rng: (seed: number) => () => number = mulberry32;

/** Standard normal samples (Box–Muller). */
export function randn(n: number, seed: number): Float64Array {
  const u = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const a = Math.max(u(), 1e-300), b = u();
    out[i] = Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
  }
  return out;
}

/** `rows` random orthonormal vectors of length `dim`. */
export function randomOrthonormal(rows: number, dim: number, seed: number): Basis {
  const b = orthonormalizeRows({ rows, dim, data: randn(rows * dim, seed) });
  if (b.rows !== rows) throw new Error("randomOrthonormal: degenerate draw");
  return b;
}
