/**
 * The `cpu-blas` backend: tfjs's pure-JS cpu backend (same tensors, same kernels) with the heavy
 * kernels re-registered on native BLAS through {@link loadBlas}: `BatchMatMul` (transpose flags
 * and batch broadcasting passed straight to `sgemm`), `_FusedMatMul`, `Conv2D`, `FusedConv2D`,
 * `Conv2DBackpropInput`, `Conv2DBackpropFilter` (im2col + `sgemm`, 1×1 convolutions without
 * im2col). The element-wise work that dominates a CLIP training step once the products are native
 * (measured with `deno task bench --profile`) is replaced too: broadcasting `Add`/`Sub`/`Multiply`/
 * `RealDiv` (large ones on BLAS level-1 routines), `Softmax`, `Sum`/`Mean`/`Max` over one contiguous
 * block of axes, `Transpose` (tiled), `PadV2`, unary `Exp`/`Sigmoid`/`Sqrt`/`Rsqrt`/`Square`/
 * `Neg`/`Relu`, and `UnsortedSegmentSum` (a scatter-add; tfjs's takes 75 s for one embedding
 * gradient). Every loop is written out per operation: shared loops with callbacks go megamorphic
 * in V8 and run ~10× slower.
 *
 * @module
 */
import { tf } from "./tf.ts";
import { allocOutput, HostPool } from "./host_pool.ts";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { type Blas, blasLoadError, loadBlas } from "./blas.ts";
import { registerMatMulGradient } from "./wasm_kernels.ts";

/** Name under which the backend is registered. */
export const CPU_BLAS = "cpu-blas";

type TensorInfo = tf.TensorInfo;
type Attrs = Record<string, unknown>;
type Inputs = Record<string, TensorInfo | undefined>;
/** Arguments of a kernel on the cpu(-blas, -dnnl) backends. */
export interface KernelArgs {
  /** Input tensors by name. */
  inputs: Inputs;
  /** The backend. */
  backend: MathBackendCPU;
  /** Attributes. */
  attrs?: Attrs;
}
/** A kernel function on the cpu(-blas, -dnnl) backends. */
export type KernelFn = (args: KernelArgs) => TensorInfo | TensorInfo[];

/** Float32 values of a tensor on the cpu(-blas) backend, in place (no copy). */
export function f32(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

/** A float32 tensor of the backend holding `values` (taken, not copied). */
export function out(backend: MathBackendCPU, shape: number[], values: Float32Array): TensorInfo {
  return backend.makeTensorInfo(shape, "float32", values);
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Run tfjs's own cpu kernel (the fallback for cases the native kernels do not cover). */
function cpuKernel(name: string, args: KernelArgs): TensorInfo | TensorInfo[] {
  const k = tf.getKernel(name, "cpu");
  if (!k) throw new Error(`cpu kernel ${name} is not registered`);
  return k.kernelFunc(args as unknown as Parameters<typeof k.kernelFunc>[0]) as
    | TensorInfo
    | TensorInfo[];
}

function allFloat(...ts: (TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === "float32");
}

// ---------------------------------------------------------------------------------------------
// Matrix products

/** `[batch..., m, n]` product with broadcasting batch dims; returns a fresh Float32Array. */
function matmulValues(
  blas: Blas,
  av: Float32Array,
  aShape: readonly number[],
  bv: Float32Array,
  bShape: readonly number[],
  transA: boolean,
  transB: boolean,
  alloc: (n: number) => Float32Array = (n) => new Float32Array(n),
): { shape: number[]; values: Float32Array } {
  const ar = aShape.length, br = bShape.length;
  const m = transA ? aShape[ar - 1] : aShape[ar - 2];
  const k = transA ? aShape[ar - 2] : aShape[ar - 1];
  const kb = transB ? bShape[br - 1] : bShape[br - 2];
  const n = transB ? bShape[br - 2] : bShape[br - 1];
  if (k !== kb) {
    throw new Error(
      `matMul: inner shapes ${k} and ${kb} of [${aShape}] and [${bShape}] ` +
        `(transposeA=${transA}, transposeB=${transB}) must match`,
    );
  }
  const aBatch = aShape.slice(0, -2), bBatch = bShape.slice(0, -2);
  const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
  const nb = sizeOf(batchShape);
  const shape = [...batchShape, m, n];
  // every value is written (sgemm with beta = 0, which zeroes C when k = 0)
  const values = alloc(nb * m * n);
  const sa = m * k, sb = k * n, sc = m * n;
  const na = sizeOf(aBatch), nbB = sizeOf(bBatch);
  if (nbB === 1 && !transA && nb === na) {
    // Shared right operand (a linear layer): one big GEMM over every batch row.
    blas.sgemm(false, transB, nb * m, n, k, 1, av, bv, 0, values);
    return { shape, values };
  }
  if (na === nb && nbB === nb) {
    for (let i = 0; i < nb; i++) {
      blas.sgemm(
        transA,
        transB,
        m,
        n,
        k,
        1,
        av.subarray(i * sa, (i + 1) * sa),
        bv.subarray(i * sb, (i + 1) * sb),
        0,
        values.subarray(i * sc, (i + 1) * sc),
      );
    }
    return { shape, values };
  }
  // General broadcasting of batch dims: map each output batch index to its a and b batch.
  const rank = batchShape.length;
  const padA = [...new Array(rank - aBatch.length).fill(1), ...aBatch];
  const padB = [...new Array(rank - bBatch.length).fill(1), ...bBatch];
  const idx = new Array(rank).fill(0);
  for (let i = 0; i < nb; i++) {
    let ia = 0, ib = 0;
    for (let d = 0; d < rank; d++) {
      ia = ia * padA[d] + (padA[d] === 1 ? 0 : idx[d]);
      ib = ib * padB[d] + (padB[d] === 1 ? 0 : idx[d]);
    }
    blas.sgemm(
      transA,
      transB,
      m,
      n,
      k,
      1,
      av.subarray(ia * sa, (ia + 1) * sa),
      bv.subarray(ib * sb, (ib + 1) * sb),
      0,
      values.subarray(i * sc, (i + 1) * sc),
    );
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < batchShape[d]) break;
      idx[d] = 0;
    }
  }
  return { shape, values };
}

