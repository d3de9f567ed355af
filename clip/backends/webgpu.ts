/**
 * The `webgpu` backend: `@tensorflow/tfjs-backend-webgpu` 4.22 on Deno's built-in
 * `navigator.gpu`, registered with our own factory because the package's does not work in Deno:
 *
 * - **Adapter reuse** (tfjs issue 8518): the package reads `adapter.info` *after*
 *   `requestDevice`, and Deno invalidates an adapter once a device is created from it. We read
 *   the info first, and request a fresh adapter for every device.
 * - **Nested `requiredFeatures`**: 4.22 pushes `['bgra8unorm-storage']` (an array) into the
 *   feature list, which Deno's WebIDL conversion rejects. We request a flat list; the backend
 *   needs only `timestamp-query` (profiling), nothing else.
 * - **Limits**: the device is requested with every limit at the adapter's maximum (the package
 *   asks for six), so that `maxStorageBufferBindingSize` / `maxBufferSize` are the hardware's.
 * - **`WEBGPU_CPU_FORWARD`** (default on) runs ops whose inputs are all small host-resident
 *   tensors on the CPU. We turn it off: every op of a training step then runs on the device and
 *   nothing flips between host and device residency. (Only the few values created on the host,
 *   such as labels, are uploaded once per step.)
 * - **Synchronous reads** (`dataSync`, `arraySync`) cannot work in Deno: tfjs reads them back
 *   through an OffscreenCanvas 2D context that Deno lacks. We make them throw an error saying to
 *   use `await t.data()`, instead of tfjs's `Cannot read properties of null (reading 'clearRect')`.
 *
 * **What runs on the host.** No op of a training step: with `WEBGPU_CPU_FORWARD` off, the
 * backend's own CPU paths are left for string and complex tensors, `Tile` of rank ≥ 5, the sparse
 * and ragged ops and `NonMaxSuppression`, none of which CLIP training uses (the sync-read guard
 * below would throw if one read a device tensor; the parity and training tests pass under it).
 * Host transfers per step: uploads of the labels and of JS scalars, and one packed download of
 * the loss values; besides, gradient norms when requested, OGD's gradient snapshots on snapshot
 * steps, and checkpoints. AdamW uses its tensor path (the fused host loop is for the CPU
 * backends only).
 *
 * By default only a real GPU is used ({@link WebGpuAdapterSummary.fallback} false); a software
 * adapter such as Mesa's lavapipe (`llvmpipe`) is used only when asked for by name, which is how
 * the parity tests run in CI.
 *
 * @module
 */
import { tf } from "./tf.ts";

type KernelBackend = InstanceType<typeof tf.KernelBackend>;

/** Name of the backend. */
export const WEBGPU = "webgpu";

/** What the adapter says about itself and the limits that matter for training. */
export interface WebGpuAdapterSummary {
  /** Vendor (PCI id or name, as the driver reports it). */
  vendor: string;
  /** Architecture (often empty). */
  architecture: string;
  /** Human-readable device description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`. */
  description: string;
  /** True for a software / fallback adapter (lavapipe, SwiftShader, WARP). */
  fallback: boolean;
  /** Largest storage-buffer binding in bytes: the largest tensor one shader can address. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer in bytes. */
  maxBufferSize: number;
}

let summary: WebGpuAdapterSummary | undefined;
let deviceLimitOverride: number | undefined;

/** Deno exposes `isFallbackAdapter` on the adapter or (newer) on its info. */
function isFallback(adapter: GPUAdapter, info: GPUAdapterInfo | undefined): boolean {
  const a = (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const i = (info as unknown as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter;
  return Boolean(a ?? i ?? false);
}

/** Every numeric limit of the adapter, to request the device at the adapter's maximum. */
function maxLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, unknown>;
  for (const k in lim) {
    const v = lim[k];
    if (typeof v === "number") out[k] = v;
  }
  return out;
}

/**
 * Deno's WebGPU prints "XDG_RUNTIME_DIR is invalid or not set" (twice) when the variable is
 * unset; only window surfaces use that directory, compute never does. Set it for this process
 * (to the temp dir) before the first adapter request, so that the automatic backend choice of a
 * CLI run stays quiet. A value set by the user is left alone.
 */
function quietXdgWarning(): void {
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) {
      Deno.env.set("XDG_RUNTIME_DIR", Deno.env.get("TMPDIR") ?? "/tmp");
    }
  } catch {
    // no --allow-env: the warning stays, nothing else changes
  }
}

