import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { isNumpyArray, PyObject, unpickle } from "./pickle.ts";

// Pickles made by CPython 3.11 `base64(pickle.dumps(V, protocol=p))` with
// V = {"a": [1, -2, 255, 65535, 2**31, -2**31-1, 2**70, -2**70], "f": [1.5, -0.0, 1e300],
//      "s": "héllo ✓", "b": b"\x00\xffab", "t": (1, (2, 3), ()), "n": None, "tf": [True, False],
//      "set": {3}, "fs": frozenset([4]), "big": "x" * 300}
export const PROTOS: Record<number, string> = {
  0: "KGRwMApWYQpwMQoobHAyCkkxCmFJLTIKYUkyNTUKYUk2NTUzNQphTDIxNDc0ODM2NDhMCmFMLTIxNDc0ODM2NDlMCmFMMTE4MDU5MTYyMDcxNzQxMTMwMzQyNEwKYUwtMTE4MDU5MTYyMDcxNzQxMTMwMzQyNEwKYXNWZgpwMwoobHA0CkYxLjUKYUYtMC4wCmFGMWUrMzAwCmFzVnMKcDUKVmjpbGxvIFx1MjcxMwpwNgpzVmIKcDcKY19jb2RlY3MKZW5jb2RlCnA4CihWXHUwMDAw/2FiCnA5ClZsYXRpbjEKcDEwCnRwMTEKUnAxMgpzVnQKcDEzCihJMQooSTIKSTMKdHAxNAoodHRwMTUKc1ZuCnAxNgpOc1Z0ZgpwMTcKKGxwMTgKSTAxCmFJMDAKYXNWc2V0CnAxOQpjX19idWlsdGluX18Kc2V0CnAyMAooKGxwMjEKSTMKYXRwMjIKUnAyMwpzVmZzCnAyNApjX19idWlsdGluX18KZnJvemVuc2V0CnAyNQooKGxwMjYKSTQKYXRwMjcKUnAyOApzVmJpZwpwMjkKVnh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eApwMzAKcy4=",
  1: "fXEAKFgBAAAAYXEBXXECKEsBSv7///9L/03//0wyMTQ3NDgzNjQ4TApMLTIxNDc0ODM2NDlMCkwxMTgwNTkxNjIwNzE3NDExMzAzNDI0TApMLTExODA1OTE2MjA3MTc0MTEzMDM0MjRMCmVYAQAAAGZxA11xBChHP/gAAAAAAABHgAAAAAAAAABHfjfkPIgAdZxlWAEAAABzcQVYCgAAAGjDqWxsbyDinJNxBlgBAAAAYnEHY19jb2RlY3MKZW5jb2RlCnEIKFgFAAAAAMO/YWJxCVgGAAAAbGF0aW4xcQp0cQtScQxYAQAAAHRxDShLAShLAksDdHEOKXRxD1gBAAAAbnEQTlgCAAAAdGZxEV1xEihJMDEKSTAwCmVYAwAAAHNldHETY19fYnVpbHRpbl9fCnNldApxFChdcRVLA2F0cRZScRdYAgAAAGZzcRhjX19idWlsdGluX18KZnJvemVuc2V0CnEZKF1xGksEYXRxG1JxHFgDAAAAYmlncR1YLAEAAHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHEedS4=",
  2: "gAJ9cQAoWAEAAABhcQFdcQIoSwFK/v///0v/Tf//igUAAACAAIoF////f/+KCQAAAAAAAAAAQIoJAAAAAAAAAADAZVgBAAAAZnEDXXEEKEc/+AAAAAAAAEeAAAAAAAAAAEd+N+Q8iAB1nGVYAQAAAHNxBVgKAAAAaMOpbGxvIOKck3EGWAEAAABicQdjX2NvZGVjcwplbmNvZGUKcQhYBQAAAADDv2FicQlYBgAAAGxhdGluMXEKhnELUnEMWAEAAAB0cQ1LAUsCSwOGcQ4ph3EPWAEAAABucRBOWAIAAAB0ZnERXXESKIiJZVgDAAAAc2V0cRNjX19idWlsdGluX18Kc2V0CnEUXXEVSwNhhXEWUnEXWAIAAABmc3EYY19fYnVpbHRpbl9fCmZyb3plbnNldApxGV1xGksEYYVxG1JxHFgDAAAAYmlncR1YLAEAAHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHEedS4=",
  3: "gAN9cQAoWAEAAABhcQFdcQIoSwFK/v///0v/Tf//igUAAACAAIoF////f/+KCQAAAAAAAAAAQIoJAAAAAAAAAADAZVgBAAAAZnEDXXEEKEc/+AAAAAAAAEeAAAAAAAAAAEd+N+Q8iAB1nGVYAQAAAHNxBVgKAAAAaMOpbGxvIOKck3EGWAEAAABicQdDBAD/YWJxCFgBAAAAdHEJSwFLAksDhnEKKYdxC1gBAAAAbnEMTlgCAAAAdGZxDV1xDiiIiWVYAwAAAHNldHEPY2J1aWx0aW5zCnNldApxEF1xEUsDYYVxElJxE1gCAAAAZnNxFGNidWlsdGlucwpmcm96ZW5zZXQKcRVdcRZLBGGFcRdScRhYAwAAAGJpZ3EZWCwBAAB4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHhxGnUu",
  4: "gASV6QEAAAAAAAB9lCiMAWGUXZQoSwFK/v///0v/Tf//igUAAACAAIoF////f/+KCQAAAAAAAAAAQIoJAAAAAAAAAADAZYwBZpRdlChHP/gAAAAAAABHgAAAAAAAAABHfjfkPIgAdZxljAFzlIwKaMOpbGxvIOKck5SMAWKUQwQA/2FilIwBdJRLAUsCSwOGlCmHlIwBbpROjAJ0ZpRdlCiIiWWMA3NldJSPlChLA5CMAmZzlChLBJGUjANiaWeUWCwBAAB4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHiUdS4=",
  5: "gAWV6QEAAAAAAAB9lCiMAWGUXZQoSwFK/v///0v/Tf//igUAAACAAIoF////f/+KCQAAAAAAAAAAQIoJAAAAAAAAAADAZYwBZpRdlChHP/gAAAAAAABHgAAAAAAAAABHfjfkPIgAdZxljAFzlIwKaMOpbGxvIOKck5SMAWKUQwQA/2FilIwBdJRLAUsCSwOGlCmHlIwBbpROjAJ0ZpRdlCiIiWWMA3NldJSPlChLA5CMAmZzlChLBJGUjANiaWeUWCwBAAB4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHiUdS4=",
};
// {"x": numpy.arange(3, dtype=float32), "s": numpy.float64(2.5)}, protocol 2 (numpy 2.x)
export const NUMPY =
  "gAJ9cQAoWAEAAAB4cQFjbnVtcHkuX2NvcmUubXVsdGlhcnJheQpfcmVjb25zdHJ1Y3QKcQJjbnVtcHkKbmRhcnJheQpxA0sAhXEEY19jb2RlY3MKZW5jb2RlCnEFWAEAAABicQZYBgAAAGxhdGluMXEHhnEIUnEJh3EKUnELKEsBSwOFcQxjbnVtcHkKZHR5cGUKcQ1YAgAAAGY0cQ6JiIdxD1JxEChLA1gBAAAAPHERTk5OSv////9K/////0sAdHESYoloBVgNAAAAAAAAAAAAwoA/AAAAQHETaAeGcRRScRV0cRZiWAEAAABzcRdjbnVtcHkuX2NvcmUubXVsdGlhcnJheQpzY2FsYXIKcRhoDVgCAAAAZjhxGYmIh3EaUnEbKEsDaBFOTk5K/////0r/////SwB0cRxiaAVYCAAAAAAAAAAAAARAcR1oB4ZxHlJxH4ZxIFJxIXUu";
