/**
 * Fused model ops: one kernel forward and one backward where the active backend registers them
 * (`cpu-dnnl`: `MtilLayerNorm`, `MtilQuickGelu`, `MtilBatchNormTrain`, `MtilSoftmaxGrad`,
 * `MtilConv2dOihw`, `MtilAddRelu`), else
 * `null` so the caller runs its composite tfjs ops (every other backend, unchanged numerics).
 *
 * @module
 */
import { tf } from "./tf.ts";

/** Whether the active backend has kernel `name`. */
function has(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

function run(name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown> = {}) {
  return tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap);
}

/**
 * LayerNorm over the last axis (`weight`, `bias` `[C]`, biased variance) as one kernel with one
 * gradient kernel, or null when the active backend has none.
 */
export function fusedLayerNorm(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  eps: number,
): tf.Tensor | null {
  if (!has("MtilLayerNorm") || x.dtype !== "float32" || weight.rank !== 1 || bias.rank !== 1) {
    return null;
  }
  registerFusedGradients();
  // mean and variance are outputs too (saved for the gradient); the caller's tidy disposes them
  return (run("MtilLayerNorm", { x, gamma: weight, beta: bias }, { eps }) as tf.Tensor[])[0];
}

/** QuickGELU `x·σ(1.702x)` as one kernel with one gradient kernel, or null. */
export function fusedQuickGelu(x: tf.Tensor): tf.Tensor | null {
  if (!has("MtilQuickGelu") || x.dtype !== "float32") return null;
  registerFusedGradients();
  return run("MtilQuickGelu", { x }) as tf.Tensor;
}

/** Result of {@link fusedBatchNormTrain}. */
export interface BatchNormTrainResult {
  /** Normalised, scaled and shifted output (differentiable in x, scale, shift). */
  y: tf.Tensor4D;
  /** Batch mean `[C]` (no gradient). */
  mean: tf.Tensor;
  /** Biased batch variance `[C]` (no gradient). */
  variance: tf.Tensor;
}

/**
 * BatchNorm with batch statistics on NHWC `x` (then ReLU when `relu`) as one kernel with one
 * gradient kernel, or null when the active backend has none.
 */
export function fusedBatchNormTrain(
  x: tf.Tensor4D,
  scale: tf.Tensor,
  shift: tf.Tensor,
  eps: number,
  relu = false,
): BatchNormTrainResult | null {
  const name = relu ? "MtilBatchNormReluTrain" : "MtilBatchNormTrain";
  if (!has(name) || x.dtype !== "float32" || x.size === 0) return null;
  registerFusedGradients();
  const [y, mean, variance] = run(name, { x, scale, shift }, { eps }) as tf.Tensor[];
  return { y: y as tf.Tensor4D, mean, variance };
}

/**
 * Convolution of NHWC `x` with a PyTorch OIHW `weight` (stride, symmetric zero `pad`, optional
 * bias and ReLU) as one kernel reading the weight as stored, with one kernel per gradient, or
 * null when the active backend has none (the caller transposes to HWIO for tfjs's conv2d).
 */
export function fusedConv2dOihw(
  x: tf.Tensor4D,
  weight: tf.Tensor,
  stride: number,
  pad: number,
  bias?: tf.Tensor,
  relu = false,
): tf.Tensor4D | null {
  if (
    !has("MtilConv2dOihw") || x.dtype !== "float32" || weight.dtype !== "float32" ||
    weight.rank !== 4 || weight.shape[1] !== x.shape[3] || (bias && bias.dtype !== "float32")
  ) return null;
  const [, h, w] = x.shape, [, , kh, kw] = weight.shape;
  if (h + 2 * pad < kh || w + 2 * pad < kw || x.size === 0 || weight.size === 0) return null;
  registerFusedGradients();
  const inputs: Record<string, tf.Tensor> = { x, filter: weight };
  if (bias) inputs.bias = bias;
  return run("MtilConv2dOihw", inputs, { stride, pad, relu }) as tf.Tensor4D;
}

/**
 * `relu(a + b)` for same-shape float32 tensors as one kernel (a residual join), or null when the
 * active backend has none.
 */
export function fusedAddRelu(a: tf.Tensor, b: tf.Tensor): tf.Tensor | null {
  if (
    !has("MtilAddRelu") || a.dtype !== "float32" || b.dtype !== "float32" ||
    a.shape.join() !== b.shape.join()
  ) return null;
  registerFusedGradients();
  return run("MtilAddRelu", { a, b }) as tf.Tensor;
}

let fusedGradsDone = false;

