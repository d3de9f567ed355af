/**
 * Compute backend selection. {@link initBackend} activates the fastest TensorFlow.js backend that
 * loads here, in this order:
 *
 * 1. `tensorflow` — `@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node` (native
 *    libtensorflow; needs `deno install --allow-scripts=npm:@tensorflow/tfjs-node-gpu`);
 * 2. `webgpu` — `@tensorflow/tfjs-backend-webgpu` on Deno's `navigator.gpu` (see `webgpu.ts`).
 *    Chosen automatically only on a real GPU; a fallback (software) adapter such as Mesa's
 *    lavapipe is used only when asked for by name;
 * 3. `cpu-dnnl` — `cpu-blas` (below) with convolutions, pooling, normalisation, softmax and the
 *    transcendental element-wise kernels on oneDNN 2.x (Debian's `libdnnl2`) through Deno FFI,
 *    plus fused LayerNorm / QuickGELU / BatchNorm / softmax-gradient kernels;
 * 4. `cpu-blas` — tfjs's cpu backend with the heavy kernels on the system's OpenBLAS through
 *    Deno FFI (needs `--allow-ffi` and e.g. Debian's `libopenblas0-pthread`);
 * 5. `wasm` — `@tensorflow/tfjs-backend-wasm` (SIMD, one thread) plus the training kernels it
 *    lacks ({@link registerWasmTrainingKernels});
 * 6. `cpu` — tfjs's pure-JS backend (always there, ~100× slower).
 *
 * `MTIL_BACKEND` or the `prefer` option (the CLIs' `--backend`) puts one name first. A backend
 * that fails to load is a one-line note, never a crash.
 *
 * Threads of the native CPU backends (OpenBLAS's pool and oneDNN's OpenMP team): the `threads`
 * option, else `MTIL_THREADS`, else every core (`navigator.hardwareConcurrency`). Both libraries
 * get the same count; they run one after the other (FFI calls block the JS thread), and idle
 * OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE`) instead of spinning against OpenBLAS's.
 *
 * @module
 */
import { installLeanGradients } from "./lean_gradients.ts";
import { tf } from "./tf.ts";
import {
  blasBackendUnavailableReason,
  blasInfo,
  CPU_BLAS,
  registerBlasBackend,
  registerCpuFixes,
} from "./blas_kernels.ts";
import { registerMatMulGradient, registerWasmTrainingKernels } from "./wasm_kernels.ts";
import {
  CPU_DNNL,
  dnnlBackendUnavailableReason,
  dnnlInfo,
  registerDnnlBackend,
} from "./onednn_kernels.ts";
import { dnnlThreads, setDnnlThreads } from "./onednn.ts";
import { loadBlas } from "./blas.ts";
import { registerReluGradient, registerSoftmaxGradient } from "./fused.ts";
import { registerWebGpuBackend, WEBGPU } from "./webgpu.ts";

/** Backend names {@link initBackend} understands, fastest first. */
export const BACKEND_NAMES: readonly string[] = [
  "tensorflow",
  WEBGPU,
  "cpu-dnnl",
  "cpu-blas",
  "wasm",
  "cpu",
];

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /** Backend to try first (one of {@link BACKEND_NAMES}, or `"auto"`); overrides `MTIL_BACKEND`. */
  prefer?: string;
  /** Print nothing (default false: one line per backend on stderr). */
  quiet?: boolean;
  /**
   * Threads of OpenBLAS and oneDNN (`cpu-blas`, `cpu-dnnl`); overrides `MTIL_THREADS`. Default:
   * every core.
   */
  threads?: number;
}

/**
 * Set the thread count of the native CPU libraries (OpenBLAS and oneDNN's OpenMP team), when
 * loaded. Returns the count applied.
 */
export function setNativeThreads(n: number): number {
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`threads must be a positive integer (got ${n}; --threads / MTIL_THREADS)`);
  }
  loadBlas()?.setThreads(n);
  setDnnlThreads(n);
  return n;
}

function threadSetting(opt: number | undefined): number {
  if (opt !== undefined) {
    if (!Number.isInteger(opt) || opt < 1) {
      throw new Error(`threads must be a positive integer (got ${opt}; --threads / MTIL_THREADS)`);
    }
    return opt;
  }
  const env = envVar("MTIL_THREADS");
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`MTIL_THREADS must be a positive integer (got "${env}")`);
    }
    return n;
  }
  const cores = typeof navigator !== "undefined" ? navigator.hardwareConcurrency : 1;
  return Math.max(1, cores || 1);
}

