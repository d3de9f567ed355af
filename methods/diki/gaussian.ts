/**
 * DIKI's per-task Gaussians of frozen-CLIP image features, on the host in float64.
 *
 * Before training task t, the frozen CLIP's L2-normalised image features of t's training images
 * give a Gaussian: `mean`, `cov = dᵀd/(N−1) + jitter·I` (`d` = features − mean, jitter 1e-7). At
 * test time each image's log-probability under every learnt Gaussian picks its task.
 *
 * Precision. The reference keeps mean and covariance in float32 buffers and evaluates
 * `MultivariateNormal.log_prob` in float32. The covariance of normalised features is badly
 * conditioned (eigenvalues from ~1e-3 down to ~1e-7 at ViT-B/16 sizes, a condition number of
 * 1e4), and the Mahalanobis term of an image of another task reaches thousands: float32 loses
 * ~1e-3 absolute there (0.025 at lp ≈ −2900, measured on the reference fixtures). Here the
 * features are normalised, averaged and multiplied in float64; the mean and covariance are then
 * rounded to float32 — the form the reference stores and the checkpoint holds, so a reloaded
 * Gaussian gives bit-identical results — and the Cholesky factor, log-determinant and
 * log-probabilities are computed from them in float64. Against the reference's float32
 * log-probabilities this agrees to ~1e-5 relative (the tests' bar is 1e-4); the effect on the
 * weights `sigmoid(lp/512 − 1)` is ~1e-6.
 *
 * @module
 */

/** `log(2π)`. */
const LOG_2PI = Math.log(2 * Math.PI);

/** Options of {@link fitGaussian}. */
export interface FitGaussianOptions {
  /** Added to the covariance diagonal (default 1e-7, the reference's). */
  jitter?: number;
  /** L2-normalise each feature row first (default true: raw encoder outputs go in). */
  normalize?: boolean;
}

/**
 * A multivariate normal over `dim`-dimensional features: float32 parameters (the stored form),
 * float64 arithmetic.
 */
export class TaskGaussian {
  /** Feature width. */
  readonly dim: number;
  /** Mean `[dim]` (float32, as stored). */
  readonly mean: Float32Array;
  /** Covariance `[dim, dim]` row-major (float32, as stored; jitter included). */
  readonly cov: Float32Array;
  /** Images it was fitted on. */
  readonly count: number;
  readonly #chol: Float64Array;
  readonly #logDet: number;

  /**
   * From stored parameters. Throws when the covariance is not symmetric positive definite (e.g.
   * fitted on no more images than the feature width).
   */
  constructor(mean: Float32Array, cov: Float32Array, count: number, source = "DIKI Gaussian") {
    const d = mean.length;
    if (cov.length !== d * d) {
      throw new Error(`${source}: covariance has ${cov.length} values, expected ${d}×${d}`);
    }
    this.dim = d;
    this.mean = mean;
    this.cov = cov;
    this.count = count;
    const l = new Float64Array(d * d);
    let logDet = 0;
    for (let j = 0; j < d; j++) {
      let s = cov[j * d + j];
      for (let k = 0; k < j; k++) s -= l[j * d + k] * l[j * d + k];
      if (!(s > 0)) {
        throw new Error(
          `${source}: covariance is not positive definite (pivot ${j} = ${s}); fit it on more ` +
            `images than the feature width ${d} (got ${count})`,
        );
      }
      const ljj = Math.sqrt(s);
      l[j * d + j] = ljj;
      logDet += 2 * Math.log(ljj);
      for (let i = j + 1; i < d; i++) {
        let t = cov[i * d + j];
        for (let k = 0; k < j; k++) t -= l[i * d + k] * l[j * d + k];
        l[i * d + j] = t / ljj;
      }
    }
    this.#chol = l;
    this.#logDet = logDet;
  }

  /** `log det Σ` (float64). */
  get logDet(): number {
    return this.#logDet;
  }