/** Gradients of the fused kernels (each one backward kernel; the statistics get none). */
function registerFusedGradients(): void {
  if (fusedGradsDone) return;
  fusedGradsDone = true;
  tf.registerGradient({
    kernelName: "MtilLayerNorm",
    inputsToSave: ["x", "gamma", "beta"],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [x, gamma, beta, mean, variance] = saved;
      const g = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
      const eps = (attrs as { eps: number }).eps;
      // one kernel gives all three (each gradient thunk runs in its own tidy: compute here)
      const r = run("MtilLayerNormGrad", { dy: g, x, gamma, beta, mean, variance }, {
        eps,
      }) as tf.Tensor[];
      return { x: () => r[0], gamma: () => r[1], beta: () => r[2] };
    },
  });
  tf.registerGradient({
    kernelName: "MtilConv2dOihw",
    inputsToSave: ["x", "filter"],
    outputsToSave: [true], // the ReLU mask (y > 0 exactly where the pre-ReLU value is)
    gradFunc: (dy, saved, attrs) => {
      const [x, filter, y] = saved;
      const a = attrs as unknown as { stride: number; pad: number; relu: boolean };
      const d0 = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
      const g = a.relu ? run("MtilReluGrad", { dy: d0, x: y }) as tf.Tensor : d0;
      const geo = { stride: a.stride, pad: a.pad };
      return {
        x: () =>
          run("MtilConv2dOihwBackpropInput", { dy: g, filter }, {
            ...geo,
            inputShape: x.shape,
          }) as tf.Tensor,
        filter: () =>
          run("MtilConv2dOihwBackpropFilter", { x, dy: g }, {
            ...geo,
            filterShape: filter.shape,
          }) as tf.Tensor,
        bias: () => tf.sum(g, [0, 1, 2]),
      };
    },
  });
  tf.registerGradient({
    kernelName: "MtilAddRelu",
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const d0 = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
      const g = run("MtilReluGrad", { dy: d0, x: saved[0] }) as tf.Tensor;
      // one tensor per input (a backward pass may dispose one input's gradient on its own)
      return { a: () => tf.clone(g), b: () => tf.clone(g) };
    },
  });
  tf.registerGradient({
    kernelName: "MtilQuickGelu",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => ({
      x: () => run("MtilQuickGeluGrad", { dy: dy as tf.Tensor, x: saved[0] }) as tf.Tensor,
    }),
  });
  for (const relu of [false, true]) {
    tf.registerGradient({
      kernelName: relu ? "MtilBatchNormReluTrain" : "MtilBatchNormTrain",
      inputsToSave: ["x", "scale", "shift"],
      // the ReLU variant keeps its output (the next layer's input anyway) for the ReLU mask
      outputsToSave: [relu, true, true],
      gradFunc: (dy, saved, attrs) => {
        const [x, scale, shift, ...outs] = saved;
        const [y, mean, variance] = relu ? outs : [undefined, ...outs];
        const g = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
        const eps = (attrs as { eps: number }).eps;
        const inputs: Record<string, tf.Tensor> = {
          dy: g,
          x,
          scale,
          shift,
          mean: mean!,
          variance: variance!,
        };
        if (y) inputs.y = y;
        const r = run("MtilBatchNormTrainGrad", inputs, { eps }) as tf.Tensor[];
        return { x: () => r[0], scale: () => r[1], shift: () => r[2] };
      },
    });
  }
}

let reluGradDone = false;

/**
 * Re-register the `Relu` gradient (idempotent, all backends): one `MtilReluGrad` kernel where the
 * active backend has it, tfjs's `dy·step(x)` elsewhere.
 */
export function registerReluGradient(): void {
  if (reluGradDone) return;
  reluGradDone = true;
  const prev = console.warn;
  console.warn = () => {}; // tfjs warns "Overriding the gradient for 'Relu'": expected here
  try {
    tf.registerGradient({
      kernelName: "Relu",
      inputsToSave: ["x"],
      gradFunc: (dy, saved) => {
        const [x] = saved;
        const d = dy as tf.Tensor;
        if (has("MtilReluGrad") && x.dtype === "float32" && d.dtype === "float32") {
          return { x: () => run("MtilReluGrad", { dy: d, x }) as tf.Tensor };
        }
        return { x: () => tf.mul(d, tf.cast(tf.step(x), "float32")) };
      },
    });
  } finally {
    console.warn = prev;
  }
}

let softmaxGradDone = false;

/**
 * Re-register the `Softmax` gradient (idempotent, all backends): one `MtilSoftmaxGrad` kernel
 * where the active backend has it, tfjs's composite `dy·y − y·Σ(dy·y)` elsewhere.
 */
export function registerSoftmaxGradient(): void {
  if (softmaxGradDone) return;
  softmaxGradDone = true;
  const prev = console.warn;
  console.warn = () => {}; // tfjs warns "Overriding the gradient for 'Softmax'": expected here
  try {
    tf.registerGradient({
      kernelName: "Softmax",
      outputsToSave: [true],
      gradFunc: (dy, saved, attrs) => {
        const [y] = saved;
        const d = dy as tf.Tensor;
        const dim = (attrs as { dim?: number }).dim ?? -1;
        const last = dim === -1 || dim === y.rank - 1;
        if (last && has("MtilSoftmaxGrad") && y.dtype === "float32") {
          return { logits: () => run("MtilSoftmaxGrad", { dy: d, y }) as tf.Tensor };
        }
        return {
          logits: () => {
            const dyTimesY = tf.mul(d, y);
            return tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [dim], true), y));
          },
        };
      },
    });
  } finally {
    console.warn = prev;
  }
}
