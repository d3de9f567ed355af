import { assert, assertEquals, assertThrows } from "./_testing.ts";
import { loadMat, MatFormatError, matNumbers, matToJs, matVar, parseMat } from "./mat.ts";

// Fixtures written by scipy.io.savemat: datasets/testdata/make_fixtures.py.
const TD = new URL("./testdata/", import.meta.url).pathname;

Deno.test("loadMat: Flowers-style imagelabels.mat / setid.mat (plain and compressed)", async () => {
  const labels = await loadMat(`${TD}imagelabels.mat`);
  assertEquals(matNumbers(labels, "labels", "imagelabels.mat"), [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
  const setid = await loadMat(`${TD}setid.mat`);
  assertEquals(matToJs(matVar(setid, "trnid", "setid.mat")), [1, 4, 7]);
  assertEquals(matToJs(matVar(setid, "valid", "setid.mat")), [2, 5, 8]);
  const t = matVar(setid, "tstid", "setid.mat");
  assertEquals(t.kind === "numeric" && t.class, "uint8");
  assertEquals(matToJs(t), [3, 6, 9, 10]);
});

Deno.test("loadMat: Stanford-Cars-style cell of char and struct array", async () => {
  const meta = await loadMat(`${TD}cars_meta.mat`);
  assertEquals(matToJs(matVar(meta, "class_names", "m")), [
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "smart fortwo Convertible 2012",
  ]);
  const annos = matToJs(matVar(await loadMat(`${TD}cars_annos.mat`), "annotations", "a"));
  assert(Array.isArray(annos));
  assertEquals(annos.length, 4);
  assertEquals(annos[0], {
    bbox_x1: 39,
    bbox_y1: 116,
    bbox_x2: 569,
    bbox_y2: 375,
    class: 3,
    fname: "00001.jpg",
  });
  assertEquals(annos[3], {
    bbox_x1: 621,
    bbox_y1: 393,
    bbox_x2: 1484,
    bbox_y2: 1096,
    class: 3,
    fname: "00004.jpg",
  });
});

Deno.test("loadMat: matrices, logical, int32, char rows, nested cells, struct, unicode", async () => {
  const v = await loadMat(`${TD}mixed.mat`);
  assertEquals(matToJs(v.get("m")!), [[1, 2, 3], [4, 5, 6]]);
  assertEquals(matToJs(v.get("flag")!), [true, false]);
  assertEquals(matToJs(v.get("neg")!), [-5, 7]);
  assertEquals(matToJs(v.get("rows")!), ["ab", "cd"]);
  assertEquals(matToJs(v.get("cell")!), ["abc", [1.5, -2.5]]);
  assertEquals(matToJs(v.get("s")!), { a: 42, b: "hi" });
  assertEquals(matToJs(v.get("unicode")!), "héllo");
});

Deno.test("parseMat: broken files fail with file name and offset", async () => {
  const good = await Deno.readFile(`${TD}cars_meta.mat`);
  assertThrows(
    () => parseMat(good.subarray(0, 100), "x.mat"),
    MatFormatError,
    "x.mat: file shorter",
  );
  for (const cut of [140, 200, good.length - 5]) {
    const e = assertThrows(() => parseMat(good.subarray(0, cut), "x.mat"), MatFormatError);
    assert(e.message.startsWith("x.mat: "), e.message);
    assert(/at byte \d+/.test(e.message), e.message);
  }
  const noMark = good.slice();
  noMark[126] = 0x41;
  assertThrows(() => parseMat(noMark, "x.mat"), MatFormatError, "IM/MI endian mark");
  const v73 = good.slice();
  v73.set(new TextEncoder().encode("MATLAB 7.3 MAT-file"), 0);
  assertThrows(() => parseMat(v73, "x.mat"), MatFormatError, "v7.3");
  // Corrupt the zlib stream of a compressed file.
  const comp = (await Deno.readFile(`${TD}cars_annos.mat`)).slice();
  comp.fill(0xaa, 140, 180);
  assertThrows(() => parseMat(comp, "c.mat"), MatFormatError, "c.mat: ");
  // Inflation bound.
  const e = assertThrows(
    () => parseMat(Deno.readFileSync(`${TD}cars_annos.mat`), "c.mat", { maxInflatedBytes: 64 }),
    MatFormatError,
    "past the limit",
  );
  assert(e.message.includes("at byte 128"), e.message);
  // A dimension lie: claim more values than the data holds.
  const lie = Deno.readFileSync(`${TD}imagelabels.mat`).slice();
  const view = new DataView(lie.buffer);
  // first element: tag(8) flags(16) dims tag(8) rows(4) cols(4) → cols at 128+8+16+8+4
  view.setInt32(128 + 8 + 16 + 8 + 4, 11, true);
  assertThrows(() => parseMat(lie, "l.mat"), MatFormatError, "need 11");
});
