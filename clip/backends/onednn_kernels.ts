/**
 * The `cpu-dnnl` backend: the `cpu-blas` backend (tfjs's cpu backend, matrix products and the
 * hand-written element-wise kernels on OpenBLAS) with the convolution, pooling, normalisation and
 * transcendental element-wise kernels on oneDNN ({@link loadDnnl}), plus fused model ops:
 *
 * - re-registered: `Conv2D`, `FusedConv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter` (NHWC,
 *   no dilation; weights reordered to oneDNN's blocked layout per call), `AvgPool`, `AvgPoolGrad`,
 *   `MaxPool`, `MaxPoolGrad` (the gradient reruns the forward for oneDNN's argmax workspace, see
 *   {@link maxPoolBackward}), `Softmax` (last axis), `Transpose` (one reorder), `Relu`, `Exp`,
 *   `Sigmoid`, `Tanh`, `Sqrt` (element-wise ones from {@link ELTWISE_MIN} elements: FFI overhead
 *   below), `Add`, `Sub`, `Multiply`, `RealDiv` (one binary primitive, from {@link BINARY_MIN}
 *   output elements, for broadcasts where one operand has the output's shape; bit-identical to
 *   tfjs's, see {@link binaryPlan});
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
 * Everything a oneDNN kernel does not cover (other dtypes, NCHW, dilations, padded `AvgPoolGrad`,
 * pool sizes oneDNN's output arithmetic does not reproduce, max pools with a window holding
 * nothing above -FLT_MAX, binary ops where both operands broadcast or a `RealDiv`'s dividend
 * does) runs the `cpu-blas` kernel; that is why the hand-written im2col convolutions and pooling
 * gradient stay in blas_kernels.ts (and `cpu-blas` is the backend where oneDNN is missing).
 *
 * Known limit: primitives are cached per shape for the life of the process (a few KiB each, plus
 * oneDNN's blocked copy of a convolution's weights, and a max-pool gradient's forward output and
 * workspace: 1.25× the pooled output's bytes, 2× for windows of 256 elements or more, whose
 * argmax needs int32); workloads with ever-changing shapes grow it.
 *
 * @module
 */
import { tf } from "./tf.ts";
import { allocOutput } from "./host_pool.ts";
import {
  ARG,
  BINARY,
  CONV_DIRECT,
  type Dnnl,
  dnnlLoadError,
  ELTWISE,
  flatBinary,
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
  /** Weights in PyTorch's OIHW layout instead of tfjs's HWIO (the `MtilConv2dOihw` kernels). */
  oihw?: boolean;
}

function geomKey(g: ConvGeom): string {
  return `${g.n},${g.h},${g.w},${g.ic},${g.oc},${g.kh},${g.kw},${g.sh},${g.sw},${g.pt},${g.pl},${g.pb},${g.pr},${
    g.oihw ? "oihw" : "hwio"
  }`;
}

function convDescs(d: Dnnl, g: ConvGeom) {
  const x = d.md([g.n, g.ic, g.h, g.w], TAG.nhwc);
  const w = d.md([g.oc, g.ic, g.kh, g.kw], g.oihw ? TAG.abcd : TAG.hwio);
  const wAny = d.md([g.oc, g.ic, g.kh, g.kw], TAG.any);
  const y = d.md([g.n, g.oc, g.oh, g.ow], TAG.nhwc);
  const b = d.md([g.oc], TAG.a);
  const st = d.raw.dims([g.sh, g.sw]);
  const pl = d.raw.dims([g.pt, g.pl]);
  const pr = d.raw.dims([g.pb, g.pr]);
  return { x, w, wAny, y, b, st, pl, pr };
}

function convForwardPd(d: Dnnl, g: ConvGeom, withBias: boolean, relu = false) {
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
  const pd = d.raw.pd(desc, null, relu ? [{ eltwise: ELTWISE.relu }] : []);
  return { pd, m, keep: [desc, m] as unknown[] };
}

