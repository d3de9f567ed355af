/**
 * The L2 norm the way PyTorch's CPU kernel computes `tensor.norm()` for a contiguous float32
 * tensor: one SIMD accumulator of `lanes` float32 partial sums, each lane summing every
 * `lanes`-th square in order, then the lanes folded left to right, the tail added, and the
 * square root taken in float32.
 *
 * Float32 accumulation swamps small terms once a lane's sum is large: on a token-embedding
 * gradient with a few large rows and millions of tiny ones (the L2-to-start term on rows no
 * prompt uses) it is 5.6e-4 below the exact norm. The reference fixtures record norms this
 * way, so step-parity tests compare against this, not against {@link l2NormF64}. Internal to
 * the tests; not part of the public API.
 *
 * @module
 */

const f = Math.fround;

/**
 * PyTorch's float32 CPU `norm()` of `data` with `lanes` SIMD lanes (16 with AVX-512, 8 with
 * AVX2). Assumes no fused multiply-add (`acc + x*x` rounds the product).
 */
export function torchNormF32(data: ArrayLike<number>, lanes = 16): number {
  const acc = new Float32Array(lanes);
  const n = data.length;
  const body = n - (n % lanes);
  for (let d = 0; d < body; d += lanes) {
    for (let j = 0; j < lanes; j++) {
      const x = data[d + j];
      acc[j] = f(acc[j] + f(x * x));
    }
  }
  let s = acc[0];
  for (let j = 1; j < lanes; j++) s = f(s + acc[j]);
  for (let d = body; d < n; d++) s = f(s + f(data[d] * data[d]));
  return f(Math.sqrt(s));
}
