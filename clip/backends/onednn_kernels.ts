/**
 * The `cpu-dnnl` backend: the `cpu-blas` backend (tfjs's cpu backend, matrix products and the
 * hand-written element-wise kernels on OpenBLAS) with the convolution, pooling, normalisation and
 * transcendental element-wise kernels on oneDNN ({@link loadDnnl}), plus fused model ops:
 *
 * - re-registered: `Conv2D`, `FusedConv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter` (NHWC,
 *   no dilation; weights reordered to oneDNN's blocked layout per call), `AvgPool`, `AvgPoolGrad`,
 *   `Softmax` (last axis), `Transpose` (one reorder), `Relu`, `Exp`, `Sigmoid`, `Tanh`, `Sqrt`
 *   (element-wise ones from {@link ELTWISE_MIN} elements: FFI overhead below);
 * - fused kernels (see fused.ts): `MtilLayerNorm`/`MtilLayerNormGrad`,
 *   `MtilQuickGelu`/`MtilQuickGeluGrad` (eltwise swish α = 1.702), `MtilSoftmaxGrad` (the
 *   attention softmax's gradient in one pass), `MtilReluGrad` (ReLU's gradient in one pass),
 *   `MtilBatchNormTrain`, `MtilBatchNormReluTrain` (BatchNorm then ReLU: the pre-ReLU tensor is
 *   neither kept nor saved)/`MtilBatchNormTrainGrad`; the batch statistics are summed in float64
 *   in JS (oneDNN's float32 sums broke step parity on the tiny ResNet: {@link batchStatistics}).
 *
 * A separate backend name (rather than more kernels on `cpu-blas`) keeps `cpu-blas` usable where
 * oneDNN is missing and lets tests compare the two. Matrix products stay on OpenBLAS: oneDNN's
 * matmul primitive measured the same within noise at ViT-B/32's shapes (±20%, slower with a
 * transposed left operand, one thread, 2 loaded cores), not worth a second code path.
 * Everything a oneDNN kernel does not cover (other dtypes, NCHW, dilations, padded `AvgPoolGrad`)
 * runs the `cpu-blas` kernel; that is why the hand-written im2col convolutions and pooling
 * gradient stay in blas_kernels.ts (and `cpu-blas` is the backend where oneDNN is missing).
 *
 * Known limit: primitives are cached per shape for the life of the process (a few KiB each, plus
 * oneDNN's blocked copy of a convolution's weights); workloads with ever-changing shapes grow it.
 *
 * @module
 */
import { tf } from "./tf.ts";
import {
  ARG,
  CONV_DIRECT,
  type Dnnl,
  dnnlLoadError,
  ELTWISE,
  loadDnnl,
  NORM,
  POOL,
  type Primitive,
  PROP,
  QUERY,
  SOFTMAX_ALG,
  TAG,
} from "./onednn.ts";
import {
  blasBackendUnavailableReason,
  CPU_BLAS,
  f32,
  type KernelArgs,
  type KernelFn,
  out,
  registerBlasBackend,
  sizeOf,
} from "./blas_kernels.ts";

/** Name under which the backend is registered. */
export const CPU_DNNL = "cpu-dnnl";

/** Elements from which a oneDNN element-wise kernel beats a JS loop (FFI overhead below). */
export const ELTWISE_MIN = 2048;

type TensorInfo = tf.TensorInfo;
type Attrs = Record<string, unknown>;

function allFloat(...ts: (TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === "float32");
}

/** The `cpu-blas` kernel `name` (the fallback of every kernel here). */
function blasKernel(name: string, args: KernelArgs): TensorInfo | TensorInfo[] {
  const k = tf.getKernel(name, CPU_BLAS) ?? tf.getKernel(name, "cpu");
  if (!k) throw new Error(`kernel ${name} is not registered on ${CPU_BLAS}`);
  return k.kernelFunc(args as unknown as Parameters<typeof k.kernelFunc>[0]) as
    | TensorInfo
    | TensorInfo[];
}

// ---------------------------------------------------------------------------------------------
// Primitive builders (cached by shape)

/** A 2-D convolution geometry (NHWC activations, HWIO weights: tfjs's layouts). */
export interface ConvGeom {
  n: number;
  h: number;
  w: number;
  ic: number;
  oc: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
  pb: number;
  pr: number;
  oh: number;
  ow: number;
}

function geomKey(g: ConvGeom): string {
  return `${g.n},${g.h},${g.w},${g.ic},${g.oc},${g.kh},${g.kw},${g.sh},${g.sw},${g.pt},${g.pl},${g.pb},${g.pr}`;
}

function convDescs(d: Dnnl, g: ConvGeom) {
  const x = d.md([g.n, g.ic, g.h, g.w], TAG.nhwc);
  const w = d.md([g.oc, g.ic, g.kh, g.kw], TAG.hwio);
  const wAny = d.md([g.oc, g.ic, g.kh, g.kw], TAG.any);
  const y = d.md([g.n, g.oc, g.oh, g.ow], TAG.nhwc);
  const b = d.md([g.oc], TAG.a);
  const st = d.raw.dims([g.sh, g.sw]);
  const pl = d.raw.dims([g.pt, g.pl]);
  const pr = d.raw.dims([g.pb, g.pr]);
  return { x, w, wAny, y, b, st, pl, pr };
}

function convForwardPd(d: Dnnl, g: ConvGeom, withBias: boolean) {
  const m = convDescs(d, g);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_convolution_forward_desc_init(
      desc,
      PROP.training,
      CONV_DIRECT,
      m.x,
      m.wAny,
      withBias ? Deno.UnsafePointer.of(m.b) : null,
      m.y,
      m.st,
      m.pl,
      m.pr,
    ),
    "convolution_forward_desc_init",
  );
  return { pd: d.raw.pd(desc), m, keep: [desc, m] as unknown[] };
}