/** Add a bias broadcast over the last axis (size `n`) in place. */
function addBiasLastAxis(values: Float32Array, bias: Float32Array, n: number): void {
  for (let off = 0; off < values.length; off += n) {
    for (let j = 0; j < n; j++) values[off + j] += bias[j];
  }
}

/** Apply a fused activation in place; returns false for ones handled by the fallback path. */
function activateInPlace(v: Float32Array, activation: string, alpha: number): boolean {
  switch (activation) {
    case "linear":
      return true;
    case "relu":
      for (let i = 0; i < v.length; i++) if (v[i] < 0) v[i] = 0;
      return true;
    case "relu6":
      for (let i = 0; i < v.length; i++) v[i] = v[i] < 0 ? 0 : v[i] > 6 ? 6 : v[i];
      return true;
    case "leakyrelu":
      for (let i = 0; i < v.length; i++) if (v[i] < 0) v[i] *= alpha;
      return true;
    case "sigmoid":
      for (let i = 0; i < v.length; i++) v[i] = 1 / (1 + Math.exp(-v[i]));
      return true;
    case "elu":
      for (let i = 0; i < v.length; i++) if (v[i] < 0) v[i] = Math.exp(v[i]) - 1;
      return true;
    default:
      return false;
  }
}

/** Bias then activation on a freshly computed output (shared by fused matmul and conv). */
function biasAndActivation(
  backend: MathBackendCPU,
  result: TensorInfo,
  bias: TensorInfo | undefined,
  activation: string | undefined,
  preluWeights: TensorInfo | undefined,
  alpha: number,
): TensorInfo {
  let current = result;
  if (bias) {
    const n = current.shape[current.shape.length - 1];
    if (
      sizeOf(bias.shape) === n && bias.shape[bias.shape.length - 1] === n &&
      bias.dtype === "float32"
    ) {
      addBiasLastAxis(f32(backend, current), f32(backend, bias), n);
    } else {
      const next = cpuKernel("Add", { inputs: { a: current, b: bias }, backend }) as TensorInfo;
      backend.disposeIntermediateTensorInfo(current);
      current = next;
    }
  }
  const act = activation ?? "linear";
  if (!activateInPlace(f32(backend, current), act, alpha)) {
    let next: TensorInfo;
    if (act === "prelu") {
      next = cpuKernel("Prelu", {
        inputs: { x: current, alpha: preluWeights },
        backend,
      }) as TensorInfo;
    } else {
      throw new Error(`cpu-blas: unsupported fused activation ${act}`);
    }
    backend.disposeIntermediateTensorInfo(current);
    current = next;
  }
  return current;
}

function batchMatMulKernel(blas: Blas): KernelFn {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    if (!allFloat(a, b)) return cpuKernel("BatchMatMul", args);
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const r = matmulValues(
      blas,
      f32(args.backend, a),
      a.shape,
      f32(args.backend, b),
      b.shape,
      !!transposeA,
      !!transposeB,
      (n) => allocOutput(args.backend, n),
    );
    return out(args.backend, r.shape, r.values);
  };
}

function fusedMatMulKernel(blas: Blas): KernelFn {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs;
    if (!allFloat(a, b, bias)) return cpuKernel("_FusedMatMul", args);
    const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as {
      transposeA: boolean;
      transposeB: boolean;
      activation?: string;
      leakyreluAlpha?: number;
    };
    const r = matmulValues(
      blas,
      f32(args.backend, a!),
      a!.shape,
      f32(args.backend, b!),
      b!.shape,
      !!transposeA,
      !!transposeB,
      (n) => allocOutput(args.backend, n),
    );
    return biasAndActivation(
      args.backend,
      out(args.backend, r.shape, r.values),
      bias,
      activation,
      preluActivationWeights,
      leakyreluAlpha ?? 0.2,
    );
  };
}

// ---------------------------------------------------------------------------------------------
// Convolutions (NHWC, im2col + GEMM)

type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

/** Rows of im2col materialised at once (bounds the scratch buffer to ~64 MiB). */
const COL_BUDGET = 16 * 1024 * 1024;

function isPointwise(c: ConvInfo): boolean {
  return c.filterHeight === 1 && c.filterWidth === 1 && c.strideHeight === 1 &&
    c.strideWidth === 1 && c.padInfo.top === 0 && c.padInfo.left === 0 &&
    c.outHeight === c.inHeight && c.outWidth === c.inWidth;
}

/** Images per im2col chunk. */
function chunkImages(c: ConvInfo): number {
  const perImage = c.outHeight * c.outWidth * c.filterHeight * c.filterWidth * c.inChannels;
  return Math.max(1, Math.min(c.batchSize, Math.floor(COL_BUDGET / Math.max(1, perImage))));
}

