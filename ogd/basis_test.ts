import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../methods/_testing.ts";
import {
  appendBasis,
  type Basis,
  dot,
  gramMatrix,
  orthonormalityError,
  orthonormalizeRows,
  projectOutF64,
  snapshotBasis,
  stackBases,
  symmetricEigen,
} from "./basis.ts";
import { randn, randomOrthonormal } from "./_testing.ts";

function row(b: Basis, i: number): Float64Array {
  return b.data.subarray(i * b.dim, (i + 1) * b.dim);
}

Deno.test("symmetricEigen: 2×2 and tridiagonal 3×3 with known eigenpairs", () => {
  const r2 = symmetricEigen([2, 1, 1, 2], 2);
  assertAlmostEquals(r2.values[0], 3, 1e-14);
  assertAlmostEquals(r2.values[1], 1, 1e-14);
  // first eigenvector ∝ (1, 1)/√2
  assertAlmostEquals(Math.abs(r2.vectors[0]), Math.SQRT1_2, 1e-14);
  assertAlmostEquals(r2.vectors[0] * r2.vectors[2], 0.5, 1e-14);

  const r3 = symmetricEigen([2, -1, 0, -1, 2, -1, 0, -1, 2], 3);
  assertAlmostEquals(r3.values[0], 2 + Math.SQRT2, 1e-14);
  assertAlmostEquals(r3.values[1], 2, 1e-14);
  assertAlmostEquals(r3.values[2], 2 - Math.SQRT2, 1e-14);
  // eigenvector of 2 is (1, 0, -1)/√2
  assertAlmostEquals(Math.abs(r3.vectors[0 * 3 + 1]), Math.SQRT1_2, 1e-13);
  assertAlmostEquals(r3.vectors[1 * 3 + 1], 0, 1e-13);
  assertAlmostEquals(r3.vectors[0 * 3 + 1] + r3.vectors[2 * 3 + 1], 0, 1e-13);
});

Deno.test("symmetricEigen: diagonal, repeated eigenvalues and a random 12×12", () => {
  const d = symmetricEigen([1, 0, 0, 0, 5, 0, 0, 0, 3], 3);
  assertEquals(Array.from(d.values), [5, 3, 1]);
  assertEquals(d.sweeps, 0);

  // I + u uᵀ with |u|² = 4: eigenvalues 5, 1, 1, 1
  const u = [1, 1, 1, 1];
  const m = new Float64Array(16);
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) m[i * 4 + j] = (i === j ? 1 : 0) + u[i] * u[j];
  }
  const rep = symmetricEigen(m, 4);
  assertAlmostEquals(rep.values[0], 5, 1e-13);
  for (let i = 1; i < 4; i++) assertAlmostEquals(rep.values[i], 1, 1e-13);

  const n = 12;
  const x = randn(n * n, 7);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) a[i * n + j] = x[i * n + j] + x[j * n + i];
  }
  const { values, vectors } = symmetricEigen(a, n);
  let norm = 0;
  for (const v of a) norm = Math.max(norm, Math.abs(v));
  for (let k = 0; k < n; k++) {
    if (k > 0) assert(values[k - 1] >= values[k], "sorted descending");
    for (let i = 0; i < n; i++) {
      let av = 0;
      for (let j = 0; j < n; j++) av += a[i * n + j] * vectors[j * n + k];
      assertAlmostEquals(av, values[k] * vectors[i * n + k], 1e-12 * norm * n);
    }
    for (let l = 0; l <= k; l++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += vectors[i * n + k] * vectors[i * n + l];
      assertAlmostEquals(s, k === l ? 1 : 0, 1e-13);
    }
  }
  // trace is preserved
  let tr = 0, sum = 0;
  for (let i = 0; i < n; i++) tr += a[i * n + i];
  for (const v of values) sum += v;
  assertAlmostEquals(sum, tr, 1e-12 * n * norm);
});

Deno.test("symmetricEigen rejects non-symmetric input and wrong sizes", () => {
  assertThrows(() => symmetricEigen([1, 2, 3, 4], 2), "not symmetric");
  assertThrows(() => symmetricEigen([1, 2, 3], 2), "3 values");
});

/** G = U diag(σ) Vᵀ with known right singular vectors. */
function knownSnapshots(sigma: number[], d: number, seed: number) {
  const k = sigma.length;
  const u = randomOrthonormal(k, k, seed);
  const v = randomOrthonormal(k, d, seed + 1);
  const g = new Float64Array(k * d);
  for (let t = 0; t < k; t++) {
    for (let i = 0; i < k; i++) {
      const c = u.data[t * k + i] * sigma[i];
      for (let x = 0; x < d; x++) g[t * d + x] += c * v.data[i * d + x];
    }
  }
  return { g, v, k };
}