/** Forward convolution: arrays `[x, w, y]` or `[x, w, bias, y]`. */
export function convForward(d: Dnnl, g: ConvGeom, withBias: boolean): Primitive {
  return d.cached(`conv_fwd:${geomKey(g)}:${withBias}`, () => {
    const { pd, m, keep } = convForwardPd(d, g, withBias);
    const slots = [
      { arg: ARG.src, md: m.x, query: QUERY.src },
      { arg: ARG.weights, md: m.w, query: QUERY.weights },
      ...(withBias ? [{ arg: ARG.bias, md: m.b, query: 0 }] : []),
      { arg: ARG.dst, md: m.y, query: QUERY.dst, out: true },
    ];
    return d.raw.build(pd, slots, keep);
  });
}

/** Convolution gradient with respect to the input: arrays `[dy, w, dx]`. */
export function convBackwardData(d: Dnnl, g: ConvGeom): Primitive {
  return d.cached(`conv_bwd_data:${geomKey(g)}`, () => {
    const f = convForwardPd(d, g, false);
    const m = f.m;
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_convolution_backward_data_desc_init(
        desc,
        CONV_DIRECT,
        m.x,
        m.wAny,
        m.y,
        m.st,
        m.pl,
        m.pr,
      ),
      "convolution_backward_data_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.diffDst, md: m.y, query: QUERY.diffDst },
      { arg: ARG.weights, md: m.w, query: QUERY.weights },
      { arg: ARG.diffSrc, md: m.x, query: QUERY.diffSrc, out: true },
    ], [...f.keep, f.pd, desc]);
  });
}

/** Convolution gradient with respect to the weights: arrays `[x, dy, dw]`. */
export function convBackwardWeights(d: Dnnl, g: ConvGeom): Primitive {
  return d.cached(`conv_bwd_w:${geomKey(g)}`, () => {
    const f = convForwardPd(d, g, false);
    const m = f.m;
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_convolution_backward_weights_desc_init(
        desc,
        CONV_DIRECT,
        m.x,
        m.wAny,
        null,
        m.y,
        m.st,
        m.pl,
        m.pr,
      ),
      "convolution_backward_weights_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.src, md: m.x, query: QUERY.src },
      { arg: ARG.diffDst, md: m.y, query: QUERY.diffDst },
      { arg: ARG.diffWeights, md: m.w, query: QUERY.diffWeights, out: true },
    ], [...f.keep, f.pd, desc]);
  });
}

function eltwiseForwardPd(d: Dnnl, n: number, alg: number, alpha: number) {
  const m = d.md([n], TAG.a);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_eltwise_forward_desc_init(desc, PROP.training, alg, m, alpha, 0),
    "eltwise_forward_desc_init",
  );
  return { pd: d.raw.pd(desc), m, desc };
}

/** Element-wise forward over `n` floats: arrays `[x, y]`. */
export function eltwiseForward(d: Dnnl, n: number, alg: number, alpha = 0): Primitive {
  return d.cached(`elt_fwd:${n}:${alg}:${alpha}`, () => {
    const { pd, m, desc } = eltwiseForwardPd(d, n, alg, alpha);
    return d.raw.build(pd, [
      { arg: ARG.src, md: m, query: QUERY.src },
      { arg: ARG.dst, md: m, query: QUERY.dst },
    ], [desc]);
  });
}

/** Element-wise backward from the source: arrays `[x, dy, dx]`. */
export function eltwiseBackward(d: Dnnl, n: number, alg: number, alpha = 0): Primitive {
  return d.cached(`elt_bwd:${n}:${alg}:${alpha}`, () => {
    const f = eltwiseForwardPd(d, n, alg, alpha);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_eltwise_backward_desc_init(desc, alg, f.m, f.m, alpha, 0),
      "eltwise_backward_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.src, md: f.m, query: QUERY.src },
      { arg: ARG.diffDst, md: f.m, query: QUERY.diffDst },
      { arg: ARG.diffSrc, md: f.m, query: QUERY.diffSrc },
    ], [f.desc, f.pd, desc]);
  });
}

/** Element-wise backward from the destination (`*_use_dst_for_bwd` algs): arrays `[y, dy, dx]`. */
export function eltwiseBackwardFromDst(d: Dnnl, n: number, alg: number, alpha = 0): Primitive {
  return d.cached(`elt_bwd_dst:${n}:${alg}:${alpha}`, () => {
    const f = eltwiseForwardPd(d, n, alg, alpha);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_eltwise_backward_desc_init(desc, alg, f.m, f.m, alpha, 0),
      "eltwise_backward_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.dst, md: f.m, query: QUERY.dst },
      { arg: ARG.diffDst, md: f.m, query: QUERY.diffDst },
      { arg: ARG.diffSrc, md: f.m, query: QUERY.diffSrc },
    ], [f.desc, f.pd, desc]);
  });
}

function softmaxForwardPd(d: Dnnl, rows: number, cols: number) {
  const m = d.md([rows, cols], TAG.ab);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_softmax_v2_forward_desc_init(desc, PROP.training, SOFTMAX_ALG, m, m, 1),
    "softmax_v2_forward_desc_init",
  );
  return { pd: d.raw.pd(desc), m, desc };
}

/** Softmax over the last axis of `[rows, cols]`: arrays `[x, y]`. */
export function softmaxForward(d: Dnnl, rows: number, cols: number): Primitive {
  return d.cached(`softmax_fwd:${rows}:${cols}`, () => {
    const { pd, m, desc } = softmaxForwardPd(d, rows, cols);
    return d.raw.build(pd, [
      { arg: ARG.src, md: m, query: QUERY.src },
      { arg: ARG.dst, md: m, query: QUERY.dst },
    ], [desc]);
  });
}