/** im2col of images `[n0, n0+g)`: rows `(img, oy, ox)`, columns `(ky, kx, cin)`. */
function im2col(x: Float32Array, c: ConvInfo, n0: number, g: number, col: Float32Array): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c;
  const { filterHeight: KH, filterWidth: KW, strideHeight: SH, strideWidth: SW } = c;
  const { dilationHeight: DH, dilationWidth: DW } = c;
  const pt = c.padInfo.top, pl = c.padInfo.left;
  const KC = KH * KW * C;
  let row = 0;
  for (let n = n0; n < n0 + g; n++) {
    const xBase = n * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++, row++) {
        const rBase = row * KC;
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * SH - pt + ky * DH;
          const kBase = rBase + ky * KW * C;
          if (iy < 0 || iy >= H) {
            col.fill(0, kBase, kBase + KW * C);
            continue;
          }
          for (let kx = 0; kx < KW; kx++) {
            const ix = ox * SW - pl + kx * DW;
            const dst = kBase + kx * C;
            if (ix < 0 || ix >= W) {
              col.fill(0, dst, dst + C);
            } else {
              const src = xBase + (iy * W + ix) * C;
              for (let ci = 0; ci < C; ci++) col[dst + ci] = x[src + ci];
            }
          }
        }
      }
    }
  }
}

/** Scatter-add of im2col rows back into images `[n0, n0+g)` of `dx` (the adjoint of im2col). */
function col2im(col: Float32Array, c: ConvInfo, n0: number, g: number, dx: Float32Array): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c;
  const { filterHeight: KH, filterWidth: KW, strideHeight: SH, strideWidth: SW } = c;
  const { dilationHeight: DH, dilationWidth: DW } = c;
  const pt = c.padInfo.top, pl = c.padInfo.left;
  const KC = KH * KW * C;
  let row = 0;
  for (let n = n0; n < n0 + g; n++) {
    const xBase = n * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++, row++) {
        const rBase = row * KC;
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * SH - pt + ky * DH;
          if (iy < 0 || iy >= H) continue;
          const kBase = rBase + ky * KW * C;
          for (let kx = 0; kx < KW; kx++) {
            const ix = ox * SW - pl + kx * DW;
            if (ix < 0 || ix >= W) continue;
            const src = kBase + kx * C;
            const dst = xBase + (iy * W + ix) * C;
            for (let ci = 0; ci < C; ci++) dx[dst + ci] += col[src + ci];
          }
        }
      }
    }
  }
}

function conv2dValues(blas: Blas, x: Float32Array, w: Float32Array, c: ConvInfo): Float32Array {
  const rowsPerImage = c.outHeight * c.outWidth;
  const KC = c.filterHeight * c.filterWidth * c.inChannels;
  const C2 = c.outChannels;
  const y = new Float32Array(c.batchSize * rowsPerImage * C2);
  if (isPointwise(c)) {
    blas.sgemm(false, false, c.batchSize * rowsPerImage, C2, KC, 1, x, w, 0, y);
    return y;
  }
  const g0 = chunkImages(c);
  const col = new Float32Array(g0 * rowsPerImage * KC);
  for (let n0 = 0; n0 < c.batchSize; n0 += g0) {
    const g = Math.min(g0, c.batchSize - n0);
    im2col(x, c, n0, g, col);
    blas.sgemm(
      false,
      false,
      g * rowsPerImage,
      C2,
      KC,
      1,
      col,
      w,
      0,
      y.subarray(n0 * rowsPerImage * C2, (n0 + g) * rowsPerImage * C2),
    );
  }
  return y;
}

function convInfoOf(
  xShape: number[],
  filterShape: number[],
  attrs: Attrs,
  withDilations: boolean,
): ConvInfo {
  const dataFormat = tf.backend_util.convertConv2DDataFormat(
    (attrs.dataFormat as "NHWC" | "NCHW") ?? "NHWC",
  );
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    withDilations ? (attrs.dilations as number | [number, number]) ?? 1 : 1,
    attrs.pad as "same" | "valid" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
    false,
    dataFormat,
  );
}

function isNHWC(attrs: Attrs): boolean {
  return attrs.dataFormat === undefined || attrs.dataFormat === "NHWC";
}

function conv2dKernel(blas: Blas): KernelFn {
  return (args) => {
    const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs ?? {};
    if (!allFloat(x, filter) || !isNHWC(attrs)) return cpuKernel("Conv2D", args);
    const c = convInfoOf(x.shape, filter.shape, attrs, true);
    const y = conv2dValues(blas, f32(args.backend, x), f32(args.backend, filter), c);
    return out(args.backend, c.outShape, y);
  };
}

function fusedConv2dKernel(blas: Blas): KernelFn {
  return (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs;
    const attrs = args.attrs ?? {};
    if (!allFloat(x, filter, bias) || !isNHWC(attrs)) return cpuKernel("FusedConv2D", args);
    const c = convInfoOf(x!.shape, filter!.shape, attrs, true);
    const y = conv2dValues(blas, f32(args.backend, x!), f32(args.backend, filter!), c);
    return biasAndActivation(
      args.backend,
      out(args.backend, c.outShape, y),
      bias,
      attrs.activation as string | undefined,
      preluActivationWeights,
      (attrs.leakyreluAlpha as number | undefined) ?? 0.2,
    );
  };
}

function conv2dBackpropInputKernel(blas: Blas): KernelFn {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs ?? {};
    if (!allFloat(dy, filter) || !isNHWC(attrs)) return cpuKernel("Conv2DBackpropInput", args);
    const c = convInfoOf(attrs.inputShape as number[], filter.shape, attrs, false);
    const dyv = f32(args.backend, dy), w = f32(args.backend, filter);
    const rowsPerImage = c.outHeight * c.outWidth;
    const KC = c.filterHeight * c.filterWidth * c.inChannels;
    const C2 = c.outChannels;
    const dx = new Float32Array(sizeOf(c.inShape));
    if (isPointwise(c)) {
      blas.sgemm(false, true, c.batchSize * rowsPerImage, KC, C2, 1, dyv, w, 0, dx);
    } else {
      const g0 = chunkImages(c);
      const col = new Float32Array(g0 * rowsPerImage * KC);
      for (let n0 = 0; n0 < c.batchSize; n0 += g0) {
        const g = Math.min(g0, c.batchSize - n0);
        blas.sgemm(
          false,
          true,
          g * rowsPerImage,
          KC,
          C2,
          1,
          dyv.subarray(n0 * rowsPerImage * C2, (n0 + g) * rowsPerImage * C2),
          w,
          0,
          col,
        );
        col2im(col, c, n0, g, dx);
      }
    }
    return out(args.backend, c.inShape as number[], dx);
  };
}