/** What happened to one backend during selection. */
export interface BackendStatus {
  /** Backend name. */
  name: string;
  /** `active`: in use; `available`: loads but not chosen; `skipped`: failed; `untried`. */
  state: "active" | "available" | "skipped" | "untried";
  /** Why (library path, error message, ...). */
  detail: string;
}

interface LoadResult {
  ok: boolean;
  detail: string;
  /** Loads, but is taken only when asked for by name (a software WebGPU adapter). */
  onlyByName?: string;
}

const loads = new Map<string, Promise<LoadResult>>();
let lastReport: BackendStatus[] = [];

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n").map((l) => l.trim()).find((l) => l.length > 0) ?? "unknown error";
}

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * One precise reason for a failed `import()` of a tfjs-node package: the binding was never
 * built/downloaded (install script not run, or its download host unreachable), a CUDA / cuDNN
 * library is missing (tfjs-node-gpu 4.22 is built for CUDA 11.2 and cuDNN 8.1), or the loader's
 * own message.
 */
export function nodeImportError(pkg: string, e: unknown): string {
  const msg = firstLine(e);
  if (msg.includes("tfjs_binding.node")) {
    return `${pkg}: native binding missing — its install script has not run or could not ` +
      `download libtensorflow (deno install --allow-scripts=npm:@tensorflow/${pkg}; offline: ` +
      `TFJS_NODE_CDN_STORAGE / scripts/custom-binary.json, see README "GPU")`;
  }
  const lib = msg.match(
    /(lib(?:cudart|cudnn|cublas|cufft|curand|cusolver|cusparse)[\w.]*\.so[\w.]*)/,
  );
  if (lib) {
    return `${pkg}: ${lib[1]} not found — libtensorflow 2.9.1 needs CUDA 11.2 and cuDNN 8.1 ` +
      `on LD_LIBRARY_PATH (${msg})`;
  }
  if (msg.includes("libtensorflow")) return `${pkg}: libtensorflow does not load (${msg})`;
  return `${pkg}: ${msg}`;
}

async function loadTensorflow(): Promise<LoadResult> {
  const errors: string[] = [];
  try {
    await import("@tensorflow/tfjs-node-gpu");
    if (tf.findBackendFactory("tensorflow")) return { ok: true, detail: "tfjs-node-gpu" };
  } catch (e) {
    errors.push(nodeImportError("tfjs-node-gpu", e));
  }
  try {
    await import("@tensorflow/tfjs-node");
    if (tf.findBackendFactory("tensorflow")) return { ok: true, detail: "tfjs-node" };
  } catch (e) {
    errors.push(nodeImportError("tfjs-node", e));
  }
  return { ok: false, detail: errors.join("; ") };
}

async function loadWasm(): Promise<LoadResult> {
  try {
    await import("@tensorflow/tfjs-backend-wasm");
  } catch (e) {
    return { ok: false, detail: `tfjs-backend-wasm: ${firstLine(e)}` };
  }
  if (!tf.findBackendFactory("wasm")) return { ok: false, detail: "wasm backend not registered" };
  registerWasmTrainingKernels();
  return { ok: true, detail: "SIMD, 1 thread, training kernels added" };
}

async function loadWebGpu(): Promise<LoadResult> {
  const r = await registerWebGpuBackend();
  if (!r.ok) return { ok: false, detail: r.detail };
  return {
    ok: true,
    detail: r.detail,
    onlyByName: r.summary?.fallback
      ? `fallback adapter ${r.summary.description || "(unnamed)"}, used only when asked for ` +
        `(--backend webgpu / MTIL_BACKEND=webgpu)`
      : undefined,
  };
}

function loadCpuBlas(): LoadResult {
  if (!registerBlasBackend()) return { ok: false, detail: blasBackendUnavailableReason() };
  const info = blasInfo();
  return {
    ok: true,
    detail: `${info?.path}${info?.threads ? `, ${info.threads} threads` : ""}`,
  };
}

function loadCpuDnnl(): LoadResult {
  if (!registerDnnlBackend()) return { ok: false, detail: dnnlBackendUnavailableReason() };
  const info = dnnlInfo();
  const blas = loadBlas();
  return {
    ok: true,
    detail: `oneDNN ${info?.version} (${info?.path}, ${dnnlThreads()} threads) + ${blas?.path}`,
  };
}

/** Register (without activating) one backend; cached. */
function load(name: string): Promise<LoadResult> {
  let p = loads.get(name);
  if (!p) {
    switch (name) {
      case "tensorflow":
        p = loadTensorflow();
        break;
      case CPU_BLAS:
        p = Promise.resolve(loadCpuBlas());
        break;
      case CPU_DNNL:
        p = Promise.resolve(loadCpuDnnl());
        break;
      case "wasm":
        p = loadWasm();
        break;
      case WEBGPU:
        p = loadWebGpu();
        break;
      default:
        p = Promise.resolve({ ok: true, detail: "pure JS" });
    }
    loads.set(name, p);
  }
  return p;
}

