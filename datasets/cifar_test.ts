import { assert, assertEquals, assertRejects, assertThrows } from "./_testing.ts";
import { parseCifarBatch, readCifar } from "./cifar.ts";
import { isDecoded } from "./types.ts";

// Fixtures: datasets/testdata/make_fixtures.py (python3 pickle protocol 2, numpy arrays).
const TD = new URL("./testdata", import.meta.url).pathname;

/** Expected pixel of fixture image k at (y, x), as make_fixtures.py draws it. */
function px(k: number, y: number, x: number): number[] {
  return [(k * 31 + y * 7 + x) % 256, (k * 17 + y) % 256, (x * 8) % 256];
}

Deno.test("readCifar CIFAR10: five train batches, meta names, CHW -> interleaved RGB", async () => {
  const tr = await readCifar(TD, "CIFAR10", "train");
  assertEquals(tr.length, 5);
  assertEquals(tr.classnames.slice(0, 3), ["airplane", "automobile", "bird"]);
  assertEquals([0, 1, 2, 3, 4].map((i) => tr.labelOf(i)), [0, 1, 2, 3, 4]);
  const ex = await tr.get(3);
  assert(isDecoded(ex.image));
  assertEquals([ex.image.width, ex.image.height], [32, 32]);
  for (const [y, x] of [[0, 0], [5, 9], [31, 31]]) {
    const o = 3 * (y * 32 + x);
    assertEquals(Array.from(ex.image.data.subarray(o, o + 3)), px(3, y, x));
  }
  const te = await readCifar(TD, "CIFAR10", "test");
  assertEquals([te.length, te.labelOf(0)], [1, 5]);
});

Deno.test("readCifar CIFAR100: fine labels and name mapping", async () => {
  const tr = await readCifar(TD, "CIFAR100", "train", { mapNames: (s) => s.replaceAll("_", " ") });
  assertEquals(tr.length, 2);
  assertEquals([tr.labelOf(0), tr.labelOf(1)], [41, 99]);
  assertEquals(tr.classnames[41], "lawn mower");
  const ex = await tr.get(1);
  assert(isDecoded(ex.image));
  assertEquals(Array.from(ex.image.data.subarray(0, 3)), px(20, 0, 0));
  const te = await readCifar(TD, "CIFAR100", "test");
  assertEquals(te.labelOf(0), 42);
  await assertRejects(() => te.get(2), RangeError);
});

Deno.test("CIFAR: broken pickles and wrong shapes name the file", async () => {
  const good = await Deno.readFile(`${TD}/cifar-10-batches-py/data_batch_1`);
  const e = assertThrows(() => parseCifarBatch(good.subarray(0, 200), "b1", "labels"));
  assert(e.message.includes("b1"), e.message);
  assertThrows(
    () => parseCifarBatch(good, "b1", "fine_labels"),
    Error,
    'b1: missing key "fine_labels"',
  );
  await assertRejects(() => readCifar("/nonexistent", "CIFAR10", "train"), Deno.errors.NotFound);
});

Deno.test("parseCifarBatch: the Python 2 cPickle form of the real CIFAR files", async () => {
  // py2 str keys and raw data as a py2 str (see make_fixtures.py); Python 3 reads it only with
  // encoding="latin1", as torchvision does.
  const b = parseCifarBatch(await Deno.readFile(`${TD}/py2_cifar_batch`), "py2", "labels");
  assertEquals(b.labels, [7]);
  assertEquals(Array.from(b.data.subarray(0, 5)), [0, 7, 14, 21, 28]);
  assertEquals(b.data[3071], (3071 * 7) % 256);
});