function conv2dBackpropFilterKernel(blas: Blas): KernelFn {
  return (args) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const attrs = args.attrs ?? {};
    if (!allFloat(x, dy) || !isNHWC(attrs)) return cpuKernel("Conv2DBackpropFilter", args);
    const filterShape = attrs.filterShape as number[];
    const c = convInfoOf(x.shape, filterShape, attrs, false);
    const xv = f32(args.backend, x), dyv = f32(args.backend, dy);
    const rowsPerImage = c.outHeight * c.outWidth;
    const KC = c.filterHeight * c.filterWidth * c.inChannels;
    const C2 = c.outChannels;
    const dw = new Float32Array(KC * C2);
    if (isPointwise(c)) {
      blas.sgemm(true, false, KC, C2, c.batchSize * rowsPerImage, 1, xv, dyv, 0, dw);
    } else {
      const g0 = chunkImages(c);
      const col = new Float32Array(g0 * rowsPerImage * KC);
      for (let n0 = 0; n0 < c.batchSize; n0 += g0) {
        const g = Math.min(g0, c.batchSize - n0);
        im2col(xv, c, n0, g, col);
        blas.sgemm(
          true,
          false,
          KC,
          C2,
          g * rowsPerImage,
          1,
          col.subarray(0, g * rowsPerImage * KC),
          dyv.subarray(n0 * rowsPerImage * C2, (n0 + g) * rowsPerImage * C2),
          n0 === 0 ? 0 : 1,
          dw,
        );
      }
    }
    return out(args.backend, filterShape, dw);
  };
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels
//
// Every loop below is written out per operation: a shared loop calling an `op` callback becomes
// megamorphic in V8 and runs ~20× slower (measured on the AdamW update of a ViT-B/32 tower).

/**
 * BLAS level-1 routines for large element-wise ops (bit-identical results: one rounding each,
 * as the JS loops), set by {@link registerBlasBackend}.
 */
let level1: Blas["level1"] = null;
/** Element count from which the level-1 routines beat a JS loop (FFI + thread start-up). */
const LEVEL1_MIN = 1 << 16;

type Loop = (a: Float32Array, b: Float32Array, o: Float32Array) => void;
type ScalarLoop = (a: Float32Array, s: number, o: Float32Array) => void;

/** Same-length loops `o = a ∘ b`. */
const SAME: Record<string, Loop> = {
  Add: (a, b, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] + b[i];
  },
  Sub: (a, b, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] - b[i];
  },
  Multiply: (a, b, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] * b[i];
  },
  RealDiv: (a, b, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] / b[i];
  },
};
/** `o = a ∘ s`. */
const RIGHT: Record<string, ScalarLoop> = {
  Add: (a, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] + s;
  },
  Sub: (a, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] - s;
  },
  Multiply: (a, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] * s;
  },
  RealDiv: (a, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = a[i] / s;
  },
};
/** `o = s ∘ b`. */
const LEFT: Record<string, ScalarLoop> = {
  Add: (b, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = s + b[i];
  },
  Sub: (b, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = s - b[i];
  },
  Multiply: (b, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = s * b[i];
  },
  RealDiv: (b, s, o) => {
    for (let i = 0; i < o.length; i++) o[i] = s / b[i];
  },
};

/**
 * Broadcasting binary op for the patterns a CLIP step produces: equal sizes, a scalar on either
 * side, or one operand broadcast along leading and/or trailing axes of the other (bias adds,
 * per-row scales, positional embeddings). Other patterns return `null` (the cpu kernel runs).
 */
function binaryValues(
  av: Float32Array,
  aShape: readonly number[],
  bv: Float32Array,
  bShape: readonly number[],
  opName: string,
): { shape: number[]; values: Float32Array } | null {
  const shape = tf.broadcast_util.assertAndGetBroadcastShape(
    aShape as number[],
    bShape as number[],
  );
  const size = sizeOf(shape);
  const na = av.length, nb = bv.length;
  const l1 = size >= LEVEL1_MIN ? level1 : null;
  if (na === size && nb === size) {
    const values = new Float32Array(size);
    if (l1 && opName === "Add") {
      l1.copy(bv, values);
      l1.axpy(1, av, values);
    } else if (l1 && opName === "Sub") {
      l1.copy(av, values);
      l1.axpy(-1, bv, values);
    } else {
      SAME[opName](av, bv, values);
    }
    return { shape, values };
  }
  const bigIsA = na === size;
  if (!bigIsA && nb !== size) return null;
  const small = bigIsA ? bShape : aShape;
  const big = bigIsA ? av : bv, sm = bigIsA ? bv : av;
  const scalarLoop = bigIsA ? RIGHT[opName] : LEFT[opName];
  if (sm.length === 1) {
    const values = new Float32Array(size);
    if (l1 && opName === "Multiply") {
      l1.copy(big, values);
      l1.scal(sm[0], values);
    } else {
      scalarLoop(big, sm[0], values);
    }
    return { shape, values };
  }
  // The small operand must equal `shape` on a contiguous range of axes [lo, hi), 1 elsewhere.
  const rank = shape.length;
  const padded = [...new Array(rank - small.length).fill(1), ...small];
  let lo = 0;
  while (lo < rank && padded[lo] === 1) lo++;
  let hi = rank;
  while (hi > lo && padded[hi - 1] === 1) hi--;
  for (let d = lo; d < hi; d++) if (padded[d] !== shape[d]) return null;
  let mid = 1;
  for (let d = lo; d < hi; d++) mid *= shape[d];
  let inner = 1;
  for (let d = hi; d < rank; d++) inner *= shape[d];
  const outer = size / (mid * inner);
  const values = new Float32Array(size);
  if (inner === 1) {
    const same = SAME[opName];
    for (let o = 0, off = 0; o < outer; o++, off += mid) {
      const bigRow = big.subarray(off, off + mid), outRow = values.subarray(off, off + mid);
      if (bigIsA) same(bigRow, sm, outRow);
      else same(sm, bigRow, outRow);
    }
  } else {
    for (let o = 0, off = 0; o < outer; o++) {
      for (let m = 0; m < mid; m++, off += inner) {
        scalarLoop(big.subarray(off, off + inner), sm[m], values.subarray(off, off + inner));
      }
    }
  }
  return { shape, values };
}

