/**
 * Make the `wasm` backend trainable: the kernels a CLIP training step needs that
 * `@tensorflow/tfjs-backend-wasm` 4.22 lacks, and a fast path for transposed matrix products.
 *
 * - `Conv2DBackpropFilter` (conv weight gradient) as a convolution of transposed inputs, run by
 *   wasm's own XNNPACK `Conv2D` (dilation = the forward stride).
 * - `UnsortedSegmentSum` (the gradient of `gather`: token embeddings, end-token pooling) as a
 *   direct scatter-add on the wasm heap.
 * - `BatchMatMul` with `transposeA/B`: wasm's kernel is ~10× slower with the flags than on
 *   explicitly transposed operands, and tfjs's matmul gradient always uses them; the replacement
 *   transposes explicitly and calls the original kernel without flags.
 *
 * Also (for every backend) the `BatchMatMul` gradient is re-registered so that it sums over
 * broadcast batch dimensions (tfjs's own returns the wrong shape for `[b, m, k]·[k, n]`).
 *
 * @module
 */
import { tf } from "./tf.ts";

type TensorInfo = tf.TensorInfo;
type Attrs = Record<string, unknown>;

/** The parts of tfjs-backend-wasm's `BackendWasm` these kernels use. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: object): boolean;
}

interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: WasmBackend;
  attrs?: Attrs;
}

/** Kernels this module registers on `wasm`. */
export const WASM_TRAINING_KERNELS: readonly string[] = [
  "Conv2DBackpropFilter",
  "UnsortedSegmentSum",
  "BatchMatMul",
];

/** Run another wasm kernel directly (no engine bookkeeping; the caller disposes). */
function run(
  name: string,
  backend: WasmBackend,
  inputs: Record<string, TensorInfo>,
  attrs: Attrs = {},
): TensorInfo {
  const k = name === "BatchMatMul" && originalBatchMatMul
    ? originalBatchMatMul
    : tf.getKernel(name, "wasm");
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc(
    { inputs, backend, attrs } as unknown as Parameters<tf.KernelFunc>[0],
  ) as TensorInfo;
}

function free(backend: WasmBackend, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

/** `UnsortedSegmentSum`: `out[ids[i], ...] += x[i, ...]`, ids outside `[0, numSegments)` dropped. */
function unsortedSegmentSum(args: KernelArgs): TensorInfo {
  const { x, segmentIds } = args.inputs;
  const numSegments = args.attrs!.numSegments as number;
  const backend = args.backend;
  const rows = segmentIds.shape.reduce((p, d) => p * d, 1);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = innerShape.reduce((p, d) => p * d, 1);
  const result = backend.makeOutput([numSegments, ...innerShape], x.dtype);
  // Views after allocation: makeOutput may grow (and so detach) the heap.
  const o = backend.typedArrayFromHeap(result);
  const xv = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  o.fill(0);
  for (let i = 0; i < rows; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner, dst = s * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xv[src + j];
  }
  return result;
}

/**
 * `Conv2DBackpropFilter` (NHWC) as a convolution: with `x' = xᵀ [Cin, H, W, N]` and
 * `dy' = [OH, OW, N, Cout]`, `conv(x', dy', stride 1, dilation = forward stride)` is
 * `[Cin, KH, KW, Cout]`, which transposes to the filter gradient `[KH, KW, Cin, Cout]`.
 */
function conv2dBackpropFilter(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs;
  const attrs = args.attrs ?? {};
  const backend = args.backend;
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== "NHWC") {
    throw new Error("wasm Conv2DBackpropFilter supports NHWC only");
  }
  const filterShape = attrs.filterShape as [number, number, number, number];
  const c = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    attrs.strides as number | [number, number],
    1,
    attrs.pad as "same" | "valid" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
  const [KH, KW] = filterShape;
  const SH = c.strideHeight, SW = c.strideWidth;
  const top = c.padInfo.top, left = c.padInfo.left;
  // Rows/cols of x the forward conv touches (the rest would need negative padding).
  const hEff = Math.min(c.inHeight, (c.outHeight - 1) * SH + KH - top);
  const wEff = Math.min(c.inWidth, (c.outWidth - 1) * SW + KW - left);
  const bottom = KH - hEff - top + (c.outHeight - 1) * SH;
  const right = KW - wEff - left + (c.outWidth - 1) * SW;
  const tmp: TensorInfo[] = [];
  let xs = x;
  if (hEff < c.inHeight || wEff < c.inWidth) {
    xs = run("Slice", backend, { x }, {
      begin: [0, 0, 0, 0],
      size: [c.batchSize, hEff, wEff, c.inChannels],
    });
    tmp.push(xs);
  }
  const xt = run("Transpose", backend, { x: xs }, { perm: [3, 1, 2, 0] });
  const dyt = run("Transpose", backend, { x: dy }, { perm: [1, 2, 0, 3] });
  tmp.push(xt, dyt);
  const g = run("Conv2D", backend, { x: xt, filter: dyt }, {
    strides: [1, 1],
    pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
    dataFormat: "NHWC",
    dilations: [SH, SW],
  });
  tmp.push(g);
  const result = run("Transpose", backend, { x: g }, { perm: [1, 2, 0, 3] });
  free(backend, ...tmp);
  return result;
}