/** Softmax gradient from the output: arrays `[y, dy, dx]`. */
export function softmaxBackward(d: Dnnl, rows: number, cols: number): Primitive {
  return d.cached(`softmax_bwd:${rows}:${cols}`, () => {
    const f = softmaxForwardPd(d, rows, cols);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_softmax_v2_backward_desc_init(desc, SOFTMAX_ALG, f.m, f.m, f.m, 1),
      "softmax_v2_backward_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.dst, md: f.m, query: QUERY.dst },
      { arg: ARG.diffDst, md: f.m, query: QUERY.diffDst },
      { arg: ARG.diffSrc, md: f.m, query: QUERY.diffSrc },
    ], [f.desc, f.pd, desc]);
  });
}

function layerNormForwardPd(d: Dnnl, rows: number, c: number, eps: number) {
  const m = d.md([rows, c], TAG.ab);
  const s = d.md([rows], TAG.a);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_layer_normalization_forward_desc_init(
      desc,
      PROP.training,
      m,
      Deno.UnsafePointer.of(s),
      eps,
      NORM.scale | NORM.shift,
    ),
    "layer_normalization_forward_desc_init",
  );
  return { pd: d.raw.pd(desc), m, s, desc, c: d.md([c], TAG.a) };
}

/** Layer norm over the last axis: arrays `[x, gamma, beta, y, mean, variance]`. */
export function layerNormForward(d: Dnnl, rows: number, c: number, eps: number): Primitive {
  return d.cached(`ln_fwd:${rows}:${c}:${eps}`, () => {
    const f = layerNormForwardPd(d, rows, c, eps);
    return d.raw.build(f.pd, [
      { arg: ARG.src, md: f.m, query: QUERY.src },
      { arg: ARG.scale, md: f.c, query: 0 },
      { arg: ARG.shift, md: f.c, query: 0 },
      { arg: ARG.dst, md: f.m, query: QUERY.dst },
      { arg: ARG.mean, md: f.s, query: 0 },
      { arg: ARG.variance, md: f.s, query: 0 },
    ], [f.desc, f.s]);
  });
}

/** Layer norm gradient: arrays `[x, dy, gamma, beta, mean, variance, dx, dgamma, dbeta]`. */
export function layerNormBackward(d: Dnnl, rows: number, c: number, eps: number): Primitive {
  return d.cached(`ln_bwd:${rows}:${c}:${eps}`, () => {
    const f = layerNormForwardPd(d, rows, c, eps);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_layer_normalization_backward_desc_init(
        desc,
        PROP.backward,
        f.m,
        f.m,
        Deno.UnsafePointer.of(f.s),
        eps,
        NORM.scale | NORM.shift,
      ),
      "layer_normalization_backward_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.src, md: f.m, query: QUERY.src },
      { arg: ARG.diffDst, md: f.m, query: QUERY.diffDst },
      { arg: ARG.scale, md: f.c, query: 0 },
      { arg: ARG.shift, md: f.c, query: 0 },
      { arg: ARG.mean, md: f.s, query: 0 },
      { arg: ARG.variance, md: f.s, query: 0 },
      { arg: ARG.diffSrc, md: f.m, query: QUERY.diffSrc },
      { arg: ARG.diffScale, md: f.c, query: 0 },
      { arg: ARG.diffShift, md: f.c, query: 0 },
    ], [f.desc, f.pd, f.s, desc]);
  });
}

function batchNormForwardPd(d: Dnnl, n: number, h: number, w: number, c: number, eps: number) {
  const m = d.md([n, c, h, w], TAG.nhwc);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_batch_normalization_forward_desc_init(
      desc,
      PROP.training,
      m,
      eps,
      NORM.scale | NORM.shift,
    ),
    "batch_normalization_forward_desc_init",
  );
  return { pd: d.raw.pd(desc), m, desc, c: d.md([c], TAG.a) };
}

/**
 * BatchNorm with given statistics on NHWC (oneDNN's `use_global_stats`), then ReLU when `relu`:
 * arrays `[x, scale, shift, mean, variance, y]`. The training kernel computes the batch
 * statistics itself ({@link batchStatistics}) and normalises with this.
 */
export function batchNormApply(
  d: Dnnl,
  n: number,
  h: number,
  w: number,
  c: number,
  eps: number,
  relu: boolean,
): Primitive {
  return d.cached(`bn_apply:${n}:${h}:${w}:${c}:${eps}:${relu}`, () => {
    const m = d.md([n, c, h, w], TAG.nhwc);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_batch_normalization_forward_desc_init(
        desc,
        PROP.inference, // normalisation only: no statistics out, no workspace for the ReLU
        m,
        eps,
        NORM.globalStats | NORM.scale | NORM.shift | (relu ? NORM.fuseRelu : 0),
      ),
      "batch_normalization_forward_desc_init",
    );
    const cmd = d.md([c], TAG.a);
    return d.raw.build(d.raw.pd(desc), [
      { arg: ARG.src, md: m, query: QUERY.src },
      { arg: ARG.scale, md: cmd, query: 0 },
      { arg: ARG.shift, md: cmd, query: 0 },
      { arg: ARG.mean, md: cmd, query: 0 },
      { arg: ARG.variance, md: cmd, query: 0 },
      { arg: ARG.dst, md: m, query: QUERY.dst },
    ], [desc, m, cmd]);
  });
}

