/**
 * Fuzz suite of the dataset readers: tar and zip extraction, IDX, MAT, CIFAR pickles, images
 * and their transforms, the loader. Generated inputs must give a result or a clear error naming
 * the file, within a time bound, leaving no partial output; the known blow-ups run in a child
 * process under a memory watchdog.
 */
import { zipSync } from "fflate";
import {
  assertIsolated,
  expectClear,
  fuzzStats,
  isIsolatedChild,
  isolatedMain,
  matElement,
  matFile,
  matMatrix,
  mutate,
  pngBytes,
  Rng,
  type WorstCase,
  zeroBombZip,
} from "../clip/_fuzz.ts";
import { preprocessImage } from "../clip/images/preprocess.ts";
import { extractArchive, extractTarStream, extractZipFile } from "./archive.ts";
import { parseCifarBatch, parseCifarMeta } from "./cifar.ts";
import { FileDataset } from "./image_folder.ts";
import { parseIdx } from "./idx.ts";
import { batches } from "./loader.ts";
import { matToJs, parseMat } from "./mat.ts";
import { decodeAndTransform, evalTransform, trainTransform } from "./transforms.ts";
import { listFiles, makeTar, type TarEntrySpec } from "./_testing.ts";

const HERE = new URL(".", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;

/** `name` must not exist, or be an empty directory: nothing of a failed extraction is left. */
async function assertNoOutput(dir: string, what: string): Promise<void> {
  let files: string[] = [];
  try {
    files = await listFiles(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (files.length) throw new Error(`${what}: partial output left: ${files.slice(0, 5)}`);
}

function tarStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (let o = 0; o < bytes.length; o += 700) c.enqueue(bytes.slice(o, o + 700));
      c.close();
    },
  });
}