async function requestAdapter(): Promise<GPUAdapter | null> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) return null;
  quietXdgWarning();
  return await gpu.requestAdapter({ powerPreference: "high-performance" });
}

/** Summary of an adapter, read before any device is created from it (Deno invalidates it after). */
function summarize(adapter: GPUAdapter): WebGpuAdapterSummary {
  const info = (adapter as unknown as { info?: GPUAdapterInfo }).info;
  return {
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    description: info?.description ?? "",
    fallback: isFallback(adapter, info),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
}

/**
 * Probe the WebGPU adapter (without creating a device). Null when `navigator.gpu` is absent or no
 * adapter is found (e.g. no Vulkan driver installed). Cached after the first successful probe.
 */
export async function probeWebGpu(): Promise<WebGpuAdapterSummary | null> {
  if (summary) return { ...summary };
  const adapter = await requestAdapter();
  if (!adapter) return null;
  summary = summarize(adapter);
  return { ...summary };
}

/** One-line description of an adapter for the backend line. */
export function describeAdapter(s: WebGpuAdapterSummary): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const parts = [
    s.description || "unnamed adapter",
    `vendor ${s.vendor || "?"}`,
    `architecture ${s.architecture || "?"}`,
    s.fallback ? "fallback (software) adapter" : "hardware adapter",
    `max storage binding ${mib(s.maxStorageBufferBindingSize)}`,
    `max buffer ${mib(s.maxBufferSize)}`,
  ];
  return parts.join(", ");
}

interface WebGpuModule {
  WebGPUBackend: new (device: GPUDevice, adapterInfo?: GPUAdapterInfo) => KernelBackend;
}

let registered:
  | Promise<{ ok: boolean; detail: string; summary?: WebGpuAdapterSummary }>
  | undefined;

/**
 * Load `@tensorflow/tfjs-backend-webgpu` (its kernels) and register the `webgpu` backend with the
 * Deno-safe factory described in the module doc. Does not activate it. Resolves to `ok: false`
 * with a one-line reason when the package, `navigator.gpu` or an adapter is missing.
 */
export function registerWebGpuBackend(): Promise<
  { ok: boolean; detail: string; summary?: WebGpuAdapterSummary }
> {
  registered ??= (async () => {
    if (!(globalThis.navigator as { gpu?: GPU } | undefined)?.gpu) {
      return { ok: false, detail: "navigator.gpu is absent in this runtime" };
    }
    let s: WebGpuAdapterSummary | null;
    try {
      s = await probeWebGpu();
    } catch (e) {
      return { ok: false, detail: `requestAdapter failed: ${(e as Error).message.split("\n")[0]}` };
    }
    if (!s) {
      return {
        ok: false,
        detail: "no WebGPU adapter (no GPU driver; for the software one: apt-get install " +
          "mesa-vulkan-drivers, and set XDG_RUNTIME_DIR)",
      };
    }
    let mod: WebGpuModule;
    try {
      mod = await import("@tensorflow/tfjs-backend-webgpu") as unknown as WebGpuModule;
    } catch (e) {
      return { ok: false, detail: `tfjs-backend-webgpu: ${(e as Error).message.split("\n")[0]}` };
    }
    // the package registered its own factory (when navigator.gpu exists): replace it
    if (tf.findBackendFactory(WEBGPU)) tf.removeBackend(WEBGPU);
    tf.env().set("WEBGPU_CPU_FORWARD", false);
    tf.registerBackend(WEBGPU, async () => {
      const adapter = await requestAdapter();
      if (!adapter) throw new Error("WebGPU adapter disappeared");
      const info = (adapter as unknown as { info?: GPUAdapterInfo }).info;
      summary = summarize(adapter);
      const features: GPUFeatureName[] = [];
      if (adapter.features.has("timestamp-query")) features.push("timestamp-query");
      const device = await adapter.requestDevice({
        requiredFeatures: features,
        requiredLimits: maxLimits(adapter),
      });
      const backend = new mod.WebGPUBackend(device, info);
      guardSyncReads(backend);
      return backend;
    }, -1); // never tfjs's implicit default: webgpu is taken only through initBackend / setBackend
    return { ok: true, detail: describeAdapter(s), summary: s };
  })();
  return registered;
}

