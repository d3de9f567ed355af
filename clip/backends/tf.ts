/**
 * The one TensorFlow.js entry point of the library: tfjs with every gradient registered and the
 * pure-JS cpu backend available. Every module imports `tf` from here, so that a single tfjs
 * engine (and its backend choice) is shared. Users get the same instance from `@mtil/mtil/tf`.
 *
 * The `tf` namespace also names the tensor types the library's signatures use (`tf.Tensor2D`,
 * `tf.Variable`, …): aliases of TensorFlow.js's own classes.
 *
 * @module
 */
import * as tfjs from "@tensorflow/tfjs";

tfjs.env().set("PROD", true);

/** TensorFlow.js (`@tensorflow/tfjs` 4.22), the instance this library computes with. */
export const tf: typeof tfjs = tfjs;

/** TensorFlow.js types used in this library's public signatures. */
export declare namespace tf {
  /** A tensor of any rank (`tf.Tensor` of TensorFlow.js). */
  export type Tensor = tfjs.Tensor;
  /** A rank-0 tensor. */
  export type Scalar = tfjs.Scalar;
  /** A rank-1 tensor. */
  export type Tensor1D = tfjs.Tensor1D;
  /** A rank-2 tensor. */
  export type Tensor2D = tfjs.Tensor2D;
  /** A rank-3 tensor (an HWC image). */
  export type Tensor3D = tfjs.Tensor3D;
  /** A rank-4 tensor (a batch of NHWC images). */
  export type Tensor4D = tfjs.Tensor4D;
  /** A mutable tensor (model parameters, optimizer state). */
  export type Variable = tfjs.Variable;
  /** Tensor ranks. */
  export type Rank = tfjs.Rank;
  /** Tensor element types. */
  export type DataType = tfjs.DataType;
  /** Kernel implementation signature (backend kernels). */
  export type KernelFunc = tfjs.KernelFunc;
  /** Kernel registration. */
  export type KernelConfig = tfjs.KernelConfig;
  /** Gradient registration. */
  export type GradConfig = tfjs.GradConfig;
  /** Backend tensor handle. */
  export type TensorInfo = tfjs.TensorInfo;
  /** Kernel attributes. */
  export type NamedAttrMap = tfjs.NamedAttrMap;
}