const WORST: Record<string, WorstCase> = {
  // issue case 5: a 200-byte .mat whose field-less struct array has 2·10⁸ elements
  "mat-struct-no-fields": {
    names: "s.mat",
    run: () => {
      const four = new Uint8Array(4);
      new DataView(four.buffer).setInt32(0, 4, true);
      const mat = matFile(
        matMatrix(2, [1, 200_000_000], "s", matElement(5, four), matElement(1, new Uint8Array(0))),
      );
      if (mat.length > 300) throw new Error(`s.mat: fixture of ${mat.length} bytes`);
      return parseMat(mat, "s.mat");
    },
  },
  // issue case 5: a char array with dims [10⁸, 0]
  "mat-char-empty-rows": {
    names: "c.mat",
    run: () =>
      parseMat(
        matFile(matMatrix(4, [100_000_000, 0], "c", matElement(16, new Uint8Array(0)))),
        "c.mat",
      ),
  },
  // an empty numeric [10⁸, 0]: a valid file; converting it must not loop over 10⁸ rows
  "mat-numeric-empty-rows": {
    run: () => {
      const v = parseMat(
        matFile(matMatrix(6, [100_000_000, 0], "n", matElement(9, new Uint8Array(0)))),
        "n.mat",
      );
      return JSON.stringify(matToJs(v.get("n")!));
    },
  },
  // issue case 4: a 100000×1 PNG and a 1×20000 PNG preprocessed at 224 px
  "png-100000x1-at-224": { run: () => preprocessImage(pngBytes(100_000, 1), 224).then(() => "ok") },
  "png-1x20000-at-224": { run: () => preprocessImage(pngBytes(1, 20_000), 224).then(() => "ok") },
  "png-100000x1-eval-transform": {
    run: () => decodeAndTransform(evalTransform(224), pngBytes(100_000, 1)).then(() => "ok"),
  },
  "png-100000x1-train-transform": {
    run: () =>
      decodeAndTransform(trainTransform(224), pngBytes(100_000, 1), 3).then((r) =>
        `${r.width}×${r.height}`
      ),
  },
  // 10⁸ pixels: past the decode limit (PIL's 89 megapixels)
  "png-10000x10000-decode": {
    run: () => preprocessImage(pngBytes(10_000, 10_000), 224).then(() => "ok"),
  },
  // issue case 7: a zip bomb (a 2 GB entry in ~2 MB) extracted by streaming, and one whose
  // directory understates the size
  "zip-bomb-lying-size": {
    names: "lie.zip",
    run: async () => {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeFile(`${dir}/lie.zip`, zeroBombZip("big.bin", 64 << 20, 1 << 20));
        return await extractZipFile(`${dir}/lie.zip`, `${dir}/out`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  },
  "zip-bomb-limit": {
    names: "bomb.zip",
    run: async () => {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeFile(`${dir}/bomb.zip`, zeroBombZip("big.bin", 1 << 20, 2 ** 31));
        return await extractZipFile(`${dir}/bomb.zip`, `${dir}/out`, { maxEntryBytes: 1 << 30 });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  },
  "zip-bomb-streamed-512mb": {
    run: async () => {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeFile(`${dir}/ok.zip`, zeroBombZip("big.bin", 512 << 20));
        const r = await extractZipFile(`${dir}/ok.zip`, `${dir}/out`);
        return `${r.bytes} bytes`;
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  },
  // issue case 11: a FIFO and a missing file in an image folder
  "fifo-and-missing-in-folder": {
    run: async () => {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeFile(`${dir}/good.png`, pngBytes(8, 8));
        const mk = await new Deno.Command("mkfifo", { args: [`${dir}/fifo.png`] }).output();
        if (!mk.success) return "mkfifo unavailable";
        const ds = new FileDataset({
          name: "F",
          split: "test",
          classnames: ["a"],
          templates: ["{}"],
          items: [`good.png`, `fifo.png`, `missing.png`].map((p) => ({
            path: `${dir}/${p}`,
            label: 0,
          })),
        });
        let kept = 0;
        const skipped: string[] = [];
        for await (
          const b of batches(ds, {
            batchSize: 3,
            workers: 0,
            transform: evalTransform(8),
            skipBad: true,
            onSkip: (s) => skipped.push(s.error),
          })
        ) {
          kept += b.labels.shape[0];
          b.images.dispose();
          b.labels.dispose();
        }
        if (kept !== 1 || skipped.length !== 2) {
          throw new Error(`F: kept ${kept}, skipped ${skipped}`);
        }
        if (!skipped.some((s) => /not a regular file/.test(s))) throw new Error(`F: ${skipped}`);
        // without skipBad: an error naming the file
        try {
          for await (
            const b of batches(ds, { batchSize: 3, workers: 0, transform: evalTransform(8) })
          ) {
            b.images.dispose();
            b.labels.dispose();
          }
        } catch (e) {
          if (!/fifo\.png|missing\.png/.test((e as Error).message)) throw e;
          return `skipped 2; ${(e as Error).message.slice(0, 120)}`;
        }
        throw new Error("F: no error without skipBad");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  },
};

if (isIsolatedChild()) await isolatedMain(WORST);

Deno.test("fuzz worst cases (child process, ≤ 1.5 GB, seconds each): datasets", async () => {
  // the streamed extraction runs alone below, under a tighter memory bound
  const names = Object.keys(WORST).filter((n) => n !== "zip-bomb-streamed-512mb");
  const r = await assertIsolated(SELF, names, {
    timeoutMs: 120_000,
    caseLimitMs: 15_000,
  });
  const expectError: Record<string, RegExp> = {
    "mat-struct-no-fields": /without fields is implausible/,
    "mat-char-empty-rows": /empty rows/,
    "png-100000x1-at-224": /aspect ratio too extreme/,
    "png-1x20000-at-224": /aspect ratio too extreme/,
    "png-100000x1-eval-transform": /aspect ratio too extreme/,
    "png-10000x10000-decode": /pixel|exceeds/i,
    "zip-bomb-lying-size": /inflates past its declared/,
    "zip-bomb-limit": /exceeds the per-entry limit/,
  };
  for (const [name, re] of Object.entries(expectError)) {
    const c = r.get(name)!;
    if (c.outcome !== "error" || !re.test(c.message)) {
      throw new Error(`${name}: expected an error matching ${re}, got ${c.outcome}: ${c.message}`);
    }
  }
  const ok: Record<string, RegExp> = {
    "mat-numeric-empty-rows": /^\[\]$/,
    "png-100000x1-train-transform": /^224×224$/,
    "fifo-and-missing-in-folder": /skipped 2|mkfifo unavailable/,
  };
  for (const [name, re] of Object.entries(ok)) {
    const c = r.get(name)!;
    if (c.outcome !== "ok" || !re.test(c.message)) {
      throw new Error(`${name}: expected a result matching ${re}, got ${c.outcome}: ${c.message}`);
    }
  }
});

Deno.test("fuzz: streaming zip extraction stays small (a 512 MB entry under 450 MB resident)", async () => {
  const r = await assertIsolated(SELF, ["zip-bomb-streamed-512mb"], {
    maxRssMiB: 450,
    timeoutMs: 60_000,
    caseLimitMs: 30_000,
  });
  const c = r.get("zip-bomb-streamed-512mb")!;
  if (c.outcome !== "ok" || c.message !== "536870912 bytes") {
    throw new Error(`streamed extraction: ${c.outcome}: ${c.message}`);
  }
});

Deno.test("fuzz: pax size fields are validated; a failed extraction leaves nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let k = 0;
    for (const size of ["abc", "-5", "1e3", "", " 12", "0x10", "99999999999999999999", "NaN"]) {
      const tar = makeTar([
        { name: "ok.txt", data: "fine" },
        { name: "pax", type: "x", data: paxRecord("size", size) },
        { name: "big.bin", data: "x".repeat(10) },
      ]);
      const out = `${dir}/o${k++}`;
      const err = await expectClear(
        () => extractTarStream(tarStream(tar), out, "pax.tar", { maxTotalBytes: 1000 }),
        "pax.tar",
        `pax size=${size}`,
      );
      if (!err || !/pax/.test(err.message)) throw new Error(`size=${size}: ${err?.message}`);
      await assertNoOutput(out, `pax size=${size}`);
    }
    // malformed records
    for (const rec of ["abc size=1\n", "5 size=1\n", "999 size=1\n", "12 nokey\n"]) {
      const tar = makeTar([{ name: "pax", type: "x", data: rec }, { name: "f", data: "x" }]);
      await expectClear(
        () => extractTarStream(tarStream(tar), `${dir}/p${k++}`, "rec.tar"),
        "rec.tar",
        `pax record ${JSON.stringify(rec)}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

Deno.test("fuzz: extractArchive leaves no partial output; existing files stay", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good: TarEntrySpec[] = [
      { name: "d/", type: "5" },
      { name: "d/a.txt", data: "a" },
      { name: "d/b.txt", data: "b".repeat(600) },
    ];
    const tar = makeTar(good);
    const bad = tar.slice(0, 512 * 4 + 100); // header of b.txt, then truncated data
    await Deno.writeFile(`${dir}/bad.tar`, bad);
    await Deno.mkdir(`${dir}/dest`);
    await Deno.writeTextFile(`${dir}/dest/keep.txt`, "mine");
    await expectClear(
      () => extractArchive(`${dir}/bad.tar`, `${dir}/dest`),
      "bad.tar",
      "trunc tar",
    );
    const left = await listFiles(`${dir}/dest`);
    if (left.join() !== "keep.txt") throw new Error(`partial output: ${left}`);
    // zip: CRC error in the second entry; conflicts (file then dir of the same name); symlinks
    const z = zipSync({
      "a.txt": [new Uint8Array(50), { level: 0 }],
      "b.txt": [new Uint8Array(90).fill(7), { level: 0 }],
    });
    const flipped = z.slice();
    flipped[30 + 5 + 50 + 30 + 5 + 3] ^= 1;
    await Deno.writeFile(`${dir}/crc.zip`, flipped);
    const e1 = await expectClear(
      () => extractArchive(`${dir}/crc.zip`, `${dir}/zout`),
      "crc.zip",
      "crc",
    );
    if (!/CRC-32 mismatch/.test(e1?.message ?? "")) throw new Error(`crc: ${e1?.message}`);
    await assertNoOutput(`${dir}/zout`, "crc zip");
    await Deno.writeFile(
      `${dir}/conflict.zip`,
      zipSync({ "x": new Uint8Array(3), "x/y": new Uint8Array(3) }),
    );
    const e2 = await expectClear(
      () => extractArchive(`${dir}/conflict.zip`, `${dir}/cout`),
      "conflict.zip",
      "conflict",
    );
    if (!/entry x\/y/.test(e2?.message ?? "")) throw new Error(`conflict: ${e2?.message}`);
    await assertNoOutput(`${dir}/cout`, "conflict zip");
    await Deno.writeFile(
      `${dir}/link.zip`,
      zipSync({
        "l": [new TextEncoder().encode("/etc/passwd"), { os: 3, attrs: (0o120777 << 16) >>> 0 }],
        "f": new Uint8Array(2),
      }),
    );
    const r = await extractArchive(`${dir}/link.zip`, `${dir}/lout`);
    if (r.skipped.join() !== "l (symbolic link)" || r.files !== 1) {
      throw new Error(`symlink: ${JSON.stringify(r)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: mutated tar and zip archives: a result or a clear error, never partial output", async () => {
  const rng = new Rng(21);
  const dir = await Deno.makeTempDir();
  try {
    const tar = makeTar([
      { name: "x/", type: "5" },
      { name: "x/a.txt", data: "hello" },
      { name: "././@LongLink", type: "L", data: "x/" + "long".repeat(40) + "\0" },
      { name: "ignored", data: "long name file" },
      { name: "pax", type: "x", data: paxRecord("path", "x/p.txt") },
      { name: "p", data: "pax path" },
      { name: "x/link", type: "2", linkname: "../../etc" },
      { name: "x/b.bin", data: rng.bytes(700) },
    ]);
    for (let i = 0; i < 300; i++) {
      const out = `${dir}/t${i}`;
      const err = await expectClear(
        () =>
          extractTarStream(tarStream(mutate(tar, rng)), out, "m.tar", { maxTotalBytes: 1 << 20 }),
        "m.tar",
        `tar mutant ${i}`,
        3000,
      );
      if (err) await assertNoOutput(out, `tar mutant ${i}`);
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
    const zip = zipSync({
      "d/a.txt": [new TextEncoder().encode("zip ".repeat(200)), { level: 6 }],
      "d/b.bin": [rng.bytes(400), { level: 0 }],
      "d/": new Uint8Array(0),
    });
    for (let i = 0; i < 300; i++) {
      const out = `${dir}/z${i}`;
      await Deno.writeFile(`${dir}/m.zip`, mutate(zip, rng));
      const err = await expectClear(
        () => extractZipFile(`${dir}/m.zip`, out),
        "m.zip",
        `zip mutant ${i}`,
        3000,
      );
      if (err) await assertNoOutput(out, `zip mutant ${i}`);
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: mutated IDX, MAT and CIFAR files: a result or a clear error naming the file", async () => {
  const rng = new Rng(22);
  // IDX: 3 images of 2×2 uint8, plain and gzipped
  const idx = Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2, ...rng.bytes(12)]);
  for (let i = 0; i < 600; i++) {
    const m = mutate(idx, rng);
    await expectClear(() => parseIdx(m, "m.idx"), "m.idx", `idx mutant ${i}`, 2000);
  }
  for (
    const f of ["cars_annos.mat", "cars_meta.mat", "imagelabels.mat", "mixed.mat", "setid.mat"]
  ) {
    const seed = await Deno.readFile(`${HERE}testdata/${f}`);
    for (let i = 0; i < 150; i++) {
      const m = mutate(seed, rng);
      await expectClear(
        () => {
          for (const v of parseMat(m, "m.mat").values()) matToJs(v);
        },
        "m.mat",
        `${f} mutant ${i}`,
        3000,
      );
    }
  }
  const cifar: [string, (b: Uint8Array) => unknown][] = [
    ["cifar-10-batches-py/data_batch_1", (b) => parseCifarBatch(b, "m.cifar", "labels")],
    ["cifar-10-batches-py/batches.meta", (b) => parseCifarMeta(b, "m.cifar", "label_names")],
    ["cifar-100-python/test", (b) => parseCifarBatch(b, "m.cifar", "fine_labels")],
    ["cifar-100-python/meta", (b) => parseCifarMeta(b, "m.cifar", "fine_label_names")],
    ["py2_cifar_batch", (b) => parseCifarBatch(b, "m.cifar", "labels")],
  ];
  for (const [f, parse] of cifar) {
    const seed = await Deno.readFile(`${HERE}testdata/${f}`);
    for (let i = 0; i < 150; i++) {
      const m = mutate(seed, rng);
      await expectClear(() => parse(m), "m.cifar", `${f} mutant ${i}`, 2000);
    }
  }
});

Deno.test("fuzz: mutated and extreme-size images: a transformed image or a clear error", async () => {
  const rng = new Rng(23);
  const seeds = [pngBytes(9, 7), pngBytes(1, 1)];
  try {
    seeds.push(await Deno.readFile(`${HERE}../../shared/fixtures/clip/img102.jpg`));
  } catch {
    console.warn("fuzz: ../shared absent; JPEG seed skipped");
  }
  for (const seed of seeds) {
    for (let i = 0; i < 120; i++) {
      const m = mutate(seed, rng);
      await expectClear(
        () => decodeAndTransform(evalTransform(16), m),
        undefined,
        `image mutant ${i}`,
        3000,
      );
    }
  }
  for (const [w, h] of [[1, 1], [1, 3000], [3000, 1], [5000, 2], [2, 5000]]) {
    for (const spec of [evalTransform(32), trainTransform(32)]) {
      await expectClear(
        () => decodeAndTransform(spec, pngBytes(w, h), 1),
        undefined,
        `${w}×${h}`,
        3000,
      );
    }
  }
});

Deno.test("fuzz: the number of inputs tried (datasets)", () => {
  console.log(`fuzz datasets: ${fuzzStats.tried} inputs tried`);
});