function binaryKernel(name: string): KernelFn {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    if (!allFloat(a, b)) return cpuKernel(name, args);
    const r = binaryValues(f32(args.backend, a), a.shape, f32(args.backend, b), b.shape, name);
    if (r === null) return cpuKernel(name, args);
    return out(args.backend, r.shape, r.values);
  };
}

/** Softmax over the last axis (the only axis tfjs's Softmax kernel takes). */
function softmaxKernel(): KernelFn {
  return (args) => {
    const { logits } = args.inputs as { logits: TensorInfo };
    const dim = (args.attrs?.dim as number | undefined) ?? -1;
    const rank = logits.shape.length;
    if (logits.dtype !== "float32" || (dim !== -1 && dim !== rank - 1)) {
      return cpuKernel("Softmax", args);
    }
    const x = f32(args.backend, logits);
    const n = logits.shape[rank - 1];
    const y = new Float32Array(x.length);
    for (let off = 0; off < x.length; off += n) {
      let mx = -Infinity;
      for (let j = 0; j < n; j++) if (x[off + j] > mx) mx = x[off + j];
      let s = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp(x[off + j] - mx);
        y[off + j] = e;
        s += e;
      }
      const inv = 1 / s;
      for (let j = 0; j < n; j++) y[off + j] *= inv;
    }
    return out(args.backend, logits.shape, y);
  };
}

/**
 * The contiguous block of axes `[lo, hi)` a reduction covers, or null (other patterns: the cpu
 * kernel runs). The input is then `[outer, count, inner]`.
 */
function reductionLayout(
  axis: number | number[],
  shape: readonly number[],
): { lo: number; hi: number } | null {
  const rank = shape.length;
  const list = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a));
  const sorted = [...new Set(list)].sort((p, q) => p - q);
  const k = sorted.length;
  if (k === 0 || sorted[0] < 0 || sorted[k - 1] >= rank) return null;
  if (sorted.every((a, i) => a === sorted[0] + i)) return { lo: sorted[0], hi: sorted[0] + k };
  return null;
}

function reduceKernel(name: "Sum" | "Mean" | "Max"): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const layout = reductionLayout(axis, x.shape);
    if (x.dtype !== "float32" || layout === null || x.shape.some((d) => d === 0)) {
      return cpuKernel(name, args);
    }
    const { lo, hi } = layout;
    const xv = f32(args.backend, x);
    const outer = sizeOf(x.shape.slice(0, lo));
    const count = sizeOf(x.shape.slice(lo, hi));
    const inner = sizeOf(x.shape.slice(hi));
    const y = new Float32Array(outer * inner);
    if (inner === 1) {
      // rows: one sum (in float64, as JS numbers) or max per row
      for (let r = 0, off = 0; r < outer; r++, off += count) {
        if (name === "Max") {
          let m = -Infinity;
          for (let j = 0; j < count; j++) {
            const v = xv[off + j];
            if (v > m || Number.isNaN(v)) m = v;
          }
          y[r] = m;
        } else {
          let acc = 0;
          for (let j = 0; j < count; j++) acc += xv[off + j];
          y[r] = acc;
        }
      }
    } else {
      // columns of `inner` values, `count` rows per outer block
      const acc = name === "Max" ? null : new Float64Array(inner);
      for (let o = 0; o < outer; o++) {
        const base = o * count * inner, yo = o * inner;
        if (acc === null) {
          y.set(xv.subarray(base, base + inner), yo);
          for (let r = 1; r < count; r++) {
            const off = base + r * inner;
            for (let j = 0; j < inner; j++) {
              const v = xv[off + j];
              if (v > y[yo + j] || Number.isNaN(v)) y[yo + j] = v;
            }
          }
        } else {
          // Float64 accumulation keeps long column sums (bias gradients) as exact as the cpu kernel
          acc.fill(0);
          for (let r = 0; r < count; r++) {
            const off = base + r * inner;
            for (let j = 0; j < inner; j++) acc[j] += xv[off + j];
          }
          for (let j = 0; j < inner; j++) y[yo + j] = acc[j];
        }
      }
    }
    if (name === "Mean") { for (let i = 0; i < y.length; i++) y[i] /= count; }
    const shape = keepDims
      ? x.shape.map((d, i) => (i >= lo && i < hi ? 1 : d))
      : [...x.shape.slice(0, lo), ...x.shape.slice(hi)];
    return out(args.backend, shape, y);
  };
}

/** Batched `[r, c] → [c, r]` transposes in 32×32 tiles (cache friendly). */
function transposeLastTwo(x: Float32Array, y: Float32Array, r: number, c: number): void {
  const T = 32, size = r * c;
  for (let base = 0; base < x.length; base += size) {
    for (let i0 = 0; i0 < r; i0 += T) {
      const i1 = Math.min(i0 + T, r);
      for (let j0 = 0; j0 < c; j0 += T) {
        const j1 = Math.min(j0 + T, c);
        for (let i = i0; i < i1; i++) {
          const src = base + i * c;
          for (let j = j0; j < j1; j++) y[base + j * r + i] = x[src + j];
        }
      }
    }
  }
}