/**
 * Per-channel mean and biased variance of NHWC `x` (`c` innermost), accumulated in float64 and
 * rounded once into `mean` and `variance`.
 *
 * Why not oneDNN's own statistics: its training forward sums in float32, and on the tiny ResNet
 * of the step-parity fixtures (methods/parity_test.ts) that made the image features twice as far
 * from a float64 evaluation as with exact statistics (rms 3.3e-6 vs 1.6e-6 relative). That network
 * is chaotic at float32 resolution: the extra noise flipped the sign of a step-0 gradient entry
 * whose float64 value is +1.5e-6, Adam turned that into a ±lr move, and the next steps left the
 * PyTorch reference, whose CPU BatchNorm accumulates its statistics in double as well.
 *
 * One pass over `x` with sums shifted by the first row `k` (`Σ(x−k)`, `Σ(x−k)²`; four rows at a
 * time), about 1.6× faster than two passes: the variance `Σ(x−k)²/N − (mean−k)²` loses at most
 * a factor `(mean−k)²/var < N` (Samuelson's inequality: a sample lies within √N standard
 * deviations of its mean) of float64's precision, still below float32's rounding up to N = 2^28
 * rows per channel (a ResNet's largest BatchNorm at batch 32 has 2^19).
 */
export function batchStatistics(
  x: Float32Array,
  c: number,
  mean: Float32Array,
  variance: Float32Array,
): void {
  const rows = x.length / c;
  const k = new Float64Array(c), s1 = new Float64Array(c), s2 = new Float64Array(c);
  if (rows === 0) {
    mean.fill(NaN); // as a mean over nothing
    variance.fill(NaN);
    return;
  }
  for (let j = 0; j < c; j++) k[j] = x[j];
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const o0 = r * c, o1 = o0 + c, o2 = o1 + c, o3 = o2 + c;
    for (let j = 0; j < c; j++) {
      const kj = k[j];
      const a = x[o0 + j] - kj, b = x[o1 + j] - kj, e = x[o2 + j] - kj, f = x[o3 + j] - kj;
      s1[j] += (a + b) + (e + f);
      s2[j] += (a * a + b * b) + (e * e + f * f);
    }
  }
  for (; r < rows; r++) {
    for (let j = 0, o = r * c; j < c; j++) {
      const t = x[o + j] - k[j];
      s1[j] += t;
      s2[j] += t * t;
    }
  }
  for (let j = 0; j < c; j++) {
    const dm = s1[j] / rows;
    mean[j] = k[j] + dm;
    variance[j] = Math.max(0, s2[j] / rows - dm * dm);
  }
}

/**
 * BatchNorm gradient in training mode (the statistics are functions of `x`: the mean and variance
 * terms included), with the forward's batch statistics given: arrays `[x, dy, scale, shift, mean,
 * variance, dx, dscale, dshift]`.
 */
export function batchNormBackward(
  d: Dnnl,
  n: number,
  h: number,
  w: number,
  c: number,
  eps: number,
): Primitive {
  return d.cached(`bn_bwd:${n}:${h}:${w}:${c}:${eps}`, () => {
    const f = batchNormForwardPd(d, n, h, w, c, eps);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_batch_normalization_backward_desc_init(
        desc,
        PROP.backward,
        f.m,
        f.m,
        eps,
        NORM.scale | NORM.shift,
      ),
      "batch_normalization_backward_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.src, md: f.m, query: QUERY.src },
      { arg: ARG.diffDst, md: f.m, query: QUERY.diffDst },
      { arg: ARG.scale, md: f.c, query: 0 },
      { arg: ARG.shift, md: f.c, query: 0 },
      { arg: ARG.mean, md: f.c, query: 0 },
      { arg: ARG.variance, md: f.c, query: 0 },
      { arg: ARG.diffSrc, md: f.m, query: QUERY.diffSrc },
      { arg: ARG.diffScale, md: f.c, query: 0 },
      { arg: ARG.diffShift, md: f.c, query: 0 },
    ], [f.desc, f.pd, desc]);
  });
}

/**
 * Transpose of a row-major `shape` by `perm` as one reorder (strided source, dense destination):
 * arrays `[x, y]`.
 */
export function transpose(d: Dnnl, shape: readonly number[], perm: readonly number[]): Primitive {
  return d.cached(`transpose:${shape}:${perm}`, () => {
    const xStrides: number[] = new Array(shape.length);
    for (let i = shape.length - 1, st = 1; i >= 0; i--) {
      xStrides[i] = st;
      st *= shape[i];
    }
    const dims = perm.map((p) => shape[p]);
    const src = d.mdStrided(dims, perm.map((p) => xStrides[p]));
    const dstStrides: number[] = new Array(dims.length);
    for (let i = dims.length - 1, st = 1; i >= 0; i--) {
      dstStrides[i] = st;
      st *= dims[i];
    }
    const dst = d.mdStrided(dims, dstStrides);
    const pd = d.raw.reorderPd(src, dst);
    return d.raw.build(pd, [
      { arg: ARG.src, md: src, query: QUERY.src },
      { arg: ARG.dst, md: dst, query: QUERY.dst },
    ], []);
  });
}

/** A pooling geometry on NHWC (padding as tfjs computes it). */
interface PoolGeom {
  n: number;
  h: number;
  w: number;
  c: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
  pb: number;
  pr: number;
}

function poolPd(d: Dnnl, g: PoolGeom, alg: number) {
  const x = d.md([g.n, g.c, g.h, g.w], TAG.nhwc);
  const y = d.md([g.n, g.c, g.oh, g.ow], TAG.nhwc);
  const st = d.raw.dims([g.sh, g.sw]), k = d.raw.dims([g.kh, g.kw]);
  const dil = d.raw.dims([0, 0]);
  const pl = d.raw.dims([g.pt, g.pl]), pr = d.raw.dims([g.pb, g.pr]);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_pooling_v2_forward_desc_init(desc, PROP.training, alg, x, y, st, k, dil, pl, pr),
    "pooling_v2_forward_desc_init",
  );
  return { pd: d.raw.pd(desc), x, y, st, k, dil, pl, pr, desc };
}

