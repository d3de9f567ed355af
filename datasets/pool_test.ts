import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { WorkerPool } from "./pool.ts";
import { evalTransform, normalizeImage } from "./transforms.ts";
import type { ChunkRequest, ChunkResponse } from "./worker.ts";

/** A worker module as a data: URL (echo after `ms` milliseconds; "crash" throws uncaught). */
const ECHO = "data:application/javascript," + encodeURIComponent(`
self.onmessage = (e) => {
  const { id, op, ms, value } = e.data;
  if (op === "crash") setTimeout(() => { throw new Error("boom"); }, 0);
  else if (op === "fail") self.postMessage({ id, error: "failed on purpose" });
  else setTimeout(() => self.postMessage({ id, value, name: self.name }), ms ?? 0);
};`);

Deno.test("pool: the image worker transforms a chunk and transfers the result", async () => {
  await using pool = new WorkerPool({ size: 2 });
  assertEquals(pool.size, 2);
  const img = { data: new Uint8Array(6 * 6 * 3).fill(200), width: 6, height: 6 };
  const req: ChunkRequest = {
    transform: evalTransform(3),
    items: [{ image: img, seed: 0 }, { image: new Uint8Array([1, 2, 3]), seed: 0 }],
  };
  const res = await pool.request<ChunkResponse>(req);
  assertEquals(res.results.length, 2);
  const [ok, bad] = res.results;
  assert(ok.ok && ok.width === 3 && ok.height === 3);
  const want = normalizeImage({ data: new Uint8Array(27).fill(200), width: 3, height: 3 });
  assertEquals(ok.data, want);
  assert(!bad.ok && /decode/.test(bad.error), JSON.stringify(bad));
});

Deno.test("pool: spreads requests, answers by id, and reports worker errors", async () => {
  const pool = new WorkerPool({ size: 3, url: ECHO, name: "echo" });
  try {
    const slow = pool.request<{ value: number }>({ value: 1, ms: 30 });
    const fast = Array.from(
      { length: 5 },
      (_, i) => pool.request<{ value: number; name: string }>({ value: 10 + i }),
    );
    assertEquals(pool.inFlight, 6);
    const got = await Promise.all(fast);
    assertEquals(got.map((r) => r.value), [10, 11, 12, 13, 14]);
    assertEquals(new Set(got.map((r) => r.name)).size, 3); // least-busy dispatch uses every worker
    assertEquals((await slow).value, 1);
    await assertRejects(() => pool.request({ op: "fail" }), /failed on purpose/);
    // An uncaught error kills the worker: its pending requests reject, a new worker takes over.
    await assertRejects(() => pool.request({ op: "crash", value: 0 }), /echo-\d failed: .*boom/);
    const after = await Promise.all(
      [1, 2, 3, 4].map((v) => pool.request<{ value: number }>({ value: v })),
    );
    assertEquals(after.map((r) => r.value), [1, 2, 3, 4]);
  } finally {
    await pool.close();
  }
});

Deno.test("pool: close rejects pending requests and later ones; no op survives", async () => {
  const pool = new WorkerPool({ size: 1, url: ECHO });
  const pending = pool.request({ value: 1, ms: 10_000 });
  await pool.close();
  await assertRejects(() => pending, /closed while a request was pending/);
  await assertRejects(() => pool.request({ value: 2 }), /pool is closed/);
  assert(pool.closed);
  await pool.close(); // idempotent
  assertThrows(() => new WorkerPool({ size: 0 }), RangeError);
});