/** Forward convolution (then ReLU when `relu`): arrays `[x, w, y]` or `[x, w, bias, y]`. */
export function convForward(d: Dnnl, g: ConvGeom, withBias: boolean, relu = false): Primitive {
  return d.cached(`conv_fwd:${geomKey(g)}:${withBias}:${relu}`, () => {
    const { pd, m, keep } = convForwardPd(d, g, withBias, relu);
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

/**
 * How a broadcasting `Add`/`Sub`/`Multiply`/`RealDiv` runs as one oneDNN binary primitive.
 * oneDNN's fast (jit) binary wants `src0` with the output's dims and `src1` with each dim equal
 * or 1; a broadcasting `src0` is accepted but runs its scalar reference code (~30 ms for 800K
 * values, measured), so the plan puts the full operand first.
 */
export interface BinaryPlan {
  /** oneDNN algorithm ({@link BINARY}). */
  alg: number;
  /** Whether `src0` is tfjs's `b` (and `src1` is `a`). */
  swap: boolean;
  /** Whether `src0` is scaled by −1 (`Sub` swapped: `a − b` runs as `(−1)·b + a`). */
  negate: boolean;
  /** Output shape (tfjs's broadcast shape). */
  shape: number[];
  /**
   * `dst` (= `src0`) dims: the output's dims without 1s, runs of adjacent dims along which
   * `src1` is either full or broadcast merged into one (a bias add over [8,56,56,256] is
   * [25088,256] + [1,256]; a scalar, [n] + [1]). Fewer dims hit oneDNN's jit more often and
   * share primitives across shapes.
   */
  dst: number[];
  /** `src1` dims: those of `dst`, 1 where it broadcasts. */
  src1: number[];
}

/** Binary kernels on oneDNN and their algorithms. */
const BINARY_ALGS: Record<string, number> = {
  Add: BINARY.add,
  Sub: BINARY.sub,
  Multiply: BINARY.mul,
  RealDiv: BINARY.div,
};

/**
 * The oneDNN plan of binary kernel `op` on shapes `a`, `b` (tfjs's numpy-style broadcasting:
 * the shorter shape left-padded with 1s), or null where tfjs's kernel must run: both operands
 * broadcast (`[8,1] + [1,5]`), `RealDiv` with a broadcasting dividend (no exact rewrite: oneDNN
 * would need the broadcast on `src0`), more than 12 dims after merging, or shapes that do not
 * broadcast. Exported for tests.
 */
export function binaryPlan(
  op: string,
  aShape: readonly number[],
  bShape: readonly number[],
): BinaryPlan | null {
  const alg = BINARY_ALGS[op];
  if (alg === undefined) return null;
  let shape: number[];
  try {
    shape = tf.backend_util.assertAndGetBroadcastShape(aShape as number[], bShape as number[]);
  } catch {
    return null;
  }
  const r = shape.length;
  const pad = (s: readonly number[]) => [...new Array(r - s.length).fill(1), ...s];
  const pa = pad(aShape), pb = pad(bShape);
  const aFull = pa.every((v, i) => v === shape[i]);
  const bFull = pb.every((v, i) => v === shape[i]);
  let swap = false, negate = false, plannedAlg = alg;
  if (!aFull) {
    if (!bFull) return null;
    swap = true;
    if (op === "Sub") {
      // a − b = (−1)·b + a exactly (−1·b is exact, then one rounding), signed zeros included
      // (a − b is defined as a + (−b)); −(b − a) would turn x − x's +0 into −0.
      negate = true;
      plannedAlg = BINARY.add;
    } else if (op === "RealDiv") {
      return null;
    }
  }
  const s1 = swap ? pa : pb;
  const dst: number[] = [], src1: number[] = [];
  let prev: boolean | undefined;
  for (let i = 0; i < r; i++) {
    if (shape[i] === 1) continue;
    const bc = s1[i] === 1;
    if (bc === prev) {
      dst[dst.length - 1] *= shape[i];
      if (!bc) src1[src1.length - 1] *= shape[i];
    } else {
      dst.push(shape[i]);
      src1.push(bc ? 1 : shape[i]);
      prev = bc;
    }
  }
  if (dst.length === 0) {
    dst.push(1);
    src1.push(1);
  }
  if (dst.length > 12) return null;
  return { alg: plannedAlg, swap, negate, shape, dst, src1 };
}

/** Row-major strides of `dims`. */
function denseStrides(dims: readonly number[]): number[] {
  const st: number[] = new Array(dims.length);
  for (let i = dims.length - 1, s = 1; i >= 0; i--) {
    st[i] = s;
    s *= dims[i];
  }
  return st;
}

/**
 * Binary primitives by plan key; null where oneDNN would run its reference implementation
 * (e.g. four or more alternating full/broadcast dim groups): tfjs's kernel runs there instead.
 * Kept here, not in {@link Dnnl.cached}, to remember those nulls.
 */
const binaryPrims = new Map<string, Primitive | null>();

/**
 * A binary primitive for `plan`: arrays `[src0, src1, dst]` (`dst` a fresh array: oneDNN
 * writes it, reading only the sources, which may be the same array), or null (see
 * {@link binaryPrims}).
 */
export function binaryPrimitive(d: Dnnl, plan: BinaryPlan): Primitive | null {
  const key = `binary:${plan.alg}:${plan.negate}:${plan.dst}:${plan.src1}`;
  const hit = binaryPrims.get(key);
  if (hit !== undefined) return hit;
  const m0 = d.mdStrided(plan.dst, denseStrides(plan.dst));
  const m1 = d.mdStrided(plan.src1, denseStrides(plan.src1));
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_binary_desc_init(desc, plan.alg, m0, m1, m0),
    "binary_desc_init",
  );
  const pd = d.raw.pd(desc, null, [], plan.negate ? [{ arg: ARG.src, scale: -1 }] : []);
  let p: Primitive | null = null;
  if (d.raw.implName(pd).startsWith("ref")) {
    d.raw.lib.dnnl_primitive_desc_destroy(pd);
  } else {
    p = d.raw.build(pd, [
      { arg: ARG.src, md: m0, query: 0 },
      { arg: ARG.src1, md: m1, query: 0 },
      { arg: ARG.dst, md: m0, query: 0 },
    ], [desc]);
  }
  binaryPrims.set(key, p);
  return p;
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

function poolPd(d: Dnnl, g: PoolGeom, alg: number, prop: number = PROP.training) {
  const x = d.md([g.n, g.c, g.h, g.w], TAG.nhwc);
  const y = d.md([g.n, g.c, g.oh, g.ow], TAG.nhwc);
  const st = d.raw.dims([g.sh, g.sw]), k = d.raw.dims([g.kh, g.kw]);
  const dil = d.raw.dims([0, 0]);
  const pl = d.raw.dims([g.pt, g.pl]), pr = d.raw.dims([g.pb, g.pr]);
  const desc = d.raw.desc();
  d.raw.check(
    d.raw.lib.dnnl_pooling_v2_forward_desc_init(desc, prop, alg, x, y, st, k, dil, pl, pr),
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

/**
 * Max pooling: arrays `[x, y]`. Forward inference: training would also write oneDNN's workspace
 * (the argmax of each window), which tfjs never hands to `MaxPoolGrad` (see
 * {@link maxPoolBackward}).
 */
export function maxPoolForward(d: Dnnl, g: PoolGeom): Primitive {
  return d.cached(`maxpool_fwd:${poolKey(g)}`, () => {
    const f = poolPd(d, g, POOL.max, PROP.inference);
    return d.raw.build(f.pd, [
      { arg: ARG.src, md: f.x, query: QUERY.src },
      { arg: ARG.dst, md: f.y, query: QUERY.dst },
    ], [f.desc]);
  });
}

/**
 * Max-pooling gradient from the input: arrays `[x, dy, dx]`.
 *
 * oneDNN's backward routes each `dy` to the argmax its training forward recorded in a workspace;
 * tfjs's `MaxPoolGrad` gets `{dy, input, output}` but no workspace. So this runs a training
 * forward on `x` first, into a `dst` and a workspace oneDNN allocated once for this shape (owned
 * by the forward primitive: nobody reads that `dst`), then the backward bound to that same
 * workspace memory (the `shared` option of `build`). Both run back to back inside one `run` on the
 * JS thread, so no other call can overwrite the shared workspace in between. Cost: one extra
 * forward pass (cheap next to tfjs's JS loops) and, per cached shape, the `dst` and workspace
 * buffers for the life of the process.
 *
 * Ties: tfjs's `maxPoolPositions` keeps a window's first maximum in (row, column) scan order
 * (strict `>`), and so does oneDNN 2.6's `jit:avx512_core` pooling (measured on integer inputs
 * in onednn_test.ts, which would catch another ISA's kernel that differs): the whole gradient of
 * a window goes to the same element.
 */
export function maxPoolBackward(d: Dnnl, g: PoolGeom): Primitive {
  return d.cached(`maxpool_bwd:${poolKey(g)}`, () => {
    const f = poolPd(d, g, POOL.max, PROP.training);
    const fwd = d.raw.build(f.pd, [{ arg: ARG.src, md: f.x, query: QUERY.src }], [f.desc], {
      owned: [{ arg: ARG.dst, query: QUERY.dst }],
    });
    const ws = fwd.owned?.get(ARG.workspace);
    if (!ws) throw new Error("oneDNN's training max pooling asked for no workspace");
    const desc = d.raw.desc();
    d.raw.check(
      d.raw.lib.dnnl_pooling_v2_backward_desc_init(
        desc,
        POOL.max,
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
    // the backward must read the workspace in the layout the forward wrote it
    const wsFwd = d.raw.query(f.pd, QUERY.workspace), wsBwd = d.raw.query(pd, QUERY.workspace);
    if (wsBwd === null || !d.raw.lib.dnnl_memory_desc_equal(wsFwd, wsBwd)) {
      throw new Error("oneDNN max pooling: backward and forward workspaces differ");
    }
    const bwd = d.raw.build(
      pd,
      [
        { arg: ARG.diffDst, md: f.y, query: QUERY.diffDst },
        { arg: ARG.diffSrc, md: f.x, query: QUERY.diffSrc },
      ],
      [f.desc, f.pd, desc],
      { shared: [{ arg: ARG.workspace, mem: ws }] },
    );
    return {
      slotBytes: [...fwd.slotBytes, ...bwd.slotBytes],
      run(arrays) {
        if (arrays.length !== 3) {
          throw new Error(`oneDNN max-pooling gradient takes 3 arrays, got ${arrays.length}`);
        }
        fwd.run([arrays[0]]);
        bwd.run([arrays[1], arrays[2]]);
      },
    };
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

type Backend = KernelArgs["backend"];

/** A convolution's output on oneDNN (bias and ReLU inside when given), weights as `g` says. */
function runConvForward(
  d: Dnnl,
  g: ConvGeom,
  backend: Backend,
  x: TensorInfo,
  filter: TensorInfo,
  bias: TensorInfo | undefined,
  relu: boolean,
): TensorInfo {
  const y = allocOutput(backend, g.n * g.oh * g.ow * g.oc);
  const xv = f32(backend, x), wv = f32(backend, filter);
  if (bias) convForward(d, g, true, relu).run([xv, wv, f32(backend, bias), y]);
  else convForward(d, g, false, relu).run([xv, wv, y]);
  return out(backend, [g.n, g.oh, g.ow, g.oc], y);
}

/** A convolution's gradient with respect to its input, on oneDNN. */
function runConvBackwardData(
  d: Dnnl,
  g: ConvGeom,
  backend: Backend,
  dy: TensorInfo,
  filter: TensorInfo,
  inputShape: number[],
): TensorInfo {
  const dx = allocOutput(backend, sizeOf(inputShape));
  convBackwardData(d, g).run([f32(backend, dy), f32(backend, filter), dx]);
  return out(backend, [...inputShape], dx);
}

/** A convolution's gradient with respect to its weights (in `g`'s layout), on oneDNN. */
function runConvBackwardWeights(
  d: Dnnl,
  g: ConvGeom,
  backend: Backend,
  x: TensorInfo,
  dy: TensorInfo,
  filterShape: number[],
): TensorInfo {
  const dw = allocOutput(backend, sizeOf(filterShape));
  convBackwardWeights(d, g).run([f32(backend, x), f32(backend, dy), dw]);
  return out(backend, [...filterShape], dw);
}

function conv2dKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs ?? {};
    const g = allFloat(x, filter) && nhwc(attrs)
      ? geomOf(convInfoOf(x.shape, filter.shape, attrs))
      : null;
    if (!g) return blasKernel("Conv2D", args);
    return runConvForward(d, g, args.backend, x, filter, undefined, false);
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
    return runConvForward(d, g, args.backend, x!, filter!, bias, act === "relu");
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
    return runConvBackwardData(d, g, args.backend, dy, filter, inputShape);
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
    return runConvBackwardWeights(d, g, args.backend, x, dy, filterShape);
  };
}

/**
 * Geometry of a convolution of NHWC `x` with OIHW weights, stride `stride`, symmetric zero
 * padding `pad` (PyTorch's `Conv2d`), or null when it has no output.
 */
function oihwGeom(x: number[], w: number[], stride: number, pad: number): ConvGeom | null {
  const [n, h, wd, ic] = x, [oc, wic, kh, kw] = w;
  if (x.length !== 4 || w.length !== 4 || wic !== ic) return null;
  const oh = Math.floor((h + 2 * pad - kh) / stride) + 1;
  const ow = Math.floor((wd + 2 * pad - kw) / stride) + 1;
  if (!(oh > 0 && ow > 0) || sizeOf([n, h, wd, ic, oc]) === 0) return null;
  return {
    n,
    h,
    w: wd,
    ic,
    oc,
    kh,
    kw,
    sh: stride,
    sw: stride,
    pt: pad,
    pl: pad,
    pb: pad,
    pr: pad,
    oh,
    ow,
    oihw: true,
  };
}

function oihwAttrs(attrs: Attrs | undefined): { stride: number; pad: number } {
  return { stride: attrs!.stride as number, pad: attrs!.pad as number };
}

/**
 * `MtilConv2dOihw` {x (NHWC), filter (OIHW), bias?} attrs {stride, pad, relu} → y: the model's
 * convolution with the PyTorch weight as stored, so no per-step HWIO transpose (and its gradient
 * transposed back) is needed; oneDNN reorders OIHW to its blocked layout itself.
 */
function conv2dOihwKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, filter, bias } = args.inputs as Record<string, TensorInfo>;
    const { stride, pad } = oihwAttrs(args.attrs);
    const g = oihwGeom(x.shape, filter.shape, stride, pad);
    if (!g || !allFloat(x, filter, bias)) throw new Error("MtilConv2dOihw: unsupported input");
    return runConvForward(d, g, args.backend, x, filter, bias, args.attrs!.relu === true);
  };
}

/** `MtilConv2dOihwBackpropInput` {dy, filter} attrs {inputShape, stride, pad} → dx. */
function conv2dOihwBackpropInputKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, filter } = args.inputs as Record<string, TensorInfo>;
    const { stride, pad } = oihwAttrs(args.attrs);
    const inputShape = args.attrs!.inputShape as number[];
    const g = oihwGeom(inputShape, filter.shape, stride, pad)!;
    return runConvBackwardData(d, g, args.backend, dy, filter, inputShape);
  };
}

/** `MtilConv2dOihwBackpropFilter` {x, dy} attrs {filterShape, stride, pad} → dw (OIHW). */
function conv2dOihwBackpropFilterKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x, dy } = args.inputs as Record<string, TensorInfo>;
    const { stride, pad } = oihwAttrs(args.attrs);
    const filterShape = args.attrs!.filterShape as number[];
    const g = oihwGeom(x.shape, filterShape, stride, pad)!;
    return runConvBackwardWeights(d, g, args.backend, x, dy, filterShape);
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
    const y = allocOutput(args.backend, g.n * g.oh * g.ow * g.c);
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
    const dx = allocOutput(args.backend, sizeOf(input.shape));
    avgPoolBackward(d, g).run([f32(args.backend, dy), dx]);
    return out(args.backend, [...input.shape], dx);
  };
}

