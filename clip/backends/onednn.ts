/**
 * oneDNN (`libdnnl.so.2`, the library PyTorch's CPU path runs its convolutions on) through Deno
 * FFI. oneDNN memory objects point straight at Float32Array storage (no copies); primitives are
 * created once per shape and cached, then re-pointed at each call's arrays with
 * `dnnl_memory_set_data_handle`.
 *
 * Supported: the oneDNN 2.x C API (`*_desc_init` + `dnnl_primitive_desc_create`; measured on
 * Debian's 2.6.3). oneDNN 3.x removed the `*_desc_init` functions: {@link loadDnnl} reads
 * `dnnl_version()` and returns `null` with a one-line reason for anything but major version 2, as
 * it does when the library is missing or `--allow-ffi` is not granted. `MTIL_DNNL_LIB` overrides
 * the library path.
 *
 * Threads: oneDNN runs on OpenMP (libgomp). {@link setDnnlThreads} sets its thread count;
 * `OMP_WAIT_POLICY=PASSIVE` is set before libgomp loads (unless already set) so idle OpenMP
 * threads sleep instead of spinning against OpenBLAS's pool on the same cores.
 *
 * @module
 */
import { envVar } from "./blas.ts";

// ---- oneDNN 2.x C ABI (x86_64; struct sizes from the 2.6.3 headers, see ../shared/notes/onednn) ----
/** Byte size reserved per descriptor struct: at least every 2.x struct we create (largest 5976). */
const DESC_BYTES = 8192;
const MD_BYTES = 1024; // dnnl_memory_desc_t is 696 bytes in 2.6
const F32 = 3;
/** Format tags. */
export const TAG = { any: 1, a: 2, ab: 3, abc: 4, abcd: 5, nhwc: 20, hwio: 30, ba: 22 } as const;
const ENG_CPU = 1;
/** Propagation kinds. */
export const PROP = { training: 64, inference: 96, backward: 128, backwardData: 160 } as const;
/** Convolution algorithm: direct (oneDNN picks the implementation). */
export const CONV_DIRECT = 1;
/** Element-wise algorithm kinds. */
export const ELTWISE = {
  relu: 31,
  tanh: 47,
  square: 79,
  sqrt: 111,
  logistic: 175,
  exp: 191,
  swish: 223,
  reluUseDst: 256,
  logisticUseDst: 260,
  expUseDst: 261,
} as const;
/** Pooling algorithm kinds. */
export const POOL = { max: 511, avgIncludePadding: 767, avgExcludePadding: 1023 } as const;
const SOFTMAX_ACCURATE = 196608;
/** Execution argument ids. */
export const ARG = {
  src: 1,
  /** A binary primitive's second source (`DNNL_ARG_SRC_1`; its first is `src`). */
  src1: 2,
  dst: 17,
  weights: 33,
  bias: 41,
  mean: 49,
  variance: 50,
  scale: 51,
  shift: 52,
  workspace: 64,
  scratchpad: 80,
  diffSrc: 129,
  diffDst: 145,
  diffWeights: 161,
  diffBias: 169,
  diffScale: 255,
  diffShift: 256,
} as const;
/** Primitive-descriptor queries for memory descriptors. */
export const QUERY = {
  src: 129,
  diffSrc: 130,
  weights: 131,
  diffWeights: 132,
  dst: 133,
  diffDst: 134,
  workspace: 135,
  scratchpad: 136,
} as const;
/** `dnnl_query_impl_info_str`: the implementation name of a primitive descriptor. */
const QUERY_IMPL_INFO_STR = 8;
/** Binary algorithm kinds. */
export const BINARY = { add: 0x1fff0, mul: 0x1fff1, div: 0x1fff4, sub: 0x1fff5 } as const;
/** Execution argument id of the second source of post-op number `idx` (a binary post-op). */
export function postOpSrc1(idx: number): number {
  return 16384 * (idx + 1) | 2;
}
/** One post-op of a primitive: accumulate into the destination, or a binary op with a tensor. */
export type PostOp =
  | { sum: number }
  | { binary: number; md: MemoryDesc }
  | { eltwise: number; alpha?: number; beta?: number };

