/**
 * Fuzz suite of the checkpoint readers: pickle, zip, TorchScript and torch.save archives,
 * safetensors. Every generated input must give a result or a clear error naming the file, within
 * a time bound; the known blow-ups run in a child process under a memory watchdog.
 */
import { zipSync } from "fflate";
import {
  assertIsolated,
  concat,
  expectClear,
  fuzzStats,
  isIsolatedChild,
  isolatedMain,
  mutate,
  pickleTensor,
  PickleWriter,
  Rng,
  type WorstCase,
} from "../_fuzz.ts";
import { readCheckpointBytes } from "./checkpoint.ts";
import { unpickle } from "./pickle.ts";
import { readSafetensors, writeSafetensors } from "./safetensors.ts";
import type { StateDict } from "./state_dict.ts";
import { memorySource, ZipReader } from "./zip.ts";

const HERE = new URL(".", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;

/** A torch zip checkpoint from a data.pkl and storages (stored, as torch writes them). */
function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>): Uint8Array {
  const files: Record<string, [Uint8Array, { level: 0 }]> = {
    "archive/data.pkl": [pkl, { level: 0 }],
  };
  for (const [k, v] of Object.entries(storages)) files[`archive/data/${k}`] = [v, { level: 0 }];
  return zipSync(files);
}

/**
 * A TorchScript-like module tree `depth` levels deep where every level references the next
 * level twice (memo GET): 2^depth paths to the leaf's tensor in about 40 bytes per level.
 */
function dagCheckpoint(depth: number): Uint8Array {
  const w = new PickleWriter().proto();
  w.global("__torch__.m", "Leaf").mark().tuple().reduce();
  w.dict().mark().str("w");
  pickleTensor(w, "0", 1, [1], [1]);
  w.setitems().build().put(0);
  for (let i = 1; i <= depth; i++) {
    w.global("__torch__.m", `L${i}`).mark().tuple().reduce();
    w.dict().mark().str("a").get(i - 1).str("b").get(i - 1).setitems().build().put(i);
  }
  w.stop();
  return torchZip(w.bytes(), { "0": new Uint8Array(4) });
}

/** A state-dict checkpoint with one tensor viewing a 1-element storage as `size` (stride 0). */
function stride0Checkpoint(size: number[]): Uint8Array {
  const w = new PickleWriter().proto();
  w.dict().mark().str("w");
  pickleTensor(w, "0", 1, size, size.map(() => 0));
  w.setitems().stop();
  return torchZip(w.bytes(), { "0": new Uint8Array(4) });
}

/** A safetensors file whose `n` entries all claim the same `bytes`-byte range. */
function overlappingSafetensors(n: number, bytes: number): Uint8Array {
  const header: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    header[`t${i}`] = { dtype: "F32", shape: [bytes / 4], data_offsets: [0, bytes] };
  }
  return rawSafetensors(header, new Uint8Array(bytes));
}

function rawSafetensors(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  return concat(head, json, data);
}