/** The lowest finite float32: oneDNN's max pooling starts each window there. */
const FLT_LOWEST = -3.4028234663852886e38;

/**
 * Whether a max pool's output holds a window without anything above -FLT_MAX (only -Infinity or
 * NaN, or -FLT_MAX itself). Such windows are where oneDNN and tfjs differ: both skip NaN and keep
 * the first strictly greater value, but oneDNN starts at -FLT_MAX with the window's first
 * position (it outputs -FLT_MAX and routes the gradient there) where tfjs starts at -Infinity
 * with no position (output -Infinity, no gradient). Only a diverged model meets them, so the
 * kernels below rerun tfjs's kernel then rather than patch oneDNN's result. One compare per
 * output (1/stride² of the input; ~0.6 ns each): about 1 ms at [8,56,56,64].
 */
function hasUnboundedWindow(y: Float32Array): boolean {
  for (let i = 0; i < y.length; i++) if (!(y[i] > FLT_LOWEST)) return true;
  return false;
}

/** `MaxPool` on oneDNN (tfjs's kernel where {@link hasUnboundedWindow}). */
function maxPoolKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const g = allFloat(x) ? poolGeom(x.shape, args.attrs ?? {}) : null;
    // a 1×1 window at stride 1: tfjs's kernel returns the input itself (no copy)
    if (!g || (g.kh === 1 && g.kw === 1 && g.oh === g.h && g.ow === g.w)) {
      return blasKernel("MaxPool", args);
    }
    const y = allocOutput(args.backend, g.n * g.oh * g.ow * g.c);
    maxPoolForward(d, g).run([f32(args.backend, x), y]);
    if (hasUnboundedWindow(y)) return blasKernel("MaxPool", args);
    return out(args.backend, [g.n, g.oh, g.ow, g.c], y);
  };
}

