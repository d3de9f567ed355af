import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { strToU8, zipSync } from "fflate";
import { crc32, isZip, memorySource, ZipReader } from "./zip.ts";

const A = strToU8("hello zip ".repeat(50));
const B = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 255);

Deno.test("zip: stored and deflated entries", () => {
  const bytes = zipSync({ "arch/a.txt": [A, { level: 9 }], "arch/data/0": [B, { level: 0 }] });
  ok(isZip(bytes));
  const z = new ZipReader(memorySource(bytes), "t.zip");
  deepStrictEqual(z.entries.map((e) => [e.name, e.method]), [["arch/a.txt", 8], [
    "arch/data/0",
    0,
  ]]);
  deepStrictEqual(z.read("arch/a.txt"), A);
  deepStrictEqual(z.read("arch/data/0"), B);
  throws(() => z.read("nope"), /t\.zip: zip: no entry nope/);
});

/** A hand-built zip64 archive: sizes and offset in the zip64 extra field, zip64 end records. */
function zip64(name: string, data: Uint8Array): Uint8Array {
  const nm = strToU8(name);
  const parts: Uint8Array[] = [];
  const lh = new DataView(new ArrayBuffer(30));
  lh.setUint32(0, 0x04034b50, true);
  lh.setUint16(26, nm.length, true);
  parts.push(new Uint8Array(lh.buffer), nm, data);
  const cdOff = 30 + nm.length + data.length;
  const cd = new DataView(new ArrayBuffer(46 + nm.length + 28));
  cd.setUint32(0, 0x02014b50, true);
  cd.setUint32(16, crc32(data), true);
  cd.setUint32(20, 0xffffffff, true); // compressed
  cd.setUint32(24, 0xffffffff, true); // uncompressed
  cd.setUint16(28, nm.length, true);
  cd.setUint16(30, 28, true);
  cd.setUint32(42, 0xffffffff, true); // local header offset
  new Uint8Array(cd.buffer).set(nm, 46);
  const x = 46 + nm.length;
  cd.setUint16(x, 1, true);
  cd.setUint16(x + 2, 24, true);
  cd.setBigUint64(x + 4, BigInt(data.length), true);
  cd.setBigUint64(x + 12, BigInt(data.length), true);
  cd.setBigUint64(x + 20, 0n, true);
  parts.push(new Uint8Array(cd.buffer));
  const e64Off = cdOff + cd.byteLength;
  const e64 = new DataView(new ArrayBuffer(56));
  e64.setUint32(0, 0x06064b50, true);
  e64.setBigUint64(24, 1n, true);
  e64.setBigUint64(32, 1n, true);
  e64.setBigUint64(40, BigInt(cd.byteLength), true);
  e64.setBigUint64(48, BigInt(cdOff), true);
  const loc = new DataView(new ArrayBuffer(20));
  loc.setUint32(0, 0x07064b50, true);
  loc.setBigUint64(8, BigInt(e64Off), true);
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, 0xffff, true);
  eocd.setUint16(10, 0xffff, true);
  eocd.setUint32(12, 0xffffffff, true);
  eocd.setUint32(16, 0xffffffff, true);
  parts.push(new Uint8Array(e64.buffer), new Uint8Array(loc.buffer), new Uint8Array(eocd.buffer));
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

Deno.test("zip: zip64 end records and extra fields", () => {
  const z = new ZipReader(memorySource(zip64("m/data/0", B)), "z64.pt");
  equal(z.entries.length, 1);
  equal(z.entries[0].size, B.length);
  deepStrictEqual(z.read("m/data/0"), B);
});

Deno.test("zip: every truncation and byte flips fail with file and offset", () => {
  const bytes = zipSync({ "arch/a.txt": [A, { level: 9 }], "arch/data/0": [B, { level: 0 }] });
  for (let cut = 0; cut < bytes.length; cut++) {
    throws(() => {
      const z = new ZipReader(memorySource(bytes.subarray(0, cut)), "cut.zip");
      for (const e of z.entries) z.read(e.name);
    }, /cut\.zip: zip: .* at offset \d+/);
  }
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes.slice();
    b[i] ^= 0xff;
    try {
      const z = new ZipReader(memorySource(b), "flip.zip");
      for (const e of z.entries) z.read(e.name);
    } catch (e) {
      ok(e instanceof Error && /flip\.zip: zip: .* at offset \d+/.test(e.message), String(e));
    }
  }
});

Deno.test("zip: CRC-32 known value; a flipped data byte is a CRC error; chunks() streams", async () => {
  equal(crc32(strToU8("123456789")), 0xcbf43926);
  equal(crc32(strToU8("6789"), crc32(strToU8("12345"))), 0xcbf43926);
  const bytes = zipSync({ "a": [A, { level: 9 }], "b": [B, { level: 0 }] });
  const z = new ZipReader(memorySource(bytes), "ok.zip");
  for (const [name, want] of [["a", A], ["b", B]] as const) {
    const parts: Uint8Array[] = [];
    for await (const c of z.chunks(name, 7)) parts.push(c);
    deepStrictEqual(new Uint8Array(parts.flatMap((p) => [...p])), want);
  }
  const bad = bytes.slice();
  const off = z.entry("b")!.localHeaderOffset + 30 + 1 + 10; // a byte of b's stored data
  bad[off] ^= 1;
  const zb = new ZipReader(memorySource(bad), "bad.zip");
  throws(() => zb.read("b"), /bad\.zip: zip: entry b: CRC-32 mismatch/);
  await (async () => {
    try {
      for await (const _ of zb.chunks("b")) { /* drain */ }
      ok(false, "no error");
    } catch (e) {
      ok(/CRC-32 mismatch/.test((e as Error).message), String(e));
    }
  })();
});