function poolKey(g: PoolGeom): string {
  return Object.values(g).join(",");
}

/** Average pooling (padding excluded from the count, as tfjs): arrays `[x, y]`. */
export function avgPoolForward(d: Dnnl, g: PoolGeom): Primitive {
  return d.cached(`avgpool_fwd:${poolKey(g)}`, () => {
    const f = poolPd(d, g, POOL.avgExcludePadding);
    return d.raw.build(f.pd, [
      { arg: ARG.src, md: f.x, query: QUERY.src },
      { arg: ARG.dst, md: f.y, query: QUERY.dst },
    ], [f.desc]);
  });
}

/** Average-pooling gradient: arrays `[dy, dx]`. */
export function avgPoolBackward(d: Dnnl, g: PoolGeom): Primitive {
  return d.cached(`avgpool_bwd:${poolKey(g)}`, () => {
    const f = poolPd(d, g, POOL.avgExcludePadding);
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_pooling_v2_backward_desc_init(
        desc,
        POOL.avgExcludePadding,
        f.x,
        f.y,
        f.st,
        f.k,
        f.dil,
        f.pl,
        f.pr,
      ),
      "pooling_v2_backward_desc_init",
    );
    const pd = d.raw.pd(desc, f.pd);
    return d.raw.build(pd, [
      { arg: ARG.diffDst, md: f.y, query: QUERY.diffDst },
      { arg: ARG.diffSrc, md: f.x, query: QUERY.diffSrc },
    ], [f.desc, f.pd, desc]);
  });
}

// ---------------------------------------------------------------------------------------------
// Kernels

type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

function convInfoOf(xShape: number[], filterShape: number[], attrs: Attrs): ConvInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    (attrs.dilations as number | [number, number]) ?? 1,
    attrs.pad as "same" | "valid" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
    false,
    "channelsLast",
  );
}

/** oneDNN geometry of a tfjs conv info, or null for what the kernels here do not cover. */
function geomOf(c: ConvInfo): ConvGeom | null {
  if (c.dilationHeight !== 1 || c.dilationWidth !== 1) return null;
  const p = c.padInfo;
  if (p.type === "EXPLICIT" as unknown) return null;
  const g: ConvGeom = {
    n: c.batchSize,
    h: c.inHeight,
    w: c.inWidth,
    ic: c.inChannels,
    oc: c.outChannels,
    kh: c.filterHeight,
    kw: c.filterWidth,
    sh: c.strideHeight,
    sw: c.strideWidth,
    pt: p.top,
    pl: p.left,
    pb: p.bottom,
    pr: p.right,
    oh: c.outHeight,
    ow: c.outWidth,
  };
  // oneDNN's output size must be the one tfjs computed
  if (Math.floor((g.h + g.pt + g.pb - g.kh) / g.sh) + 1 !== g.oh) return null;
  if (Math.floor((g.w + g.pl + g.pr - g.kw) / g.sw) + 1 !== g.ow) return null;
  if (sizeOf([g.n, g.h, g.w, g.ic, g.oc, g.oh, g.ow]) === 0) return null;
  return g;
}

function nhwc(attrs: Attrs): boolean {
  return attrs.dataFormat === undefined || attrs.dataFormat === "NHWC";
}

function conv2dKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs ?? {};
    const g = allFloat(x, filter) && nhwc(attrs)
      ? geomOf(convInfoOf(x.shape, filter.shape, attrs))
      : null;
    if (!g) return blasKernel("Conv2D", args);
    const y = new Float32Array(g.n * g.oh * g.ow * g.oc);
    convForward(d, g, false).run([f32(args.backend, x), f32(args.backend, filter), y]);
    return out(args.backend, [g.n, g.oh, g.ow, g.oc], y);
  };
}

function fusedConv2dKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, filter, bias } = args.inputs;
    const attrs = args.attrs ?? {};
    const act = (attrs.activation as string | undefined) ?? "linear";
    const g = allFloat(x, filter, bias) && nhwc(attrs) && (act === "linear" || act === "relu") &&
        (!bias || sizeOf(bias.shape) === filter!.shape[3])
      ? geomOf(convInfoOf(x!.shape, filter!.shape, attrs))
      : null;
    if (!g) return blasKernel("FusedConv2D", args);
    const y = new Float32Array(g.n * g.oh * g.ow * g.oc);
    const xv = f32(args.backend, x!), wv = f32(args.backend, filter!);
    if (bias) convForward(d, g, true).run([xv, wv, f32(args.backend, bias), y]);
    else convForward(d, g, false).run([xv, wv, y]);
    if (act === "relu") { for (let i = 0; i < y.length; i++) if (y[i] < 0) y[i] = 0; }
    return out(args.backend, [g.n, g.oh, g.ow, g.oc], y);
  };
}

function conv2dBackpropInputKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs ?? {};
    const inputShape = attrs.inputShape as number[];
    const g = allFloat(dy, filter) && nhwc(attrs)
      ? geomOf(convInfoOf(inputShape, filter.shape, attrs))
      : null;
    if (!g || dy.shape.join() !== [g.n, g.oh, g.ow, g.oc].join()) {
      return blasKernel("Conv2DBackpropInput", args);
    }
    const dx = new Float32Array(sizeOf(inputShape));
    convBackwardData(d, g).run([f32(args.backend, dy), f32(args.backend, filter), dx]);
    return out(args.backend, [...inputShape], dx);
  };
}

