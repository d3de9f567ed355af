import { gzipSync, zipSync } from "fflate";
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects, listFiles, makeTar, tempDir } from "./_testing.ts";
import { COMPLETE_MARKER, downloadDataset, isComplete, md5File } from "./download.ts";
import type { DatasetSource } from "./sources.ts";
import { isAutoDownload, manualSteps, SOURCES } from "./sources.ts";
import { IMAGE_DATASETS } from "./registry.ts";

const enc = new TextEncoder();
const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

interface Served {
  base: string;
  requests: { path: string; range: string | null }[];
  /** Paths whose next response is cut after this many bytes. */
  cut: Map<string, number>;
  close(): Promise<void>;
}

/** A tiny static server on 127.0.0.1 with Range support and injectable interruptions. */
function serve(files: Record<string, Uint8Array>): Served {
  const requests: Served["requests"] = [];
  const cut = new Map<string, number>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    requests.push({ path, range });
    const body = files[path];
    if (!body) return new Response("not found", { status: 404 });
    let start = 0;
    let status = 200;
    const headers = new Headers({ "accept-ranges": "bytes" });
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      if (start >= body.length) return new Response(null, { status: 416 });
      status = 206;
      headers.set("content-range", `bytes ${start}-${body.length - 1}/${body.length}`);
    }
    const slice = body.subarray(start);
    headers.set("content-length", String(slice.length));
    const limit = cut.get(path);
    if (limit !== undefined) {
      cut.delete(path);
      const stream = new ReadableStream<Uint8Array>({
        start(ctl) {
          ctl.enqueue(slice.slice(0, limit));
        },
        async pull(ctl) {
          // Let the first chunk reach the client, then end the body short of its content-length.
          await new Promise((r) => setTimeout(r, 50));
          ctl.close();
        },
      });
      return new Response(stream, { status, headers });
    }
    return new Response(slice.slice(), { status, headers });
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    requests,
    cut,
    close: () => server.shutdown(),
  };
}

function fixtures() {
  const big = new Uint8Array(200_000).map((_, i) => (i * 31 + (i >> 8)) & 255);
  const tgz = gzipSync(
    makeTar([
      { name: "toy/", type: "5" },
      { name: "toy/a.txt", data: "alpha" },
      { name: "toy/sub/big.bin", data: big },
    ]),
    { level: 0 }, // keep it large enough to cut mid-way
  );
  const zip = zipSync({
    "2750/Forest/Forest_1.jpg": enc.encode("jpeg"),
    "2750/River/River_1.jpg": enc.encode("r"),
  });
  const mat = enc.encode("MATLAB 5.0 MAT-file stand-in");
  return { big, tgz, zip, mat };
}

function toySources(
  base: string,
  f: ReturnType<typeof fixtures>,
  badMd5 = false,
): Record<string, DatasetSource> {
  return {
    Toy: {
      home: "toy-home",
      files: [
        {
          url: `${base}/toy.tar.gz`,
          fileName: "toy.tar.gz",
          md5: md5(f.tgz),
          extract: { kind: "tar.gz", strip: "toy" },
        },
        {
          url: `${base}/e.zip`,
          fileName: "e.zip",
          md5: badMd5 ? "0".repeat(32) : md5(f.zip),
          extract: { kind: "zip" },
        },
        {
          url: `${base}/labels.mat`,
          fileName: "labels.mat",
          extract: { kind: "none", into: "raw" },
        },
      ],
    },
    Manual: { home: "m", manual: "put it at {root}/m" },
  };
}

const quiet = { progress: false, retries: 0, retryDelayMs: 1, log: () => {} };

