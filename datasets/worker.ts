/**
 * The image worker of the batch loader: decodes (when given encoded bytes) and transforms a
 * chunk of images, answering with one normalised HWC `Float32Array` per image (transferred, not
 * copied). Loaded by {@linkcode WorkerPool}; the same {@linkcode processChunk} runs on the main
 * thread when the loader is asked for no workers.
 *
 * @module
 */
import { decodeAndTransform, type TransformSpec } from "./transforms.ts";
import type { DecodedImage } from "./types.ts";

/** One image to process. */
export interface ChunkItem {
  /** Decoded RGB image or encoded file bytes. */
  image: DecodedImage | Uint8Array;
  /** Seed of the item's random crop (train transform). */
  seed: number;
}

/** A request: transform every item of a chunk with one spec. */
export interface ChunkRequest {
  /** The transform to apply. */
  transform: TransformSpec;
  /** The images. */
  items: ChunkItem[];
}

/** The outcome for one item: its pixels, or the error message that stopped it. */
export type ChunkResult =
  | { ok: true; data: Float32Array; width: number; height: number }
  | { ok: false; error: string };

/** The answer to a {@linkcode ChunkRequest}, in item order. */
export interface ChunkResponse {
  /** Per-item outcomes. */
  results: ChunkResult[];
}

/**
 * Process a chunk: per-item failures (corrupt images…) are reported per item, never thrown, so
 * one bad file does not lose the rest of the chunk.
 */
export async function processChunk(req: ChunkRequest): Promise<ChunkResponse> {
  const results: ChunkResult[] = [];
  for (const item of req.items) {
    try {
      const r = await decodeAndTransform(req.transform, item.image, item.seed);
      results.push({ ok: true, data: r.data, width: r.width, height: r.height });
    } catch (e) {
      results.push({ ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  }
  return { results };
}

/** Buffers of a response to transfer back to the main thread. */
export function responseTransfers(res: ChunkResponse): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const r of res.results) {
    if (r.ok && r.data.buffer instanceof ArrayBuffer) out.push(r.data.buffer);
  }
  return out;
}

interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(msg: unknown, transfer?: Transferable[]): void;
}

// Only wire up message handling inside a worker (the module is also imported on the main thread).
if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined") {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = async (e: MessageEvent) => {
    const { id, ...req } = e.data as ChunkRequest & { id: number };
    try {
      const res = await processChunk(req);
      scope.postMessage({ id, ...res }, responseTransfers(res));
    } catch (err) {
      scope.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
    }
  };
}