/**
 * `MaxPoolGrad` {dy, input, output} on oneDNN. `output` (the forward's) is only scanned for
 * {@link hasUnboundedWindow}, where tfjs's kernel runs; oneDNN recomputes the argmax from
 * `input` (see {@link maxPoolBackward}).
 */
function maxPoolGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, input, output } = args.inputs as Record<string, TensorInfo>;
    const g = allFloat(dy, input, output) ? poolGeom(input.shape, args.attrs ?? {}) : null;
    if (
      !g || !output || dy.shape.join() !== [g.n, g.oh, g.ow, g.c].join() ||
      hasUnboundedWindow(f32(args.backend, output))
    ) {
      return blasKernel("MaxPoolGrad", args);
    }
    const dx = allocOutput(args.backend, sizeOf(input.shape));
    maxPoolBackward(d, g).run([f32(args.backend, input), f32(args.backend, dy), dx]);
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
    const y = allocOutput(args.backend, size);
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
    const dx = allocOutput(args.backend, size);
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
    const y = allocOutput(args.backend, n);
    eltwiseForward(d, n, alg).run([f32(args.backend, x), y]);
    return out(args.backend, [...x.shape], y);
  };
}

/**
 * Output elements from which `Add`/`Sub`/`Multiply`/`RealDiv` run on oneDNN. A oneDNN call costs
 * ~17 µs whatever the size (FFI calls, waking OpenMP's threads); `cpu-blas`'s loops take about
 * as long at 4K–16K values (measured on 2 loaded cores) and 2–4× longer from 64K.
 */