/** Transpose: a strided gather, copying contiguous runs when the last axis stays last. */
function transposeKernel(): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const perm = args.attrs!.perm as number[];
    if (x.dtype !== "float32") return cpuKernel("Transpose", args);
    const rank = x.shape.length;
    const dims = perm.map((p) => x.shape[p]);
    // A permutation that keeps the order of every axis longer than 1 (the identity, e.g. in the
    // gradient of a gather on axis 0) moves no data: share the buffer as Reshape does.
    const moved = perm.filter((p) => x.shape[p] !== 1);
    if (moved.every((p, i) => i === 0 || p > moved[i - 1])) {
      args.backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: dims, dtype: x.dtype };
    }
    const xv = f32(args.backend, x);
    const y = new Float32Array(xv.length);
    if (rank === 0 || xv.length === 0) return out(args.backend, dims, y);
    const xStrides = stridesOf(x.shape);
    if (
      rank >= 2 && perm.slice(0, -2).every((p, i) => p === i) &&
      perm[rank - 2] === rank - 1 && perm[rank - 1] === rank - 2
    ) {
      transposeLastTwo(xv, y, x.shape[rank - 2], x.shape[rank - 1]);
      return out(args.backend, dims, y);
    }
    // Stride in x of each output axis.
    const st = perm.map((p) => xStrides[p]);
    const run = st[rank - 1] === 1 ? dims[rank - 1] : 1;
    const loopRank = run > 1 ? rank - 1 : rank;
    const idx = new Array<number>(loopRank).fill(0);
    let src = 0, o = 0;
    if (run === 1) {
      const innerDim = dims[rank - 1], innerStride = st[rank - 1];
      for (let t = 0; t < xv.length; t += innerDim) {
        for (let j = 0, p = src; j < innerDim; j++, p += innerStride) y[o++] = xv[p];
        for (let d = rank - 2; d >= 0; d--) {
          src += st[d];
          if (++idx[d] < dims[d]) break;
          src -= st[d] * dims[d];
          idx[d] = 0;
        }
      }
    } else {
      for (let t = 0; t < xv.length; t += run) {
        y.set(xv.subarray(src, src + run), o);
        o += run;
        for (let d = loopRank - 1; d >= 0; d--) {
          src += st[d];
          if (++idx[d] < dims[d]) break;
          src -= st[d] * dims[d];
          idx[d] = 0;
        }
      }
    }
    return out(args.backend, dims, y);
  };
}

/** Row-major strides of a shape. */
function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  for (let d = shape.length - 1, s = 1; d >= 0; d--) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

/**
 * Copy the box of `size` at `srcBegin` in the row-major `src` (shape `srcShape`) to `dstBegin` in
 * `dst` (shape `dstShape`), one contiguous innermost run at a time (Pad, Slice and SplitV).
 */
function copyBox(
  src: Float32Array,
  srcShape: readonly number[],
  srcBegin: readonly number[],
  dst: Float32Array,
  dstShape: readonly number[],
  dstBegin: readonly number[],
  size: readonly number[],
): void {
  const rank = size.length;
  const total = sizeOf(size);
  if (total === 0) return;
  if (rank === 0) {
    dst[0] = src[0];
    return;
  }
  const ss = stridesOf(srcShape), ds = stridesOf(dstShape);
  let si = 0, di = 0;
  for (let a = 0; a < rank; a++) {
    si += srcBegin[a] * ss[a];
    di += dstBegin[a] * ds[a];
  }
  const run = size[rank - 1];
  const idx = new Array<number>(rank).fill(0);
  for (let r = 0; r < total; r += run) {
    dst.set(src.subarray(si, si + run), di);
    for (let a = rank - 2; a >= 0; a--) {
      si += ss[a];
      di += ds[a];
      if (++idx[a] < size[a]) break;
      si -= ss[a] * size[a];
      di -= ds[a] * size[a];
      idx[a] = 0;
    }
  }
}

/** PadV2 (constant padding): copies each contiguous input row into the filled output. */
function padKernel(): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { paddings, constantValue } = args.attrs as {
      paddings: [number, number][];
      constantValue: number;
    };
    if (x.dtype !== "float32" || x.shape.length === 0) return cpuKernel("PadV2", args);
    const xv = f32(args.backend, x);
    const rank = x.shape.length;
    const outShape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
    const y = new Float32Array(sizeOf(outShape));
    if (constantValue !== 0) y.fill(constantValue);
    const zeros = new Array<number>(rank).fill(0);
    copyBox(xv, x.shape, zeros, y, outShape, paddings.map((p) => p[0]), x.shape);
    return out(args.backend, outShape, y);
  };
}

/**
 * `UnsortedSegmentSum` (the gradient of `gather`) as a direct scatter-add. tfjs's cpu kernel
 * compares every id with every segment: 75 s for one token-embedding gradient of a tiny CLIP.
 */
function unsortedSegmentSumKernel(): KernelFn {
  return (args) => {
    const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const numSegments = args.attrs!.numSegments as number;
    if (x.dtype !== "float32" && x.dtype !== "int32") {
      return cpuKernel("UnsortedSegmentSum", args);
    }
    const xv = args.backend.data.get(x.dataId).values as Float32Array | Int32Array;
    const ids = args.backend.data.get(segmentIds.dataId).values as ArrayLike<number>;
    const rows = sizeOf(segmentIds.shape);
    const innerShape = x.shape.slice(segmentIds.shape.length);
    const inner = sizeOf(innerShape);
    const y = x.dtype === "int32"
      ? new Int32Array(numSegments * inner)
      : new Float32Array(numSegments * inner);
    for (let i = 0; i < rows; i++) {
      const s = ids[i];
      if (s < 0 || s >= numSegments) continue;
      const src = i * inner, dst = s * inner;
      for (let j = 0; j < inner; j++) y[dst + j] += xv[src + j];
    }
    return args.backend.makeTensorInfo([numSegments, ...innerShape], x.dtype, y);
  };
}