  /** Log-density of one feature row `x` (`dim` values, taken as given: not normalised here). */
  logProb(x: ArrayLike<number>, offset = 0): number {
    const d = this.dim;
    const l = this.#chol;
    // solve L·z = x − μ; Mahalanobis = ‖z‖²
    const z = new Float64Array(d);
    let m = 0;
    for (let i = 0; i < d; i++) {
      let s = x[offset + i] - this.mean[i];
      for (let k = 0; k < i; k++) s -= l[i * d + k] * z[k];
      z[i] = s / l[i * d + i];
      m += z[i] * z[i];
    }
    return -0.5 * (d * LOG_2PI + this.#logDet + m);
  }

  /** Log-densities of the rows of a row-major `[n, dim]` array. */
  logProbs(rows: ArrayLike<number>): Float64Array {
    const n = rows.length / this.dim;
    if (!Number.isInteger(n)) {
      throw new Error(`DIKI: ${rows.length} feature values are not rows of width ${this.dim}`);
    }
    const out = new Float64Array(n);
    for (let r = 0; r < n; r++) out[r] = this.logProb(rows, r * this.dim);
    return out;
  }
}

/** Row-wise L2 normalisation in float64 of a row-major `[n, dim]` array. */
export function normalizeRowsF64(rows: ArrayLike<number>, dim: number): Float64Array {
  const n = rows.length / dim;
  const out = new Float64Array(rows.length);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += rows[r * dim + j] ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) out[r * dim + j] = rows[r * dim + j] * inv;
  }
  return out;
}

/**
 * Accumulates feature rows batch by batch (float64 sums of x and xxᵀ would lose the small
 * eigen-directions to cancellation, so the rows are kept: N·dim values, e.g. 20 MB for 10 000
 * ViT-B/16 images) and fits the Gaussian at the end with a two-pass mean and covariance.
 */
export class GaussianAccumulator {
  /** Feature width. */
  readonly dim: number;
  readonly #opts: Required<FitGaussianOptions>;
  #chunks: Float64Array[] = [];
  #n = 0;

  /** An empty accumulator for `dim`-wide features. */
  constructor(dim: number, options: FitGaussianOptions = {}) {
    this.dim = dim;
    this.#opts = { jitter: options.jitter ?? 1e-7, normalize: options.normalize ?? true };
  }

  /** Add the rows of a row-major `[n, dim]` array. */
  add(rows: ArrayLike<number>): void {
    if (rows.length % this.dim !== 0) {
      throw new Error(`DIKI: ${rows.length} feature values are not rows of width ${this.dim}`);
    }
    this.#chunks.push(
      this.#opts.normalize ? normalizeRowsF64(rows, this.dim) : Float64Array.from(rows),
    );
    this.#n += rows.length / this.dim;
  }

  /** Rows added so far. */
  get count(): number {
    return this.#n;
  }

  /** The Gaussian of the rows added (needs more rows than `dim`). */
  fit(source = "DIKI Gaussian"): TaskGaussian {
    const d = this.dim, n = this.#n;
    if (n < 2) throw new Error(`${source}: needs at least 2 images, got ${n}`);
    const mean = new Float64Array(d);
    for (const c of this.#chunks) {
      for (let i = 0; i < c.length; i++) mean[i % d] += c[i];
    }
    for (let j = 0; j < d; j++) mean[j] /= n;
    const cov = new Float64Array(d * d);
    const row = new Float64Array(d);
    for (const c of this.#chunks) {
      for (let r = 0; r < c.length / d; r++) {
        for (let j = 0; j < d; j++) row[j] = c[r * d + j] - mean[j];
        for (let i = 0; i < d; i++) {
          const ri = row[i];
          for (let j = 0; j <= i; j++) cov[i * d + j] += ri * row[j];
        }
      }
    }
    const cov32 = new Float32Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j <= i; j++) {
        const v = cov[i * d + j] / (n - 1) + (i === j ? this.#opts.jitter : 0);
        cov32[i * d + j] = cov32[j * d + i] = v;
      }
    }
    return new TaskGaussian(Float32Array.from(mean), cov32, n, source);
  }
}

/** The Gaussian of a row-major `[n, dim]` feature array (see {@link GaussianAccumulator}). */
export function fitGaussian(
  rows: ArrayLike<number>,
  dim: number,
  options: FitGaussianOptions = {},
): TaskGaussian {
  const acc = new GaussianAccumulator(dim, options);
  acc.add(rows);
  return acc.fit();
}