function conv2dBackpropFilterKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const attrs = args.attrs ?? {};
    const filterShape = attrs.filterShape as number[];
    const g = allFloat(x, dy) && nhwc(attrs)
      ? geomOf(convInfoOf(x.shape, filterShape, attrs))
      : null;
    if (!g || dy.shape.join() !== [g.n, g.oh, g.ow, g.oc].join()) {
      return blasKernel("Conv2DBackpropFilter", args);
    }
    const dw = new Float32Array(sizeOf(filterShape));
    convBackwardWeights(d, g).run([f32(args.backend, x), f32(args.backend, dy), dw]);
    return out(args.backend, [...filterShape], dw);
  };
}

function poolGeom(xShape: number[], attrs: Attrs): PoolGeom | null {
  if (xShape.length !== 4) return null;
  const info = tf.backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as "same" | "valid" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
  const p = info.padInfo;
  const g: PoolGeom = {
    n: info.batchSize,
    h: info.inHeight,
    w: info.inWidth,
    c: info.inChannels,
    oh: info.outHeight,
    ow: info.outWidth,
    kh: info.filterHeight,
    kw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    pt: p.top,
    pl: p.left,
    pb: p.bottom,
    pr: p.right,
  };
  if (Math.floor((g.h + g.pt + g.pb - g.kh) / g.sh) + 1 !== g.oh) return null;
  if (Math.floor((g.w + g.pl + g.pr - g.kw) / g.sw) + 1 !== g.ow) return null;
  if (g.pt >= g.kh || g.pb >= g.kh || g.pl >= g.kw || g.pr >= g.kw) return null;
  if (sizeOf([g.n, g.h, g.w, g.c, g.oh, g.ow]) === 0) return null;
  return g;
}

function avgPoolKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const g = allFloat(x) ? poolGeom(x.shape, args.attrs ?? {}) : null;
    if (!g) return blasKernel("AvgPool", args);
    const y = new Float32Array(g.n * g.oh * g.ow * g.c);
    avgPoolForward(d, g).run([f32(args.backend, x), y]);
    return out(args.backend, [g.n, g.oh, g.ow, g.c], y);
  };
}

function avgPoolGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
    const g = allFloat(dy, input) ? poolGeom(input.shape, args.attrs ?? {}) : null;
    // tfjs's AvgPoolGrad divides by the whole window even where its forward excluded padding:
    // padded pools keep tfjs's kernel so that gradients stay tfjs's.
    const padded = g !== null && g.pt + g.pb + g.pl + g.pr > 0;
    if (!g || padded || dy.shape.join() !== [g.n, g.oh, g.ow, g.c].join()) {
      return blasKernel("AvgPoolGrad", args);
    }
    const dx = new Float32Array(sizeOf(input.shape));
    avgPoolBackward(d, g).run([f32(args.backend, dy), dx]);
    return out(args.backend, [...input.shape], dx);
  };
}

function softmaxKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { logits } = args.inputs as { logits: TensorInfo };
    const dim = (args.attrs?.dim as number | undefined) ?? -1;
    const rank = logits.shape.length;
    const size = sizeOf(logits.shape);
    if (
      logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1) ||
      size < ELTWISE_MIN
    ) {
      return blasKernel("Softmax", args);
    }
    const cols = logits.shape[rank - 1];
    const y = new Float32Array(size);
    softmaxForward(d, size / cols, cols).run([f32(args.backend, logits), y]);
    return out(args.backend, [...logits.shape], y);
  };
}

/** `MtilSoftmaxGrad` {dy, y} attrs {dim}: `y·(dy − Σ dy·y)` over the last axis. */
function softmaxGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, y } = args.inputs as { dy: TensorInfo; y: TensorInfo };
    const rank = y.shape.length;
    const size = sizeOf(y.shape);
    const cols = y.shape[rank - 1];
    const dx = new Float32Array(size);
    if (size === 0) return out(args.backend, [...y.shape], dx);
    const dyv = f32(args.backend, dy), yv = f32(args.backend, y);
    if (size >= ELTWISE_MIN) {
      softmaxBackward(d, size / cols, cols).run([yv, dyv, dx]);
    } else {
      for (let off = 0; off < size; off += cols) {
        let s = 0;
        for (let j = 0; j < cols; j++) s += dyv[off + j] * yv[off + j];
        for (let j = 0; j < cols; j++) dx[off + j] = yv[off + j] * (dyv[off + j] - s);
      }
    }
    return out(args.backend, [...y.shape], dx);
  };
}

/** Unary kernels on oneDNN element-wise primitives (large inputs; small ones stay in JS). */
const UNARY_ALGS: Record<string, number> = {
  Relu: ELTWISE.relu,
  Exp: ELTWISE.exp,
  Sigmoid: ELTWISE.logistic,
  Tanh: ELTWISE.tanh,
  Sqrt: ELTWISE.sqrt,
};

function unaryKernel(d: Dnnl, name: string): KernelFn {
  const alg = UNARY_ALGS[name];
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const n = sizeOf(x.shape);
    if (x.dtype !== "float32" || n < ELTWISE_MIN) return blasKernel(name, args);
    const y = new Float32Array(n);
    eltwiseForward(d, n, alg).run([f32(args.backend, x), y]);
    return out(args.backend, [...x.shape], y);
  };
}

/**
 * `MtilReluGrad` {dy, x}: `x > 0 ? dy : 0` in one pass (tfjs: `Step` then `Multiply`, two full
 * passes and a temporary; 17% of an RN50 training step). A NaN in x gives 0, not NaN.
 */
function reluGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, x } = args.inputs as { dy: TensorInfo; x: TensorInfo };
    const n = sizeOf(x.shape);
    const dx = new Float32Array(n);
    const xv = f32(args.backend, x), g = f32(args.backend, dy);
    if (n >= ELTWISE_MIN) {
      eltwiseBackward(d, n, ELTWISE.relu, 0).run([xv, g, dx]);
    } else {
      for (let i = 0; i < n; i++) dx[i] = xv[i] > 0 ? g[i] : 0;
    }
    return out(args.backend, [...x.shape], dx);
  };
}

/**
 * `Transpose` as one oneDNN reorder (10× the JS strided gather on conv weights' OIHW → HWIO).
 * Small tensors, and permutations that move no data (`cpu-blas` shares the buffer), stay there.
 */
function transposeKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const perm = args.attrs!.perm as number[];
    const n = sizeOf(x.shape);
    const moved = perm.filter((p) => x.shape[p] !== 1);
    const inOrder = moved.every((p, i) => i === 0 || p > moved[i - 1]);
    if (x.dtype !== "float32" || n < ELTWISE_MIN || inOrder || x.shape.length > 12) {
      return blasKernel("Transpose", args);
    }
    const y = new Float32Array(n);
    transpose(d, x.shape, perm).run([f32(args.backend, x), y]);
    return out(args.backend, perm.map((p) => x.shape[p]), y);
  };
}

/** QuickGELU's `x·σ(1.702·x)` is oneDNN's swish with α = 1.702. */
const QUICK_GELU_ALPHA = 1.702;

function quickGeluKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const n = sizeOf(x.shape);
    const xv = f32(args.backend, x);
    const y = new Float32Array(n);
    if (n > 0) eltwiseForward(d, n, ELTWISE.swish, QUICK_GELU_ALPHA).run([xv, y]);
    return out(args.backend, [...x.shape], y);
  };
}

function quickGeluGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, x } = args.inputs as { dy: TensorInfo; x: TensorInfo };
    const n = sizeOf(x.shape);
    const dx = new Float32Array(n);
    if (n > 0) {
      eltwiseBackward(d, n, ELTWISE.swish, QUICK_GELU_ALPHA).run([
        f32(args.backend, x),
        f32(args.backend, dy),
        dx,
      ]);
    }
    return out(args.backend, [...x.shape], dx);
  };
}

/** `MtilLayerNorm` {x, gamma, beta} attrs {eps} → [y, mean, variance] (last axis). */
function layerNormKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, gamma, beta } = args.inputs as Record<string, TensorInfo>;
    const eps = args.attrs!.eps as number;
    const c = x.shape[x.shape.length - 1];
    const rows = sizeOf(x.shape) / c;
    const y = new Float32Array(rows * c);
    const mean = new Float32Array(rows), variance = new Float32Array(rows);
    if (rows > 0) {
      layerNormForward(d, rows, c, eps).run([
        f32(args.backend, x),
        f32(args.backend, gamma),
        f32(args.backend, beta),
        y,
        mean,
        variance,
      ]);
    }
    const statShape = x.shape.slice(0, -1);
    return [
      out(args.backend, [...x.shape], y),
      out(args.backend, statShape, mean),
      out(args.backend, statShape, variance),
    ];
  };
}

/** `MtilLayerNormGrad` {dy, x, gamma, beta, mean, variance} attrs {eps} → [dx, dgamma, dbeta]. */
function layerNormGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, x, gamma, beta, mean, variance } = args.inputs as Record<string, TensorInfo>;
    const eps = args.attrs!.eps as number;
    const c = x.shape[x.shape.length - 1];
    const rows = sizeOf(x.shape) / c;
    const dx = new Float32Array(rows * c);
    const dg = new Float32Array(c), db = new Float32Array(c);
    if (rows > 0) {
      layerNormBackward(d, rows, c, eps).run([
        f32(args.backend, x),
        f32(args.backend, dy),
        f32(args.backend, gamma),
        f32(args.backend, beta),
        f32(args.backend, mean),
        f32(args.backend, variance),
        dx,
        dg,
        db,
      ]);
    }
    return [
      out(args.backend, [...x.shape], dx),
      out(args.backend, [c], dg),
      out(args.backend, [c], db),
    ];
  };
}

/**
 * `MtilBatchNormTrain` {x (NHWC), scale, shift} attrs {eps} → [y, mean, variance (biased)];
 * `MtilBatchNormReluTrain`: the same with `y = relu(·)` fused (no pre-ReLU tensor kept). The
 * statistics are float64 sums here ({@link batchStatistics}, one pass over `x`), the
 * normalisation oneDNN's; the gradient kernel's primitive is the training-mode one (statistics as
 * functions of `x`), fed these statistics.
 */
function batchNormTrainKernel(d: Dnnl, relu: boolean): KernelFn {
  return (args) => {
    const { x, scale, shift } = args.inputs as Record<string, TensorInfo>;
    const eps = args.attrs!.eps as number;
    const [n, h, w, c] = x.shape;
    const xv = f32(args.backend, x);
    const y = new Float32Array(n * h * w * c);
    const mean = new Float32Array(c), variance = new Float32Array(c);
    // statistics in float64 here, the normalisation (the bulk of the work) on oneDNN
    batchStatistics(xv, c, mean, variance);
    batchNormApply(d, n, h, w, c, eps, relu).run([
      xv,
      f32(args.backend, scale),
      f32(args.backend, shift),
      mean,
      variance,
      y,
    ]);
    return [
      out(args.backend, [...x.shape], y),
      out(args.backend, [c], mean),
      out(args.backend, [c], variance),
    ];
  };
}

