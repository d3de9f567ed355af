import { assertEquals, assertRejects, tempDir } from "./_testing.ts";
import {
  codePointCompare,
  FileDataset,
  hasImageExtension,
  readLines,
  scanImageFolder,
  SubsetDataset,
  walkSorted,
} from "./image_folder.ts";

async function put(path: string): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, path);
}

Deno.test("scanImageFolder follows torchvision: sorted classes, sorted os.walk, extensions", async () => {
  const root = await tempDir();
  for (
    const p of [
      "b/z.jpg",
      "b/a.PNG",
      "b/notes.txt",
      "b/sub/c.jpeg",
      "b/sub b/d.jpg", // "sub b" < "sub" + "/…"? os.walk sorts by path: "b/sub" < "b/sub b"
      "a/x.webp",
      "B/upper.jpg",
    ]
  ) await put(`${root}/${p}`);
  const scan = await scanImageFolder(root);
  assertEquals(scan.classes, ["B", "a", "b"]);
  assertEquals(
    scan.items.map((i) => [i.path.slice(root.length + 1), i.label]),
    [
      ["B/upper.jpg", 0],
      ["a/x.webp", 1],
      ["b/a.PNG", 2],
      ["b/z.jpg", 2],
      ["b/sub/c.jpeg", 2],
      ["b/sub b/d.jpg", 2],
    ],
  );
  await put(`${root}/empty/readme.md`);
  await assertRejects(() => scanImageFolder(root), Error, "class folder holds no image files");
  const ds = new FileDataset({
    name: "T",
    split: "test",
    classnames: ["B", "a", "b"],
    templates: [],
    items: scan.items,
  });
  const ex = await ds.get(1);
  assertEquals(new TextDecoder().decode(ex.image as Uint8Array), `${root}/a/x.webp`);
  assertEquals(ex.path, `${root}/a/x.webp`);
  const sub = new SubsetDataset(ds, [5, 0]);
  assertEquals([sub.length, sub.labelOf(0), (await sub.get(1)).path], [
    2,
    2,
    `${root}/B/upper.jpg`,
  ]);
  await Deno.remove(`${root}/a/x.webp`);
  await assertRejects(() => ds.get(1), Error, `cannot read image ${root}/a/x.webp`);
  await Deno.remove(root, { recursive: true });
});

Deno.test("walkSorted, codePointCompare, hasImageExtension, readLines", async () => {
  assertEquals(["b", "B", "a", "é", "z"].sort(codePointCompare), ["B", "a", "b", "z", "é"]);
  assertEquals(hasImageExtension("X.JPEG"), true);
  assertEquals(hasImageExtension("x.gif"), false);
  const root = await tempDir();
  await put(`${root}/d/2.txt`);
  await put(`${root}/d/10.txt`);
  await put(`${root}/c.txt`);
  assertEquals((await walkSorted(root)).map((p) => p.slice(root.length + 1)), [
    "c.txt",
    "d/10.txt",
    "d/2.txt",
  ]);
  await Deno.writeTextFile(`${root}/l.txt`, " a \r\n\nb\n");
  assertEquals(await readLines(`${root}/l.txt`), ["a", "b"]);
  await assertRejects(() => readLines(`${root}/nope.txt`), Error, `cannot read ${root}/nope.txt`);
  await Deno.remove(root, { recursive: true });
});