export const BINARY_MIN = 8192;

/**
 * `Add`, `Sub`, `Multiply`, `RealDiv` {a, b} on oneDNN's binary primitive: multi-threaded and
 * vectorised, for every broadcast where one operand has the output's shape (tfjs's generic
 * broadcast computes indices per element: 68 ms for [8,1,2048]·[8,49,2048]). float32
 * add/sub/mul/div round once, so the results are bit-identical to tfjs's (measured: signed zeros,
 * and oneDNN's `div` is a true division, not a reciprocal multiply). Other dtypes, small
 * outputs and what {@link binaryPlan} or {@link binaryPrimitive} declines run `cpu-blas`'s kernel.
 */
function binaryKernel(d: Dnnl, name: string): KernelFn {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    if (a.dtype !== "float32" || b.dtype !== "float32") return blasKernel(name, args);
    const plan = binaryPlan(name, a.shape, b.shape);
    if (!plan || sizeOf(plan.shape) < BINARY_MIN) return blasKernel(name, args);
    const p = binaryPrimitive(d, plan);
    if (!p) return blasKernel(name, args);
    const av = f32(args.backend, a), bv = f32(args.backend, b);
    const y = allocOutput(args.backend, sizeOf(plan.shape));
    p.run(plan.swap ? [bv, av, y] : [av, bv, y]);
    return out(args.backend, plan.shape, y);
  };
}