Deno.test("downloadDataset: download -> extract -> marker; rerun is a no-op", async () => {
  const f = fixtures();
  const srv = serve({ "/toy.tar.gz": f.tgz, "/e.zip": f.zip, "/labels.mat": f.mat });
  const root = await tempDir();
  try {
    const r = await downloadDataset("Toy", { ...quiet, root, sources: toySources(srv.base, f) });
    assertEquals(r.status, "downloaded");
    assertEquals(r.home, `${root}/toy-home`);
    assert(await isComplete(r.home));
    assertEquals(
      await listFiles(r.home),
      [
        COMPLETE_MARKER,
        "2750/Forest/Forest_1.jpg",
        "2750/River/River_1.jpg",
        "a.txt",
        "raw/labels.mat",
        "sub/big.bin",
      ].sort(),
    );
    assertEquals(await Deno.readFile(`${r.home}/sub/big.bin`), f.big);
    const marker = JSON.parse(await Deno.readTextFile(`${r.home}/${COMPLETE_MARKER}`));
    assertEquals(marker.dataset, "Toy");
    // archives removed, no temp folders left
    assertEquals((await listFiles(root)).filter((p) => !p.startsWith("toy-home/")), []);
    const n = srv.requests.length;
    const again = await downloadDataset("Toy", {
      ...quiet,
      root,
      sources: toySources(srv.base, f),
    });
    assertEquals(again.status, "present");
    assertEquals(srv.requests.length, n);
  } finally {
    await srv.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("downloadDataset: interrupted transfer leaves no marker; the re-run resumes with Range", async () => {
  const f = fixtures();
  const srv = serve({ "/toy.tar.gz": f.tgz, "/e.zip": f.zip, "/labels.mat": f.mat });
  const root = await tempDir();
  try {
    const half = Math.floor(f.tgz.length / 2);
    srv.cut.set("/toy.tar.gz", half);
    await assertRejects(
      () => downloadDataset("Toy", { ...quiet, root, sources: toySources(srv.base, f) }),
      Error,
      "toy.tar.gz",
    );
    assert(!(await isComplete(`${root}/toy-home`)));
    let homeExists = true;
    try {
      await Deno.stat(`${root}/toy-home`);
    } catch {
      homeExists = false;
    }
    assert(!homeExists, "an interrupted download must not create the dataset folder");
    const part = await Deno.stat(`${root}/.downloads/Toy/toy.tar.gz.part`);
    assertEquals(part.size, half);

    const r = await downloadDataset("Toy", { ...quiet, root, sources: toySources(srv.base, f) });
    assertEquals(r.status, "downloaded");
    const resumed = srv.requests.filter((q) => q.path === "/toy.tar.gz");
    assertEquals(resumed.map((q) => q.range), [null, `bytes=${half}-`]);
    assertEquals(await Deno.readFile(`${r.home}/sub/big.bin`), f.big);
  } finally {
    await srv.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("downloadDataset: md5 mismatch, existing unmarked folder, --force, manual steps", async () => {
  const f = fixtures();
  const srv = serve({
    "/toy.tar.gz": f.tgz,
    "/e.zip": f.zip,
    "/labels.mat": f.mat,
    "/cut.tar.gz": f.tgz.subarray(0, f.tgz.length - 5000),
  });
  const root = await tempDir();
  try {
    await assertRejects(
      () => downloadDataset("Toy", { ...quiet, root, sources: toySources(srv.base, f, true) }),
      Error,
      "md5 mismatch",
    );
    assert(!(await isComplete(`${root}/toy-home`)));

    await Deno.mkdir(`${root}/toy-home`);
    await Deno.writeTextFile(`${root}/toy-home/stale.txt`, "old");
    await assertRejects(
      () => downloadDataset("Toy", { ...quiet, root, sources: toySources(srv.base, f) }),
      Error,
      "has no .complete marker",
    );
    const r = await downloadDataset("Toy", {
      ...quiet,
      root,
      force: true,
      sources: toySources(srv.base, f),
    });
    assertEquals(r.status, "downloaded");
    assert(!(await listFiles(r.home)).includes("stale.txt"));

    // A download that passes (no checksum pinned) but fails to extract leaves nothing behind.
    const broken: Record<string, DatasetSource> = {
      Broken: {
        home: "broken-home",
        files: [{
          url: `${srv.base}/cut.tar.gz`,
          fileName: "cut.tar.gz",
          extract: { kind: "tar.gz" },
        }],
      },
    };
    await assertRejects(
      () => downloadDataset("Broken", { ...quiet, root, sources: broken }),
      Error,
      "cut.tar.gz",
    );
    const top: string[] = [];
    for await (const e of Deno.readDir(root)) top.push(e.name);
    assertEquals(top.filter((n) => n.startsWith(".tmp-") || n === "broken-home"), []);

    const m = await downloadDataset("Manual", { ...quiet, root, sources: toySources(srv.base, f) });
    assertEquals([m.status, m.manual], ["manual", `put it at ${root}/m`]);
    await assertRejects(
      () => downloadDataset("Nope", { ...quiet, root }),
      Error,
      "unknown dataset",
    );
  } finally {
    await srv.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("sources: every registry dataset has a download or manual steps; md5s are hex", async () => {
  for (const name of [...IMAGE_DATASETS, "conceptual_captions"]) {
    assert(
      isAutoDownload(name) || manualSteps(name) !== null,
      `${name} has neither download nor steps`,
    );
  }
  for (
    const name of [
      "CIFAR10",
      "CIFAR100",
      "MNIST",
      "FashionMNIST",
      "DTD",
      "Flowers",
      "Food",
      "OxfordPet",
      "Aircraft",
      "EuroSAT",
      "Caltech101",
    ]
  ) {
    assert(isAutoDownload(name), `${name} should download automatically`);
  }
  for (const s of Object.values(SOURCES)) {
    for (const f of s.files ?? []) if (f.md5) assert(/^[0-9a-f]{32}$/.test(f.md5), f.url);
  }
  assert(manualSteps("ImageNet", "/d")!.includes("/d/ImageNet/train"));
  const tmp = await tempDir();
  await Deno.writeTextFile(`${tmp}/x`, "abc");
  assertEquals(await md5File(`${tmp}/x`), "900150983cd24fb0d6963f7d28e17f72");
  await Deno.remove(tmp, { recursive: true });
});