/** One common (mask 0) scaling factor of an execution argument, fixed at primitive creation. */
export interface ArgScale {
  /** Argument id (a binary primitive's sources: `1`, `2`). */
  arg: number;
  scale: number;
}

/** Normalization flags (`fuseRelu`: ReLU on the output, `dnnl_fuse_norm_relu`). */
export const NORM = { globalStats: 1, fuseRelu: 4, scale: 8, shift: 16 } as const;

const P = "pointer" as const, B = "buffer" as const;
const SYMBOLS = {
  dnnl_version: { parameters: [], result: P },
  dnnl_engine_create: { parameters: [B, "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: [B, P, "u32"], result: "i32" },
  dnnl_stream_wait: { parameters: [P], result: "i32" },
  dnnl_memory_desc_init_by_tag: { parameters: [B, "i32", B, "i32", "i32"], result: "i32" },
  dnnl_memory_desc_init_by_strides: { parameters: [B, "i32", B, "i32", B], result: "i32" },
  dnnl_memory_desc_equal: { parameters: [P, P], result: "i32" },
  dnnl_memory_desc_get_size: { parameters: [P], result: "usize" },
  dnnl_memory_create: { parameters: [B, P, P, P], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: [P, P], result: "i32" },
  dnnl_memory_destroy: { parameters: [P], result: "i32" },
  dnnl_convolution_forward_desc_init: {
    parameters: [B, "i32", "i32", B, B, P, B, B, B, B],
    result: "i32",
  },
  dnnl_convolution_backward_data_desc_init: {
    parameters: [B, "i32", B, B, B, B, B, B],
    result: "i32",
  },
  dnnl_convolution_backward_weights_desc_init: {
    parameters: [B, "i32", B, B, P, B, B, B, B],
    result: "i32",
  },
  dnnl_eltwise_forward_desc_init: { parameters: [B, "i32", "i32", B, "f32", "f32"], result: "i32" },
  dnnl_eltwise_backward_desc_init: { parameters: [B, "i32", B, B, "f32", "f32"], result: "i32" },
  dnnl_layer_normalization_forward_desc_init: {
    parameters: [B, "i32", B, P, "f32", "u32"],
    result: "i32",
  },
  dnnl_layer_normalization_backward_desc_init: {
    parameters: [B, "i32", B, B, P, "f32", "u32"],
    result: "i32",
  },
  dnnl_batch_normalization_forward_desc_init: {
    parameters: [B, "i32", B, "f32", "u32"],
    result: "i32",
  },
  dnnl_batch_normalization_backward_desc_init: {
    parameters: [B, "i32", B, B, "f32", "u32"],
    result: "i32",
  },
  dnnl_pooling_v2_forward_desc_init: {
    parameters: [B, "i32", "i32", B, B, B, B, B, B, B],
    result: "i32",
  },
  dnnl_pooling_v2_backward_desc_init: {
    parameters: [B, "i32", B, B, B, B, B, B, B],
    result: "i32",
  },
  dnnl_softmax_v2_forward_desc_init: { parameters: [B, "i32", "i32", B, B, "i32"], result: "i32" },
  dnnl_softmax_v2_backward_desc_init: { parameters: [B, "i32", B, B, B, "i32"], result: "i32" },
  dnnl_matmul_desc_init: { parameters: [B, B, B, P, B], result: "i32" },
  dnnl_binary_desc_init: { parameters: [B, "i32", B, B, B], result: "i32" },
  dnnl_primitive_attr_create: { parameters: [B], result: "i32" },
  dnnl_primitive_attr_destroy: { parameters: [P], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: [P, P], result: "i32" },
  dnnl_primitive_attr_set_scales: { parameters: [P, "i32", "i64", "i32", B], result: "i32" },
  dnnl_post_ops_create: { parameters: [B], result: "i32" },
  dnnl_post_ops_destroy: { parameters: [P], result: "i32" },
  dnnl_post_ops_append_sum: { parameters: [P, "f32"], result: "i32" },
  dnnl_post_ops_append_binary: { parameters: [P, "i32", B], result: "i32" },
  dnnl_post_ops_append_eltwise: { parameters: [P, "f32", "i32", "f32", "f32"], result: "i32" },
  dnnl_primitive_desc_create: { parameters: [B, P, P, P, P], result: "i32" },
  dnnl_reorder_primitive_desc_create: { parameters: [B, P, P, P, P, P], result: "i32" },
  dnnl_primitive_desc_query_md: { parameters: [P, "i32", "i32"], result: P },
  dnnl_primitive_desc_query: { parameters: [P, "i32", "i32", B], result: "i32" },
  dnnl_primitive_desc_destroy: { parameters: [P], result: "i32" },
  dnnl_primitive_create: { parameters: [B, P], result: "i32" },
  dnnl_primitive_execute: { parameters: [P, P, "i32", B], result: "i32" },
  dnnl_get_effective_cpu_isa: { parameters: [], result: "i32" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
type Ptr = Deno.PointerValue;

/** A oneDNN memory descriptor (its bytes, kept alive while anything points at it). */
export type MemoryDesc = Uint8Array;

/** One argument slot of a cached primitive: the user array is bound at each call. */
interface Slot {
  arg: number;
  mem: Ptr;
}

/** A created primitive with its memory objects; {@link Dnnl.run} binds arrays and executes. */
export interface Primitive {
  /** Run with one Float32Array per user slot (in the order the primitive was built with). */
  run(arrays: readonly Float32Array[]): void;
  /** Byte sizes oneDNN wants for the user slots (to check caller arrays). */
  readonly slotBytes: readonly number[];
  /**
   * Memory objects {@link DnnlRaw.build} allocated for this primitive and owns, by argument id
   * (scratchpad, workspace, {@link BuildOptions.owned} slots): what another primitive can bind
   * through {@link BuildOptions.shared}.
   */
  readonly owned?: ReadonlyMap<number, Deno.PointerValue>;
}

/** What {@link DnnlRaw.build} binds besides the user slots. */
export interface BuildOptions {
  /**
   * Arguments bound to memory oneDNN allocates once (as it does for scratchpad and workspace)
   * and the primitive keeps, instead of a caller array: an output nobody reads, like the
   * training max pool's `dst` when only its workspace is wanted. `query` names the descriptor.
   */
  owned?: { arg: number; query: number }[];
  /**
   * Arguments bound to memory objects of another primitive (its {@link Primitive.owned}): the
   * max-pooling backward reads the workspace (argmax per window) its forward wrote. A shared
   * workspace replaces the one `build` would otherwise allocate. The other primitive must run
   * first on each call: a shared memory holds the last run's contents only.
   */
  shared?: { arg: number; mem: Deno.PointerValue }[];
}

/** A loaded oneDNN library. */
export interface Dnnl {
  /** `major.minor.patch`. */
  readonly version: string;
  /** Library path it was opened from. */
  readonly path: string;
  /** A memory descriptor of f32 `dims` in format `tag` (cached). */
  md(dims: readonly number[], tag: number): MemoryDesc;
  /** A memory descriptor of f32 `dims` with explicit element `strides`. */
  mdStrided(dims: readonly number[], strides: readonly number[]): MemoryDesc;
  /** The primitive cached under `key`, or the one `build` makes (then cached). */
  cached(key: string, build: () => Primitive): Primitive;
  /** Low-level builders (see onednn_kernels.ts). */
  readonly raw: DnnlRaw;
}

/** Building blocks of primitives, exposed for the kernel module. */
export interface DnnlRaw {
  lib: Lib;
  /**
   * `dnnl_primitive_desc_create` on an op descriptor (with an optional forward hint, post-ops,
   * and common scales of source arguments: `dnnl_primitive_attr_set_scales` with mask 0, e.g.
   * a binary primitive's `src0` scaled by −1).
   */
  pd(desc: Uint8Array, hint?: Ptr, postOps?: readonly PostOp[], scales?: readonly ArgScale[]): Ptr;
  /** The memory descriptor a primitive descriptor wants for `query` (null when none). */
  query(pd: Ptr, query: number): Ptr;
  /**
   * The implementation oneDNN picked for a primitive descriptor (`dnnl_query_impl_info_str`):
   * `jit:uni`, `brgconv:avx512_core`, … or `ref:any` (the slow scalar reference code).
   */
  implName(pd: Ptr): string;
  /**
   * A primitive from `pd` with user slots `user` (`[arg, md-the-user-array-has, query]`): where
   * the pd wants another layout for a slot (weights in format `any`), a reorder is added before
   * (inputs) or after (outputs, `out: true`) the primitive. Scratchpad and workspace are allocated
   * by oneDNN once (unless `opts.shared` binds them to another primitive's).
   */
  build(
    pd: Ptr,
    user: { arg: number; md: MemoryDesc; query: number; out?: boolean }[],
    keep: unknown[],
    opts?: BuildOptions,
  ): Primitive;
  /** A reorder primitive descriptor from `src` to `dst` layout. */
  reorderPd(src: MemoryDesc, dst: MemoryDesc): Ptr;
  /** `dims` as a dnnl_dims_t (int64[12]). */
  dims(v: readonly number[]): BigInt64Array;
  desc(): Uint8Array;
  check(status: number, what: string): void;
}

let cached: Dnnl | null | undefined;
let loadError = "";

/** Why the last {@link loadDnnl} returned null (empty otherwise). */
export function dnnlLoadError(): string {
  return loadError;
}

type GompLib = { omp_set_num_threads(n: number): void; omp_get_max_threads(): number };
let gomp: GompLib | null = null;

/**
 * Set oneDNN's (OpenMP's) thread count. Returns false when libgomp could not be opened (oneDNN
 * then uses its default: every core).
 */
export function setDnnlThreads(n: number): boolean {
  if (!gomp) return false;
  gomp.omp_set_num_threads(Math.max(1, Math.floor(n)));
  return true;
}

/** oneDNN's (OpenMP's) current thread count, or undefined without libgomp. */
export function dnnlThreads(): number | undefined {
  return gomp ? gomp.omp_get_max_threads() : undefined;
}

const SUPPORTED_MAJOR = 2;
/** Largest typed array V8 may allocate inside its (moving) heap (`typed_array_max_size_in_heap`). */
const ON_HEAP_MAX = 64;

/**
 * Open oneDNN once (cached). Returns null, never throws, when `--allow-ffi` is missing, no
 * `libdnnl.so.2` opens, or its version is not a 2.x; {@link dnnlLoadError} says which.
 */
export function loadDnnl(): Dnnl | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function") {
    loadError = "Deno.dlopen is unavailable";
    return null;
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    loadError = "no --allow-ffi permission";
    return null;
  }
  try {
    if (envVar("OMP_WAIT_POLICY") === undefined) Deno.env.set("OMP_WAIT_POLICY", "PASSIVE");
  } catch {
    // no --allow-env: OpenMP keeps its default wait policy
  }
  const path = envVar("MTIL_DNNL_LIB") || "libdnnl.so.2";
  let lib: Lib;
  try {
    lib = Deno.dlopen(path, SYMBOLS).symbols;
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0];
    loadError = msg.includes("undefined symbol")
      ? `${path} lacks the oneDNN 2.x API (${msg}); oneDNN 3.x is not supported yet`
      : `${path} did not open (install libdnnl2 or set MTIL_DNNL_LIB): ${msg}`;
    return null;
  }
  const vp = lib.dnnl_version();
  if (vp === null) {
    loadError = `${path}: dnnl_version() returned null`;
    return null;
  }
  const view = new Deno.UnsafePointerView(vp);
  const major = view.getInt32(0), minor = view.getInt32(4), patch = view.getInt32(8);
  const version = `${major}.${minor}.${patch}`;
  if (major !== SUPPORTED_MAJOR) {
    loadError = `${path} is oneDNN ${version}; only the 2.x API is supported`;
    return null;
  }
  try {
    gomp = Deno.dlopen("libgomp.so.1", {
      omp_set_num_threads: { parameters: ["i32"], result: "void" },
      omp_get_max_threads: { parameters: [], result: "i32" },
    }).symbols as unknown as GompLib;
  } catch {
    gomp = null;
  }
  try {
    cached = create(lib, path, version);
  } catch (e) {
    loadError = `${path} (oneDNN ${version}): ${(e as Error).message.split("\n")[0]}`;
    cached = null;
  }
  return cached;
}

function create(lib: Lib, path: string, version: string): Dnnl {
  const check = (st: number, what: string) => {
    if (st !== 0) throw new Error(`oneDNN ${what} failed (dnnl_status ${st})`);
  };
  const outPtr = new BigUint64Array(1);
  const ptrOut = (): Ptr => Deno.UnsafePointer.create(outPtr[0]);
  check(lib.dnnl_engine_create(outPtr, ENG_CPU, 0n), "engine_create");
  const engine = ptrOut();
  check(lib.dnnl_stream_create(outPtr, engine, 1), "stream_create");
  const stream = ptrOut();
  const ALLOCATE = Deno.UnsafePointer.create(0xffffffffffffffffn);

  const dims = (v: readonly number[]) => {
    const d = new BigInt64Array(12);
    for (let i = 0; i < v.length; i++) d[i] = BigInt(v[i]);
    return d;
  };
  const mdCache = new Map<string, MemoryDesc>();
  const md = (shape: readonly number[], tag: number): MemoryDesc => {
    const key = `${shape.join(",")}:${tag}`;
    let m = mdCache.get(key);
    if (!m) {
      m = new Uint8Array(MD_BYTES);
      check(lib.dnnl_memory_desc_init_by_tag(m, shape.length, dims(shape), F32, tag), "md");
      mdCache.set(key, m);
    }
    return m;
  };
  const mdStrided = (shape: readonly number[], strides: readonly number[]): MemoryDesc => {
    const key = `${shape.join(",")}/${strides.join(",")}`;
    let m = mdCache.get(key);
    if (!m) {
      m = new Uint8Array(MD_BYTES);
      check(
        lib.dnnl_memory_desc_init_by_strides(m, shape.length, dims(shape), F32, dims(strides)),
        "md_strides",
      );
      mdCache.set(key, m);
    }
    return m;
  };
  const memCreate = (mdp: Ptr, handle: Ptr): Ptr => {
    check(lib.dnnl_memory_create(outPtr, mdp, engine, handle), "memory_create");
    return ptrOut();
  };
  const pd = (
    desc: Uint8Array,
    hint: Ptr = null,
    postOps: readonly PostOp[] = [],
    scales: readonly ArgScale[] = [],
  ): Ptr => {
    if (postOps.length === 0 && scales.length === 0) {
      check(
        lib.dnnl_primitive_desc_create(outPtr, Deno.UnsafePointer.of(desc), null, engine, hint),
        "primitive_desc",
      );
      return ptrOut();
    }
    check(lib.dnnl_post_ops_create(outPtr), "post_ops_create");
    const ops = ptrOut();
    check(lib.dnnl_primitive_attr_create(outPtr), "primitive_attr_create");
    const attr = ptrOut();
    try {
      for (const op of postOps) {
        if ("sum" in op) check(lib.dnnl_post_ops_append_sum(ops, op.sum), "post_ops_append_sum");
        else if ("binary" in op) {
          check(lib.dnnl_post_ops_append_binary(ops, op.binary, op.md), "append_binary");
        } else {
          check(
            lib.dnnl_post_ops_append_eltwise(ops, 1, op.eltwise, op.alpha ?? 0, op.beta ?? 0),
            "append_eltwise",
          );
        }
      }
      check(lib.dnnl_primitive_attr_set_post_ops(attr, ops), "attr_set_post_ops");
      for (const sc of scales) {
        const v = new Float32Array([sc.scale]);
        check(lib.dnnl_primitive_attr_set_scales(attr, sc.arg, 1n, 0, v), "attr_set_scales");
      }
      check(
        lib.dnnl_primitive_desc_create(outPtr, Deno.UnsafePointer.of(desc), attr, engine, hint),
        "primitive_desc",
      );
      return ptrOut();
    } finally {
      // the primitive descriptor keeps its own copy of the attributes
      lib.dnnl_primitive_attr_destroy(attr);
      lib.dnnl_post_ops_destroy(ops);
    }
  };
  const prim = (p: Ptr): Ptr => {
    check(lib.dnnl_primitive_create(outPtr, p), "primitive_create");
    return ptrOut();
  };
  const query = (p: Ptr, q: number): Ptr => lib.dnnl_primitive_desc_query_md(p, q, 0);
  const implName = (p: Ptr): string => {
    const out = new BigUint64Array(1);
    check(lib.dnnl_primitive_desc_query(p, QUERY_IMPL_INFO_STR, 0, out), "query impl_info_str");
    const s = Deno.UnsafePointer.create(out[0]);
    return s === null ? "" : Deno.UnsafePointerView.getCString(s);
  };
  const argsBuf = (list: [number, Ptr][]) => {
    const a = new Uint8Array(16 * list.length);
    const dv = new DataView(a.buffer);
    list.forEach(([k, m], i) => {
      dv.setInt32(16 * i, k, true);
      dv.setBigUint64(16 * i + 8, BigInt(Deno.UnsafePointer.value(m)), true);
    });
    return a;
  };
  const exec = (p: Ptr, a: Uint8Array) => {
    check(lib.dnnl_primitive_execute(p, stream, a.length / 16, a), "execute");
  };
  const sizeOf = (m: Ptr) => Number(lib.dnnl_memory_desc_get_size(m));

  const build: DnnlRaw["build"] = (p, user, keep, opts = {}) => {
    keep.push(p);
    const main = prim(p);
    const userMems: Slot[] = [];
    const mainArgs: [number, Ptr][] = [];
    const before: { p: Ptr; a: Uint8Array }[] = [];
    const after: { p: Ptr; a: Uint8Array }[] = [];
    const slotBytes: number[] = [];
    for (const u of user) {
      keep.push(u.md);
      const um = Deno.UnsafePointer.of(u.md);
      const mem = memCreate(um, null);
      userMems.push({ arg: u.arg, mem });
      slotBytes.push(sizeOf(um));
      const want = query(p, u.query);
      if (want === null || lib.dnnl_memory_desc_equal(um, want)) {
        mainArgs.push([u.arg, mem]);
        continue;
      }
      const inner = memCreate(want, ALLOCATE);
      mainArgs.push([u.arg, inner]);
      const [src, dst] = u.out ? [want, um] : [um, want];
      check(
        lib.dnnl_reorder_primitive_desc_create(outPtr, src, engine, dst, engine, null),
        "reorder_pd",
      );
      const r = prim(ptrOut());
      const a = argsBuf(
        u.out ? [[ARG.src, inner], [ARG.dst, mem]] : [[ARG.src, mem], [
          ARG.dst,
          inner,
        ]],
      );
      (u.out ? after : before).push({ p: r, a });
    }
    const bound = new Set(user.map((u) => u.arg));
    for (const s of opts.shared ?? []) {
      mainArgs.push([s.arg, s.mem]);
      bound.add(s.arg);
    }
    const owned = new Map<number, Ptr>();
    const own = (arg: number, m: Ptr) => {
      const mem = memCreate(m, ALLOCATE);
      mainArgs.push([arg, mem]);
      owned.set(arg, mem);
      bound.add(arg);
    };
    for (const o of opts.owned ?? []) {
      const m = query(p, o.query);
      if (m === null || sizeOf(m) === 0) {
        throw new Error(`oneDNN primitive has no memory for ${o.arg}`);
      }
      own(o.arg, m);
    }
    for (const [arg, q] of [[ARG.scratchpad, QUERY.scratchpad], [ARG.workspace, QUERY.workspace]]) {
      if (bound.has(arg)) continue;
      const m = query(p, q);
      if (m !== null && sizeOf(m) > 0) own(arg, m);
    }
    const mainBuf = argsBuf(mainArgs);
    keep.push(mainBuf, before, after);
    return {
      slotBytes,
      owned,
      run(arrays) {
        if (arrays.length !== userMems.length) {
          throw new Error(`oneDNN primitive takes ${userMems.length} arrays, got ${arrays.length}`);
        }
        // V8 may keep typed arrays of ≤ 64 bytes inside the JS heap, where the GC moves them:
        // those go through an off-heap copy (copied back afterwards, for outputs).
        let small: [Float32Array, Float32Array][] | null = null;
        for (let i = 0; i < arrays.length; i++) {
          let a = arrays[i];
          if (a.byteLength < slotBytes[i]) {
            throw new Error(`oneDNN argument ${i}: ${a.byteLength} bytes, needs ${slotBytes[i]}`);
          }
          if (a.byteLength <= ON_HEAP_MAX) {
            const copy = new Float32Array(new ArrayBuffer(Math.max(4, a.byteLength)));
            copy.set(a);
            (small ??= []).push([a, copy]);
            a = copy;
          }
          check(
            lib.dnnl_memory_set_data_handle(userMems[i].mem, Deno.UnsafePointer.of(a)),
            "set_data_handle",
          );
        }
        for (const r of before) exec(r.p, r.a);
        exec(main, mainBuf);
        for (const r of after) exec(r.p, r.a);
        check(lib.dnnl_stream_wait(stream), "stream_wait");
        if (small) { for (const [orig, copy] of small) orig.set(copy.subarray(0, orig.length)); }
      },
    };
  };

  const prims = new Map<string, Primitive>();
  /** Objects oneDNN holds raw pointers into (descriptors, argument buffers): never collected. */
  const keepAlive: unknown[] = [];
  const reorderPd = (src: MemoryDesc, dst: MemoryDesc): Ptr => {
    check(
      lib.dnnl_reorder_primitive_desc_create(
        outPtr,
        Deno.UnsafePointer.of(src),
        engine,
        Deno.UnsafePointer.of(dst),
        engine,
        null,
      ),
      "reorder",
    );
    return ptrOut();
  };
  const raw: DnnlRaw = {
    lib,
    pd,
    reorderPd,
    query,
    implName,
    build: (p, user, keep, opts) => build(p, user, keep, opts),
    dims,
    desc: () => new Uint8Array(DESC_BYTES),
    check,
  };
  return {
    version,
    path,
    md,
    mdStrided,
    cached(key, make) {
      let p = prims.get(key);
      if (!p) {
        p = make();
        prims.set(key, p);
      }
      return p;
    },
    raw: {
      ...raw,
      build: (p, user, keep, opts) => {
        const r = build(p, user, keep, opts);
        keepAlive.push(keep);
        return r;
      },
    },
  };
}

/** Softmax algorithm constant (exported for the kernel module). */
export const SOFTMAX_ALG = SOFTMAX_ACCURATE;

/**
 * A binary primitive over `n` contiguous values (`src1` of `n1` ∈ {1, n} values, broadcast when
 * 1) with post-ops (not cached; wrap in {@link Dnnl.cached}). User arrays:
 * `[src0, src1, dst, ...the operands of the binary post-ops in order]`.
 */
export function flatBinary(
  d: Dnnl,
  n: number,
  alg: number,
  n1: number,
  postOps: readonly PostOp[],
): Primitive {
  const m = d.md([n], TAG.a), m1 = d.md([n1], TAG.a);
  const desc = d.raw.desc();
  d.raw.check(d.raw.lib.dnnl_binary_desc_init(desc, alg, m, m1, m), "binary_desc_init");
  const pd = d.raw.pd(desc, null, postOps);
  const user: { arg: number; md: MemoryDesc; query: number }[] = [
    { arg: ARG.src, md: m, query: 0 },
    { arg: ARG.src1, md: m1, query: 0 },
    { arg: ARG.dst, md: m, query: 0 },
  ];
  postOps.forEach((op, i) => {
    if ("binary" in op) user.push({ arg: postOpSrc1(i), md: op.md, query: 0 });
  });
  return d.raw.build(pd, user, [desc]);
}
