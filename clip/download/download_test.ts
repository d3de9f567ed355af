import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import { createHash } from "node:crypto";
import { cachedDownload, downloadFile, sha256File } from "./download.ts";
import { cacheDir, cachePath } from "./cache.ts";

const DATA = (() => {
  const d = new Uint8Array(300_000);
  let s = 7;
  for (let i = 0; i < d.length; i++) d[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return d;
})();
const SHA = createHash("sha256").update(DATA).digest("hex");

interface Mode {
  ignoreRange?: boolean;
  interruptFirst?: boolean;
  corrupt?: boolean;
}

/** A local HTTP server on 127.0.0.1 (port 0) serving DATA; records the Range headers seen. */
function startServer(mode: Mode) {
  const ranges: (string | null)[] = [];
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    requests++;
    const range = req.headers.get("range");
    ranges.push(range);
    const body = mode.corrupt ? DATA.slice() : DATA;
    if (mode.corrupt) body[1234] ^= 1;
    let start = 0;
    const m = range && !mode.ignoreRange ? /bytes=(\d+)-/.exec(range) : null;
    if (m) start = Number(m[1]);
    if (start >= body.length) return new Response(null, { status: 416 });
    const slice = body.subarray(start);
    const headers: Record<string, string> = { "content-length": String(slice.length) };
    if (m) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    const cut = mode.interruptFirst && requests === 1;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        if (cut) {
          c.enqueue(slice.slice(0, 100_000));
          c.close(); // ends the body short of its Content-Length: the client sees a cut transfer
        } else {
          c.enqueue(slice.slice());
          c.close();
        }
      },
    });
    return new Response(stream, { status: m ? 206 : 200, headers });
  });
  const addr = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${addr.port}/models/tiny.bin`,
    ranges,
    close: () => server.shutdown(),
  };
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const fast = { progress: false, retryDelayMs: 10 };

Deno.test("downloadFile: plain download with sha256 check", async () => {
  const s = startServer({});
  await withDir(async (dir) => {
    await downloadFile(s.url, `${dir}/f.bin`, { ...fast, sha256: SHA });
    deepStrictEqual(await Deno.readFile(`${dir}/f.bin`), DATA);
    deepStrictEqual(s.ranges, [null]);
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["f.bin"]);
  });
  await s.close();
});

Deno.test("downloadFile: interrupted transfer resumes with Range", async () => {
  const s = startServer({ interruptFirst: true });
  await withDir(async (dir) => {
    await downloadFile(s.url, `${dir}/f.bin`, { ...fast, sha256: SHA });
    deepStrictEqual(await Deno.readFile(`${dir}/f.bin`), DATA);
    equal(s.ranges.length, 2);
    equal(s.ranges[0], null);
    ok(/^bytes=\d+-$/.test(s.ranges[1]!) && s.ranges[1] !== "bytes=0-", String(s.ranges[1]));
  });
  await s.close();
});

Deno.test("downloadFile: resumes an existing .part file", async () => {
  const s = startServer({});
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/f.bin.part`, DATA.subarray(0, 123_456));
    await downloadFile(s.url, `${dir}/f.bin`, { ...fast, sha256: SHA });
    deepStrictEqual(s.ranges, ["bytes=123456-"]);
    deepStrictEqual(await Deno.readFile(`${dir}/f.bin`), DATA);
  });
  await s.close();
});

Deno.test("downloadFile: server ignoring Range → restart from zero", async () => {
  const s = startServer({ ignoreRange: true });
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/f.bin.part`, new Uint8Array(5000).fill(9)); // stale garbage
    await downloadFile(s.url, `${dir}/f.bin`, { ...fast, sha256: SHA });
    deepStrictEqual(s.ranges, ["bytes=5000-"]);
    deepStrictEqual(await Deno.readFile(`${dir}/f.bin`), DATA);
  });
  await s.close();
});

Deno.test("downloadFile: corrupted content → sha256 error, nothing left", async () => {
  const s = startServer({ corrupt: true });
  await withDir(async (dir) => {
    await rejects(
      () => downloadFile(s.url, `${dir}/f.bin`, { ...fast, sha256: SHA }),
      new RegExp(`sha256 mismatch for .*tiny\\.bin: expected ${SHA}, got [0-9a-f]{64}`),
    );
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  });
  await s.close();
});

Deno.test("cachedDownload: downloads once, then uses the cache; offline error says where", async () => {
  const s = startServer({});
  await withDir(async (dir) => {
    const opts = {
      url: s.url,
      fileName: "tiny.bin",
      sha256: SHA,
      cacheDir: `${dir}/c`,
      progress: false,
    };
    const p = await cachedDownload(opts);
    equal(p, `${dir}/c/tiny.bin`);
    equal(await sha256File(p), SHA);
    await cachedDownload(opts);
    equal(s.ranges.length, 1); // second call served from the cache
    await s.close();
    // Offline (server gone) and no cached copy: the error names the file and where to put it.
    await rejects(
      () =>
        cachedDownload({
          ...opts,
          fileName: "other.bin",
          download: { retries: 1, retryDelayMs: 5 },
        }),
      (e: Error) =>
        e.message.includes(`put it at ${dir}/c/other.bin (sha256 ${SHA})`) &&
        e.message.includes(s.url) && e.message.includes("MTIL_CACHE"),
    );
  });
});

Deno.test("cacheDir: override, MTIL_CACHE, HOME default", () => {
  equal(cacheDir("/x/y/"), "/x/y");
  const prev = Deno.env.get("MTIL_CACHE");
  try {
    Deno.env.set("MTIL_CACHE", "/tmp/mtil-cache-test");
    equal(cacheDir(), "/tmp/mtil-cache-test");
    equal(cachePath("a.pt"), "/tmp/mtil-cache-test/a.pt");
    Deno.env.delete("MTIL_CACHE");
    const xdg = Deno.env.get("XDG_CACHE_HOME");
    equal(cacheDir(), xdg ? `${xdg}/mtil` : `${Deno.env.get("HOME")}/.cache/mtil`);
  } finally {
    if (prev === undefined) Deno.env.delete("MTIL_CACHE");
    else Deno.env.set("MTIL_CACHE", prev);
  }
});