function checkName(name: string, source: string): void {
  if (name !== "auto" && !BACKEND_NAMES.includes(name)) {
    throw new Error(
      `unknown backend "${name}" (from ${source}); valid: ${BACKEND_NAMES.join(", ")}, auto`,
    );
  }
}

/**
 * Activate the fastest backend that loads (or the preferred one first) and return its name.
 * Each backend is tried with `tf.setBackend`, and both its return value and `tf.getBackend()`
 * are checked (tfjs silently stays on the old backend when an init fails). Unknown names in
 * `prefer`/`MTIL_BACKEND` throw an error listing the valid ones; a preferred backend that does not
 * load falls back to the automatic order with a warning.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<string> {
  const fromOpt = opts.prefer;
  const fromEnv = envVar("MTIL_BACKEND");
  const preferred = fromOpt ?? fromEnv;
  if (preferred !== undefined && preferred !== "") {
    checkName(preferred, fromOpt !== undefined ? "--backend" : "MTIL_BACKEND");
  }
  const order = preferred && preferred !== "auto"
    ? [preferred, ...BACKEND_NAMES.filter((n) => n !== preferred)]
    : [...BACKEND_NAMES];
  registerMatMulGradient();
  registerSoftmaxGradient();
  registerReluGradient();
  registerCpuFixes();
  installLeanGradients();
  const threads = threadSetting(opts.threads);
  const report: BackendStatus[] = [];
  let active = "";
  for (const name of order) {
    if (active) {
      report.push({ name, state: "untried", detail: `${active} chosen first` });
      continue;
    }
    const r = await load(name);
    if (!r.ok) {
      report.push({ name, state: "skipped", detail: r.detail });
      continue;
    }
    if (r.onlyByName && name !== preferred) {
      report.push({ name, state: "skipped", detail: r.onlyByName });
      continue;
    }
    let ok = false;
    let why = "";
    try {
      ok = await tf.setBackend(name);
    } catch (e) {
      why = firstLine(e);
    }
    if (ok && tf.getBackend() === name) {
      active = name;
      report.push({ name, state: "active", detail: r.detail });
    } else {
      report.push({
        name,
        state: "skipped",
        detail: why || `tf.setBackend returned ${ok}, still on ${tf.getBackend()}`,
      });
    }
  }
  if (!active) throw new Error("no TensorFlow.js backend could be activated (not even cpu)");
  if (active === CPU_BLAS || active === CPU_DNNL) setNativeThreads(threads);
  lastReport = report;
  if (!opts.quiet) {
    const via = preferred && preferred !== "auto"
      ? ` (requested ${preferred} via ${fromOpt !== undefined ? "--backend" : "MTIL_BACKEND"})`
      : "";
    for (const s of report) {
      if (s.state === "active") console.error(`mtil: backend ${s.name} active${via}: ${s.detail}`);
      else if (s.state === "skipped") console.error(`mtil: backend ${s.name} skipped: ${s.detail}`);
    }
  }
  return active;
}

/** Options of {@link availableBackends}. */
export interface AvailableBackendsOptions {
  /**
   * Also list backends that load but are taken only by name (a fallback WebGPU adapter such as
   * lavapipe). Default: only when `MTIL_BACKEND` names it.
   */
  includeByName?: boolean;
}

/**
 * Names of the backends that load here, fastest first (registers them, switches nothing). For
 * benchmarks and parity tests that run on every backend. A software WebGPU adapter is listed
 * only with `includeByName` or when `MTIL_BACKEND` names `webgpu`, as in the automatic choice.
 */
export async function availableBackends(opts: AvailableBackendsOptions = {}): Promise<string[]> {
  const names: string[] = [];
  const env = envVar("MTIL_BACKEND");
  for (const name of BACKEND_NAMES) {
    const r = await load(name);
    if (!r.ok) continue;
    if (r.onlyByName && !opts.includeByName && env !== name) continue;
    names.push(name);
  }
  // Registering a backend (wasm) can make it tfjs's default before it is initialised; make the
  // default usable again, so that probing leaves tfjs as ready as it found it.
  await tf.ready();
  return names;
}

/** What the last {@link initBackend} did with each backend (empty before the first call). */
export function backendReport(): BackendStatus[] {
  return lastReport.map((s) => ({ ...s }));
}