/**
 * `MtilBatchNormTrainGrad` {dy, x, scale, shift, mean, variance, y?} attrs {eps} → [dx, dscale,
 * dshift]; with `y` (the output of `MtilBatchNormReluTrain`) the ReLU's gradient comes first.
 */
function batchNormTrainGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, x, scale, shift, mean, variance, y } = args.inputs as Record<string, TensorInfo>;
    const eps = args.attrs!.eps as number;
    const [n, h, w, c] = x.shape;
    const dx = new Float32Array(n * h * w * c);
    const ds = new Float32Array(c), db = new Float32Array(c);
    let g = f32(args.backend, dy);
    if (y !== undefined && g.length > 0) {
      // through the fused ReLU first: its mask is y > 0
      const gr = new Float32Array(g.length);
      eltwiseBackwardFromDst(d, g.length, ELTWISE.reluUseDst).run([f32(args.backend, y), g, gr]);
      g = gr;
    }
    batchNormBackward(d, n, h, w, c, eps).run([
      f32(args.backend, x),
      g,
      f32(args.backend, scale),
      f32(args.backend, shift),
      f32(args.backend, mean),
      f32(args.backend, variance),
      dx,
      ds,
      db,
    ]);
    return [
      out(args.backend, [...x.shape], dx),
      out(args.backend, [c], ds),
      out(args.backend, [c], db),
    ];
  };
}

/** Kernels this module registers on `cpu-dnnl` (the rest are `cpu-blas`'s). */
export const DNNL_KERNEL_NAMES: readonly string[] = [
  "Conv2D",
  "FusedConv2D",
  "Conv2DBackpropInput",
  "Conv2DBackpropFilter",
  "AvgPool",
  "AvgPoolGrad",
  "Softmax",
  "Transpose",
  ...Object.keys(UNARY_ALGS),
  "MtilSoftmaxGrad",
  "MtilReluGrad",
  "MtilQuickGelu",
  "MtilQuickGeluGrad",
  "MtilLayerNorm",
  "MtilLayerNormGrad",
  "MtilBatchNormTrain",
  "MtilBatchNormReluTrain",
  "MtilBatchNormTrainGrad",
];

function kernels(d: Dnnl): Record<string, KernelFn> {
  return {
    Conv2D: conv2dKernel(d),
    FusedConv2D: fusedConv2dKernel(d),
    Conv2DBackpropInput: conv2dBackpropInputKernel(d),
    Conv2DBackpropFilter: conv2dBackpropFilterKernel(d),
    AvgPool: avgPoolKernel(d),
    AvgPoolGrad: avgPoolGradKernel(d),
    Softmax: softmaxKernel(d),
    Transpose: transposeKernel(d),
    ...Object.fromEntries(Object.keys(UNARY_ALGS).map((k) => [k, unaryKernel(d, k)])),
    MtilSoftmaxGrad: softmaxGradKernel(d),
    MtilReluGrad: reluGradKernel(d),
    MtilQuickGelu: quickGeluKernel(d),
    MtilQuickGeluGrad: quickGeluGradKernel(d),
    MtilLayerNorm: layerNormKernel(d),
    MtilLayerNormGrad: layerNormGradKernel(d),
    MtilBatchNormTrain: batchNormTrainKernel(d, false),
    MtilBatchNormReluTrain: batchNormTrainKernel(d, true),
    MtilBatchNormTrainGrad: batchNormTrainGradKernel(d),
  };
}

/**
 * Kernel names listed in `MTIL_DNNL_DISABLE` (comma-separated): left to `cpu-blas` (fused ops:
 * their composite tfjs form). For bisecting numerical differences.
 */
function disabledKernels(): string[] {
  let v: string | undefined;
  try {
    v = Deno.env.get("MTIL_DNNL_DISABLE");
  } catch {
    v = undefined;
  }
  const names = (v ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!DNNL_KERNEL_NAMES.includes(n)) {
      throw new Error(
        `MTIL_DNNL_DISABLE: unknown kernel "${n}"; valid: ${DNNL_KERNEL_NAMES.join(", ")}`,
      );
    }
  }
  return names;
}

let registered: boolean | undefined;
let reason = "";

/** Why {@link registerDnnlBackend} returned false (empty otherwise). */
export function dnnlBackendUnavailableReason(): string {
  return reason;
}

/**
 * Register the `cpu-dnnl` backend (once): every `cpu-blas` kernel, the ones above replaced by
 * oneDNN. Returns false, without throwing, when OpenBLAS or oneDNN does not load (see
 * {@link dnnlBackendUnavailableReason}). Does not switch backends.
 */
export function registerDnnlBackend(): boolean {
  if (registered !== undefined) return registered;
  if (!registerBlasBackend()) {
    reason = `needs cpu-blas: ${blasBackendUnavailableReason()}`;
    registered = false;
    return false;
  }
  const d = loadDnnl();
  if (!d) {
    reason = dnnlLoadError();
    registered = false;
    return false;
  }
  const factory = tf.findBackendFactory(CPU_BLAS)!;
  tf.registerBackend(CPU_DNNL, factory, 0);
  const ours = kernels(d);
  for (const name of disabledKernels()) delete ours[name];
  for (const k of tf.getKernelsForBackend(CPU_BLAS)) {
    if (k.kernelName in ours) continue;
    tf.registerKernel({ ...k, backendName: CPU_DNNL });
  }
  for (const [kernelName, kernelFunc] of Object.entries(ours)) {
    tf.registerKernel({
      kernelName,
      backendName: CPU_DNNL,
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  }
  registered = true;
  return true;
}

/** The oneDNN library behind `cpu-dnnl`, or null. */
export function dnnlInfo(): { path: string; version: string } | null {
  const d = loadDnnl();
  return d ? { path: d.path, version: d.version } : null;
}
