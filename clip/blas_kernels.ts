/**
 * The `cpu-blas` backend: tfjs's pure-JS cpu backend (same tensors, same kernels) with the heavy
 * kernels re-registered on native BLAS through {@link loadBlas}: `BatchMatMul`, `_FusedMatMul`,
 * `Conv2D`, `FusedConv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter` (im2col + `sgemm`), plus
 * faster JS versions of the element-wise kernels that dominate a CLIP training step once the
 * matrix products are native (`Softmax`, broadcasting `Add`/`Sub`/`Mul`/`Div`, reductions over
 * the last axis, `Transpose`).
 *
 * @module
 */
import { tf } from "./tf.ts";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { type Blas, blasLoadError, loadBlas } from "./blas.ts";
import { registerMatMulGradient } from "./wasm_kernels.ts";

/** Name under which the backend is registered. */
export const CPU_BLAS = "cpu-blas";

type TensorInfo = tf.TensorInfo;
type Attrs = Record<string, unknown>;
type Inputs = Record<string, TensorInfo | undefined>;
interface KernelArgs {
  inputs: Inputs;
  backend: MathBackendCPU;
  attrs?: Attrs;
}
type KernelFn = (args: KernelArgs) => TensorInfo | TensorInfo[];

/** Float32 values of a tensor on the cpu(-blas) backend, in place (no copy). */
function f32(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

function out(backend: MathBackendCPU, shape: number[], values: Float32Array): TensorInfo {
  return backend.makeTensorInfo(shape, "float32", values);
}

function sizeOf(shape: readonly number[]): number {
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
  const values = new Float32Array(nb * m * n);
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
              if (C < 16) { for (let ci = 0; ci < C; ci++) col[dst + ci] = x[src + ci]; }
              else col.set(x.subarray(src, src + C), dst);
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

/**
 * Broadcasting binary op for the patterns a CLIP step produces: equal shapes, a scalar on either
 * side, or one operand broadcast along leading and/or trailing axes of the other (bias adds,
 * per-row scales, positional embeddings). Other patterns return `null` (the cpu kernel runs).
 */
function binaryValues(
  av: Float32Array,
  aShape: readonly number[],
  bv: Float32Array,
  bShape: readonly number[],
  op: (x: number, y: number) => number,
  opName: string,
): { shape: number[]; values: Float32Array } | null {
  const shape = tf.broadcast_util.assertAndGetBroadcastShape(
    aShape as number[],
    bShape as number[],
  );
  const size = sizeOf(shape);
  const values = new Float32Array(size);
  const na = av.length, nb = bv.length;
  if (na === size && nb === size) {
    FAST[opName](av, bv, values, size);
    return { shape, values };
  }
  // Express the smaller operand as [outer=1..., mid, inner=1...] inside the big one.
  const bigIsA = na === size;
  if (!bigIsA && nb !== size) return null;
  const small = bigIsA ? bShape : aShape;
  const rank = shape.length;
  const padded = [...new Array(rank - small.length).fill(1), ...small];
  // small must equal shape on a contiguous range [lo, hi) and be 1 elsewhere.
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
  const big = bigIsA ? av : bv, sm = bigIsA ? bv : av;
  let i = 0;
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      if (bigIsA) { for (let m = 0; m < mid; m++, i++) values[i] = op(big[i], sm[m]); }
      else for (let m = 0; m < mid; m++, i++) values[i] = op(sm[m], big[i]);
    }
  } else {
    for (let o = 0; o < outer; o++) {
      for (let m = 0; m < mid; m++) {
        const s = sm[m];
        if (bigIsA) { for (let j = 0; j < inner; j++, i++) values[i] = op(big[i], s); }
        else for (let j = 0; j < inner; j++, i++) values[i] = op(s, big[i]);
      }
    }
  }
  return { shape, values };
}

type Loop = (a: Float32Array, b: Float32Array, o: Float32Array, n: number) => void;
const FAST: Record<string, Loop> = {
  Add: (a, b, o, n) => {
    for (let i = 0; i < n; i++) o[i] = a[i] + b[i];
  },
  Sub: (a, b, o, n) => {
    for (let i = 0; i < n; i++) o[i] = a[i] - b[i];
  },
  Multiply: (a, b, o, n) => {
    for (let i = 0; i < n; i++) o[i] = a[i] * b[i];
  },
  RealDiv: (a, b, o, n) => {
    for (let i = 0; i < n; i++) o[i] = a[i] / b[i];
  },
};
const OPS: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Multiply: (x, y) => x * y,
  RealDiv: (x, y) => x / y,
};