Deno.test("snapshotBasis: exact top singular vectors reaching 97% energy, orthonormal", () => {
  const sigma = [10, 5, 2, 1, 0.5, 0.1];
  const d = 300;
  const { g, v, k } = knownSnapshots(sigma, d, 11);
  const r = snapshotBasis(g, k, d);
  // energies: 100/130.26 = .768, 125/130.26 = .960, 129/130.26 = .990 -> 3 vectors
  assertEquals(r.basis.rows, 3);
  assert(r.energyCaptured >= 0.97, `energy ${r.energyCaptured}`);
  for (let i = 0; i < sigma.length; i++) assertAlmostEquals(r.singularValues[i], sigma[i], 1e-10);
  for (let i = 0; i < 3; i++) {
    assertAlmostEquals(Math.abs(dot(row(r.basis, i), row(v, i))), 1, 1e-10);
  }
  assert(orthonormalityError(r.basis) <= 1e-12, `orthonormality ${orthonormalityError(r.basis)}`);
  // without the refining pass, V = GᵀUΣ⁻¹ is itself orthonormal to 1e-6
  const raw = snapshotBasis(g, k, d, { refine: false });
  assert(orthonormalityError(raw.basis) <= 1e-6);
  // energy 0.99 needs 4 vectors; 0.5 needs 1
  assertEquals(snapshotBasis(g, k, d, { energy: 0.995 }).basis.rows, 4);
  assertEquals(snapshotBasis(g, k, d, { energy: 0.5 }).basis.rows, 1);
});

Deno.test("snapshotBasis: float32 snapshots, rank-deficient and zero input", () => {
  const d = 50;
  const base = randn(2 * d, 3);
  // 5 snapshots spanning a 2-d space
  const g = new Float32Array(5 * d);
  const w = [[1, 0], [0, 1], [1, 1], [2, -1], [0.5, 3]];
  for (let t = 0; t < 5; t++) {
    for (let x = 0; x < d; x++) g[t * d + x] = w[t][0] * base[x] + w[t][1] * base[d + x];
  }
  const r = snapshotBasis(g, 5, d, { energy: 1 });
  assertEquals(r.basis.rows, 2);
  assert(orthonormalityError(r.basis) <= 1e-6);
  // every snapshot lies in the span: its projection out is ~0
  for (let t = 0; t < 5; t++) {
    const snap = g.subarray(t * d, (t + 1) * d);
    const rest = projectOutF64(snap, r.basis);
    assert(Math.sqrt(dot(rest, rest)) <= 1e-6 * Math.sqrt(dot(snap, snap)));
  }
  const zero = snapshotBasis(new Float32Array(3 * d), 3, d);
  assertEquals(zero.basis.rows, 0);
  assertThrows(() => snapshotBasis(g, 5, d, { energy: 0 }), "energy");
  const bad = g.slice();
  bad[7] = NaN;
  assertThrows(() => snapshotBasis(bad, 5, d), "NaN");
});

Deno.test("gramMatrix is G·Gᵀ", () => {
  assertEquals(Array.from(gramMatrix([1, 2, 3, 4, 5, 6], 2, 3)), [14, 32, 32, 77]);
});

Deno.test("appendBasis: re-orthonormalised stack spans both tasks and drops dependent rows", () => {
  const d = 40;
  const a = randomOrthonormal(3, d, 21);
  const fresh = randomOrthonormal(2, d, 22);
  // next task: one vector already in span(a), two new directions
  const overlap = new Float64Array(d);
  for (let x = 0; x < d; x++) overlap[x] = 0.6 * a.data[x] + 0.8 * a.data[d + x];
  const next: Basis = stackBases([{ rows: 1, dim: d, data: overlap }, fresh]);
  const merged = appendBasis(a, next);
  assertEquals(merged.rows, 5);
  assert(orthonormalityError(merged) <= 1e-12);
  // first rows unchanged (up to rounding)
  for (let x = 0; x < d; x++) assertAlmostEquals(merged.data[x], a.data[x], 1e-14);
  for (const b of [a, next]) {
    for (let i = 0; i < b.rows; i++) {
      const rest = projectOutF64(row(b, i), merged);
      assert(Math.sqrt(dot(rest, rest)) <= 1e-12);
    }
  }
  const stacked = appendBasis(a, next, { orthonormalize: false });
  assertEquals(stacked.rows, 6);
  assert(orthonormalityError(stacked) > 0.1, "plain stack is not orthonormal here");
});

Deno.test("projectOutF64: orthogonal to every basis vector; sequential mode differs on overlap", () => {
  const d = 64;
  const b1 = randomOrthonormal(4, d, 31);
  const b2 = randomOrthonormal(4, d, 32); // not orthogonal to b1
  const g = randn(d, 33);
  const q = orthonormalizeRows(stackBases([b1, b2]));
  const p = projectOutF64(g, q);
  const gn = Math.sqrt(dot(g, g));
  for (let i = 0; i < q.rows; i++) assert(Math.abs(dot(p, row(q, i))) <= 1e-12 * gn);
  // reference behaviour: block-by-block; leaves a component along b1 after projecting b2
  const seq = projectOutF64(g, [b1, b2]);
  let worst = 0;
  for (let i = 0; i < b1.rows; i++) worst = Math.max(worst, Math.abs(dot(seq, row(b1, i))));
  assert(worst > 1e-6 * gn, "sequential projection is not orthogonal to earlier blocks");
  assertThrows(() => projectOutF64(new Float64Array(3), b1), "dim");
});