let originalBatchMatMul: tf.KernelConfig | undefined;

function swapLastTwo(rank: number): number[] {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return perm;
}

/** `BatchMatMul` that transposes explicitly, then runs wasm's kernel without flags. */
function batchMatMul(args: KernelArgs): TensorInfo {
  const { a, b } = args.inputs;
  const { transposeA, transposeB } = (args.attrs ?? {}) as {
    transposeA?: boolean;
    transposeB?: boolean;
  };
  const backend = args.backend;
  if (!transposeA && !transposeB) {
    return run("BatchMatMul", backend, { a, b }, { transposeA: false, transposeB: false });
  }
  const tmp: TensorInfo[] = [];
  let a2 = a, b2 = b;
  if (transposeA) {
    a2 = run("Transpose", backend, { x: a }, { perm: swapLastTwo(a.shape.length) });
    tmp.push(a2);
  }
  if (transposeB) {
    b2 = run("Transpose", backend, { x: b }, { perm: swapLastTwo(b.shape.length) });
    tmp.push(b2);
  }
  const result = run("BatchMatMul", backend, { a: a2, b: b2 }, {
    transposeA: false,
    transposeB: false,
  });
  free(backend, ...tmp);
  return result;
}

/** Sum a gradient over the batch dims its input was broadcast along, back to `shape`. */
function reduceTo(g: tf.Tensor, shape: number[]): tf.Tensor {
  if (tf.util.arraysEqual(g.shape, shape)) return g;
  const rank = g.shape.length;
  const padded = [...new Array(rank - shape.length).fill(1), ...shape];
  const axes: number[] = [];
  for (let d = 0; d < rank - 2; d++) if (padded[d] === 1 && g.shape[d] !== 1) axes.push(d);
  return tf.reshape(axes.length ? tf.sum(g, axes) : g, shape);
}

/**
 * The `BatchMatMul` gradient: tfjs's formulas, plus the sum over broadcast batch dims. Products
 * stay with transpose flags (free on `cpu-blas`, whose sgemm takes them; the wasm kernel above
 * transposes explicitly).
 */
const batchMatMulGrad: tf.GradConfig = {
  kernelName: "BatchMatMul",
  inputsToSave: ["a", "b"],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const d = dy as tf.Tensor;
    const [a, b] = saved;
    const tA = !!attrs.transposeA, tB = !!attrs.transposeB;
    const mm = (x: tf.Tensor, y: tf.Tensor, tx: boolean, ty: boolean) => tf.matMul(x, y, tx, ty);
    let ga: () => tf.Tensor, gb: () => tf.Tensor;
    if (!tA && !tB) {
      ga = () => mm(d, b, false, true);
      gb = () => mm(a, d, true, false);
    } else if (!tA && tB) {
      ga = () => mm(d, b, false, false);
      gb = () => mm(d, a, true, false);
    } else if (tA && !tB) {
      ga = () => mm(b, d, false, true);
      gb = () => mm(a, d, false, false);
    } else {
      ga = () => mm(b, d, true, true);
      gb = () => mm(d, a, true, true);
    }
    return { a: () => reduceTo(ga(), a.shape), b: () => reduceTo(gb(), b.shape) };
  },
};

let done = false;

/**
 * Register the missing training kernels on the `wasm` backend (idempotent) and the
 * broadcast-aware `BatchMatMul` gradient (global). Call after `@tensorflow/tfjs-backend-wasm` is
 * imported; `initBackend` does.
 */
export function registerWasmTrainingKernels(): void {
  if (done) return;
  done = true;
  const reg = (kernelName: string, fn: (args: KernelArgs) => TensorInfo) => {
    const prev = tf.getKernel(kernelName, "wasm");
    if (prev) tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      kernelFunc: fn as unknown as tf.KernelFunc,
      // Keep the original's setup (it binds the C++ function the original kernel calls).
      setupFunc: prev?.setupFunc,
      disposeFunc: prev?.disposeFunc,
    });
  };
  if (!tf.getKernel("Conv2DBackpropFilter", "wasm")) {
    reg("Conv2DBackpropFilter", conv2dBackpropFilter);
  }
  if (!tf.getKernel("UnsortedSegmentSum", "wasm")) reg("UnsortedSegmentSum", unsortedSegmentSum);
  originalBatchMatMul = tf.getKernel("BatchMatMul", "wasm");
  if (originalBatchMatMul) reg("BatchMatMul", batchMatMul);
  registerMatMulGradient();
}

let gradDone = false;

/** Re-register the `BatchMatMul` gradient with the broadcast sum (idempotent, all backends). */
export function registerMatMulGradient(): void {
  if (gradDone) return;
  gradDone = true;
  const prev = console.warn;
  // tfjs warns "Overriding the gradient for 'BatchMatMul'": expected here.
  console.warn = () => {};
  try {
    tf.registerGradient(batchMatMulGrad);
  } finally {
    console.warn = prev;
  }
}