// A Python 2 cPickle (protocol 2) CIFAR-like batch: {"data": "\x00\x80\xff", "labels": [1, 2]}
export const PY2 = "gAJ9cQAoVQRkYXRhcQFVAwCA/3ECVQZsYWJlbHNxA11xBChLAUsCZXUu";

const b64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** Plain-JSON view of unpickled values for deep comparison. */
function plain(x: unknown): unknown {
  if (x instanceof Map) return Object.fromEntries([...x].map(([k, v]) => [String(k), plain(v)]));
  if (x instanceof Set) return { set: [...x].map(plain) };
  if (x instanceof Uint8Array) return { bytes: [...x] };
  if (Array.isArray(x)) return x.map(plain);
  if (typeof x === "bigint") return `${x}n`;
  return x;
}

const EXPECTED = {
  a: [
    1,
    -2,
    255,
    65535,
    2 ** 31,
    -(2 ** 31) - 1,
    "1180591620717411303424n",
    "-1180591620717411303424n",
  ],
  f: [1.5, -0, 1e300],
  s: "héllo ✓",
  b: { bytes: [0, 255, 97, 98] },
  t: [1, [2, 3], []],
  n: null,
  tf: [true, false],
  set: { set: [3] },
  fs: { set: [4] },
  big: "x".repeat(300),
};

