/**
 * A small pool of Web Workers answering request/response messages, used by the batch loader to
 * decode and transform images off the main thread.
 *
 * Protocol: every request is an object to which the pool adds a numeric `id`; the worker must
 * answer with an object carrying the same `id` (and, on failure, `error: string`). Requests go
 * to the worker with the fewest requests in flight. {@linkcode WorkerPool.close} terminates
 * every worker and rejects what is still pending, so no operation outlives the pool.
 *
 * @example
 * ```ts ignore
 * import { WorkerPool } from "./pool.ts";
 * await using pool = new WorkerPool({ size: 2 });
 * const res = await pool.request({ transform, items });
 * ```
 *
 * @module
 */

/** Options of {@linkcode WorkerPool}. */
export interface WorkerPoolOptions {
  /** Number of workers (default `navigator.hardwareConcurrency`, at least 1). */
  size?: number;
  /** Worker module (default: the image worker `./worker.ts`). */
  url?: string | URL;
  /** Name prefix of the workers (shown in stack traces). */
  name?: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (reason: Error) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** Default worker count: the number of logical cores (at least 1). */
export function defaultWorkerCount(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/** A fixed-size pool of module workers with request/response messaging. */
export class WorkerPool {
  /** Number of workers. */
  readonly size: number;
  readonly #url: string;
  readonly #name: string;
  readonly #slots: Slot[] = [];
  #nextId = 1;
  #closed = false;

  /** Start `size` workers running `url`. */
  constructor(opts: WorkerPoolOptions = {}) {
    const size = opts.size ?? defaultWorkerCount();
    if (!Number.isInteger(size) || size < 1 || size > 256) {
      throw new RangeError(`WorkerPool: size must be an integer in [1, 256], got ${size}`);
    }
    this.size = size;
    this.#url = String(opts.url ?? new URL("./worker.ts", import.meta.url));
    this.#name = opts.name ?? "mtil-worker";
    for (let i = 0; i < size; i++) this.#slots.push(this.#spawn(i));
  }

  #spawn(index: number): Slot {
    const worker = new Worker(this.#url, { type: "module", name: `${this.#name}-${index}` });
    const slot: Slot = { worker, pending: new Map() };
    worker.onmessage = (e: MessageEvent) => {
      const msg = e.data as { id?: number; error?: string };
      const p = msg && typeof msg.id === "number" ? slot.pending.get(msg.id) : undefined;
      if (!p) return;
      slot.pending.delete(msg.id!);
      if (typeof msg.error === "string") p.reject(new Error(msg.error));
      else p.resolve(msg);
    };
    const fail = (reason: string) => {
      const err = new Error(`${this.#name}-${index} failed: ${reason}`);
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
      worker.terminate();
      // Replace the dead worker so the pool keeps its size.
      if (!this.#closed) this.#slots[index] = this.#spawn(index);
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      fail(e.message || "uncaught error");
    };
    worker.onmessageerror = () => fail("a message could not be deserialised");
    return slot;
  }

  /** Whether {@linkcode WorkerPool.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Requests in flight, over all workers. */
  get inFlight(): number {
    return this.#slots.reduce((n, s) => n + s.pending.size, 0);
  }

  /**
   * Send `payload` (plus a fresh `id`) to the least busy worker; `transfer` lists buffers to
   * move rather than copy. Resolves with the worker's answer; rejects with its `error`.
   */
  request<T = unknown>(payload: object, transfer: Transferable[] = []): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("WorkerPool: the pool is closed"));
    let slot = this.#slots[0];
    for (const s of this.#slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      slot.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        slot.worker.postMessage({ ...payload, id }, transfer);
      } catch (e) {
        slot.pending.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** Terminate every worker; pending requests reject. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const err = new Error("WorkerPool: closed while a request was pending");
    for (const s of this.#slots) {
      for (const p of s.pending.values()) p.reject(err);
      s.pending.clear();
      s.worker.terminate();
    }
    return Promise.resolve();
  }

  /** `await using pool = new WorkerPool()` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