function binaryKernel(name: string): KernelFn {
  const op = OPS[name];
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    if (!allFloat(a, b)) return cpuKernel(name, args);
    const r = binaryValues(f32(args.backend, a), a.shape, f32(args.backend, b), b.shape, op, name);
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

/** Whether `axes` (possibly negative) are exactly the trailing axes of a rank-`rank` tensor. */
function trailingAxes(axis: number | number[], rank: number): number {
  const list = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a));
  const sorted = [...new Set(list)].sort((p, q) => p - q);
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i] !== rank - sorted.length + i) return -1;
  }
  return sorted.length;
}

function reduceKernel(name: "Sum" | "Mean" | "Max"): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const rank = x.shape.length;
    const nAxes = trailingAxes(axis, rank);
    if (x.dtype !== "float32" || nAxes <= 0) return cpuKernel(name, args);
    const inner = sizeOf(x.shape.slice(rank - nAxes));
    const xv = f32(args.backend, x);
    const rows = inner === 0 ? 0 : xv.length / inner;
    const y = new Float32Array(rows);
    for (let r = 0, off = 0; r < rows; r++, off += inner) {
      if (name === "Max") {
        let m = -Infinity;
        for (let j = 0; j < inner; j++) {
          if (xv[off + j] > m || Number.isNaN(xv[off + j])) m = xv[off + j];
        }
        y[r] = m;
      } else {
        let s = 0;
        for (let j = 0; j < inner; j++) s += xv[off + j];
        y[r] = name === "Mean" ? s / inner : s;
      }
    }
    const shape = keepDims
      ? [...x.shape.slice(0, rank - nAxes), ...new Array(nAxes).fill(1)]
      : x.shape.slice(0, rank - nAxes);
    return out(args.backend, shape, y);
  };
}

/** Transpose with a fast path for swapping the last two axes and for moving blocks. */
function transposeKernel(): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const perm = args.attrs!.perm as number[];
    if (x.dtype !== "float32") return cpuKernel("Transpose", args);
    const rank = x.shape.length;
    const xv = f32(args.backend, x);
    const outShape = perm.map((p) => x.shape[p]);
    const y = new Float32Array(xv.length);
    // Collapse: strides of x in the order of output axes.
    const xStrides = new Array(rank);
    let s = 1;
    for (let d = rank - 1; d >= 0; d--) {
      xStrides[d] = s;
      s *= x.shape[d];
    }
    const st = perm.map((p) => xStrides[p]);
    const dims = outShape;
    if (rank === 0 || xv.length === 0) return out(args.backend, outShape, y);
    // Innermost contiguous run (when the last output axis is x's last axis).
    const lastRun = st[rank - 1] === 1 ? dims[rank - 1] : 1;
    const loopRank = lastRun > 1 ? rank - 1 : rank;
    const idx = new Array(loopRank).fill(0);
    let src = 0;
    const total = xv.length / lastRun;
    let o = 0;
    const innerDim = dims[loopRank - 1], innerStride = st[loopRank - 1];
    if (lastRun === 1) {
      for (let t = 0; t < total; t += innerDim) {
        let p = src;
        for (let j = 0; j < innerDim; j++, p += innerStride) y[o++] = xv[p];
        for (let d = loopRank - 2; d >= 0; d--) {
          src += st[d];
          if (++idx[d] < dims[d]) break;
          src -= st[d] * dims[d];
          idx[d] = 0;
        }
      }
    } else {
      for (let t = 0; t < total; t++) {
        y.set(xv.subarray(src, src + lastRun), o);
        o += lastRun;
        for (let d = loopRank - 1; d >= 0; d--) {
          src += st[d];
          if (++idx[d] < dims[d]) break;
          src -= st[d] * dims[d];
          idx[d] = 0;
        }
      }
    }
    return out(args.backend, outShape, y);
  };
}

function unaryKernel(name: string, f: (x: number) => number): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.dtype !== "float32") return cpuKernel(name, args);
    const xv = f32(args.backend, x);
    const y = new Float32Array(xv.length);
    for (let i = 0; i < xv.length; i++) y[i] = f(xv[i]);
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
    Exp: unaryKernel("Exp", Math.exp),
    Sigmoid: unaryKernel("Sigmoid", (v) => 1 / (1 + Math.exp(-v))),
    Sqrt: unaryKernel("Sqrt", Math.sqrt),
    Rsqrt: unaryKernel("Rsqrt", (v) => 1 / Math.sqrt(v)),
    Square: unaryKernel("Square", (v) => v * v),
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
    return b;
  }, 0);
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

/** The BLAS library behind `cpu-blas`, or null when it did not load. */
export function blasInfo(): { path: string; threads: number | undefined } | null {
  const b = loadBlas();
  return b ? { path: b.path, threads: b.threads } : null;
}
