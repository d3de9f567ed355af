import { gzipSync, zipSync } from "fflate";
import {
  ArchiveError,
  archiveKind,
  extractArchive,
  extractTarFile,
  extractZipFile,
  safeEntryPath,
} from "./archive.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertThrows,
  listFiles,
  makeTar,
  tempDir,
} from "./_testing.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("safeEntryPath normalises and rejects traversal", () => {
  assertEquals(safeEntryPath("./a//b/./c.txt"), "a/b/c.txt");
  assertEquals(safeEntryPath("./"), null);
  assertThrows(() => safeEntryPath("../x"), Error, "escapes");
  assertThrows(() => safeEntryPath("a/../../x"), Error, "escapes");
  assertThrows(() => safeEntryPath("/etc/passwd"), Error, "absolute");
  assertThrows(() => safeEntryPath("a\\..\\b"), Error, "backslash");
  assertEquals(archiveKind("x.tar.gz"), "tar.gz");
  assertEquals(archiveKind("x.TGZ"), "tar.gz");
  assertEquals(archiveKind("x.zip"), "zip");
  assertEquals(archiveKind("x.idx.gz"), "gz");
  assertEquals(archiveKind("x.mat"), null);
});

Deno.test("extractTarFile: plain and gzipped, dirs, long names, links skipped", async () => {
  const dir = await tempDir();
  const big = new Uint8Array(70_000).map((_, i) => (i * 7) & 255);
  const longName = "deep/" + "n".repeat(120) + ".txt";
  const tar = makeTar([
    { name: "root/", type: "5" },
    { name: "root/a.txt", data: "hello" },
    { name: "root/sub/big.bin", data: big },
    { name: "././@LongLink", type: "L", data: longName + "\0" },
    { name: longName.slice(0, 99), data: "long" },
    { name: "root/link", type: "2", linkname: "/etc/passwd" },
    { name: "root/empty.txt", data: "" },
  ]);
  await Deno.writeFile(`${dir}/t.tar`, tar);
  await Deno.writeFile(`${dir}/t.tar.gz`, gzipSync(tar));
  for (const f of ["t.tar", "t.tar.gz"]) {
    const out = `${dir}/out-${f}`;
    let progress = 0;
    const r = await extractTarFile(`${dir}/${f}`, out, { onProgress: (n) => (progress = n) });
    assertEquals(r.files, 4);
    assertEquals(r.bytes, 5 + big.length + 4);
    assertEquals(r.skipped, ["root/link (symbolic link)"]);
    assert(progress > 0);
    assertEquals(await listFiles(out), [
      longName,
      "root/a.txt",
      "root/empty.txt",
      "root/sub/big.bin",
    ]);
    assertEquals(dec.decode(await Deno.readFile(`${out}/root/a.txt`)), "hello");
    assertEquals(await Deno.readFile(`${out}/root/sub/big.bin`), big);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("extractTarFile: traversal, checksum, truncation and limits are errors", async () => {
  const dir = await tempDir();
  const evil = makeTar([{ name: "ok.txt", data: "x" }, { name: "../evil.txt", data: "pwned" }]);
  await Deno.writeFile(`${dir}/evil.tar`, evil);
  const e = await assertRejects(
    () => extractTarFile(`${dir}/evil.tar`, `${dir}/o1`),
    ArchiveError,
    "escapes",
  );
  assert(
    e.message.startsWith(`${dir}/evil.tar: `) && e.message.includes("at byte 1024"),
    e.message,
  );
  let escaped = true;
  try {
    await Deno.stat(`${dir}/evil.txt`);
  } catch {
    escaped = false;
  }
  assert(!escaped, "file written outside the destination");

  const good = makeTar([{ name: "a.bin", data: new Uint8Array(2000) }]);
  const bad = good.slice();
  bad[10] ^= 1; // corrupt header -> checksum mismatch
  await Deno.writeFile(`${dir}/bad.tar`, bad);
  await assertRejects(
    () => extractTarFile(`${dir}/bad.tar`, `${dir}/o2`),
    ArchiveError,
    "checksum mismatch",
  );
  await Deno.writeFile(`${dir}/trunc.tar`, good.subarray(0, 1000));
  await assertRejects(
    () => extractTarFile(`${dir}/trunc.tar`, `${dir}/o3`),
    ArchiveError,
    "truncated tar entry a.bin",
  );
  await Deno.writeFile(`${dir}/good.tar`, good);
  await assertRejects(
    () => extractTarFile(`${dir}/good.tar`, `${dir}/o4`, { maxEntryBytes: 1000 }),
    ArchiveError,
    "per-entry limit",
  );
  await assertRejects(
    () => extractTarFile(`${dir}/good.tar`, `${dir}/o5`, { maxTotalBytes: 1000 }),
    ArchiveError,
    "exceed the limit",
  );
  const gz = gzipSync(good);
  await Deno.writeFile(`${dir}/trunc.tar.gz`, gz.subarray(0, gz.length - 20));
  await assertRejects(
    () => extractTarFile(`${dir}/trunc.tar.gz`, `${dir}/o6`),
    ArchiveError,
    `${dir}/trunc.tar.gz`,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("extractZipFile and single-file gz via extractArchive", async () => {
  const dir = await tempDir();
  const zip = zipSync({
    "2750/": {},
    "2750/Forest/Forest_1.jpg": enc.encode("jpeg-bytes"),
    "2750/River/River_1.jpg": [enc.encode("river"), { level: 0 }],
  });
  await Deno.writeFile(`${dir}/e.zip`, zip);
  const r = await extractArchive(`${dir}/e.zip`, `${dir}/z`);
  assertEquals(r.files, 2);
  assertEquals(await listFiles(`${dir}/z`), ["2750/Forest/Forest_1.jpg", "2750/River/River_1.jpg"]);
  assertEquals(dec.decode(await Deno.readFile(`${dir}/z/2750/River/River_1.jpg`)), "river");

  const evil = zipSync({ "../../x.txt": enc.encode("no") });
  await Deno.writeFile(`${dir}/evil.zip`, evil);
  await assertRejects(
    () => extractZipFile(`${dir}/evil.zip`, `${dir}/z2`),
    ArchiveError,
    "escapes",
  );
  await Deno.writeFile(`${dir}/trunc.zip`, zip.subarray(0, zip.length - 30));
  await assertRejects(
    () => extractZipFile(`${dir}/trunc.zip`, `${dir}/z3`),
    ArchiveError,
    `${dir}/trunc.zip`,
  );

  await Deno.writeFile(`${dir}/labels.idx.gz`, gzipSync(enc.encode("abc")));
  await extractArchive(`${dir}/labels.idx.gz`, `${dir}/g`);
  assertEquals(dec.decode(await Deno.readFile(`${dir}/g/labels.idx`)), "abc");
  await Deno.remove(dir, { recursive: true });
});