/** The worst cases, run in a child process (see `_fuzz.ts`). */
const WORST: Record<string, WorstCase> = {
  // issue case 3: a 2 KB checkpoint whose module tree doubles at each level
  "torchscript-dag-40": {
    names: "dag.pt",
    run: () => readCheckpointBytes(dagCheckpoint(40), "dag.pt"),
  },
  "torchscript-dag-12": {
    names: "dag12.pt",
    run: () => {
      // small enough to be valid: 4096 keys, all the same tensor
      const ck = readCheckpointBytes(dagCheckpoint(12), "dag12.pt");
      if (ck.stateDict.size !== 4096) throw new Error(`dag12.pt: ${ck.stateDict.size} keys`);
      return `${ck.stateDict.size} keys`;
    },
  },
  // issue case 7: a 1-element storage viewed as 20000×20000 and 40000×40000 with stride 0
  "stride0-20000": {
    names: "s0.pt",
    run: () => readCheckpointBytes(stride0Checkpoint([20000, 20000]), "s0.pt"),
  },
  "stride0-40000": {
    names: "s1.pt",
    run: () => readCheckpointBytes(stride0Checkpoint([40000, 40000]), "s1.pt"),
  },
  "stride0-small-ok": {
    run: () => {
      const ck = readCheckpointBytes(stride0Checkpoint([3, 4]), "s2.pt");
      return `${ck.stateDict.get("w")!.data.length} elements`;
    },
  },
  // issue case 7: overlapping safetensors entries (an 8 MB file claiming 2000 × 8 MB)
  "safetensors-overlap": {
    names: "ov.safetensors",
    run: () => readSafetensors(overlappingSafetensors(2000, 8 << 20), "ov.safetensors"),
  },
  // issue case 7: a pickle of EMPTY_DICTs (4 MB)
  "pickle-empty-dicts": {
    names: "dicts.pkl",
    run: () =>
      unpickle(concat(Uint8Array.of(0x80, 2), new Uint8Array(4 << 20).fill(0x7d)), {
        fileName: "dicts.pkl",
      }),
  },
  // EMPTY_LIST + APPEND pairs: objects that stay alive in one list
  "pickle-list-of-lists": {
    names: "lists.pkl",
    run: () => {
      const body = new Uint8Array(4 << 20);
      for (let i = 0; i < body.length; i += 2) [body[i], body[i + 1]] = [0x5d, 0x61];
      return unpickle(concat(Uint8Array.of(0x80, 2, 0x5d), body, Uint8Array.of(0x2e)), {
        fileName: "lists.pkl",
      });
    },
  },
  // a dict key made of a tuple that doubles at each level (memo): 2^60 characters of JSON
  "pickle-key-dag": {
    names: "key.pkl",
    run: () => {
      const w = new PickleWriter().proto().dict().put(0);
      w.mark().tuple().put(1).raw(0x30); // POP: only the dict stays on the stack
      for (let i = 2; i < 62; i++) w.get(i - 1).get(i - 1).raw(0x86).put(i).raw(0x30); // TUPLE2
      w.get(61).int(1).raw(0x73).stop(); // SETITEM dict[t61] = 1
      return unpickle(w.bytes(), { fileName: "key.pkl" });
    },
  },
  // a deeply nested list (recursion in consumers)
  "pickle-deep-nesting": {
    names: "deep.pkl",
    run: () => {
      const n = 1 << 20;
      const ops = new Uint8Array(2 + 2 * n + 1);
      ops.set([0x80, 2]);
      for (let i = 0; i < n; i++) ops[2 + i] = 0x5d; // EMPTY_LIST × n
      for (let i = 0; i < n - 1; i++) ops[2 + n + i] = 0x61; // APPEND × (n − 1)
      ops[ops.length - 2] = 0x2e;
      return unpickle(ops.subarray(0, ops.length - 1), { fileName: "deep.pkl" }) && "ok";
    },
  },
  // F64 beyond float32: an error, not ±Infinity
  "safetensors-f64-overflow": {
    names: "f64.safetensors",
    run: () => {
      const d = new Uint8Array(8);
      new DataView(d.buffer).setFloat64(0, 1e300, true);
      return readSafetensors(
        rawSafetensors({ x: { dtype: "F64", shape: [1], data_offsets: [0, 8] } }, d),
        "f64.safetensors",
      );
    },
  },
};

if (isIsolatedChild()) await isolatedMain(WORST);

const tried0 = () => fuzzStats.tried;

Deno.test("fuzz worst cases (child process, ≤ 1.5 GB, seconds each): blow-ups end in clear errors", async () => {
  const r = await assertIsolated(SELF, Object.keys(WORST), {
    timeoutMs: 90_000,
    caseLimitMs: 10_000,
  });
  const expectError: Record<string, RegExp> = {
    "torchscript-dag-40": /more than 100000 tensors/,
    "stride0-20000": /(view of|claim) 400000000 elements/,
    "stride0-40000": /(view of|claim) 1600000000 elements/,
    "safetensors-overlap": /overlaps the previous tensor/,
    "pickle-empty-dicts": /more than \d+ objects/,
    "pickle-list-of-lists": /more than \d+ objects/,
    "pickle-key-dag": /dict key longer than/,
    "safetensors-f64-overflow": /beyond the float32 range/,
  };
  for (const [name, re] of Object.entries(expectError)) {
    const c = r.get(name)!;
    if (c.outcome !== "error" || !re.test(c.message)) {
      throw new Error(`${name}: expected an error matching ${re}, got ${c.outcome}: ${c.message}`);
    }
  }
  for (const name of ["torchscript-dag-12", "stride0-small-ok"]) {
    if (r.get(name)!.outcome !== "ok") throw new Error(`${name}: ${r.get(name)!.message}`);
  }
});