/**
 * `MtilAddRelu` {a, b} (same shape) → `relu(a + b)` in one pass: a ResNet block's residual join
 * (tfjs: `Add` then `Relu`, two passes and a temporary). Small or non-float inputs: those two
 * kernels.
 */
function addReluKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const n = sizeOf(a.shape);
    if (!allFloat(a, b) || a.shape.join() !== b.shape.join() || n < BINARY_MIN) {
      const sum = blasKernel("Add", { ...args, attrs: {} }) as TensorInfo;
      const y = (tf.getKernel("Relu", CPU_DNNL) ?? tf.getKernel("Relu", CPU_BLAS))!.kernelFunc({
        inputs: { x: sum },
        backend: args.backend,
        attrs: {},
      }) as TensorInfo;
      args.backend.disposeIntermediateTensorInfo(sum);
      return y;
    }
    const p = d.cached(
      `add_relu:${n}`,
      () => flatBinary(d, n, BINARY.add, n, [{ eltwise: ELTWISE.relu }]),
    );
    const y = allocOutput(args.backend, n);
    p.run([f32(args.backend, a), f32(args.backend, b), y]);
    return out(args.backend, [...a.shape], y);
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
    const dx = allocOutput(args.backend, n);
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
    const y = allocOutput(args.backend, n);
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
    const y = allocOutput(args.backend, n);
    if (n > 0) eltwiseForward(d, n, ELTWISE.swish, QUICK_GELU_ALPHA).run([xv, y]);
    return out(args.backend, [...x.shape], y);
  };
}