for (const p of [0, 1, 2, 3, 4, 5]) {
  Deno.test(`unpickle: CPython protocol ${p}`, () => {
    const v = unpickle(b64(PROTOS[p]), { fileName: `p${p}.pkl` });
    deepStrictEqual(plain(v), EXPECTED);
    ok(Object.is((plain(v) as { f: number[] }).f[1], -0));
  });
}

Deno.test("unpickle: numpy arrays and scalars", () => {
  const v = unpickle(b64(NUMPY), { fileName: "np.pkl", encoding: "latin1" }) as Map<
    string,
    unknown
  >;
  const x = v.get("x");
  ok(isNumpyArray(x));
  deepStrictEqual(x.shape, [3]);
  equal(x.dtype, "<f4");
  const d = x.data as Uint8Array;
  deepStrictEqual([...new Float32Array(d.slice().buffer)], [0, 1, 2]);
  equal(v.get("s"), 2.5);
});

Deno.test("unpickle: Python 2 str as bytes / latin1 / ascii", () => {
  const raw = b64(PY2);
  const asBytes = unpickle(raw, { fileName: "b.pkl", encoding: "bytes" }) as Map<string, unknown>;
  // bytes keys become latin1 strings; values stay bytes
  deepStrictEqual([...asBytes.get("data") as Uint8Array], [0, 0x80, 0xff]);
  deepStrictEqual(asBytes.get("labels"), [1, 2]);
  const asLatin1 = unpickle(raw, { fileName: "b.pkl", encoding: "latin1" }) as Map<string, unknown>;
  equal(asLatin1.get("data"), "\x00\x80\xff");
  throws(() => unpickle(raw, { fileName: "b.pkl" }), /b\.pkl: pickle: non-ASCII .* at offset \d+/);
});

Deno.test("unpickle: refuses globals off the allowlist, naming them", () => {
  const evil = new TextEncoder().encode("cos\nsystem\n(S'echo hi'\ntR.");
  throws(
    () => unpickle(evil, { fileName: "evil.pkl" }),
    /evil\.pkl: pickle: global os\.system is not allowed.* at offset 0/,
  );
  const legacyNested = Uint8Array.from(
    "\x80\x02ctorch.storage\n_load_from_bytes\nq\x00.",
    (c) => c.charCodeAt(0),
  );
  throws(
    () => unpickle(legacyNested, { fileName: "n.pkl" }),
    /torch\.storage\._load_from_bytes refused/,
  );
  const inst = new TextEncoder().encode("(ios\nsystem\nS'x'\n.");
  throws(() => unpickle(inst, { fileName: "i.pkl" }), /INST\/OBJ/);
});

