import { deepStrictEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { readCheckpoint, readCheckpointBytes, saveCheckpoint } from "./checkpoint.ts";
import { sharedPath, skipWithoutShared } from "../_testing.ts";
import type { StateDict } from "./state_dict.ts";

const FIXTURES = [
  ["vit-tiny.jit.pt", "vit-tiny", "torchscript"],
  ["rn-tiny.jit.pt", "rn-tiny", "torchscript"],
  ["vit-tiny-zscl.zscl.pth", "vit-tiny-zscl", "torch-zip"],
] as const;

/**
 * Values read independently with CPython + numpy (zipfile, a restricted pickle.Unpickler,
 * numpy.frombuffer + as_strided): [key, flat index into the C-order tensor, values...].
 */
const SPOT: Record<string, [string, number[], number[]][]> = {
  "vit-tiny.jit.pt": [
    ["visual.conv1.weight", [0, 0, 0, 0], [
      0.037200927734375,
      -0.0318603515625,
      -0.0139923095703125,
      0.03387451171875,
    ]],
    ["token_embedding.weight", [49407, 0], [
      -0.019646484404802322,
      -0.024115605279803276,
      0.0005380953662097454,
    ]],
    ["visual.transformer.resblocks.1.attn.in_proj_weight", [100, 5], [
      0.099609375,
      0.00104522705078125,
      -0.0015239715576171875,
    ]],
    ["visual.class_embedding", [0], [
      -0.041620612144470215,
      0.11171858757734299,
      0.10671906173229218,
    ]],
  ],
  "rn-tiny.jit.pt": [
    ["visual.bn1.running_var", [0], [1.0484529733657837, 1.0450860261917114, 1.0668505430221558]],
    ["visual.bn1.num_batches_tracked", [], [0]],
    ["visual.attnpool.positional_embedding", [3, 0], [
      -0.0083572743460536,
      -0.02351345866918564,
      -0.0001431467244401574,
    ]],
  ],
  "vit-tiny-zscl.zscl.pth": [
    ["text_projection", [7, 0], [-0.1939145177602768, -0.03931277245283127, -0.051528409123420715]],
    ["visual.conv1.weight", [5, 1, 2, 0], [
      -0.036235593259334564,
      -0.031123129650950432,
      0.031130192801356316,
    ]],
  ],
};

function flatIndex(shape: number[], idx: number[]): number {
  let f = 0;
  for (let i = 0; i < shape.length; i++) f = f * shape[i] + (idx[i] ?? 0);
  return f;
}

function checkAgainstExpected(sd: StateDict, file: string, stem: string): void {
  const exp = JSON.parse(Deno.readTextFileSync(sharedPath(`fixtures/clip/${stem}.expected.json`)));
  const keys = exp.state_dict_keys as Record<string, number[]>;
  deepStrictEqual([...sd.keys()].sort(), Object.keys(keys).sort());
  for (const [k, shape] of Object.entries(keys)) {
    const t = sd.get(k)!;
    deepStrictEqual(t.shape, shape, k);
    equal(t.data.length, shape.reduce((a, b) => a * b, 1), k);
    const dtype = exp.dtypes?.[k] ?? "float32";
    // The fixtures' dtypes list floats only; num_batches_tracked is int64.
    equal(t.dtype, k.endsWith("num_batches_tracked") ? "int64" : dtype, k);
    ok(t.data instanceof (t.dtype === "int64" ? Int32Array : Float32Array), k);
  }
  equal(sd.get("logit_scale")!.data[0], Math.fround(exp.logit_scale));
  for (const [key, idx, vals] of SPOT[file]) {
    const t = sd.get(key)!;
    const at = flatIndex(t.shape, idx);
    deepStrictEqual(Array.from(t.data.subarray(at, at + vals.length)), vals.map(Math.fround), key);
  }
}

for (const [file, stem, format] of FIXTURES) {
  Deno.test({
    name: `readCheckpoint: ${file} keys, shapes, dtypes and values`,
    ignore: skipWithoutShared(),
    fn: async () => {
      const { stateDict, meta } = await readCheckpoint(sharedPath(`fixtures/clip/${file}`));
      equal(meta.format, format);
      checkAgainstExpected(stateDict, file, stem);
    },
  });
}

Deno.test({
  name: "readCheckpoint: truncated and corrupted fixture archives fail naming file and offset",
  ignore: skipWithoutShared(),
  fn: () => {
    const bytes = Deno.readFileSync(sharedPath("fixtures/clip/vit-tiny.jit.pt"));
    const n = bytes.length;
    for (const cut of [0, 3, 8, 30, 100, 5000, n >> 1, n - 5000, n - 100, n - 22, n - 1]) {
      throws(
        () => readCheckpointBytes(bytes.subarray(0, cut), "vit-cut.pt"),
        /vit-cut\.pt: .*offset \d+/,
        `cut at ${cut}`,
      );
    }
    // Flip bytes across the pickle, headers and central directory: a clean error or a load.
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const cdStart = n - 8000;
    for (let i = 0; i < 60; i++) {
      const b = bytes.slice();
      const pos = i < 30 ? Math.floor(rand() * 7200) : cdStart + Math.floor(rand() * 8000);
      b[pos] ^= 1 + Math.floor(rand() * 255);
      try {
        readCheckpointBytes(b, "vit-flip.pt");
      } catch (e) {
        ok(e instanceof Error && /vit-flip\.pt/.test(e.message), String(e));
      }
    }
  },
});

const TESTDATA = new URL("./testdata/", import.meta.url).pathname;
const VIEWS: [string, string, number[], number[]][] = [
  ["a", "float32", [2, 3], [2, 3, 4, 5, 6, 7]],
  ["b", "float32", [3, 2], [0, 3, 1, 4, 2, 5]],
  ["c", "float32", [2, 2], [1, 3, 7, 9]],
  ["h", "float16", [4], [0.5, -2, 65504, 2 * 2 ** -24]],
  ["bf", "bfloat16", [2], [1.5, -3.25]],
  ["d", "float64", [2], [Math.fround(0.1), -1e10]],
  ["i", "int64", [3], [7, -3, 2147483647]],
];

for (const f of ["views.zip.pth", "views.deflate.pth", "views.legacy.pth"]) {
  Deno.test(`readCheckpoint: ${f}: shared-storage views, strides, dtypes, module. prefix`, async () => {
    const { stateDict, meta } = await readCheckpoint(TESTDATA + f);
    deepStrictEqual(
      [...stateDict].map(([k, t]) => [k, t.dtype, t.shape, Array.from(t.data)]),
      VIEWS,
    );
    equal(meta.iteration, 1000);
    equal(meta.input_resolution, 224);
    equal(meta.stateDictKey, "state_dict");
    equal(meta.format, f.includes("legacy") ? "torch-legacy" : "torch-zip");
  });
}

Deno.test("readCheckpoint: every truncation of small checkpoints fails naming file and offset", () => {
  for (const f of ["views.zip.pth", "views.legacy.pth"]) {
    const bytes = Deno.readFileSync(TESTDATA + f);
    for (let cut = 0; cut < bytes.length; cut++) {
      throws(
        () => readCheckpointBytes(bytes.subarray(0, cut), `cut-${f}`),
        /cut-.*offset \d+/,
        `${f} ${cut}`,
      );
    }
  }
});

Deno.test("readCheckpoint: unknown global is a clear error naming it", () => {
  const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  const pkl = latin1("\x80\x02}q\x00X\x01\x00\x00\x00mcsrc.models\nClassificationHead\n)\x81s.");
  // Embed as a legacy torch.save stream: magic, protocol, sys_info, then the object.
  const parts = [
    latin1("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
    latin1("\x80\x02M\xe9\x03."),
    latin1("\x80\x02}q\x00."),
    pkl,
  ];
  const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, (o += p.length) - p.length);
  throws(
    () => readCheckpointBytes(all, "model.pt"),
    /model\.pt: pickle: global src\.models\.ClassificationHead is not allowed.*offset \d+/,
  );
});

Deno.test("saveCheckpoint → readCheckpoint round trip (f32 exact, f16 rounded), atomic", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sd: StateDict = new Map([
      ["visual.proj", {
        shape: [2, 3],
        dtype: "float16",
        data: Float32Array.from([1, -2, 0.1, 3.5, 1e-3, 7]),
      }],
      ["logit_scale", { shape: [], dtype: "float32", data: Float32Array.from([4.6052]) }],
      ["ids", { shape: [2], dtype: "int64", data: Int32Array.from([-5, 9]) }],
    ]);
    const path = `${dir}/m.safetensors`;
    await saveCheckpoint(path, sd, { model: "ViT-B/16", iteration: 7, config: { embedDim: 3 } });
    const back = await readCheckpoint(path);
    deepStrictEqual([...back.stateDict.keys()], [...sd.keys()]);
    for (const [k, t] of sd) {
      const u = back.stateDict.get(k)!;
      deepStrictEqual(u.shape, t.shape);
      deepStrictEqual(Array.from(u.data), Array.from(t.data));
    }
    equal(back.meta.model, "ViT-B/16");
    equal(back.meta.iteration, 7);
    deepStrictEqual(back.meta.config, { embedDim: 3 });
    equal(back.meta.dtype, "float32");
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
    await saveCheckpoint(path, sd, {}, { floatDtype: "float16" });
    const h = await readCheckpoint(path);
    equal(h.stateDict.get("visual.proj")!.dtype, "float16");
    deepStrictEqual(
      Array.from(h.stateDict.get("visual.proj")!.data),
      [1, -2, 0.0999755859375, 3.5, 0.0010004043579101562, 7],
    );
    await rejects(() => readCheckpoint(`${dir}/missing.pt`), /missing\.pt: cannot open checkpoint/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "fixture → saveCheckpoint → readCheckpoint: identical tensors",
  ignore: skipWithoutShared(),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      for (const [file] of FIXTURES) {
        const a = await readCheckpoint(sharedPath(`fixtures/clip/${file}`));
        await saveCheckpoint(`${dir}/m.safetensors`, a.stateDict, { source: file });
        const b = await readCheckpoint(`${dir}/m.safetensors`);
        equal(b.meta.source, file);
        deepStrictEqual([...b.stateDict.keys()], [...a.stateDict.keys()]);
        for (const [k, t] of a.stateDict) {
          const u = b.stateDict.get(k)!;
          deepStrictEqual(u.shape, t.shape, k);
          deepStrictEqual(u.data, t.data, k);
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
