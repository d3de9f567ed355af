/**
 * Test helpers: where `../shared` (reference fixtures, protocol facts, BPE vocabulary) lies, and
 * loud skipping when it is absent. Not part of the public API.
 *
 * @module
 */
import type { ClipConfig } from "./types.ts";
import type { tf } from "./backends/tf.ts";

/** Absolute path of the repository root (the folder holding `deno.json`). */
export const REPO_ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** Absolute path of `../shared` beside the repository (overridable by `MTIL_SHARED`). */
export const SHARED_DIR: string = Deno.env.get("MTIL_SHARED") ??
  new URL("../../shared", import.meta.url).pathname;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `../shared` is present. */
export const HAS_SHARED: boolean = exists(`${SHARED_DIR}/README.md`);

/** Path of a file under `../shared`. */
export function sharedPath(rel: string): string {
  return `${SHARED_DIR}/${rel}`;
}

let warned = false;
/**
 * `ignore` value for `Deno.test` of tests that need `../shared`: true (skip) when absent, printing
 * one loud warning so a skipped suite never passes silently.
 */
export function skipWithoutShared(): boolean {
  if (!HAS_SHARED && !warned) {
    warned = true;
    console.warn(
      `%cSKIPPING tests that need ../shared: ${SHARED_DIR} not found (set MTIL_SHARED)`,
      "color: red; font-weight: bold",
    );
  }
  return !HAS_SHARED;
}

/** Read a little-endian float32 file from `../shared`. */
export function readF32(rel: string): Float32Array {
  const bytes = Deno.readFileSync(sharedPath(rel));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Max absolute difference of two equal-length arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * The backends a parity test runs on: `MTIL_BACKEND` alone when it is set; otherwise `defaults`
 * plus `webgpu` whenever a WebGPU adapter loads (a software one such as lavapipe included, so that
 * CI exercises the GPU code path). Test names carry the backend (`… on webgpu`).
 */
export async function parityBackends(defaults: string[]): Promise<string[]> {
  const { availableBackends } = await import("./backends/backend.ts");
  const env = Deno.env.get("MTIL_BACKEND");
  if (env && env !== "auto") return [env];
  const loadable = await availableBackends({ includeByName: true });
  const out = defaults.filter((b) => loadable.includes(b));
  if (loadable.includes("webgpu") && !out.includes("webgpu")) out.push("webgpu");
  return out;
}

/** The smallest CLIP the tests use, as a config: a 1-block ViT and text tower of width 64. */
const TINY_DEFAULTS: ClipConfig = {
  vision: "vit",
  embedDim: 16,
  imageResolution: 16,
  visionLayers: 1,
  visionWidth: 64,
  visionPatchSize: 8,
  contextLength: 8,
  vocabSize: 50,
  transformerWidth: 64,
  transformerHeads: 1,
  transformerLayers: 1,
};

/** A tiny CLIP config for tests and benchmarks: the defaults above with `overrides` applied. */
export function tinyClipConfig(overrides: Partial<ClipConfig> = {}): ClipConfig {
  return { ...TINY_DEFAULTS, ...overrides };
}

/** The shape of the fixtures' `vit-tiny` CLIP (`../shared/fixtures/clip/vit-tiny.expected.json`). */
export const VIT_TINY_CONFIG: ClipConfig = tinyClipConfig({
  embedDim: 32,
  imageResolution: 32,
  visionLayers: 2,
  contextLength: 77,
  vocabSize: 49408,
  transformerLayers: 2,
});

/**
 * `actual` equals `expected` to `tol` relative to the largest |expected| (at least 1), NaN
 * matching NaN; throws naming the first differing index.
 */
export function assertTensorClose(
  actual: tf.Tensor,
  expected: tf.Tensor,
  tol: number,
  what: string,
): void {
  if (JSON.stringify(actual.shape) !== JSON.stringify(expected.shape)) {
    throw new Error(`${what} shape: [${actual.shape}] vs [${expected.shape}]`);
  }
  const a = actual.dataSync(), e = expected.dataSync();
  let scale = 1;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i]));
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i] - e[i]);
    if (!(d <= tol * scale) && !(Number.isNaN(a[i]) && Number.isNaN(e[i]))) {
      throw new Error(`${what}: index ${i}: ${a[i]} vs ${e[i]} (|d|=${d}, scale ${scale})`);
    }
  }
}