Deno.test("unpickle: TorchScript classes become PyObjects with BUILD state", () => {
  // \x80\x02 c__torch__.m\nNet\n ) \x81 } (X\x01\x00\x00\x00a K\x05 u b .
  const bytes = Uint8Array.from([
    0x80,
    2,
    ...new TextEncoder().encode("c__torch__.m\nNet\n"),
    0x29,
    0x81,
    0x7d,
    0x28,
    0x58,
    1,
    0,
    0,
    0,
    0x61,
    0x4b,
    5,
    0x75,
    0x62,
    0x2e,
  ]);
  const v = unpickle(bytes, { fileName: "ts.pkl" });
  ok(v instanceof PyObject);
  equal(v.className, "__torch__.m.Net");
  deepStrictEqual([...(v.state as Map<string, unknown>)], [["a", 5]]);
});

Deno.test("unpickle: every truncation and many corruptions fail cleanly, naming file and offset", () => {
  const full = b64(PROTOS[2]);
  for (let cut = 0; cut < full.length; cut++) {
    throws(
      () => unpickle(full.subarray(0, cut), { fileName: "cut.pkl" }),
      /cut\.pkl: pickle: .* at offset \d+/,
    );
  }
  // Flip every byte in turn: either a clean Error naming the file, or some value.
  for (let i = 0; i < full.length; i++) {
    const b = full.slice();
    b[i] ^= 0xa5;
    try {
      unpickle(b, { fileName: "flip.pkl" });
    } catch (e) {
      ok(e instanceof Error && /flip\.pkl: pickle: .* at offset \d+/.test(e.message), String(e));
    }
  }
});

Deno.test("unpickle: bounded lengths and memo", () => {
  // BINUNICODE claiming 2^32-1 bytes in a 10-byte input
  const huge = Uint8Array.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x61, 0x2e]);
  throws(() => unpickle(huge, { fileName: "h.pkl" }), /h\.pkl: pickle: truncated .* at offset 7/);
  // memo limit
  const memo = Uint8Array.from([0x80, 2, 0x4e, 0x71, 0, 0x71, 1, 0x71, 2, 0x2e]);
  throws(() => unpickle(memo, { fileName: "m.pkl", maxMemo: 2 }), /memo exceeds 2/);
  throws(() => unpickle(Uint8Array.from([0x51, 0x2e]), { fileName: "p.pkl" }), /stack underflow/);
});

Deno.test("unpickle: persistent ids go through persistentLoad", () => {
  // (X'storage' X'0' t Q .  → persistentLoad(["storage","0"])
  const bytes = Uint8Array.from([
    0x80,
    2,
    0x28,
    0x58,
    7,
    0,
    0,
    0,
    ...new TextEncoder().encode("storage"),
    0x58,
    1,
    0,
    0,
    0,
    0x30,
    0x74,
    0x51,
    0x2e,
  ]);
  const got: unknown[] = [];
  const v = unpickle(bytes, {
    fileName: "pid.pkl",
    persistentLoad: (pid) => {
      got.push(pid);
      return "S";
    },
  });
  equal(v, "S");
  deepStrictEqual(got, [["storage", "0"]]);
  throws(() => unpickle(bytes, { fileName: "pid.pkl" }), /no persistent loader/);
});

Deno.test("unpickle: a Python 2 numpy array (CIFAR batches) with encoding bytes and latin1", () => {
  // Hand-assembled as cPickle wrote numpy uint8 [[1,2,3],[250,251,252]]; CPython 3 +
  // numpy 2 load it (pickle.loads(b, encoding="bytes"/"latin1")) to that array.
  const b = Uint8Array.from(
    "\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85U\x01b\x87R" +
      "(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xff" +
      "J\xff\xff\xff\xffK\x00tb\x89U\x06\x01\x02\x03\xfa\xfb\xfctb.",
    (c) => c.charCodeAt(0),
  );
  for (const encoding of ["bytes", "latin1"] as const) {
    const a = unpickle(b, { fileName: "data_batch_1", encoding });
    ok(isNumpyArray(a));
    deepStrictEqual(a.shape, [2, 3]);
    equal(a.dtype, "|u1");
    deepStrictEqual([...(a.data as Uint8Array)], [1, 2, 3, 250, 251, 252]);
  }
});
