/**
 * Orthogonal gradient descent (OGD) linear algebra in float64, plain TypeScript: the exact
 * symmetric eigendecomposition (cyclic Jacobi), the gradient-subspace basis of a task from its
 * gradient snapshots (top right singular vectors reaching an energy threshold, via G·Gᵀ), stacking
 * bases of several tasks and re-orthonormalising them (modified Gram–Schmidt, applied twice).
 *
 * A basis is a row-major matrix B [rows × dim] whose rows are orthonormal vectors of length `dim`
 * (the flattened parameter), the layout the reference saves (`V[:k, :]`).
 *
 * @module
 */

/** Orthonormal basis vectors of one parameter, row-major [rows × dim], float64. */
export interface Basis {
  /** Number of basis vectors. */
  rows: number;
  /** Length of each vector (numel of the flattened parameter). */
  dim: number;
  /** `rows * dim` values; row i is `data.subarray(i * dim, (i + 1) * dim)`. */
  data: Float64Array;
}

/** Result of {@linkcode symmetricEigen}. */
export interface EigenResult {
  /** Eigenvalues, sorted descending. */
  values: Float64Array;
  /** Eigenvectors as columns of a row-major n×n matrix: `vectors[i * n + k]` = component i of vector k. */
  vectors: Float64Array;
  /** Jacobi sweeps used. */
  sweeps: number;
}

/**
 * Eigendecomposition of a real symmetric n×n matrix (row-major, only symmetric input is valid) by
 * the cyclic Jacobi method in float64: accurate to a few ulps of the largest eigenvalue, with
 * orthonormal eigenvectors. Meant for small n (the number of gradient snapshots, ≤ a few hundred).
 */
export function symmetricEigen(
  matrix: ArrayLike<number>,
  n: number,
  opts: { maxSweeps?: number } = {},
): EigenResult {
  if (matrix.length !== n * n) {
    throw new Error(`symmetricEigen: ${matrix.length} values for ${n}×${n}`);
  }
  const a = Float64Array.from(matrix);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const x = a[i * n + j], y = a[j * n + i];
      if (Math.abs(x - y) > 1e-9 * (Math.abs(x) + Math.abs(y)) + 1e-300) {
        throw new Error(`symmetricEigen: matrix is not symmetric at (${i}, ${j}): ${x} vs ${y}`);
      }
      a[i * n + j] = a[j * n + i] = 0.5 * (x + y);
    }
  }
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const maxSweeps = opts.maxSweeps ?? 100;
  let sweeps = 0;
  for (; sweeps < maxSweeps; sweeps++) {
    let off = 0, diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] * a[i * n + i];
      for (let j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
    }
    if (off === 0 || off <= 1e-32 * diag) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p], aqq = a[q * n + q];
        // skip rotations that cannot change the diagonal at float64 precision
        if (Math.abs(apq) < 1e-18 * Math.sqrt(Math.abs(app * aqq)) && sweeps > 3) {
          a[p * n + q] = a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = Math.abs(theta) > 1e150
          ? 1 / (2 * theta)
          : Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y] - a[x * n + x]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = a[src * n + src];
    for (let i = 0; i < n; i++) vectors[i * n + dst] = v[i * n + src];
  });
  return { values, vectors, sweeps };
}

/** G·Gᵀ (k×k, float64) of a row-major snapshot matrix G [k × d]. */
export function gramMatrix(g: ArrayLike<number>, k: number, d: number): Float64Array {
  if (g.length !== k * d) throw new Error(`gramMatrix: ${g.length} values for ${k}×${d}`);
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      const oi = i * d, oj = j * d;
      for (let x = 0; x < d; x++) s += g[oi + x] * g[oj + x];
      out[i * k + j] = out[j * k + i] = s;
    }
  }
  return out;
}

/** Options of {@linkcode snapshotBasis}. */
export interface SnapshotBasisOptions {
  /** Fraction of the squared singular values (energy) the basis must reach (default 0.97). */
  energy?: number;
  /**
   * Re-orthonormalise the computed vectors once more (MGS, float64) to remove the rounding left by
   * V = GᵀUΣ⁻¹ (default true; changes them by ~1e-12 unless G is very ill-conditioned).
   */
  refine?: boolean;
  /** Singular values ≤ `rankTol`·σ₁ count as zero and are never kept (default 1e-7). */
  rankTol?: number;
}

/** Result of {@linkcode snapshotBasis}. */
export interface SnapshotBasisResult {
  /** The basis (top `rows` right singular vectors). */
  basis: Basis;
  /** All singular values of G, descending. */
  singularValues: Float64Array;
  /** Fraction of the energy the kept vectors capture (≥ the threshold unless G is zero). */
  energyCaptured: number;
}

/**
 * Basis of the gradient subspace of one parameter from k snapshots G [k × d] (row-major, each row a
 * flattened gradient): the top right singular vectors of G whose squared singular values first reach
 * `energy` of the total, computed exactly via the symmetric eigendecomposition G·Gᵀ = U Λ Uᵀ,
 * σ = √λ, V = Gᵀ U Σ⁻¹ (float64). Same selection rule as the reference (smallest r with
 * Σ_{i≤r} σᵢ² / Σ σ² ≥ energy), but exact instead of `svd_lowrank`. A zero G gives an empty basis.
 */
