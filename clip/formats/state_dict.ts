/**
 * Framework-neutral tensors as read from and written to checkpoint files.
 *
 * A {@link StateDict} maps reference state-dict keys (OpenAI CLIP names, e.g.
 * `visual.transformer.resblocks.0.attn.in_proj_weight`) to {@link RawTensor}s. Floating-point
 * tensors are always widened to `Float32Array` in memory; `dtype` remembers how they were stored.
 *
 * @module
 */

/** Storage dtypes the readers understand. */
export type DType =
  | "float32"
  | "float16"
  | "bfloat16"
  | "float64"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

/** One tensor of a checkpoint: row-major data, its shape and its stored dtype. */
export interface RawTensor {
  /** Shape, row-major (C order). A scalar has shape `[]`. */
  shape: number[];
  /** The dtype the tensor had in its file (floats are widened to float32 in `data`). */
  dtype: DType;
  /** Values: `Float32Array` for float dtypes, `Int32Array` for integer and bool dtypes. */
  data: Float32Array | Int32Array;
}

/** Ordered map from reference key to tensor. */
export type StateDict = Map<string, RawTensor>;

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
