/**
 * Orthogonal gradient descent (OGD): tracked-parameter rule and snapshot schedule, exact gradient
 * bases (float64 Jacobi eigendecomposition of G·Gᵀ), their orthonormalisation, the projection of
 * gradients onto the orthogonal complement (TensorFlow.js), and basis files (safetensors).
 *
 * @module
 */
export * from "./basis.ts";
export * from "./project.ts";
export * from "./track.ts";
export * from "./io.ts";
export * from "./part.ts";