type UnaryLoop = (x: Float32Array, y: Float32Array) => void;
/** Unary float32 loops, one function each (see the note on megamorphic callbacks above). */
const UNARY: Record<string, UnaryLoop> = {
  Exp: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.exp(x[i]);
  },
  Sigmoid: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = 1 / (1 + Math.exp(-x[i]));
  },
  Sqrt: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.sqrt(x[i]);
  },
  Rsqrt: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = 1 / Math.sqrt(x[i]);
  },
  Square: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = x[i] * x[i];
  },
  Neg: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = -x[i];
  },
  Relu: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = x[i] < 0 ? 0 : x[i];
  },
};

/**
 * `Step` (the ReLU gradient's mask): `x > 0 ? 1 : alpha`, NaN kept. One typed-array pass instead
 * of tfjs's generic per-element callback.
 */
function stepKernel(): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.dtype !== "float32") return cpuKernel("Step", args);
    const alpha = (args.attrs as { alpha?: number } | undefined)?.alpha ?? 0;
    const xv = f32(args.backend, x);
    const y = new Float32Array(xv.length);
    for (let i = 0; i < xv.length; i++) {
      const v = xv[i];
      y[i] = v > 0 ? 1 : v !== v ? NaN : alpha;
    }
    return out(args.backend, x.shape, y);
  };
}

/** The box `begin … begin + size` of a row-major `shape` array, as a new array. */
function sliceCopy(
  x: Float32Array,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
): Float32Array {
  const y = new Float32Array(sizeOf(size));
  copyBox(x, shape, begin, y, size, new Array<number>(size.length).fill(0), size);
  return y;
}

/**
 * `Slice` by contiguous rows. tfjs's cpu kernel copies a box that is not one contiguous block
 * element by element through `TensorBuffer` (400 ms for the attention pool's [8,50,2048] split).
 */
function sliceKernel(): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const attrs = args.attrs as { begin?: unknown; size?: unknown };
    const rank = x.shape.length;
    const b = attrs.begin, z = attrs.size;
    if (x.dtype !== "float32" || !Array.isArray(b) || !Array.isArray(z) || b.length !== rank) {
      return cpuKernel("Slice", args);
    }
    const size = (z as number[]).map((v, d) => (v === -1 ? x.shape[d] - (b as number[])[d] : v));
    const bad = size.length !== rank ||
      size.some((v, d) => v < 0 || (b as number[])[d] < 0 || (b as number[])[d] + v > x.shape[d]);
    if (bad) return cpuKernel("Slice", args);
    const y = sliceCopy(f32(args.backend, x), x.shape, b as number[], size);
    return out(args.backend, size, y);
  };
}

/** `SplitV` (the gradient of `concat`) by contiguous rows; see {@link sliceKernel}. */
function splitVKernel(): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const attrs = args.attrs as { numOrSizeSplits?: unknown; axis?: unknown };
    const rank = x.shape.length;
    const axis = typeof attrs.axis === "number"
      ? (attrs.axis < 0 ? attrs.axis + rank : attrs.axis)
      : -1;
    if (x.dtype !== "float32" || axis < 0 || axis >= rank) return cpuKernel("SplitV", args);
    const dim = x.shape[axis];
    let sizes: number[];
    const spec = attrs.numOrSizeSplits;
    if (typeof spec === "number") {
      if (spec <= 0 || dim % spec !== 0) return cpuKernel("SplitV", args);
      sizes = new Array<number>(spec).fill(dim / spec);
    } else if (Array.isArray(spec)) {
      sizes = [...spec as number[]];
      const free = sizes.indexOf(-1);
      if (free >= 0) sizes[free] = dim - sizes.reduce((a, v, i) => (i === free ? a : a + v), 0);
      if (sizes.some((v) => v < 0) || sizes.reduce((a, v) => a + v, 0) !== dim) {
        return cpuKernel("SplitV", args);
      }
    } else return cpuKernel("SplitV", args);
    const xv = f32(args.backend, x);
    const begin = new Array<number>(rank).fill(0);
    return sizes.map((n) => {
      const size = [...x.shape];
      size[axis] = n;
      const y = sliceCopy(xv, x.shape, begin, size);
      begin[axis] += n;
      return out(args.backend, size, y);
    });
  };
}

/** `k` when `v` is `k` or `[k, k]`, else undefined. */
function square(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (Array.isArray(v) && v.length === 2 && v[0] === v[1]) return v[0] as number;
  return undefined;
}

/**
 * `AvgPoolGrad` of the non-overlapping pools CLIP's ResNet uses (window = stride = k, no
 * padding, sizes divisible by k): every input cell gets `dy / k²` of its window. tfjs's cpu kernel
 * walks a generic strided window through `TensorBuffer.get` (22% of an RN50 training step here);
 * anything else falls back to it.
 */
