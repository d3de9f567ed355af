import { deepStrictEqual, equal, rejects, throws } from "node:assert/strict";
import {
  floatToHalf,
  halfToFloat,
  readSafetensors,
  removeStaleTemps,
  writeFileAtomic,
  writeSafetensors,
  writeSafetensorsFile,
} from "./safetensors.ts";
import { readCheckpointBytes } from "./checkpoint.ts";
import { hfToOpenAI, isHfClip } from "./hf_names.ts";
import type { RawTensor, StateDict } from "./state_dict.ts";

/** Build a safetensors file by hand from (name, dtype, shape, raw bytes). */
function build(entries: [string, string, number[], Uint8Array][], pad = true): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { note: "hand-made" } };
  let off = 0;
  for (const [name, dtype, shape, raw] of entries) {
    header[name] = { dtype, shape, data_offsets: [off, off + raw.length] };
    off += raw.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  if (pad && json.length % 8) {
    const p = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(32);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let o = 8 + json.length;
  for (const [, , , raw] of entries) {
    out.set(raw, o);
    o += raw.length;
  }
  return out;
}

const u8 = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

Deno.test("safetensors: reads every dtype", () => {
  const bytes = build([
    ["f32", "F32", [2], u8(Float32Array.from([1.25, -3]))],
    ["f16", "F16", [2], u8(Uint16Array.from([0x3c00, 0xc500]))], // 1, -5
    ["bf16", "BF16", [1], u8(Uint16Array.from([0x3fc0]))], // 1.5
    ["f64", "F64", [1], u8(Float64Array.from([0.25]))],
    ["i64", "I64", [2], u8(BigInt64Array.from([-7n, 123n]))],
    ["i32", "I32", [1], u8(Int32Array.from([-9]))],
    ["u8", "U8", [2], Uint8Array.from([0, 255])],
    ["b", "BOOL", [2], Uint8Array.from([1, 0])],
    ["scalar", "F32", [], u8(Float32Array.from([2]))],
  ], false);
  const { stateDict, metadata } = readSafetensors(bytes, "all.safetensors");
  deepStrictEqual(metadata, { note: "hand-made" });
  deepStrictEqual(
    [...stateDict].map(([k, t]) => [k, t.dtype, t.shape, Array.from(t.data)]),
    [
      ["f32", "float32", [2], [1.25, -3]],
      ["f16", "float16", [2], [1, -5]],
      ["bf16", "bfloat16", [1], [1.5]],
      ["f64", "float64", [1], [0.25]],
      ["i64", "int64", [2], [-7, 123]],
      ["i32", "int32", [1], [-9]],
      ["u8", "uint8", [2], [0, 255]],
      ["b", "bool", [2], [1, 0]],
      ["scalar", "float32", [], [2]],
    ],
  );
});

Deno.test("safetensors: write → read round trip, 8-byte aligned header, metadata", () => {
  const sd: StateDict = new Map<string, RawTensor>([
    ["w", { shape: [2, 2], dtype: "float32", data: Float32Array.from([1, 2, 3, 4]) }],
    ["n", { shape: [1], dtype: "int64", data: Int32Array.from([-1]) }],
  ]);
  const bytes = writeSafetensors(sd, { method: "ZSCL", nested: { a: [1, 2] } });
  const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  equal(hlen % 8, 0);
  const { stateDict, metadata } = readSafetensors(bytes, "rt.safetensors");
  equal(metadata.format, "pt");
  deepStrictEqual(JSON.parse(metadata.mtil), { method: "ZSCL", nested: { a: [1, 2] } });
  deepStrictEqual(
    [...stateDict].map(([k, t]) => [k, t.shape, Array.from(t.data)]),
    [["w", [2, 2], [1, 2, 3, 4]], ["n", [1], [-1]]],
  );
});

Deno.test("safetensors: corrupt headers and truncation fail naming file and offset", () => {
  const good = build([["w", "F32", [2], u8(Float32Array.from([1, 2]))]]);
  for (let cut = 0; cut < good.length; cut++) {
    throws(
      () => readSafetensors(good.subarray(0, cut), "t.st"),
      /t\.st: safetensors: .* at offset \d+/,
    );
  }
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  throws(() => readSafetensors(huge, "h.st"), /exceeds the limit at offset 0/);
  throws(
    () => readSafetensors(build([["w", "F32", [3], u8(Float32Array.from([1, 2]))]]), "s.st"),
    /s\.st: safetensors: tensor w: 8 bytes for shape \[3\] float32 at offset \d+/,
  );
  throws(
    () => readSafetensors(build([["w", "Q4", [1], new Uint8Array(1)]]), "d.st"),
    /unsupported dtype Q4/,
  );
  const bad = build([["w", "F32", [1], u8(Float32Array.from([1]))]]);
  bad[9] = 0x5b; // '"' → '['
  throws(() => readSafetensors(bad, "j.st"), /j\.st: safetensors: bad JSON header .* at offset 8/);
});

Deno.test("float16 conversion: exact decode, round-to-nearest-even encode", () => {
  equal(halfToFloat(0x0001), 2 ** -24);
  equal(halfToFloat(0x7bff), 65504);
  equal(halfToFloat(0xfc00), -Infinity);
  for (let h = 0; h < 0x7c00; h += 7) equal(floatToHalf(halfToFloat(h)), h);
  equal(floatToHalf(1 + 2 ** -11), 0x3c00); // tie → even
  equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  equal(floatToHalf(65520), 0x7c00); // overflow → inf
  equal(floatToHalf(2 ** -25), 0); // tie → even (0)
  equal(floatToHalf(3 * 2 ** -26), 1);
});

Deno.test("hf_names: Hugging Face CLIPModel names map to OpenAI names", () => {
  const t = (shape: number[], start: number): RawTensor => ({
    shape,
    dtype: "float32",
    data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => start + i),
  });
  const W = 2, E = 3;
  const hf: StateDict = new Map([
    ["logit_scale", t([], 0)],
    ["text_model.embeddings.token_embedding.weight", t([5, W], 0)],
    ["text_model.embeddings.position_embedding.weight", t([4, W], 0)],
    ["text_model.embeddings.position_ids", {
      shape: [1, 4],
      dtype: "int64",
      data: new Int32Array(4),
    }],
    ["text_model.encoder.layers.0.self_attn.q_proj.weight", t([W, W], 0)],
    ["text_model.encoder.layers.0.self_attn.k_proj.weight", t([W, W], 10)],
    ["text_model.encoder.layers.0.self_attn.v_proj.weight", t([W, W], 20)],
    ["text_model.encoder.layers.0.self_attn.q_proj.bias", t([W], 0)],
    ["text_model.encoder.layers.0.self_attn.k_proj.bias", t([W], 10)],
    ["text_model.encoder.layers.0.self_attn.v_proj.bias", t([W], 20)],
    ["text_model.encoder.layers.0.self_attn.out_proj.weight", t([W, W], 0)],
    ["text_model.encoder.layers.0.layer_norm1.weight", t([W], 0)],
    ["text_model.encoder.layers.0.mlp.fc1.weight", t([4 * W, W], 0)],
    ["text_model.encoder.layers.0.mlp.fc2.bias", t([W], 0)],
    ["text_model.encoder.layers.0.layer_norm2.bias", t([W], 0)],
    ["text_model.final_layer_norm.weight", t([W], 0)],
    ["text_projection.weight", t([E, W], 0)],
    ["vision_model.embeddings.class_embedding", t([W], 0)],
    ["vision_model.embeddings.patch_embedding.weight", t([W, 3, 2, 2], 0)],
    ["vision_model.pre_layrnorm.bias", t([W], 0)],
    ["vision_model.encoder.layers.3.self_attn.v_proj.weight", t([W, W], 20)],
    ["vision_model.encoder.layers.3.self_attn.q_proj.weight", t([W, W], 0)],
    ["vision_model.encoder.layers.3.self_attn.k_proj.weight", t([W, W], 10)],
    ["vision_model.post_layernorm.weight", t([W], 0)],
    ["visual_projection.weight", t([E, W], 0)],
  ]);
  equal(isHfClip(hf), true);
  const sd = hfToOpenAI(hf);
  deepStrictEqual([...sd.keys()], [
    "logit_scale",
    "token_embedding.weight",
    "positional_embedding",
    "transformer.resblocks.0.attn.in_proj_weight",
    "transformer.resblocks.0.attn.in_proj_bias",
    "transformer.resblocks.0.attn.out_proj.weight",
    "transformer.resblocks.0.ln_1.weight",
    "transformer.resblocks.0.mlp.c_fc.weight",
    "transformer.resblocks.0.mlp.c_proj.bias",
    "transformer.resblocks.0.ln_2.bias",
    "ln_final.weight",
    "text_projection",
    "visual.class_embedding",
    "visual.conv1.weight",
    "visual.ln_pre.bias",
    "visual.transformer.resblocks.3.attn.in_proj_weight",
    "visual.ln_post.weight",
    "visual.proj",
  ]);
  const inProj = sd.get("transformer.resblocks.0.attn.in_proj_weight")!;
  deepStrictEqual(inProj.shape, [3 * W, W]);
  deepStrictEqual(Array.from(inProj.data), [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
  deepStrictEqual(Array.from(sd.get("transformer.resblocks.0.attn.in_proj_bias")!.data), [
    0,
    1,
    10,
    11,
    20,
    21,
  ]);
  deepStrictEqual(
    Array.from(sd.get("visual.transformer.resblocks.3.attn.in_proj_weight")!.data),
    [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23],
  );
  const proj = sd.get("text_projection")!; // [E, W] = [[0,1],[2,3],[4,5]] transposed
  deepStrictEqual(proj.shape, [W, E]);
  deepStrictEqual(Array.from(proj.data), [0, 2, 4, 1, 3, 5]);
  deepStrictEqual(sd.get("visual.proj")!.shape, [W, E]);
  // Through readCheckpointBytes: HF safetensors are mapped and flagged.
  const ck = readCheckpointBytes(writeSafetensors(hf), "hf.safetensors");
  equal(ck.meta.hfNames, true);
  deepStrictEqual([...ck.stateDict.keys()], [...sd.keys()]);
  throws(
    () => hfToOpenAI(new Map([["text_model.pooler.weight", t([1], 0)]])),
    /cannot map Hugging Face key text_model\.pooler\.weight/,
  );
});

Deno.test("writeSafetensorsFile: same bytes as writeSafetensors; failures leave no temp file", async () => {
  const sd: StateDict = new Map<string, RawTensor>([
    ["a", { shape: [3], dtype: "float32", data: Float32Array.from([1, -2, 3.5]) }],
    ["m", { shape: [2], dtype: "bool", data: Int32Array.from([1, 0]) }],
    ["n", { shape: [2], dtype: "int64", data: Int32Array.from([-2, 2 ** 31 - 1]) }],
    ["b", { shape: [1, 1], dtype: "float16", data: Float32Array.from([0.5]) }],
  ]);
  const dir = await Deno.makeTempDir();
  try {
    for (const floatDtype of ["float32", "float16"] as const) {
      await writeSafetensorsFile(`${dir}/x.safetensors`, sd, { k: 1 }, { floatDtype });
      deepStrictEqual(
        await Deno.readFile(`${dir}/x.safetensors`),
        writeSafetensors(sd, { k: 1 }, { floatDtype }),
      );
    }
    const back = readSafetensors(await Deno.readFile(`${dir}/x.safetensors`), "x");
    deepStrictEqual(Array.from(back.stateDict.get("n")!.data), [-2, 2 ** 31 - 1]);
    await rejects(() => writeSafetensorsFile(`${dir}/no/such/dir/y.safetensors`, sd));
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["x.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "writeFileAtomic sweeps the temp files of killed writers, not of live ones",
  ignore: (() => {
    try {
      Deno.statSync("/proc/self");
      return false;
    } catch {
      return true; // liveness comes from /proc
    }
  })(),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      // a writer that was SIGKILLed mid-write: its pid is gone
      const child = new Deno.Command("true").spawn();
      await child.status;
      const dead = `${dir}/m.json.tmp-${child.pid}-deadbeef`;
      const live = `${dir}/m.json.tmp-${Deno.pid}-12345678`; // ours: may still be writing
      const other = `${dir}/other.json.tmp-${child.pid}-deadbeef`; // another target
      for (const p of [dead, live, other]) await Deno.writeTextFile(p, "half");
      await writeFileAtomic(`${dir}/m.json`, new TextEncoder().encode("{}"));
      const names = () => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      deepStrictEqual(names(), [
        "m.json",
        `m.json.tmp-${Deno.pid}-12345678`,
        other.split("/").pop(),
      ]);
      await removeStaleTemps(`${dir}/other.json`);
      deepStrictEqual(names(), ["m.json", `m.json.tmp-${Deno.pid}-12345678`]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