function quickGeluGradKernel(d: Dnnl): KernelFn {
  return (args) => {
    const { dy, x } = args.inputs as { dy: TensorInfo; x: TensorInfo };
    const n = sizeOf(x.shape);
    const dx = allocOutput(args.backend, n);
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
    const y = allocOutput(args.backend, rows * c);
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
    const dx = allocOutput(args.backend, rows * c);
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
    const y = allocOutput(args.backend, n * h * w * c);
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
    const dx = allocOutput(args.backend, n * h * w * c);
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
  "MtilConv2dOihw",
  "MtilConv2dOihwBackpropInput",
  "MtilConv2dOihwBackpropFilter",
  "AvgPool",
  "AvgPoolGrad",
  "MaxPool",
  "MaxPoolGrad",
  "Softmax",
  "Transpose",
  ...Object.keys(UNARY_ALGS),
  ...Object.keys(BINARY_ALGS),
  "MtilSoftmaxGrad",
  "MtilReluGrad",
  "MtilAddRelu",
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
    MtilConv2dOihw: conv2dOihwKernel(d),
    MtilConv2dOihwBackpropInput: conv2dOihwBackpropInputKernel(d),
    MtilConv2dOihwBackpropFilter: conv2dOihwBackpropFilterKernel(d),
    AvgPool: avgPoolKernel(d),
    AvgPoolGrad: avgPoolGradKernel(d),
    MaxPool: maxPoolKernel(d),
    MaxPoolGrad: maxPoolGradKernel(d),
    Softmax: softmaxKernel(d),
    Transpose: transposeKernel(d),
    ...Object.fromEntries(Object.keys(UNARY_ALGS).map((k) => [k, unaryKernel(d, k)])),
    ...Object.fromEntries(Object.keys(BINARY_ALGS).map((k) => [k, binaryKernel(d, k)])),
    MtilSoftmaxGrad: softmaxGradKernel(d),
    MtilReluGrad: reluGradKernel(d),
    MtilAddRelu: addReluKernel(d),
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