function avgPoolGradKernel(): KernelFn {
  return (args) => {
    const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
    const attrs = args.attrs as { filterSize?: unknown; strides?: unknown; pad?: unknown };
    const k = square(attrs.filterSize);
    const [n, h, w, c] = input.shape;
    const ok = k !== undefined && square(attrs.strides) === k && k > 0 &&
      (attrs.pad === "valid" || attrs.pad === 0) && input.shape.length === 4 &&
      h % k === 0 && w % k === 0 && allFloat(dy, input) &&
      dy.shape.join() === [n, h / k, w / k, c].join();
    if (!ok) return cpuKernel("AvgPoolGrad", args);
    const g = f32(args.backend, dy);
    const dx = new Float32Array(n * h * w * c);
    const inv = 1 / (k * k);
    const ho = h / k, wo = w / k;
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < h; i++) {
        const gRow = ((b * ho + Math.floor(i / k)) * wo) * c;
        const xRow = ((b * h + i) * w) * c;
        for (let j = 0; j < w; j++) {
          const gOff = gRow + Math.floor(j / k) * c;
          const xOff = xRow + j * c;
          for (let ch = 0; ch < c; ch++) dx[xOff + ch] = g[gOff + ch] * inv;
        }
      }
    }
    return out(args.backend, input.shape, dx);
  };
}

function unaryKernel(name: string): KernelFn {
  const loop = UNARY[name];
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.dtype !== "float32") return cpuKernel(name, args);
    const xv = f32(args.backend, x);
    const y = new Float32Array(xv.length);
    loop(xv, y);
    return out(args.backend, x.shape, y);
  };
}

// ---------------------------------------------------------------------------------------------
// Registration

/** Kernels this module replaces on `cpu-blas` (the rest are tfjs's cpu kernels, shared). */
export const BLAS_KERNEL_NAMES: readonly string[] = [
  "BatchMatMul",
  "_FusedMatMul",
  "Conv2D",
  "FusedConv2D",
  "Conv2DBackpropInput",
  "Conv2DBackpropFilter",
  "Add",
  "Sub",
  "Multiply",
  "RealDiv",
  "Softmax",
  "Sum",
  "Mean",
  "Max",
  "Transpose",
  "Exp",
  "Sigmoid",
  "Sqrt",
  "Rsqrt",
  "Square",
  "Neg",
  "Relu",
  "PadV2",
  "UnsortedSegmentSum",
  "Step",
  "AvgPoolGrad",
  "Slice",
  "SplitV",
];

function kernels(blas: Blas): Record<string, KernelFn> {
  return {
    BatchMatMul: batchMatMulKernel(blas),
    _FusedMatMul: fusedMatMulKernel(blas),
    Conv2D: conv2dKernel(blas),
    FusedConv2D: fusedConv2dKernel(blas),
    Conv2DBackpropInput: conv2dBackpropInputKernel(blas),
    Conv2DBackpropFilter: conv2dBackpropFilterKernel(blas),
    Add: binaryKernel("Add"),
    Sub: binaryKernel("Sub"),
    Multiply: binaryKernel("Multiply"),
    RealDiv: binaryKernel("RealDiv"),
    Softmax: softmaxKernel(),
    Sum: reduceKernel("Sum"),
    Mean: reduceKernel("Mean"),
    Max: reduceKernel("Max"),
    Transpose: transposeKernel(),
    PadV2: padKernel(),
    UnsortedSegmentSum: unsortedSegmentSumKernel(),
    Step: stepKernel(),
    AvgPoolGrad: avgPoolGradKernel(),
    Slice: sliceKernel(),
    SplitV: splitVKernel(),
    ...Object.fromEntries(Object.keys(UNARY).map((k) => [k, unaryKernel(k)])),
  };
}

let registered: boolean | undefined;
let reason = "";

/** Why {@link registerBlasBackend} returned false (empty otherwise). */
export function blasBackendUnavailableReason(): string {
  return reason;
}

/**
 * Register the `cpu-blas` backend (once): a `MathBackendCPU` with every cpu kernel, the heavy ones
 * replaced by native BLAS. Returns false, without throwing, when no BLAS library loads (see
 * {@link blasBackendUnavailableReason}). Does not switch backends; `initBackend` does.
 */
export function registerBlasBackend(): boolean {
  if (registered !== undefined) return registered;
  const blas = loadBlas();
  if (!blas) {
    reason = blasLoadError();
    registered = false;
    return false;
  }
  tf.registerBackend(CPU_BLAS, () => {
    const b = new MathBackendCPU();
    (b as unknown as { firstUse: boolean }).firstUse = false;
    // kernel outputs recycled without zero-filling (cpu-dnnl's kernels allocate through it)
    new HostPool().attach(b);
    return b;
  }, 0);
  level1 = blas.level1;
  const ours = kernels(blas);
  for (const k of tf.getKernelsForBackend("cpu")) {
    if (k.kernelName in ours) continue;
    tf.registerKernel({ ...k, backendName: CPU_BLAS });
  }
  for (const [kernelName, kernelFunc] of Object.entries(ours)) {
    tf.registerKernel({
      kernelName,
      backendName: CPU_BLAS,
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  }
  registerMatMulGradient();
  registered = true;
  return true;
}

let cpuFixed = false;

/**
 * Replace the plain `cpu` backend's `UnsortedSegmentSum` (the gradient of `gather`) with the
 * direct scatter-add: tfjs's compares every id with every segment (75 s for one token-embedding
 * gradient of a tiny CLIP; milliseconds after). Same results; idempotent; `initBackend` calls it.
 */
export function registerCpuFixes(): void {
  if (cpuFixed) return;
  cpuFixed = true;
  const prev = tf.getKernel("UnsortedSegmentSum", "cpu");
  if (prev) tf.unregisterKernel("UnsortedSegmentSum", "cpu");
  const fast = unsortedSegmentSumKernel();
  tf.registerKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: "cpu",
    kernelFunc: ((args: KernelArgs) => {
      const x = args.inputs.x!;
      if (x.dtype !== "float32" && x.dtype !== "int32" && prev) {
        return prev.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]);
      }
      return fast(args);
    }) as unknown as tf.KernelFunc,
  });
}

/** The BLAS library behind `cpu-blas`, or null when it did not load. */
export function blasInfo(): { path: string; threads: number | undefined } | null {
  const b = loadBlas();
  return b ? { path: b.path, threads: b.threads } : null;
}