Deno.test("fuzz: storage class names never match prototype properties", async () => {
  for (const cls of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
    const w = new PickleWriter().proto().dict().mark().str("w");
    pickleTensor(w, "0", 1, [1], [1], cls);
    w.setitems().stop();
    const err = await expectClear(
      () => readCheckpointBytes(torchZip(w.bytes(), { "0": new Uint8Array(4) }), "proto.pt"),
      "proto.pt",
      `torch.${cls}`,
    );
    if (!err || !/not allowed/.test(err.message)) throw new Error(`torch.${cls}: ${err?.message}`);
  }
  for (const dt of ["constructor", "__proto__", "toString"]) {
    const err = await expectClear(
      () =>
        readSafetensors(
          rawSafetensors({ x: { dtype: dt, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
          "p.safetensors",
        ),
      "p.safetensors",
      `dtype ${dt}`,
    );
    if (!err || !/unsupported dtype/.test(err.message)) throw new Error(`${dt}: ${err?.message}`);
  }
});

Deno.test("fuzz: safetensors gaps, trailing bytes and out-of-order overlaps are refused", async () => {
  const f32 = (b: number, e: number) => ({
    dtype: "F32",
    shape: [(e - b) / 4],
    data_offsets: [b, e],
  });
  const cases: [Record<string, unknown>, number, RegExp][] = [
    [{ a: f32(0, 4), b: f32(8, 12) }, 12, /gap of 4 bytes/],
    [{ a: f32(0, 4) }, 8, /4 trailing bytes/],
    [{ b: f32(4, 8), a: f32(0, 8) }, 8, /overlaps/],
    [{ a: f32(0, 8), b: f32(4, 8) }, 8, /overlaps/],
    [{ a: f32(0, 4), b: f32(4, 8) }, 4, /truncated/],
  ];
  for (const [h, n, re] of cases) {
    const err = await expectClear(
      () => readSafetensors(rawSafetensors(h, new Uint8Array(n)), "g.safetensors"),
      "g.safetensors",
      JSON.stringify(h),
    );
    if (!err || !re.test(err.message)) throw new Error(`${JSON.stringify(h)}: ${err?.message}`);
  }
  // out of order but tiling exactly: valid
  const ok = readSafetensors(
    rawSafetensors({ b: f32(4, 8), a: f32(0, 4) }, new Uint8Array(8)),
    "o",
  );
  if (ok.stateDict.size !== 2) throw new Error("out-of-order tiling entries must load");
});

Deno.test("fuzz: mutated torch checkpoints (zip, deflated zip, legacy) give a result or a clear error", async () => {
  const rng = new Rng(15);
  for (const f of ["views.zip.pth", "views.deflate.pth", "views.legacy.pth"]) {
    const seed = await Deno.readFile(`${HERE}testdata/${f}`);
    for (let i = 0; i < 400; i++) {
      const m = mutate(seed, rng);
      await expectClear(() => readCheckpointBytes(m, "m.pt"), "m.pt", `${f} mutant ${i}`, 2000);
    }
  }
});

Deno.test("fuzz: mutated and random pickles give a value or a clear error", async () => {
  const rng = new Rng(16);
  const zip = new ZipReader(
    memorySource(await Deno.readFile(`${HERE}testdata/views.zip.pth`)),
    "views.zip.pth",
  );
  const seeds = [zip.read("archive/data.pkl")];
  const shared = `${HERE}../../../shared/fixtures/clip/vit-tiny.jit.pt`;
  try {
    const z = new ZipReader(memorySource(await Deno.readFile(shared)), shared);
    const pkl = z.entries.find((e) => e.name.endsWith("/data.pkl"))!;
    seeds.push(z.read(pkl.name)); // a real TorchScript module tree
  } catch {
    console.warn(`fuzz: ${shared} absent; TorchScript module-tree seed skipped`);
  }
  const opts = { fileName: "p.pkl", persistentLoad: (pid: unknown) => ({ key: String(pid) }) };
  for (const seed of seeds) {
    for (let i = 0; i < 600; i++) {
      const m = mutate(seed, rng);
      await expectClear(() => unpickle(m, opts), "p.pkl", `pickle mutant ${i}`, 2000);
    }
  }
  // random opcode soup after a PROTO
  const ops = [..."()}]l.tdeusqhjaGJKMNXabcRQ\x80\x81\x85\x86\x87\x88\x89\x8a\x8c\x8d\x93\x94\x95"]
    .map((c) => c.charCodeAt(0));
  for (let i = 0; i < 1500; i++) {
    const n = 1 + rng.int(64);
    const b = new Uint8Array(n + 2);
    b.set([0x80, 2]);
    for (let k = 0; k < n; k++) b[k + 2] = rng.int(4) ? rng.pick(ops) : rng.int(256);
    await expectClear(() => unpickle(b, opts), "p.pkl", `random pickle ${i}`, 2000);
  }
});

Deno.test("fuzz: mutated safetensors and zip archives give a result or a clear error", async () => {
  const rng = new Rng(17);
  const sd: StateDict = new Map([
    ["a", { shape: [2, 3], dtype: "float32", data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ["b", { shape: [4], dtype: "int64", data: Int32Array.from([1, -2, 3, 4]) }],
    ["c", { shape: [], dtype: "float32", data: Float32Array.from([7]) }],
  ]);
  const st = writeSafetensors(sd, { note: "fuzz" });
  for (let i = 0; i < 1000; i++) {
    const m = mutate(st, rng);
    await expectClear(() => readSafetensors(m, "m.safetensors"), "m.safetensors", `st ${i}`, 2000);
  }
  const z = zipSync({
    "a/x.txt": [new TextEncoder().encode("hello ".repeat(100)), { level: 9 }],
    "a/y.bin": [rng.bytes(300), { level: 0 }],
  });
  for (let i = 0; i < 1000; i++) {
    const m = mutate(z, rng);
    await expectClear(
      () => {
        const r = new ZipReader(memorySource(m), "m.zip");
        for (const e of r.entries) r.read(e.name);
      },
      "m.zip",
      `zip ${i}`,
      2000,
    );
  }
});

Deno.test("fuzz: the number of inputs tried (clip/formats)", () => {
  console.log(`fuzz clip/formats: ${tried0()} inputs tried`);
});