/** Make `dataSync()` on webgpu fail with a clear message (see the module doc). */
function guardSyncReads(backend: KernelBackend): void {
  const b = backend as unknown as {
    readSync(dataId: object): unknown;
    tensorMap: { get(id: object): { values?: unknown; dtype: string } | undefined };
  };
  const original = b.readSync.bind(b);
  b.readSync = (dataId: object) => {
    const d = b.tensorMap.get(dataId);
    if (d && (d.values != null || d.dtype === "string")) return original(dataId);
    throw new Error(
      "synchronous read (dataSync/arraySync) of a device tensor is impossible on webgpu in " +
        "Deno: read it with `await tensor.data()`",
    );
  };
}

/**
 * The storage-buffer limit of the active webgpu device (bytes), or undefined when webgpu is not
 * active. {@link setDeviceLimitForTesting} overrides it.
 */
export function deviceStorageLimit(): number | undefined {
  if (deviceLimitOverride !== undefined) return deviceLimitOverride;
  if (tf.getBackend() !== WEBGPU) return undefined;
  return summary?.maxStorageBufferBindingSize;
}

/** Pretend the device allows at most `bytes` per storage binding (tests); undefined resets. */
export function setDeviceLimitForTesting(bytes: number | undefined): void {
  deviceLimitOverride = bytes;
}

/** The adapter of the webgpu backend (after {@link registerWebGpuBackend}), if any. */
export function webGpuAdapter(): WebGpuAdapterSummary | undefined {
  return summary ? { ...summary } : undefined;
}

/**
 * Make `dataSync()` / `stateDict()` / `getState()` work on the given tensors on every backend:
 * on webgpu (no synchronous reads in Deno) each tensor is read once asynchronously, which caches
 * its values on the host until the tensor is disposed or the variable reassigned. A no-op on the
 * host backends. Call it before synchronous save code (checkpoints, teacher copies).
 *
 * @example
 * ```ts
 * import { type ClipModel, readableOnHost } from "jsr:@mtil/mtil/clip";
 * declare const model: ClipModel;
 * await readableOnHost(model.params.values());
 * const sd = model.stateDict();
 * ```
 */
export async function readableOnHost(tensors: Iterable<tf.Tensor>): Promise<void> {
  if (tf.getBackend() !== WEBGPU) return;
  for (const t of tensors) if (!t.isDisposed) await t.data();
}

/** A device error caught during a training step (out of memory, or a validation failure). */
export interface DeviceErrorReport {
  /** `out-of-memory` or `validation`. */
  kind: "out-of-memory" | "validation";
  /** The driver's message. */
  message: string;
}

/**
 * On webgpu, open error scopes for out-of-memory and validation errors (WebGPU reports neither
 * as an exception: a failed buffer allocation silently yields an invalid buffer and wrong
 * numbers). Returns the function that closes them and resolves to the first error (idempotent),
 * or undefined when webgpu is not active.
 */
export function watchDeviceErrors(): (() => Promise<DeviceErrorReport | null>) | undefined {
  if (tf.getBackend() !== WEBGPU) return undefined;
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  if (!device) return undefined;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let closed = false;
  return async () => {
    if (closed) return null; // closing twice is a no-op (the loop closes again in `finally`)
    closed = true;
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    if (oom) return { kind: "out-of-memory", message: oom.message };
    if (validation) return { kind: "validation", message: validation.message };
    return null;
  };
}
