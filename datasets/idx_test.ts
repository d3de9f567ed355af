import { assert, assertEquals, assertRejects, assertThrows } from "./_testing.ts";
import { gzipSync } from "fflate";
import { IdxFormatError, IdxImageDataset, parseIdx, readIdx } from "./idx.ts";
import { isDecoded } from "./types.ts";

function idxBytes(code: number, shape: number[], body: Uint8Array): Uint8Array {
  const head = new Uint8Array(4 + 4 * shape.length);
  const v = new DataView(head.buffer);
  head[2] = code;
  head[3] = shape.length;
  shape.forEach((n, i) => v.setUint32(4 + 4 * i, n, false));
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

Deno.test("parseIdx reads uint8 and big-endian int32/float32, plain and gzipped", () => {
  const u8 = idxBytes(0x08, [2, 3], Uint8Array.from([1, 2, 3, 4, 5, 255]));
  const a = parseIdx(u8);
  assertEquals(a.dtype, "uint8");
  assertEquals(a.shape, [2, 3]);
  assertEquals(Array.from(a.data), [1, 2, 3, 4, 5, 255]);
  assertEquals(Array.from(parseIdx(gzipSync(u8), "x.gz").data), [1, 2, 3, 4, 5, 255]);

  const body = new Uint8Array(8);
  const dv = new DataView(body.buffer);
  dv.setInt32(0, -7, false);
  dv.setInt32(4, 1 << 20, false);
  assertEquals(Array.from(parseIdx(idxBytes(0x0c, [2], body)).data), [-7, 1 << 20]);
  dv.setFloat32(0, 1.5, false);
  dv.setFloat32(4, -0.25, false);
  const f = parseIdx(idxBytes(0x0d, [2], body));
  assertEquals(f.dtype, "float32");
  assertEquals(Array.from(f.data), [1.5, -0.25]);
});

Deno.test("parseIdx rejects broken files naming file and offset", () => {
  const good = idxBytes(0x08, [2, 3], new Uint8Array(6));
  const e1 = assertThrows(() => parseIdx(good.subarray(0, 15), "t.idx"), IdxFormatError);
  assert(e1.message.startsWith("t.idx: truncated IDX data"), e1.message);
  assert(e1.message.includes("at byte 15"), e1.message);
  const bad = good.slice();
  bad[2] = 0x42;
  assertThrows(() => parseIdx(bad, "t.idx"), IdxFormatError, "t.idx: unknown IDX type code 0x42");
  const bad2 = good.slice();
  bad2[0] = 1;
  assertThrows(() => parseIdx(bad2, "t.idx"), IdxFormatError, "bad IDX magic");
  assertThrows(
    () => parseIdx(good.subarray(0, 6), "t.idx"),
    IdxFormatError,
    "truncated IDX header",
  );
  const extra = new Uint8Array(good.length + 1);
  extra.set(good);
  assertThrows(() => parseIdx(extra, "t.idx"), IdxFormatError, "1 trailing bytes");
  // gzip: corrupt deflate stream and size bound
  const gz = gzipSync(good);
  const corrupt = gz.slice();
  corrupt.fill(0xff, 10, gz.length - 8);
  assertThrows(() => parseIdx(corrupt, "c.gz"), IdxFormatError, "c.gz: corrupt gzip stream");
  assertThrows(() => parseIdx(gz, "c.gz", { maxBytes: 10 }), IdxFormatError, "exceeds the limit");
  // huge declared shape must not allocate
  const huge = idxBytes(0x08, [100000, 100000, 100], new Uint8Array(0));
  assertThrows(
    () => parseIdx(huge, "h", { maxBytes: 1 << 20 }),
    IdxFormatError,
    "exceeds the limit",
  );
});

Deno.test("IdxImageDataset replicates gray to RGB and checks labels", async () => {
  const images = parseIdx(idxBytes(0x08, [2, 1, 2], Uint8Array.from([10, 20, 30, 40])));
  const labels = parseIdx(idxBytes(0x08, [2], Uint8Array.from([1, 0])));
  const ds = new IdxImageDataset(images, labels, {
    name: "T",
    split: "train",
    classnames: ["a", "b"],
    templates: ["{}"],
  });
  assertEquals(ds.length, 2);
  const ex = await ds.get(1);
  assertEquals(ex.label, 0);
  assert(isDecoded(ex.image));
  assertEquals(Array.from(ex.image.data), [30, 30, 30, 40, 40, 40]);
  assertEquals([ex.image.width, ex.image.height], [2, 1]);
  await assertRejects(() => ds.get(2), RangeError);
  const badLabels = parseIdx(idxBytes(0x08, [2], Uint8Array.from([1, 5])));
  assertThrows(
    () =>
      new IdxImageDataset(images, badLabels, {
        name: "T",
        split: "train",
        classnames: ["a", "b"],
        templates: [],
      }),
    Error,
    "label 5 of item 1 outside [0, 2)",
  );
});

const FMNIST = "/usr/share/datasets/fashion-mnist";
let hasFmnist = false;
try {
  hasFmnist = Deno.statSync(`${FMNIST}/t10k-images-idx3-ubyte.gz`).isFile;
} catch { /* absent */ }

Deno.test({
  name: "readIdx: real Fashion-MNIST test set (Debian dataset-fashion-mnist)",
  ignore: !hasFmnist,
  fn: async () => {
    const im = await readIdx(`${FMNIST}/t10k-images-idx3-ubyte.gz`);
    const lb = await readIdx(`${FMNIST}/t10k-labels-idx1-ubyte.gz`);
    assertEquals(im.shape, [10000, 28, 28]);
    assertEquals(lb.shape, [10000]);
    // Pixel sums computed independently with numpy.
    const px = im.data as Uint8Array;
    const sum = (i: number) => px.subarray(i * 784, (i + 1) * 784).reduce((s, v) => s + v, 0);
    assertEquals([lb.data[0], sum(0)], [9, 33456]);
    assertEquals([lb.data[1], sum(1)], [2, 100994]);
    assertEquals([lb.data[9999], sum(9999)], [5, 24390]);
  },
});
