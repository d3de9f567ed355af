/**
 * Recycled output arrays for the native CPU backends (`cpu-blas`, `cpu-dnnl`).
 *
 * A JS `new Float32Array(n)` is zero-filled memory: on a fresh mapping the kernel's page faults
 * zero it, on a reused heap chunk `calloc` does. The kernels then overwrite every value, so that
 * zeroing is pure overhead — about 10% of an RN50 training step's CPU time (`clear_page_erms`,
 * `memset`, page faults in `perf`), and freed arrays wait for V8's garbage collector before the
 * memory can be used again. PyTorch's allocator hands out uninitialised memory.
 *
 * {@link HostPool.alloc} returns a disposed tensor's array of the same length when one is free
 * (contents undefined: only for outputs a kernel writes completely), else a new one. An array
 * goes back to the pool when the last tensor holding it (or a view of its buffer) is disposed,
 * and never if it was ever handed out of the backend (`dataSync`, `data`, `arraySync`, moving to
 * another backend): user code may hold those arrays after disposing the tensor. Arrays that
 * callers passed in (`tf.tensor(values)`) are never recycled. The pool keeps at most
 * {@link HOST_POOL_MAX_BYTES} of free arrays.
 *
 * Written by hand: tfjs's cpu backend has no allocator hook.
 *
 * @module
 */
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";

/**
 * Upper bound on the bytes of free arrays a pool keeps; past it the longest-unused arrays are
 * dropped first (so arrays of a previous model's shapes do not linger).
 */
export const HOST_POOL_MAX_BYTES = 256 * 2 ** 20;
/** Arrays below this many values are not pooled (allocation is cheap; bookkeeping is not). */
export const HOST_POOL_MIN = 4096;

type DataId = object;
interface Entry {
  values?: unknown;
}

/** A pool attached to one backend instance. */
export class HostPool {
  #free = new Map<number, Float32Array[]>();
  /** Every free array, oldest release first (eviction order). */
  #order = new Set<Float32Array>();
  #freeBytes = 0;
  /** Buffers this pool allocated (the only ones it may recycle). */
  #ours = new WeakSet<ArrayBufferLike>();
  /** Tensor data entries holding each of our buffers (whole array or a view). */
  #holders = new WeakMap<ArrayBufferLike, number>();
  /** Buffers whose contents left the backend: never recycled. */
  #exposed = new WeakSet<ArrayBufferLike>();
  /** Statistics: arrays served from the pool and newly allocated. */
  readonly stats = { reused: 0, allocated: 0 };

  /**
   * A float32 array of `n` values for a kernel output that the kernel overwrites completely
   * (recycled arrays hold old values).
   */
  alloc(n: number): Float32Array {
    if (n < HOST_POOL_MIN) return new Float32Array(n);
    const list = this.#free.get(n);
    const a = list?.pop();
    if (a) {
      this.#order.delete(a);
      this.#freeBytes -= a.byteLength;
      this.stats.reused++;
      return a;
    }
    const b = new Float32Array(n);
    this.#ours.add(b.buffer);
    this.stats.allocated++;
    return b;
  }

  /** Bytes of free arrays held. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /** Drop every free array (the garbage collector reclaims them). */
  clear(): void {
    this.#free.clear();
    this.#order.clear();
    this.#freeBytes = 0;
  }

  #hold(values: unknown): void {
    if (!(values instanceof Float32Array) || !this.#ours.has(values.buffer)) return;
    this.#holders.set(values.buffer, (this.#holders.get(values.buffer) ?? 0) + 1);
  }

  #expose(values: unknown): void {
    if (values instanceof Float32Array && this.#ours.has(values.buffer)) {
      this.#exposed.add(values.buffer);
    }
  }

  #release(values: unknown): void {
    if (!(values instanceof Float32Array) || !this.#ours.has(values.buffer)) return;
    const buf = values.buffer;
    const n = (this.#holders.get(buf) ?? 1) - 1;
    if (n > 0) {
      this.#holders.set(buf, n);
      return;
    }
    this.#holders.delete(buf);
    if (this.#exposed.has(buf) || buf.byteLength > HOST_POOL_MAX_BYTES) return;
    while (this.#freeBytes + buf.byteLength > HOST_POOL_MAX_BYTES) this.#evictOldest();
    const whole = new Float32Array(buf);
    let list = this.#free.get(whole.length);
    if (!list) this.#free.set(whole.length, list = []);
    list.push(whole);
    this.#order.add(whole);
    this.#freeBytes += buf.byteLength;
  }

  #evictOldest(): void {
    const old = this.#order.values().next().value as Float32Array;
    this.#order.delete(old);
    const list = this.#free.get(old.length)!;
    list.splice(list.indexOf(old), 1);
    if (list.length === 0) this.#free.delete(old.length);
    this.#freeBytes -= old.byteLength;
  }

  /**
   * Track `backend`'s data: wraps its `write`, `move`, `disposeData`, `readSync` and `read`
   * (idempotent per backend instance).
   */
  attach(backend: MathBackendCPU): void {
    const b = backend as unknown as {
      [POOL]?: HostPool;
      data: { get(id: DataId): Entry | undefined; has(id: DataId): boolean };
      write(values: unknown, shape: number[], dtype: string): DataId;
      move(id: DataId, values: unknown, shape: number[], dtype: string, refCount: number): void;
      disposeData(id: DataId, force?: boolean): boolean;
      readSync(id: DataId): unknown;
      read(id: DataId): Promise<unknown>;
    };
    if (b[POOL]) return;
    b[POOL] = this;
    const { write, move, disposeData, readSync, read } = b;
    // (DataStorage.get of an id another backend holds *moves* the data here: ask has() first)
    const valuesOf = (id: DataId) => b.data.has(id) ? b.data.get(id)?.values : undefined;
    b.write = (values, shape, dtype) => {
      const id = write.call(b, values, shape, dtype);
      this.#hold(values);
      return id;
    };
    b.move = (id, values, shape, dtype, refCount) => {
      move.call(b, id, values, shape, dtype, refCount);
      this.#hold(values);
    };
    b.disposeData = (id, force) => {
      const values = valuesOf(id);
      const gone = disposeData.call(b, id, force);
      if (gone && values !== undefined && !b.data.has(id)) this.#release(values);
      return gone;
    };
    b.readSync = (id) => {
      this.#expose(valuesOf(id));
      return readSync.call(b, id);
    };
    b.read = (id) => {
      this.#expose(valuesOf(id));
      return read.call(b, id);
    };
  }
}

const POOL = Symbol("mtil.hostPool");

/** The pool attached to `backend`, or undefined. */
export function hostPoolOf(backend: unknown): HostPool | undefined {
  return (backend as { [POOL]?: HostPool })[POOL];
}

/**
 * A float32 output array for a kernel that writes all of it: recycled through the backend's
 * pool when it has one, else new.
 */
export function allocOutput(backend: unknown, n: number): Float32Array {
  const p = hostPoolOf(backend);
  return p ? p.alloc(n) : new Float32Array(n);
}