export function snapshotBasis(
  g: ArrayLike<number>,
  k: number,
  d: number,
  opts: SnapshotBasisOptions = {},
): SnapshotBasisResult {
  const energy = opts.energy ?? 0.97;
  if (!(energy > 0 && energy <= 1)) {
    throw new Error(`snapshotBasis: energy must be in (0, 1], got ${energy}`);
  }
  const gram = gramMatrix(g, k, d);
  if (!gram.every(Number.isFinite)) {
    throw new Error("snapshotBasis: the gradient snapshots contain NaN or Infinity");
  }
  const { values, vectors } = symmetricEigen(gram, k);
  const lambda = Array.from(values, (x) => Math.max(x, 0));
  const sigma = Float64Array.from(lambda, Math.sqrt);
  const total = lambda.reduce((s, x) => s + x, 0);
  const empty = { rows: 0, dim: d, data: new Float64Array(0) };
  if (!(total > 0)) return { basis: empty, singularValues: sigma, energyCaptured: 0 };
  const rankTol = opts.rankTol ?? 1e-7;
  let r = 0, running = 0;
  for (let i = 0; i < k; i++) {
    if (sigma[i] <= rankTol * sigma[0]) break;
    running += lambda[i];
    r = i + 1;
    if (running / total >= energy) break;
  }
  const data = new Float64Array(r * d);
  for (let i = 0; i < r; i++) {
    const row = data.subarray(i * d, (i + 1) * d);
    for (let t = 0; t < k; t++) {
      const u = vectors[t * k + i] / sigma[i];
      if (u === 0) continue;
      const o = t * d;
      for (let x = 0; x < d; x++) row[x] += u * g[o + x];
    }
  }
  let basis: Basis = { rows: r, dim: d, data };
  if (opts.refine ?? true) basis = orthonormalizeRows(basis);
  return { basis, singularValues: sigma, energyCaptured: running / total };
}

/** Stack the rows of several bases of the same parameter (no orthonormalisation). */
export function stackBases(bases: readonly Basis[]): Basis {
  if (bases.length === 0) throw new Error("stackBases: no bases");
  const dim = bases[0].dim;
  for (const b of bases) {
    if (b.dim !== dim) throw new Error(`stackBases: dimension ${b.dim} differs from ${dim}`);
  }
  const rows = bases.reduce((s, b) => s + b.rows, 0);
  const data = new Float64Array(rows * dim);
  let o = 0;
  for (const b of bases) {
    data.set(b.data.subarray(0, b.rows * dim), o);
    o += b.rows * dim;
  }
  return { rows, dim, data };
}

/**
 * Append a task's basis to the previous tasks' basis. With `orthonormalize` (default) the result is
 * re-orthonormalised (vectors already spanned are dropped); without it the rows are just stacked,
 * like the reference's list of per-task bases.
 */
export function appendBasis(
  previous: Basis | undefined,
  next: Basis,
  opts: { orthonormalize?: boolean; tol?: number } = {},
): Basis {
  const stacked = previous ? stackBases([previous, next]) : stackBases([next]);
  return (opts.orthonormalize ?? true) ? orthonormalizeRows(stacked, { tol: opts.tol }) : stacked;
}

/**
 * Orthonormalise the rows of B by modified Gram–Schmidt applied twice ("twice is enough"), float64.
 * A row whose remainder after removing the earlier rows is ≤ `tol` × its norm (default 1e-10) is
 * linearly dependent and dropped; the row space is kept and the earlier rows keep their direction.
 */
export function orthonormalizeRows(b: Basis, opts: { tol?: number } = {}): Basis {
  const tol = opts.tol ?? 1e-10;
  const { dim } = b;
  const out = new Float64Array(b.rows * dim);
  let kept = 0;
  const v = new Float64Array(dim);
  for (let i = 0; i < b.rows; i++) {
    v.set(b.data.subarray(i * dim, (i + 1) * dim));
    const norm0 = Math.sqrt(dot(v, v));
    if (!(norm0 > 0)) continue;
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < kept; j++) {
        const q = out.subarray(j * dim, (j + 1) * dim);
        const c = dot(q, v);
        for (let x = 0; x < dim; x++) v[x] -= c * q[x];
      }
    }
    const norm = Math.sqrt(dot(v, v));
    if (norm <= tol * norm0) continue;
    const dst = out.subarray(kept * dim, (kept + 1) * dim);
    for (let x = 0; x < dim; x++) dst[x] = v[x] / norm;
    kept++;
  }
  return { rows: kept, dim, data: out.slice(0, kept * dim) };
}

/** Largest |⟨bᵢ, bⱼ⟩ − δᵢⱼ| over all row pairs: 0 for an exactly orthonormal basis. */
export function orthonormalityError(b: Basis): number {
  let worst = 0;
  for (let i = 0; i < b.rows; i++) {
    const bi = b.data.subarray(i * b.dim, (i + 1) * b.dim);
    for (let j = 0; j <= i; j++) {
      const bj = b.data.subarray(j * b.dim, (j + 1) * b.dim);
      worst = Math.max(worst, Math.abs(dot(bi, bj) - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

/**
 * g − Bᵀ(B g) in float64 for one orthonormal basis, or, with several bases and
 * `sequential`, the reference's block-by-block projection (exact only if the blocks are mutually
 * orthogonal).
 */
export function projectOutF64(g: ArrayLike<number>, bases: Basis | readonly Basis[]): Float64Array {
  const list = Array.isArray(bases) ? bases as readonly Basis[] : [bases as Basis];
  const out = Float64Array.from(g);
  for (const b of list) {
    if (b.dim !== out.length) {
      throw new Error(`projectOutF64: basis dim ${b.dim} vs gradient ${out.length}`);
    }
    const coeff = new Float64Array(b.rows);
    for (let i = 0; i < b.rows; i++) {
      coeff[i] = dot(b.data.subarray(i * b.dim, (i + 1) * b.dim), out);
    }
    for (let i = 0; i < b.rows; i++) {
      const row = b.data.subarray(i * b.dim, (i + 1) * b.dim);
      const c = coeff[i];
      for (let x = 0; x < b.dim; x++) out[x] -= c * row[x];
    }
  }
  return out;
}

/** Dot product in float64. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
